"""Replies that go out through a channel's API: stored pending, sent in order per conversation, retried, finally
recorded as failed; sent once even with two replicas."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from channels.outbox import DeliveryFailed, Outbox
from service.models import ChatMessage, utcnow


class Recorder:
    def __init__(self, fail: dict[str, DeliveryFailed] | None = None) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = fail or {}

    async def send(self, conversation_id: str, text: str, payload: dict[str, Any] | None) -> None:
        if text in self.fail:
            raise self.fail[text]
        self.sent.append((conversation_id, text))


def add(client: TestClient, conversation: str, text: str, kind: str = "bot", channel: str = "wechat") -> int:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        message = ChatMessage(conversation_id=conversation, kind=kind, text=text, channel=channel, created_at=utcnow())
        session.add(message)
        session.commit()
        return message.id


def rows(client: TestClient) -> dict[str, tuple[str | None, int]]:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        return {m.text: (m.delivery, m.attempts) for m in session.scalars(select(ChatMessage))}


def test_only_outgoing_messages_of_push_channels_wait_for_delivery(client: TestClient) -> None:
    add(client, "wx-a", "答复")
    add(client, "wx-a", "用户说的", kind="user")
    add(client, "wx-a", "内部备注", kind="note")
    add(client, "web-a", "网页答复", channel="webchat")
    assert rows(client) == {"答复": ("pending", 0), "用户说的": (None, 0), "内部备注": (None, 0), "网页答复": (None, 0)}


def test_sent_in_order_retried_then_failed(make_client: Callable[..., TestClient]) -> None:
    client = make_client(desk_tick_seconds=3600.0)
    sessions = client.app.state.sessionmaker  # type: ignore[attr-defined]
    recorder = Recorder(fail={"第二条": DeliveryFailed("timeout"), "窗口外": DeliveryFailed("45015", permanent=True)})
    outbox = Outbox(sessions, max_attempts=3)
    outbox.register("wechat", recorder)
    for text in ("第一条", "第二条", "第三条"):
        add(client, "wx-a", text)
    add(client, "wx-b", "窗口外")
    add(client, "wx-c", "别的会话")
    assert asyncio.run(outbox.once()) == 3  # a's first, b's only, c's only
    assert recorder.sent == [("wx-a", "第一条"), ("wx-c", "别的会话")]
    assert rows(client)["窗口外"] == ("failed", 1)  # outside WeChat's 48 hours: no retry
    assert asyncio.run(outbox.once()) == 1  # a's second fails once …
    assert rows(client)["第二条"] == ("pending", 1)
    assert asyncio.run(outbox.once()) == 0  # … and waits; the third waits behind it
    for attempt in (2, 3):
        with sessions() as session:
            session.execute(update(ChatMessage).values(next_attempt_at=utcnow() - timedelta(seconds=1))
                            .where(ChatMessage.text == "第二条"))
            session.commit()
        asyncio.run(outbox.once())
    assert rows(client)["第二条"] == ("failed", 3)
    asyncio.run(outbox.once())
    assert recorder.sent[-1] == ("wx-a", "第三条") and rows(client)["第三条"] == ("sent", 1)


def test_two_replicas_send_each_message_once(make_client: Callable[..., TestClient]) -> None:
    client = make_client(desk_tick_seconds=3600.0)
    sessions = client.app.state.sessionmaker  # type: ignore[attr-defined]
    recorder = Recorder()
    replicas = [Outbox(sessions), Outbox(sessions)]
    for replica in replicas:
        replica.register("wechat", recorder)
    for i in range(30):
        add(client, f"wx-{i % 6}", f"消息{i}")

    async def both() -> None:
        while sum(await asyncio.gather(*(r.once() for r in replicas))):
            pass

    asyncio.run(both())
    assert sorted(text for _, text in recorder.sent) == sorted(f"消息{i}" for i in range(30))
    for i in range(6):  # each conversation in order
        mine = [text for conversation, text in recorder.sent if conversation == f"wx-{i}"]
        assert mine == [f"消息{j}" for j in range(i, 30, 6)]
