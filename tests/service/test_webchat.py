"""The web chat's WebSocket protocol (channels/webchat.py) with the bot stand-in: hello and replay after the last
message the client has, a re-sent message answered once, an answer finished for a client that dropped, live agent
replies and queue notices (internal notes never), handoff state, cancel, rate limits per session and per address,
size limits, HTML kept as text; and the page, widget and assets."""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from channels.webchat import STATIC, RateLimiter, RedisRateLimiter, hub_of
from service.models import ChatMessage
from tests.service.desk_support import RecordingBot, case_of, handoff, login, make_user, use_bot

SESSION = "webchat00000000000001"
CONV = f"web-{SESSION}"
Frame = dict[str, Any]


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """Desk timers off (the tests drive the desk themselves), the bot stand-in in place of Rasa."""
    client = make_client(desk_tick_seconds=3600.0)
    client.app.state.hand_back_soon = lambda: None  # type: ignore[attr-defined]
    use_bot(client.app)  # type: ignore[arg-type]
    return client


def bot_of(client: TestClient) -> RecordingBot:
    return client.app.state.bot  # type: ignore[attr-defined,no-any-return]


def settle(ws: Any, until: Callable[[Frame], bool] | None = None, rounds: int = 100) -> list[Frame]:
    """Frames the server sends; a ping's pong comes after everything queued before it, so this never blocks.
    With ``until``, keep reading (pinging again) until a frame matches."""
    frames: list[Frame] = []
    for _ in range(rounds):
        ws.send_json({"type": "ping"})
        while (frame := ws.receive_json())["type"] != "pong":
            frames.append(frame)
        if until is None or any(until(f) for f in frames):
            return frames
        time.sleep(0.05)
    raise AssertionError(f"the expected frame never came; got {frames}")


def hello(ws: Any, session: str | None = SESSION, last_seen: int = 0) -> list[Frame]:
    ws.send_json({"type": "hello", "session": session, "last_seen": last_seen})
    return settle(ws)


def say(ws: Any, client_id: str, text: str) -> list[Frame]:
    """Send a message; the frames up to its acknowledgement."""
    ws.send_json({"type": "message", "id": client_id, "text": text})
    return settle(ws, lambda f: f["type"] in ("ack", "error") and f.get("id") == client_id)


def messages(frames: list[Frame]) -> list[Frame]:
    return [f["message"] for f in frames if f["type"] == "message"]


def of_type(frames: list[Frame], kind: str) -> list[Frame]:
    return [f for f in frames if f["type"] == kind]


def stored(app: FastAPI, kind: str | None = None) -> list[ChatMessage]:
    with app.state.sessionmaker() as session:
        query = select(ChatMessage).where(ChatMessage.conversation_id == CONV).order_by(ChatMessage.id)
        rows = session.scalars(query.where(ChatMessage.kind == kind) if kind else query).all()
        session.expunge_all()
        return list(rows)


# ---------------------------------------------------------------- pages

def test_the_page_the_widget_and_the_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in page.text and "/webchat/chat.js" in page.text and 'role="log"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors *" in policy
    assert "connect-src 'self' ws://testserver wss://testserver;" in policy
    assert "ws://" not in client.get("/", headers={"Host": "evil; script-src *"}).headers["content-security-policy"]
    widget = client.get("/widget.js")
    assert widget.status_code == 200 and widget.headers["content-type"].startswith("text/javascript")
    assert "/?embed=1" in widget.text
    assert client.get("/webchat/chat.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/webchat/chat.css").headers["content-type"].startswith("text/css")
    assert client.get("/webchat/../settings.py").status_code == 404
    assert client.get("/webchat/index.html").status_code == 422


def test_the_scripts_never_parse_text_as_html() -> None:
    """Messages are rendered with textContent and text nodes only: nothing a user, the bot or an agent writes can
    become markup (the server stores and sends text verbatim, see below)."""
    for name in ("chat.js", "widget.js"):
        source = (STATIC / name).read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                     "DOMParser", "createContextualFragment"):
            assert sink not in source, f"{name} uses {sink}"
    assert "textContent" in (STATIC / "chat.js").read_text(encoding="utf-8")


# ---------------------------------------------------------------- hello, replay, resume

def test_hello_replays_the_conversation_after_last_seen(client: TestClient) -> None:
    with client.websocket_connect("/chat/ws") as ws:
        first = hello(ws)
        assert first[0] == {"type": "welcome", "session": SESSION, "max_chars": 2000}
        assert first[1:] == [{"type": "state", "handoff": None}]
        say(ws, "m1", "你好")
        say(ws, "m2", "个税起征点是多少")
    with client.websocket_connect("/chat/ws") as ws:
        replay = messages(hello(ws))
        assert [(m["kind"], m["text"], m["client_id"]) for m in replay] == [
            ("user", "你好", "m1"), ("bot", "机器人答复：你好", None),
            ("user", "个税起征点是多少", "m2"), ("bot", "机器人答复：个税起征点是多少", None)]
        assert [m["id"] for m in replay] == sorted(m["id"] for m in replay)
    with client.websocket_connect("/chat/ws") as ws:
        later = messages(hello(ws, last_seen=replay[1]["id"]))
        assert [m["id"] for m in later] == [m["id"] for m in replay[2:]]


def test_a_new_visitor_is_given_a_session(client: TestClient) -> None:
    with client.websocket_connect("/chat/ws") as ws:
        welcome = hello(ws, session=None)[0]
    assert welcome["type"] == "welcome" and re.fullmatch(r"[A-Za-z0-9_-]{32}", welcome["session"])


@pytest.mark.parametrize("first", [{"type": "hello", "session": "short"},
                                   {"type": "hello", "session": SESSION, "last_seen": -1},
                                   {"type": "message", "id": "m1", "text": "你好"}])
def test_a_bad_hello_is_refused(client: TestClient, first: Frame) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/chat/ws") as ws:
        ws.send_json(first)
        assert ws.receive_json()["type"] == "error"
        ws.receive_json()
    assert refused.value.code == 4400
    assert stored(client.app) == [] and bot_of(client).sent == []  # type: ignore[arg-type]


def test_a_message_is_stored_answered_and_acknowledged(client: TestClient) -> None:
    with client.websocket_connect("/chat/ws") as ws:
        hello(ws)
        frames = say(ws, "m1", "你好")
    kinds = [f["type"] if f["type"] != "message" else f["message"]["kind"] for f in frames]
    assert kinds == ["typing", "user", "bot", "typing", "ack"], frames
    assert frames[0]["on"] is True and frames[3]["on"] is False
    user, bot = messages(frames)
    assert user["client_id"] == "m1" and bot["text"] == "机器人答复：你好" and bot["buttons"] == []
    assert frames[-1] == {"type": "ack", "id": "m1", "message_id": user["id"]}
    assert [(m.kind, m.client_id) for m in stored(client.app)] == [("user", "m1"), ("bot", None)]  # type: ignore[arg-type]


def test_a_message_sent_again_is_answered_once(client: TestClient) -> None:
    with client.websocket_connect("/chat/ws") as ws:
        hello(ws)
        first = say(ws, "m1", "我想查退税进度")
    last = max(m["id"] for m in messages(first))
    # the ack was lost with the connection: the client sends the message again, with the same id
    with client.websocket_connect("/chat/ws") as ws:
        assert messages(hello(ws, last_seen=last)) == []
        again = say(ws, "m1", "我想查退税进度")
        assert messages(again) == [] and again[-1] == of_type(first, "ack")[0]
        assert messages(settle(ws)) == []
    assert len(bot_of(client).sent) == 1
    assert [m.kind for m in stored(client.app)] == ["user", "bot"]  # type: ignore[arg-type]


class SlowBot(RecordingBot):
    async def send(self, conversation_id: str, text: str, channel: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        await asyncio.sleep(0.5)
        return await super().send(conversation_id, text, channel, metadata)


def test_an_answer_is_not_lost_when_the_client_drops_while_waiting(client: TestClient) -> None:
    app = client.app
    bot = SlowBot()
    app.state.gateway.bot = bot  # type: ignore[attr-defined]
    with client.websocket_connect("/chat/ws") as ws:
        hello(ws)
        ws.send_json({"type": "message", "id": "m1", "text": "个税起征点是多少"})
        assert settle(ws, lambda f: f["type"] == "typing")[0] == {"type": "typing", "on": True}
    # gone before the answer; the client comes back and sends the unacknowledged message again
    with client.websocket_connect("/chat/ws") as ws:
        frames = hello(ws)  # the message itself was stored before the drop
        frames += say(ws, "m1", "个税起征点是多少")
        frames += settle(ws)
    shown = messages(frames)
    assert [(m["kind"], m["text"]) for m in shown].count(("bot", "机器人答复：个税起征点是多少")) == 1
    assert [m["kind"] for m in shown] == ["user", "bot"] and of_type(frames, "ack")[0]["id"] == "m1"
    assert len(bot.sent) == 1 and [m.kind for m in stored(app)] == ["user", "bot"]  # type: ignore[arg-type]


def test_another_tab_of_the_same_session_sees_the_conversation(client: TestClient) -> None:
    with client.websocket_connect("/chat/ws") as phone, client.websocket_connect("/chat/ws") as laptop:
        hello(phone)
        hello(laptop)
        say(phone, "m1", "你好")
        seen = messages(settle(laptop, lambda f: f["type"] == "message" and f["message"]["kind"] == "bot"))
    assert [(m["kind"], m["text"]) for m in seen] == [("user", "你好"), ("bot", "机器人答复：你好")]


# ---------------------------------------------------------------- limits and escaping

def test_too_long_empty_and_malformed_messages_are_refused(client: TestClient) -> None:
    with client.websocket_connect("/chat/ws") as ws:
        hello(ws)
        too_long = say(ws, "m1", "税" * 2001)
        assert too_long == [{"type": "error", "code": "too_long", "message": "消息太长了，请控制在2000字以内", "id": "m1"}]
        assert say(ws, "m2", " \u200b\n ")[-1]["code"] == "empty"
        ws.send_json({"type": "message", "id": "bad id!", "text": "你好"})
        ws.send_text("not json")
        ws.send_json({"type": "dance"})
        ws.send_bytes(b"\x00\x01")
        ws.send_text("{" + " " * 20_000 + "}")
        errors = settle(ws)
        assert [f["code"] for f in errors] == ["bad_request"] * 4 + ["too_long"]
        assert say(ws, "m3", "税" * 2000)[-1]["type"] == "ack"  # the limit itself is fine
    assert [m.client_id for m in stored(client.app, "user")] == ["m3"]  # type: ignore[arg-type]


def test_html_is_kept_as_text(client: TestClient) -> None:
    text = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp; <b>粗体</b>'
    with client.websocket_connect("/chat/ws") as ws:
        hello(ws)
        shown = messages(say(ws, "m1", text))
    assert shown[0]["text"] == text and shown[1]["text"] == f"机器人答复：{text}"
    assert stored(client.app, "user")[0].text == text  # type: ignore[arg-type]


def test_rate_limit_per_session(make_client: Callable[..., TestClient]) -> None:
    client = make_client(webchat_messages_per_minute=3)
    use_bot(client.app)  # type: ignore[arg-type]
    with client.websocket_connect("/chat/ws") as ws:
        hello(ws)
        for n in range(3):
            assert say(ws, f"m{n}", f"第{n}条")[-1]["type"] == "ack"
        refused = say(ws, "m3", "第3条")[-1]
        assert refused["code"] == "rate_limited" and refused["id"] == "m3" and 1 <= refused["retry_after"] <= 60
        assert say(ws, "m0", "第0条")[-1]["type"] == "ack"  # a re-sent message is not a new one
    with client.websocket_connect("/chat/ws") as other:  # another visitor is not held back
        hello(other, session="webchat00000000000002")
        assert say(other, "x1", "你好")[-1]["type"] == "ack"
    assert len(bot_of(client).sent) == 4


def test_rate_limit_per_address(make_client: Callable[..., TestClient]) -> None:
    client = make_client(webchat_messages_per_minute=100, webchat_ip_messages_per_minute=4)
    use_bot(client.app)  # type: ignore[arg-type]
    results = []
    for n in range(3):  # three "visitors" from one address
        with client.websocket_connect("/chat/ws") as ws:
            hello(ws, session=f"webchat0000000000000{n}")
            results += [say(ws, f"a{n}", "你好")[-1]["type"], say(ws, f"b{n}", "在吗")[-1]["type"]]
    assert results == ["ack"] * 4 + ["error"] * 2


def test_rate_limiter_window_slides() -> None:
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limits = [("session:s", 2), ("ip:a", 10)]
    assert limiter.allow(limits, "1") == 0 and limiter.allow(limits, "2") == 0
    assert limiter.allow(limits, "3") == pytest.approx(60.0)
    now[0] += 30
    assert limiter.allow(limits, "3") == pytest.approx(30.0)
    now[0] += 30.5
    assert limiter.allow(limits, "3") == 0


def test_replicas_share_the_rate_limit_through_redis(redis_url: str) -> None:
    """Two replicas with TAXBOT_REDIS_URL: the limits are counted once for both, a re-sent message id is not
    counted again, and a Redis that cannot be reached lets messages through instead of stopping the chat."""
    prefix = f"taxbot:test:{uuid.uuid4().hex}:"
    one, two = (RedisRateLimiter(redis_url, prefix=prefix) for _ in range(2))
    limits = [("session:s", 3), ("ip:a", 10)]
    assert one.allow(limits, "1") == 0 and two.allow(limits, "2") == 0 and one.allow(limits, "3") == 0
    assert 59 < two.allow(limits, "4") <= 60 and 59 < one.allow(limits, "4") <= 60
    assert two.allow(limits, "2") == 0  # the reconnecting client re-sends "2": already counted
    other = [("session:t", 3), ("ip:a", 10)]  # the same address, another session: 3 of its 10 are used
    assert all(one.allow(other, f"t{n}") == 0 for n in range(3)) and one.allow(other, "t3") > 0
    assert two.allow([("session:u", 5), ("ip:a", 6)], "u0") > 0  # the address's own window is full at 6
    down = RedisRateLimiter("redis://127.0.0.1:9/0", prefix=prefix)
    assert down.allow(limits, "5") == 0


def test_the_web_chat_keeps_its_limits_in_redis_when_configured(make_client: Callable[..., TestClient],
                                                                redis_url: str) -> None:
    client = make_client(redis_url=redis_url)
    assert isinstance(hub_of(client.app).limiter, RedisRateLimiter)  # type: ignore[arg-type]


# ---------------------------------------------------------------- people

def test_queue_agent_replies_and_notes_live(client: TestClient) -> None:
    app = client.app
    make_user(app, "ann", max_chats=5)  # type: ignore[arg-type]
    ann = login(app, "ann", state=None)  # type: ignore[arg-type]
    ahead = case_of(app, handoff(client, "web-someoneelse0000001")["reference"]).id  # type: ignore[arg-type]
    with client.websocket_connect("/chat/ws") as ws:
        hello(ws)
        ref = handoff(client, CONV)["reference"]
        queued = settle(ws, lambda f: f["type"] == "state" and f["handoff"] is not None)
        assert of_type(queued, "state")[-1]["handoff"] == {"status": "queued", "position": 2, "agent": None,
                                                           "reference": ref}
        # the user ahead is taken: ours hears the queue move, live
        assert ann.post("/desk/api/state", json={"state": "online"}).status_code == 200
        assert ann.post(f"/desk/api/cases/{ahead}/accept").status_code == 200
        moved = settle(ws, lambda f: f["type"] == "state" and (f["handoff"] or {}).get("position") == 1)
        assert [m["text"] for m in messages(moved)] == ["马上就轮到您了，请稍候。"]
        # while waiting the bot is not asked and no typing is shown
        frames = say(ws, "w1", "还要等多久")
        assert of_type(frames, "typing") == [] and bot_of(client).sent == []
        ours = case_of(app, ref).id  # type: ignore[arg-type]
        assert ann.post(f"/desk/api/cases/{ours}/accept").status_code == 200
        taken = settle(ws, lambda f: f["type"] == "state" and (f["handoff"] or {}).get("status") == "assigned")
        assert of_type(taken, "state")[-1]["handoff"]["agent"] == "Ann"
        assert ann.post(f"/desk/api/cases/{ours}/messages", json={"text": "该户上月也问过", "note": True}).status_code == 201
        assert ann.post(f"/desk/api/cases/{ours}/messages", json={"text": "您好，我是人工客服"}).status_code == 201
        replied = settle(ws, lambda f: f["type"] == "message" and f["message"]["kind"] == "agent")
        [agent] = [m for m in messages(replied) if m["kind"] == "agent"]
        assert agent["text"] == "您好，我是人工客服" and agent["author"] == "Ann"
        time.sleep(0.2)
        replied += settle(ws)
    assert "该户上月也问过" not in str(replied) and all(m["kind"] != "note" for m in messages(replied))


def test_close_brings_the_rating_as_buttons(client: TestClient) -> None:
    app = client.app
    make_user(app, "lou")  # type: ignore[arg-type]
    lou = login(app, "lou")  # type: ignore[arg-type]
    ref = handoff(client, CONV)["reference"]
    case_id = case_of(app, ref).id  # type: ignore[arg-type]
    assert lou.post(f"/desk/api/cases/{case_id}/accept").status_code == 200
    with client.websocket_connect("/chat/ws") as ws:
        assert of_type(hello(ws), "state")[0]["handoff"]["status"] == "assigned"
        assert lou.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"}).status_code == 200
        assert asyncio.run(app.state.hand_back.once()) == 1  # type: ignore[attr-defined]
        frames = settle(ws, lambda f: f["type"] == "message" and bool(f["message"]["buttons"]))
        assert of_type(frames, "state")[-1]["handoff"] is None
        [question] = [m for m in messages(frames) if m["buttons"]]
        assert "评价" in question["text"] and question["buttons"] == [{"title": "满意", "payload": "1"}]
        thanks = messages(say(ws, "r1", "1"))  # the button's payload
    assert [m["text"] for m in thanks] == ["1", "感谢您的评价！还有其他问题可以随时问我。"]
    assert case_of(app, ref).rating == 1  # type: ignore[arg-type]


def test_cancel_stops_the_wait(client: TestClient) -> None:
    app = client.app
    woken = []
    app.state.hand_back_soon = lambda: woken.append(True)  # type: ignore[attr-defined]
    ref = handoff(client, CONV)["reference"]
    with client.websocket_connect("/chat/ws") as ws:
        assert of_type(hello(ws), "state")[0]["handoff"]["status"] == "queued"
        ws.send_json({"type": "cancel"})
        frames = settle(ws, lambda f: f["type"] == "state")
        assert of_type(frames, "cancelled") == [{"type": "cancelled", "ok": True}]
        assert of_type(frames, "state")[-1]["handoff"] is None
        ws.send_json({"type": "cancel"})
        assert of_type(settle(ws, lambda f: f["type"] == "cancelled"), "cancelled") == [{"type": "cancelled", "ok": False}]
    case = case_of(app, ref)  # type: ignore[arg-type]
    assert case.status == "abandoned" and case.disposition == "user_cancelled" and woken == [True]


def test_the_http_side_shares_the_rate_limit(make_client: Callable[..., TestClient]) -> None:
    client = make_client(webchat_messages_per_minute=2)
    use_bot(client.app)
    session = "http0000000000000001"
    codes = [client.post("/chat/api/send", json={"session": session, "text": f"问题{i}", "id": f"h{i}"}).status_code
             for i in range(3)]
    assert codes == [200, 200, 429]
    again = client.post("/chat/api/send", json={"session": session, "text": "问题0", "id": "h0"})
    assert again.status_code == 200  # a retry of an answered message is not counted again
