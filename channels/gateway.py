"""The channels gateway (service venv): one envelope for every channel, routed to the bot or, while people own the
conversation, to the desk; every message stored before it is answered, and a retried message answered once.

The web chat's HTTP endpoints (``service/api/chat.py``) use it today; WeChat and the phone line will build their
envelopes the same way.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.desk.bot import BotClient, BotUnavailable
from service.desk.bus import Bus
from service.desk.core import Desk, message_dict
from service.models import ChatMessage, utcnow

logger = logging.getLogger(__name__)

UNAVAILABLE = "抱歉，智能助手暂时无法回复，请稍后再试，或拨打12366纳税服务热线。"
USER_VISIBLE = ("user", "bot", "agent", "system")
MAX_BATCH = 200  # arrivals stored in one transaction at most
Stored = tuple[int | None, list[dict[str, Any]]]  # the message's id, or None and what a retried id was answered


@dataclass
class Envelope:
    channel: str  # webchat, wechat, phone, rest
    channel_user_id: str
    conversation_id: str
    text: str
    message_id: str | None = None  # the sender's id for this message: a retry with the same id is answered once
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Arrival:
    envelope: Envelope
    future: asyncio.Future[Stored]
    loop: asyncio.AbstractEventLoop


class Gateway:
    def __init__(self, sessions: sessionmaker[Session], desk: Desk, bot: BotClient, bus: Bus) -> None:
        self.sessions, self.desk, self.bot, self.bus = sessions, desk, bot, bus
        # What arrives is stored by one thread of its own, in batches (see accept): a webhook that must acknowledge
        # at once does not wait behind the background work of answering, nor behind 49 other inserts.
        self._arrivals: queue.SimpleQueue[_Arrival | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_started = threading.Lock()

    async def handle(self, envelope: Envelope) -> list[dict[str, Any]]:
        """Store the message, route it, and return the replies to show now (agents' replies come later)."""
        stored, earlier = await self.accept(envelope)
        if stored is None:  # a retry: the answer it already got
            return earlier
        return await self.answer(envelope, stored)

    async def accept(self, envelope: Envelope) -> Stored:
        """Store the user's message: its id, or None and the replies a retried message id already got. Channels
        that must acknowledge at once (WeChat) call this before acknowledging, and ``answer`` in the background.

        Messages that arrive together are stored together: the intake thread takes everything waiting and writes
        it in one transaction (one commit, one turn at the database's write lock), so fifty users writing at once
        cost a few commits, not fifty, each of which would wait for the others."""
        loop = asyncio.get_running_loop()
        arrival = _Arrival(envelope, loop.create_future(), loop)
        self._start_writer()
        self._arrivals.put(arrival)
        return await arrival.future

    def close(self) -> None:
        """Stop the intake thread once it has stored what is already waiting."""
        if self._writer is not None:
            self._arrivals.put(None)
            self._writer.join(10)
            self._writer = None

    def _start_writer(self) -> None:
        if self._writer is None:
            with self._writer_started:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_arrivals, name="gateway-intake", daemon=True)
                    self._writer.start()

    def _write_arrivals(self) -> None:
        while (first := self._arrivals.get()) is not None:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    arrival = self._arrivals.get_nowait()
                except queue.Empty:
                    break
                if arrival is None:  # closing: store this batch, then stop
                    self._arrivals.put(None)
                    break
                batch.append(arrival)
            try:
                results: list[Stored | BaseException] = list(self._store_batch([a.envelope for a in batch]))
            except IntegrityError:  # another process stored one of these ids meanwhile: one at a time
                results = [self._store_alone(a.envelope) for a in batch]
            except Exception as exc:  # the database is down …: every sender hears of it (a webhook answers 500)
                logger.error("gateway.intake_failed messages=%d %s", len(batch), type(exc).__name__, exc_info=exc)
                results = [exc] * len(batch)
            for arrival, result in zip(batch, results):
                try:
                    arrival.loop.call_soon_threadsafe(_settle, arrival.future, result)
                except RuntimeError:  # the sender's event loop has closed (a shutdown): nobody is waiting
                    pass

    def _store_alone(self, envelope: Envelope) -> Stored | BaseException:
        try:
            return self._store_user_message(envelope)
        except Exception as exc:
            return exc

    def _store_batch(self, envelopes: list[Envelope]) -> list[Stored]:
        """Store several messages in one transaction; a message id stored before (a retry), or twice in the batch,
        is stored once."""
        results: list[Stored | None] = [None] * len(envelopes)
        with self.sessions() as session:
            keys = {(e.conversation_id, e.message_id) for e in envelopes if e.message_id is not None}
            known = {(conversation, client): id_ for conversation, client, id_ in session.execute(
                select(ChatMessage.conversation_id, ChatMessage.client_id, ChatMessage.id)
                .where(tuple_(ChatMessage.conversation_id, ChatMessage.client_id).in_(list(keys))))} if keys else {}
            new: list[tuple[int, ChatMessage]] = []
            batch_keys: set[tuple[str, str]] = set()
            for n, envelope in enumerate(envelopes):
                key = (envelope.conversation_id, envelope.message_id)
                if envelope.message_id is not None and key in known:
                    results[n] = (None, self._replies_to(session, known[key]))
                elif envelope.message_id is not None and key in batch_keys:
                    results[n] = (None, [])  # a retry that arrived with its original: not answered yet
                else:
                    if envelope.message_id is not None:
                        batch_keys.add(key)  # type: ignore[arg-type]
                    message = self._user_message(envelope)
                    session.add(message)
                    new.append((n, message))
            session.commit()
            for n, message in new:
                results[n] = (message.id, [])
        return results  # type: ignore[return-value]

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

    @staticmethod
    def _user_message(envelope: Envelope) -> ChatMessage:
        return ChatMessage(conversation_id=envelope.conversation_id, kind="user", text=envelope.text,
                           channel=envelope.channel, client_id=envelope.message_id, created_at=utcnow(),
                           payload={"asr_confidence": envelope.metadata["asr_confidence"]}
                           if "asr_confidence" in envelope.metadata else None)

    def _store_user_message(self, envelope: Envelope) -> Stored:
        with self.sessions() as session:
            message = self._user_message(envelope)
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


def _settle(future: asyncio.Future[Stored], result: Stored | BaseException) -> None:
    if future.done():  # the sender went away (a cancelled request): the message is stored all the same
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
