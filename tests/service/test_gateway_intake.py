"""The gateway's intake: messages that arrive together are stored together, each once, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from channels.gateway import Envelope, Gateway
from service.db import make_engine, make_sessionmaker, migrate
from service.models import ChatMessage, utcnow


def envelope(user: int, message: str, text: str = "你好") -> Envelope:
    return Envelope(channel="wechat", channel_user_id=f"o{user}", conversation_id=f"wx-o{user}", text=text,
                    message_id=message)


@pytest.fixture
def gateway(db_url: str):  # type: ignore[no-untyped-def]
    migrate(db_url)
    engine = make_engine(db_url)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _connection: commits.append(1))
    gateway = Gateway(make_sessionmaker(engine), desk=None, bot=None, bus=None)  # type: ignore[arg-type]
    gateway.commits = commits  # type: ignore[attr-defined]
    yield gateway
    gateway.close()
    engine.dispose()


def stored_rows(gateway: Gateway) -> list[tuple[str, str]]:
    with gateway.sessions() as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(ChatMessage.conversation_id, ChatMessage.client_id).order_by(ChatMessage.id))]


def test_fifty_at_once_are_stored_once_each_in_a_few_transactions(gateway: Gateway) -> None:
    async def main() -> list[Any]:
        first = await gateway.accept(envelope(0, "m-0"))
        gateway.commits.clear()  # type: ignore[attr-defined]
        arrivals = [envelope(n, f"m-{n}") for n in range(1, 51)]
        arrivals += [envelope(7, "m-7"), envelope(0, "m-0")]  # a retry in the same batch, and one of an old message
        return [first, *await asyncio.gather(*(gateway.accept(e) for e in arrivals))]

    results = asyncio.run(main())
    ids = [stored for stored, _ in results[:51]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 51
    assert results[51] == (None, []) and results[52] == (None, [])  # retries: stored before, not stored again
    rows = stored_rows(gateway)
    assert len(rows) == 51 and len(set(rows)) == 51
    assert len(gateway.commits) < 10, f"{len(gateway.commits)} commits for 52 arrivals"  # type: ignore[attr-defined]


def test_a_retry_of_an_answered_message_gets_its_replies(gateway: Gateway) -> None:
    async def main() -> Any:
        stored, _ = await gateway.accept(envelope(1, "m-1"))
        with gateway.sessions() as session:
            session.add(ChatMessage(conversation_id="wx-o1", kind="bot", text="您好，请问有什么可以帮您？",
                                    channel="wechat", reply_to=stored, created_at=utcnow()))
            session.commit()
        return await gateway.accept(envelope(1, "m-1"))

    stored, replies = asyncio.run(main())
    assert stored is None and [r["text"] for r in replies] == ["您好，请问有什么可以帮您？"]


def test_a_database_failure_reaches_every_sender_and_the_intake_goes_on(gateway: Gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = Gateway(make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")),
                     desk=None, bot=None, bus=None)  # type: ignore[arg-type]

    async def main() -> list[Any]:
        return await asyncio.gather(*(broken.accept(envelope(n, f"m-{n}")) for n in range(5)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 5 and all(isinstance(r, OperationalError) for r in results)
    with pytest.raises(OperationalError):  # the intake thread survived the failure: a later message is refused too
        asyncio.run(asyncio.wait_for(broken.accept(envelope(6, "m-6")), 10))
    broken.close()
    assert asyncio.run(gateway.accept(envelope(9, "m-9")))[0] is not None  # a working database still stores
    with gateway.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ChatMessage)) == 1
