"""The channels gateway (service venv): one envelope for every channel, routed to the bot or, while people own the
conversation, to the desk; every message stored before it is answered, and a retried message answered once.

The web chat's HTTP endpoints (``service/api/chat.py``) use it today; WeChat and the phone line will build their
envelopes the same way.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.desk.bot import BotClient, BotUnavailable
from service.desk.bus import Bus
from service.desk.core import Desk, message_dict
from service.models import ChatMessage, utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")
UNAVAILABLE = "抱歉，智能助手暂时无法回复，请稍后再试，或拨打12366纳税服务热线。"
USER_VISIBLE = ("user", "bot", "agent", "system")


@dataclass
class Envelope:
    channel: str  # webchat, wechat, phone, rest
    channel_user_id: str
    conversation_id: str
    text: str
    message_id: str | None = None  # the sender's id for this message: a retry with the same id is answered once
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)


class Gateway:
    def __init__(self, sessions: sessionmaker[Session], desk: Desk, bot: BotClient, bus: Bus) -> None:
        self.sessions, self.desk, self.bot, self.bus = sessions, desk, bot, bus
        # Storing what arrives has its own threads: a webhook that must acknowledge at once does not wait behind
        # the background work of answering (which holds the shared pool's few threads while it waits on the bot).
        self.intake = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway-intake")

    async def in_intake(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.intake, work, *args)

    async def handle(self, envelope: Envelope) -> list[dict[str, Any]]:
        """Store the message, route it, and return the replies to show now (agents' replies come later)."""
        stored, earlier = await self.accept(envelope)
        if stored is None:  # a retry: the answer it already got
            return earlier
        return await self.answer(envelope, stored)

    async def accept(self, envelope: Envelope) -> tuple[int | None, list[dict[str, Any]]]:
        """Store the user's message: its id, or None and the replies a retried message id already got. Channels
        that must acknowledge at once (WeChat) call this before acknowledging, and ``answer`` in the background."""
        return await self.in_intake(self._store_user_message, envelope)

    async def answer(self, envelope: Envelope, stored: int) -> list[dict[str, Any]]:
        """Route a stored message to the desk or the bot; store and return the replies."""
        result = await asyncio.to_thread(self.desk.inbound, envelope.conversation_id, envelope.text,
                                         envelope.metadata, stored)
        if result.routed != "bot" and not result.forward:
            return await asyncio.to_thread(self.store_replies, envelope, stored, "system",
                                           [{"text": t} for t in result.replies])
        metadata = {**envelope.metadata, "channel_user_id": envelope.channel_user_id}
        try:
            replies = await self.bot.send(envelope.conversation_id, result.forward or envelope.text,
                                          envelope.channel, metadata)
        except BotUnavailable as exc:
            logger.warning("gateway.bot_unavailable conversation=%s error=%s", envelope.conversation_id, exc)
            replies, kind = [{"text": UNAVAILABLE}], "system"
        else:
            kind = "bot"
        if result.replies:
            replies = [{"text": t} for t in result.replies] + replies
        return await asyncio.to_thread(self.store_replies, envelope, stored, kind, replies)

    def _store_user_message(self, envelope: Envelope) -> tuple[int | None, list[dict[str, Any]]]:
        with self.sessions() as session:
            message = ChatMessage(conversation_id=envelope.conversation_id, kind="user", text=envelope.text,
                                  channel=envelope.channel,
                                  client_id=envelope.message_id, created_at=utcnow(),
                                  payload={"asr_confidence": envelope.metadata["asr_confidence"]}
                                  if "asr_confidence" in envelope.metadata else None)
            session.add(message)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                original = session.scalar(select(ChatMessage).where(
                    ChatMessage.conversation_id == envelope.conversation_id,
                    ChatMessage.client_id == envelope.message_id))
                return None, self._replies_to(session, original.id) if original else []
            return message.id, []

    def revise_user_message(self, message_id: int, text: str, asr_confidence: float | None) -> None:
        """A stored message's text once it is known (a voice message, recognised after it was accepted)."""
        with self.sessions() as session:
            message = session.get(ChatMessage, message_id)
            if message is None:
                return
            message.text = text
            message.payload = {**(message.payload or {}), "asr_confidence": asr_confidence}
            session.commit()

    def _replies_to(self, session: Session, message_id: int) -> list[dict[str, Any]]:
        rows = session.scalars(select(ChatMessage).where(ChatMessage.reply_to == message_id)
                               .order_by(ChatMessage.id)).all()
        return [message_dict(m) for m in rows]

    def store_replies(self, envelope: Envelope, reply_to: int, kind: str,
                      replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with self.sessions() as session:
            case = self.desk.open_case_for(envelope.conversation_id)
            for reply in replies:
                text = reply.get("text") or ""
                buttons = reply.get("buttons")
                if not text and not buttons:
                    continue
                message = ChatMessage(conversation_id=envelope.conversation_id, kind=kind, text=text,
                                      channel=envelope.channel,
                                      reply_to=reply_to, handoff_id=case.id if case else None,
                                      payload={"buttons": buttons} if buttons else None, created_at=utcnow())
                session.add(message)
                session.flush()
                out.append(message_dict(message))
            session.commit()
        for item in out:
            self.bus.publish({"type": "message", "conversation_id": envelope.conversation_id,
                              "case_id": item["case_id"], "agent_id": case.agent_id if case else None,
                              "group_id": case.group_id if case else None, "message": item})
        return out

    def history(self, conversation_id: str, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """What the user sees of the conversation after message ``after`` (internal notes never)."""
        with self.sessions() as session:
            rows = session.scalars(select(ChatMessage).where(
                ChatMessage.conversation_id == conversation_id, ChatMessage.id > after,
                ChatMessage.kind.in_(USER_VISIBLE)).order_by(ChatMessage.id).limit(limit)).all()
            return [message_dict(m) for m in rows]

    async def wait_for(self, conversation_id: str, after: int, timeout: float) -> list[dict[str, Any]]:
        """Messages after ``after``; when there are none yet, wait up to ``timeout`` seconds for one."""
        async with self.bus.subscribe() as queue:
            found = await asyncio.to_thread(self.history, conversation_id, after)
            if found or timeout <= 0:
                return found
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if event.get("type") == "message" and event.get("conversation_id") == conversation_id \
                        and event["message"]["kind"] in USER_VISIBLE:
                    return await asyncio.to_thread(self.history, conversation_id, after)
            return []
