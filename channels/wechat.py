"""WeChat official account channel (service venv): the ``/wechat`` webhook and the customer-service message sender.

WeChat pushes each message to ``POST /wechat`` (plaintext, compatible or safe mode) and gives up after 5 seconds,
retrying up to three times. The webhook checks the signature and the timestamp, parses the XML, answers
``success`` at once and hands the message to the channels gateway in the background; the gateway stores it (a
retried MsgId is stored and answered once), routes it to the bot or the desk and stores the replies, which the
outbox then delivers in order through ``CustomerServiceSender`` (the customer-service message API). No passive
replies: every answer goes out through the API, so none can be delivered twice.

Buttons become numbered options ("回复 1：…"); a bare number (or a button's title) sent back is read as the
latest buttons' payload. Events: subscribe → the bot's greeting, unsubscribe → logged, menu CLICK keys → intents.
Voice uses WeChat's ``Recognition`` when present; otherwise the audio (AMR) is downloaded through the media API in
the background and recognised by ``asr/`` (the message is stored as "[语音]" before ``success`` and its text filled
in once recognised). Other message types get a polite "text only" reply.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import State

from channels.gateway import Envelope
from channels.outbox import DeliveryFailed, Sender
from channels.wechat_api import WeChatApi, redact_http_logs
from channels.wechat_protocol import (
    OPENID, BadSignature, Incoming, check_request, choice, decode_aes_key, decrypt, read_message, render,
    split_text, xml_dict,
)
from service.desk.core import message_dict
from service.errors import ServiceError
from service.models import OUTGOING_KINDS, ChatMessage, utcnow
from service.settings import Settings
from taxlib.text import strip_control

logger = logging.getLogger(__name__)

router = APIRouter(tags=["wechat"])

CHANNEL = "wechat"
WELCOME = "/greet"  # a new follower gets the bot's own greeting (what the assistant can do)
MENU = {  # custom-menu CLICK keys → intents (bot/domain)
    "KB_POLICY": "/ask_policy",
    "INVOICE": "/invoice",
    "PAY_TAX": "/pay_tax",
    "ACCOUNT": "/account_help",
    "TAX_DUE": "/query_tax_due",
    "PAYMENT": "/query_payment",
    "REFUND": "/query_refund",
    "COMPLAINT": "/complaint",
    "REPORT": "/report_violation",
    "SUGGESTION": "/suggestion",
    "HUMAN": "/request_human",
}
TEXT_ONLY = "抱歉，目前只能处理文字消息。请直接用文字描述您的问题，例如“个税起征点是多少”。"
VOICE_NOT_RECOGNISED = "抱歉，暂时无法识别语音内容，请用文字描述您的问题。"
UNKNOWN_MENU = "抱歉，该菜单功能暂未开通，请直接输入您的问题。"
SHOWN = {"image": "[图片]", "voice": "[语音]", "video": "[视频]", "shortvideo": "[小视频]", "location": "[位置]",
         "link": "[链接]", "file": "[文件]"}  # how a non-text message appears in the transcript
MAX_PROGRESS = 1000


class NotConfigured(ServiceError):
    status_code, code, message = 503, "wechat_not_configured", "微信公众号接入未配置（需设置 TAXBOT_WECHAT_TOKEN 等）"


class PlaintextRefused(ServiceError):
    status_code, code, message = 403, "plaintext_refused", "已配置安全模式（TAXBOT_WECHAT_AES_KEY），不接受明文消息"


@dataclass(frozen=True)
class WeChatConfig:
    token: str
    app_id: str
    app_secret: str
    aes_key: bytes | None  # safe mode when set
    api_base: str
    max_skew: int
    stable_token: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> WeChatConfig | None:
        """None when WeChat is not configured; ValueError when it is, incompletely."""
        if settings.wechat_token is None or not settings.wechat_token.get_secret_value():
            return None
        secret = settings.wechat_app_secret.get_secret_value() if settings.wechat_app_secret else ""
        if not settings.wechat_app_id or not secret:
            raise ValueError("TAXBOT_WECHAT_APP_ID and TAXBOT_WECHAT_APP_SECRET are required when TAXBOT_WECHAT_TOKEN "
                             "is set (answers go out through the customer-service message API)")
        key = None
        if settings.wechat_aes_key is not None and settings.wechat_aes_key.get_secret_value():
            try:
                key = decode_aes_key(settings.wechat_aes_key.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"TAXBOT_WECHAT_AES_KEY: {exc}") from None
        return cls(settings.wechat_token.get_secret_value(), settings.wechat_app_id, secret, key,
                   settings.wechat_api_base, settings.wechat_max_clock_skew_seconds,
                   settings.wechat_token_api == "stable")


# ------------------------------------------------------------------------------------------------ outgoing


def openid_of(conversation_id: str) -> str:
    openid = conversation_id.removeprefix("wx-")
    if openid == conversation_id or not OPENID.match(openid):
        raise DeliveryFailed("not a WeChat conversation", permanent=True)
    return openid


class CustomerServiceSender:
    """The outbox's sender for "wechat": buttons rendered as numbered options, texts over 2048 bytes sent as
    several messages in order. A retry after a part failed resumes at that part (nothing is sent twice)."""

    def __init__(self, api: WeChatApi) -> None:
        self.api = api
        self._progress: dict[tuple[str, str], int] = {}  # (conversation, text) -> parts already delivered

    async def send(self, conversation_id: str, text: str, payload: dict[str, Any] | None) -> None:
        openid = openid_of(conversation_id)
        buttons = payload.get("buttons") if isinstance(payload, dict) else None
        content = render(text, buttons if isinstance(buttons, list) else None)
        parts = split_text(content)
        key = (conversation_id, content)
        done = self._progress.pop(key, 0)
        for index in range(done, len(parts)):
            try:
                await self.api.send_text(openid, parts[index])
            except DeliveryFailed as exc:
                if not exc.permanent:
                    self._remember(key, index)
                raise
        logger.info("wechat.delivered openid=%s parts=%s", openid, len(parts))

    def _remember(self, key: tuple[str, str], index: int) -> None:
        while len(self._progress) >= MAX_PROGRESS:  # messages the outbox gave up on: forget the oldest
            self._progress.pop(next(iter(self._progress)))
        self._progress[key] = index


def speech_pool(state: State):  # -> asr.pool.RecognitionPool
    """The process's speech recogniser (built on first use; tests may set ``state.speech``)."""
    pool = getattr(state, "speech", None)
    if pool is None:
        from asr.engines import shared_pool
        pool = state.speech = shared_pool()
    return pool


def make_sender(settings: Settings) -> Sender | None:
    """The customer-service message sender when WeChat is configured, else None."""
    config = WeChatConfig.from_settings(settings)
    if config is None:
        return None
    redact_http_logs()
    return CustomerServiceSender(WeChatApi(config.api_base, config.app_id, config.app_secret,
                                           stable_token=config.stable_token))


# ------------------------------------------------------------------------------------------------ incoming


class WeChatChannel:
    """The webhook's side, one per app: verification and parsing (synchronous, before ``success``) and the
    background processing through the gateway."""

    def __init__(self, config: WeChatConfig, state: State) -> None:
        self.config, self.state = config, state
        self.tasks: set[asyncio.Task[None]] = set()
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # openid -> (lock, tasks using it)

    def check(self, query: dict[str, str]) -> None:
        check_request(self.config.token, query, time.time(), self.config.max_skew)

    def open(self, query: dict[str, str], body: bytes) -> Incoming:
        """The pushed message, decrypted in safe and compatible mode."""
        fields = xml_dict(body)
        if (query.get("encrypt_type") or "raw").lower() == "aes":
            if self.config.aes_key is None:
                if "MsgType" in fields:  # compatible mode without our key: the plaintext copy
                    return read_message(body)
                raise NotConfigured(message="安全模式消息需要配置 TAXBOT_WECHAT_AES_KEY")
            return read_message(decrypt(self.config.aes_key, self.config.app_id, self.config.token, query,
                                        fields.get("Encrypt")))
        if self.config.aes_key is not None:  # no signature covers a plaintext body: refuse the downgrade
            raise PlaintextRefused()
        return read_message(body)

    async def accept(self, incoming: Incoming) -> Envelope | None:
        """Store what arrived, before WeChat is told ``success``: the envelope to answer in the background, or None
        when there is nothing more to do (a retry of a stored message, a channel-only reply, an ignored event)."""
        logger.info("wechat.received openid=%s type=%s event=%s message=%s", incoming.openid, incoming.kind,
                    incoming.event or "-", incoming.message_id)
        envelope = await self._envelope(incoming)
        if envelope is None:
            return None
        stored, _ = await self.state.gateway.accept(envelope)
        if stored is None:
            logger.info("wechat.duplicate openid=%s message=%s", incoming.openid, incoming.message_id)
            return None
        envelope.metadata["stored"] = stored
        return envelope

    async def _envelope(self, incoming: Incoming) -> Envelope | None:
        if incoming.kind == "text":
            text = strip_control(incoming.text).strip()
            if not text:
                return None
            return self._make(incoming, text, {})
        if incoming.kind == "voice":
            recognised = strip_control(incoming.recognition or "").strip()
            if recognised:
                return self._make(incoming, recognised, {"asr_confidence": None, "voice": True})
            if incoming.media_id and getattr(self.state, "wechat_api", None) is not None:
                # recognised in the background (_answer): stored now as "[语音]", its text filled in later
                return self._make(incoming, SHOWN["voice"], {"voice": True, "media_id": incoming.media_id,
                                                            "media_format": incoming.media_format})
            await self._notice(incoming, SHOWN["voice"], VOICE_NOT_RECOGNISED)
            return None
        if incoming.kind == "event":
            if incoming.event in ("subscribe", "subscribe_scan"):
                return self._make(incoming, WELCOME, {"event": "subscribe"})
            if incoming.event == "unsubscribe":
                logger.info("wechat.unsubscribed openid=%s", incoming.openid)
            elif incoming.event == "click":
                intent = MENU.get(incoming.event_key)
                if intent:
                    return self._make(incoming, intent, {"menu": incoming.event_key})
                logger.info("wechat.unknown_menu_key openid=%s key=%s", incoming.openid, incoming.event_key[:64])
                await self._notice(incoming, "[菜单]", UNKNOWN_MENU)
            # VIEW (a menu link), SCAN, LOCATION reports, template-send reports …: nothing to answer
            return None
        await self._notice(incoming, SHOWN.get(incoming.kind, f"[{incoming.kind[:16]}]"), TEXT_ONLY)
        return None

    @staticmethod
    def _make(incoming: Incoming, text: str, metadata: dict[str, Any]) -> Envelope:
        return Envelope(channel=CHANNEL, channel_user_id=incoming.openid, conversation_id=conversation_of(incoming.openid),
                        text=text, message_id=incoming.message_id, metadata=metadata)

    def spawn(self, envelope: Envelope) -> None:
        self._keep(asyncio.create_task(self._answer(envelope)))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def take(self, incoming: Incoming) -> None:
        """Store what arrived and start answering it, as one step a cancelled request cannot cut in two: were the
        webhook's handler cancelled between the two, the message would be stored and never answered (WeChat's
        retry finds it stored and is not answered either)."""
        async def store_then_answer() -> None:
            envelope = await self.accept(incoming)  # stored before WeChat hears "success": nothing is lost
            if envelope is not None:
                self.spawn(envelope)

        step = asyncio.create_task(store_then_answer())
        self._keep(step)
        await asyncio.shield(step)

    async def _answer(self, envelope: Envelope) -> None:
        """One user's messages are answered one at a time, in the order they arrived (a lock's waiters are FIFO)."""
        openid = envelope.channel_user_id
        lock, users = self._turns.get(openid) or (asyncio.Lock(), 0)
        self._turns[openid] = (lock, users + 1)
        stored = envelope.metadata.pop("stored")
        try:
            async with lock:
                if "media_id" in envelope.metadata and not await self._recognise(envelope, stored):
                    return
                picked = None if {"event", "menu"} & envelope.metadata.keys() else await asyncio.to_thread(
                    self._picked, envelope.conversation_id, envelope.text, stored)
                if picked:  # the transcript keeps what the user typed ("1"); the bot gets the button's payload
                    envelope.text, envelope.metadata["button"] = picked, True
                replies = await self.state.gateway.answer(envelope, stored)
                logger.info("wechat.handled openid=%s message=%s replies=%s", openid, envelope.message_id,
                            len(replies))
        except Exception as exc:  # a background task: nobody else would see the failure
            logger.error("wechat.processing_failed openid=%s message=%s %s", openid, envelope.message_id,
                         type(exc).__name__, exc_info=exc)
        finally:
            lock, users = self._turns[openid]
            if users == 1:
                del self._turns[openid]
            else:
                self._turns[openid] = (lock, users - 1)

    async def _recognise(self, envelope: Envelope, stored: int) -> bool:
        """Download a voice message's audio and turn it into text; False (and a polite reply stored for delivery)
        when that fails or nothing was said."""
        media_id = envelope.metadata.pop("media_id")
        envelope.metadata.pop("media_format", None)
        try:
            from asr import audio as audio_io
            from asr.types import SpeechError

            data = await self.state.wechat_api.download_media(media_id)
            sound = await asyncio.to_thread(audio_io.decode, data)
            result = await speech_pool(self.state).transcribe(sound)
        except (DeliveryFailed, SpeechError) as exc:
            logger.warning("wechat.voice_failed openid=%s message=%s error=%s", envelope.channel_user_id,
                           envelope.message_id, type(exc).__name__)
            result = None
        text = strip_control(result.text).strip() if result else ""
        if not text:
            await asyncio.to_thread(self.state.gateway.store_replies, envelope, stored, "system",
                                    [{"text": VOICE_NOT_RECOGNISED}])
            return False
        logger.info("wechat.voice_recognised openid=%s message=%s chars=%d confidence=%.2f",
                    envelope.channel_user_id, envelope.message_id, len(text), result.confidence)
        envelope.text = text
        envelope.metadata["asr_confidence"] = result.confidence
        await asyncio.to_thread(self.state.gateway.revise_user_message, stored, text, result.confidence)
        return True

    def _picked(self, conversation_id: str, text: str, stored: int) -> str | None:
        """The payload of a button the user picked by number or title: buttons of the latest outgoing message that
        has any since the user's message before this one (message ``stored``). Read when the message is answered,
        not when it arrives: one user's messages are answered in order, so the answer to the previous message,
        with its buttons, is stored by then, even when the user typed "1" before it was delivered."""
        if len(text) > 32:
            return None
        with self.state.sessionmaker() as session:
            last_user = session.scalar(select(func.max(ChatMessage.id)).where(
                ChatMessage.conversation_id == conversation_id, ChatMessage.kind == "user",
                ChatMessage.id < stored)) or 0
            rows = session.scalars(select(ChatMessage).where(
                ChatMessage.conversation_id == conversation_id, ChatMessage.kind.in_(OUTGOING_KINDS),
                ChatMessage.id > last_user, ChatMessage.payload.is_not(None))
                .order_by(ChatMessage.id.desc()).limit(20)).all()
            for message in rows:
                buttons = (message.payload or {}).get("buttons")
                if buttons:
                    return choice(buttons, text)
        return None

    async def _notice(self, incoming: Incoming, shown: str, reply: str) -> None:
        """A message only the channel answers (an image, an unknown menu key): stored with its reply like the
        gateway stores a turn, once per MsgId; the outbox delivers the reply."""
        stored = await asyncio.to_thread(self._store_notice, incoming, shown, reply)
        if stored is None:
            logger.info("wechat.duplicate openid=%s message=%s", incoming.openid, incoming.message_id)
            return
        event, messages = stored
        for message in messages:
            self.state.bus.publish({**event, "message": message})

    def _store_notice(self, incoming: Incoming, shown: str, reply: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        conversation_id = conversation_of(incoming.openid)
        case = self.state.desk.open_case_for(conversation_id)
        with self.state.sessionmaker() as session:
            user = ChatMessage(conversation_id=conversation_id, kind="user", text=shown, channel=CHANNEL,
                               client_id=incoming.message_id, handoff_id=case.id if case else None,
                               created_at=utcnow())
            session.add(user)
            try:
                session.flush()
            except IntegrityError:  # WeChat's retry of a message already answered
                session.rollback()
                return None
            answer = ChatMessage(conversation_id=conversation_id, kind="system", text=reply, channel=CHANNEL,
                                 reply_to=user.id, handoff_id=case.id if case else None, created_at=utcnow())
            session.add(answer)
            session.commit()
            event = {"type": "message", "conversation_id": conversation_id, "case_id": case.id if case else None,
                     "agent_id": case.agent_id if case else None, "group_id": case.group_id if case else None}
            return event, [message_dict(user), message_dict(answer)]


def conversation_of(openid: str) -> str:
    return f"wx-{openid}"


def _channel(request: Request) -> WeChatChannel:
    state = request.app.state
    channel: WeChatChannel | None = getattr(state, "wechat", None)
    if channel is None:
        config = WeChatConfig.from_settings(state.settings)
        if config is None:
            raise NotConfigured()
        channel = state.wechat = WeChatChannel(config, state)
    return channel


Channel = Annotated[WeChatChannel, Depends(_channel)]


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params)


@router.get("/wechat", response_class=PlainTextResponse, summary="WeChat URL verification")
async def verify_url(request: Request, channel: Channel) -> PlainTextResponse:
    query = _query(request)
    try:
        channel.check(query)
    except ServiceError as exc:
        logger.warning("wechat.verification_refused reason=%s", exc.code)
        raise
    logger.info("wechat.verified")
    return PlainTextResponse(query.get("echostr", ""))


@router.post("/wechat", response_class=PlainTextResponse, summary="WeChat message push")
async def receive(request: Request, channel: Channel) -> PlainTextResponse:
    query = _query(request)
    try:
        channel.check(query)
        incoming = channel.open(query, await request.body())
    except ServiceError as exc:
        log = logger.warning if isinstance(exc, (BadSignature, PlaintextRefused)) else logger.info
        log("wechat.refused reason=%s", exc.code)
        raise
    await channel.take(incoming)
    return PlainTextResponse("success")
