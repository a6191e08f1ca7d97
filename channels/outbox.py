"""Delivery of replies through a channel's API (WeChat's customer-service messages): every such reply is stored as
``pending`` with the conversation's messages, sent in order per conversation, retried with a growing pause when
sending fails for a while, and finally recorded as ``failed`` with the reason, never silently dropped.

Several service replicas may run the outbox at once: a message is claimed by a conditional UPDATE (pending →
sending) before it is sent, so it is sent by one of them. A claim older than ``CLAIM_SECONDS`` (its replica died
mid-send) goes back to pending.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.models import ChatMessage, utcnow

logger = logging.getLogger(__name__)

CLAIM_SECONDS = 120
BATCH = 50


class DeliveryFailed(Exception):
    """Sending failed. ``permanent``: trying again cannot help (e.g. WeChat 45015, outside the 48-hour window)."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.permanent = reason, permanent


class Sender(Protocol):
    async def send(self, conversation_id: str, text: str, payload: dict[str, Any] | None) -> None:
        """Deliver one message to the user of ``conversation_id``; raise DeliveryFailed when it did not go."""


def backoff(attempts: int) -> timedelta:
    """2 s, 4 s, 8 s … up to 5 minutes."""
    return timedelta(seconds=min(300, 2 ** attempts))


class Outbox:
    def __init__(self, sessions: sessionmaker[Session], max_attempts: int = 6,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions, self.max_attempts, self.clock = sessions, max_attempts, clock
        self.senders: dict[str, Sender] = {}
        self._wake = asyncio.Event()

    def register(self, channel: str, sender: Sender) -> None:
        self.senders[channel] = sender

    def wake(self) -> None:
        self._wake.set()

    async def run(self, seconds: float) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.once():
                    pass
            except Exception as exc:
                logger.error("outbox.failed %s", type(exc).__name__, exc_info=exc)

    def _due(self) -> list[tuple[int, str, str, str, dict[str, Any] | None, int]]:
        """The next message of each conversation that has one due, claimed for sending."""
        now = self.clock()
        with self.sessions() as session:
            session.execute(update(ChatMessage).where(
                ChatMessage.delivery == "sending", ChatMessage.next_attempt_at < now - timedelta(seconds=CLAIM_SECONDS))
                .values(delivery="pending"))
            session.commit()
            rows = session.execute(select(ChatMessage.id, ChatMessage.conversation_id, ChatMessage.channel,
                                          ChatMessage.text, ChatMessage.payload, ChatMessage.attempts)
                                   .where(ChatMessage.delivery.in_(("pending", "sending")),
                                          ChatMessage.channel.in_(list(self.senders)))
                                   .order_by(ChatMessage.id).limit(BATCH * 4)).all()
            claimed, blocked = [], set()
            for row in rows:
                if row.conversation_id in blocked:
                    continue
                blocked.add(row.conversation_id)  # later messages wait for this one: order is kept
                done = session.execute(update(ChatMessage).where(
                    ChatMessage.id == row.id, ChatMessage.delivery == "pending",
                    or_(ChatMessage.next_attempt_at.is_(None), ChatMessage.next_attempt_at <= now))
                    .values(delivery="sending", next_attempt_at=now))
                if done.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append((row.id, row.conversation_id, row.channel, row.text, row.payload, row.attempts))
                if len(claimed) >= BATCH:
                    break
            session.commit()
            return claimed

    async def once(self) -> int:
        """Send what is due; returns how many were sent or given up on."""
        claimed = await asyncio.to_thread(self._due)
        for message_id, conversation_id, channel, text, payload, attempts in claimed:
            try:
                await self.senders[channel].send(conversation_id, text, payload)
            except DeliveryFailed as exc:
                await asyncio.to_thread(self._failed, message_id, attempts + 1, exc)
                continue
            except Exception as exc:  # a bug in a sender must not stop deliveries: treat it as a failed attempt
                logger.error("outbox.sender_error channel=%s %s", channel, type(exc).__name__, exc_info=exc)
                await asyncio.to_thread(self._failed, message_id, attempts + 1, DeliveryFailed(type(exc).__name__))
                continue
            await asyncio.to_thread(self._sent, message_id, attempts + 1)
        return len(claimed)

    def _sent(self, message_id: int, attempts: int) -> None:
        with self.sessions() as session:
            session.execute(update(ChatMessage).where(ChatMessage.id == message_id)
                            .values(delivery="sent", attempts=attempts, delivered_at=self.clock(), delivery_error=None))
            session.commit()

    def _failed(self, message_id: int, attempts: int, exc: DeliveryFailed) -> None:
        give_up = exc.permanent or attempts >= self.max_attempts
        with self.sessions() as session:
            values: dict[str, Any] = {"attempts": attempts, "delivery_error": exc.reason[:200]}
            if give_up:
                values["delivery"] = "failed"
            else:
                values |= {"delivery": "pending", "next_attempt_at": self.clock() + backoff(attempts)}
            session.execute(update(ChatMessage).where(ChatMessage.id == message_id).values(**values))
            session.commit()
        log = logger.warning if give_up else logger.info
        log("outbox.%s message=%s attempts=%s reason=%s", "failed" if give_up else "retry", message_id, attempts,
            exc.reason)

    def status(self, conversation_id: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.execute(select(ChatMessage.id, ChatMessage.delivery, ChatMessage.attempts,
                                          ChatMessage.delivery_error).where(
                and_(ChatMessage.conversation_id == conversation_id, ChatMessage.delivery.is_not(None)))
                .order_by(ChatMessage.id)).all()
        return [dict(row._mapping) for row in rows]
