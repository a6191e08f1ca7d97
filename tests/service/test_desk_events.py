"""The console's live events (WebSocket), the Redis bus between replicas, and business hours."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.desk.bus import RedisBus
from service.desk.hours import BusinessHours
from service.models import CHINA_TZ
from tests.service.desk_support import case_of, handoff, login, make_user


def next_of(ws, kind: str, limit: int = 20) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(limit):
        event = ws.receive_json()
        if event["type"] == kind:
            return event
    raise AssertionError(f"no {kind} event")


def test_console_hears_of_handoffs_and_messages(make_client: Callable[..., TestClient]) -> None:
    client = make_client(desk_tick_seconds=3600.0)
    app = client.app
    make_user(app, "wendy")
    make_user(app, "xander", ("complaint",))
    login(app, "wendy")
    login(app, "xander")
    client.cookies = login(app, "wendy", state=None).cookies  # the lifespan's client, with wendy's cookie
    with client.websocket_connect("/desk/ws") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["me"]["username"] == "wendy" and hello["cases"] == []
        ref = handoff(client, "web-wsws000000000001")["reference"]
        event = next_of(ws, "case")
        assert event["case"]["reference"] == ref and event["case"]["status"] == "queued"
        offered = next_of(ws, "case")
        assert offered["case"]["offered_to"] == hello["me"]["id"]
        handoff(client, "web-wsws000000000002", reason="complaint_escalation")  # xander's queue, not wendy's
        case_id = case_of(app, ref).id
        assert client.post(f"/desk/api/cases/{case_id}/accept").status_code == 200
        TestClient(app).post("/chat/api/send", json={"session": "wsws000000000001", "text": "在吗"})
        message = next_of(ws, "message", limit=40)
        while message["message"]["kind"] != "user":
            message = next_of(ws, "message", limit=40)
        assert message["message"]["text"] == "在吗" and message["case_id"] == case_id


def test_websocket_needs_a_login(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/desk/ws") as ws:
        ws.receive_json()
    assert refused.value.code == 4401


def test_redis_bus_carries_events_between_replicas(redis_url: str) -> None:
    url = redis_url
    channel = f"taxbot-test:{uuid.uuid4().hex}"

    async def scenario() -> dict:
        replica_a, replica_b = RedisBus(url, channel), RedisBus(url, channel)
        await replica_a.start()
        await replica_b.start()
        try:
            async with replica_b.subscribe() as queue:
                await asyncio.sleep(0.2)  # B's subscription is live
                replica_a.publish({"type": "case", "case": {"id": 7, "status": "queued"}})
                return await asyncio.wait_for(queue.get(), 5)
        finally:
            await replica_a.stop()
            await replica_b.stop()

    assert asyncio.run(scenario()) == {"type": "case", "case": {"id": 7, "status": "queued"}}


def china(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ)


@pytest.mark.parametrize(("moment", "open_"), [
    ("2026-11-23 09:00", True),   # Monday
    ("2026-11-23 12:30", False),  # lunch
    ("2026-11-23 17:00", False),
    ("2026-11-28 10:00", True),   # Saturday morning
    ("2026-11-28 14:00", False),
    ("2026-11-29 10:00", False),  # Sunday
    ("2027-01-01 10:00", False),  # a holiday (a Friday)
])
def test_business_hours(moment: str, open_: bool) -> None:
    hours = BusinessHours.parse("mon-fri 09:00-12:00,13:30-17:00; sat 09:00-12:00", holidays="2027-01-01")
    assert hours.is_open(china(moment)) is open_


def test_always_open_and_bad_hours() -> None:
    assert BusinessHours.parse("always").is_open(china("2026-11-29 03:00"))
    assert BusinessHours.parse("mon-sun 00:00-24:00").is_open(china("2026-11-29 23:59"))
    for bad in ("weekdays 9-5", "mon-fri 17:00-09:00", "mon-fri", "mon-fri 9:00-17"):
        with pytest.raises(ValueError):
            BusinessHours.parse(bad)


def test_a_case_that_leaves_an_agents_view_arrives_once_without_its_content(make_client: Callable[..., TestClient]) -> None:
    client = make_client(desk_tick_seconds=3600.0)
    app = client.app
    make_user(app, "yara", max_chats=1)
    make_user(app, "zed", max_chats=1)
    zed = login(app, "zed", state=None)
    client.cookies = login(app, "yara", state=None).cookies
    with client.websocket_connect("/desk/ws") as ws:
        assert ws.receive_json()["type"] == "hello"
        ref = handoff(client, "web-gone000000000001", last_message="我的身份证号110101198704020880")["reference"]
        assert next_of(ws, "case")["case"]["preview"].startswith("我的身份证号")
        zed.post("/desk/api/state", json={"state": "online"})
        assert zed.post(f"/desk/api/cases/{case_of(app, ref).id}/accept").status_code == 200
        gone = next_of(ws, "case")
        while gone["case"]["status"] == "queued":  # the offer to zed: still in yara's queue
            gone = next_of(ws, "case")
        assert set(gone["case"]) == {"id", "status", "agent_id", "offered_to", "group_id", "group"}
        assert gone["case"]["status"] == "assigned" and "110101198704020880" not in str(gone)


def test_handoffs_from_before_the_desk_become_follow_ups(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from sqlalchemy import text

    from service.db import alembic_config, make_engine

    url = f"sqlite:///{tmp_path}/old.db"
    command.upgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO handoff_requests (reference, conversation_id, channel, reason, last_message, contact_phone, "
            "status, created_at) VALUES ('RG20261101000007', 'old-1', 'rest', 'user_request', '转人工', "
            "'13817414333', 'pending', '2026-11-01 02:00:00')"))
    command.upgrade(alembic_config(url), "head")
    with engine.connect() as connection:
        follow_up = connection.execute(text("SELECT reference, conversation_id, message, contact_phone, status "
                                            "FROM follow_ups")).one()
        handoff_row = connection.execute(text("SELECT status, disposition FROM handoff_requests")).one()
    engine.dispose()
    assert tuple(follow_up) == ("LY20261101000007", "old-1", "转人工", "13817414333", "open")
    assert tuple(handoff_row) == ("closed", "callback")
