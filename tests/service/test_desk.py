"""The desk's rules through its HTTP API: queues and routing, accept (and its race), agents' capacity and states,
messages both ways, transfer and take-over, close and hand-back with the rating, business hours and the message
left outside them, blacklist, abandoned waits, roles, and a restart."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from service.desk.core import AlreadyTaken
from service.models import CHINA_TZ, BlacklistEntry, ChatMessage, DeskUser, FollowUp, HandoffRequest, utcnow
from tests.service.desk_support import PASSWORD, case_of, desk_of, handoff, login, make_user, use_bot
from tests.service.service_support import AUTH, ZHANG

CONTEXT = {
    "transcript": [
        {"at": "2026-11-23T02:00:00Z", "role": "user", "text": "年终奖怎么交税", "intent": "ask_policy",
         "confidence": 0.91, "intent_ranking": [{"name": "ask_policy", "confidence": 0.91}],
         "entities": [], "asr_confidence": None},
        {"at": "2026-11-23T02:00:01Z", "role": "bot", "text": "全年一次性奖金可以单独计税……"},
    ],
    "slots": {"tax_type": "个人所得税"},
    "kb_candidates": [{"id": "iit-annual-bonus", "title": "全年一次性奖金怎么计税", "score": 0.64}],
    "intent": "request_human",
}


def quiet_timers(client: TestClient) -> TestClient:
    """Timers off and no hand-back right after a close: the tests call desk.tick() and hand_back.once()
    themselves (the system tests see the real timing)."""
    client.app.state.hand_back_soon = lambda: None  # type: ignore[attr-defined]
    return client


@pytest.fixture
def app(make_client: Callable[..., TestClient]) -> FastAPI:
    return quiet_timers(make_client(desk_tick_seconds=3600.0)).app  # type: ignore[no-any-return]


@pytest.fixture
def bot_client(make_client: Callable[..., TestClient]) -> TestClient:
    return quiet_timers(make_client(desk_tick_seconds=3600.0))


def user_messages(app: FastAPI, session_id: str, after: int = 0) -> list[dict]:
    client = TestClient(app)
    response = client.get("/chat/api/messages", params={"session": session_id, "after": after})
    assert response.status_code == 200, response.text
    return response.json()["items"]


SESSION = "sess0000000000000001"
CONV = f"web-{SESSION}"


# ---------------------------------------------------------------- queueing

def test_handoff_is_queued_with_position_and_estimate(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "ann")  # on the group, but offline: nobody to offer to
    first = handoff(bot_client, "web-aaaaaaaaaaaaaaaa01", context=CONTEXT)
    second = handoff(bot_client, "web-aaaaaaaaaaaaaaaa02")
    assert first["status"] == second["status"] == "queued"
    assert (first["position"], second["position"]) == (1, 2)
    assert first["group"] == "consult"
    # 300 s assumed handling time, no agent on duty: 5 minutes a place
    assert (first["wait_minutes"], second["wait_minutes"]) == (5, 10)
    again = handoff(bot_client, "web-aaaaaaaaaaaaaaaa01")  # asked twice: the same case
    assert again["reference"] == first["reference"]
    assert case_of(app, first["reference"]).context == CONTEXT


@pytest.mark.parametrize(("fields", "group"), [
    ({"reason": "complaint_escalation"}, "complaint"),
    ({"context": {"intent": "invoice", "slots": {}, "transcript": []}}, "invoice"),
    ({"context": {"intent": "request_human", "slots": {"invoice_type": "专票"}}}, "invoice"),
    ({"context": {"kb_candidates": [{"id": "x", "category": "发票"}]}}, "invoice"),
    ({"reason": "low_confidence"}, "consult"),
])
def test_group_follows_the_reason_and_topic(bot_client: TestClient, fields: dict, group: str) -> None:
    assert handoff(bot_client, "web-bbbbbbbbbbbbbbbb01", **fields)["group"] == group


def test_vip_taxpayer_goes_first_and_to_the_vip_group(bot_client: TestClient) -> None:
    app = bot_client.app
    handoff(bot_client, "web-cccccccccccccc01")
    normal_case = handoff(bot_client, "web-cccccccccccccc02")
    vip_case = handoff(bot_client, "web-cccccccccccccc03", taxpayer_identifier=ZHANG["identifier"])
    # 张伟 is a normal taxpayer in the demo data: make him VIP
    assert vip_case["group"] == "consult" and vip_case["position"] == 3
    from service.models import Taxpayer
    with app.state.sessionmaker() as session:
        session.execute(update(Taxpayer).where(Taxpayer.id_number == ZHANG["identifier"]).values(category="VIP"))
        session.commit()
    vip = handoff(bot_client, "web-cccccccccccccc04", taxpayer_identifier=ZHANG["identifier"])
    assert vip["group"] == "consult" and vip["position"] == 1  # no VIP agent yet: first in the general queue
    make_user(app, "vivian", ("vip",))  # a VIP agent, but not on duty: still the general queue
    assert handoff(bot_client, "web-cccccccccccccc06", taxpayer_identifier=ZHANG["identifier"])["group"] == "consult"
    login(app, "vivian")
    staffed = handoff(bot_client, "web-cccccccccccccc05", taxpayer_identifier=ZHANG["identifier"])
    assert staffed["group"] == "vip"
    assert case_of(app, staffed["reference"]).vip
    assert normal_case["position"] == 2


# ---------------------------------------------------------------- routing strategies

def offered_to(app: FastAPI, reference: str) -> str | None:
    case = case_of(app, reference)
    if case.offered_to is None:
        return None
    with app.state.sessionmaker() as session:
        return session.get_one(DeskUser, case.offered_to).username


def set_strategy(app: FastAPI, code: str, strategy: str) -> None:
    from service.models import SkillGroup
    with app.state.sessionmaker() as session:
        session.execute(update(SkillGroup).where(SkillGroup.code == code).values(strategy=strategy))
        session.commit()


def test_round_robin_takes_turns(bot_client: TestClient) -> None:
    app = bot_client.app
    set_strategy(app, "consult", "round_robin")
    for name in ("a1", "a2", "a3"):
        make_user(app, name, max_chats=5)
        login(app, name)
    refs = [handoff(bot_client, f"web-dddddddddddddd{i:02d}")["reference"] for i in range(5)]
    assert [offered_to(app, r) for r in refs] == ["a1", "a2", "a3", "a1", "a2"]


def test_least_busy_prefers_fewer_chats(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "busy1", max_chats=3)
    make_user(app, "free1", max_chats=3)
    busy = login(app, "busy1")
    login(app, "free1", state=None)  # still offline
    first = handoff(bot_client, "web-eeeeeeeeeeeeee01")["reference"]
    assert offered_to(app, first) == "busy1"
    assert busy.post(f"/desk/api/cases/{case_of(app, first).id}/accept").status_code == 200
    login(app, "free1")  # now online, with nothing on
    second = handoff(bot_client, "web-eeeeeeeeeeeeee02")["reference"]
    assert offered_to(app, second) == "free1"


def test_longest_idle_prefers_who_waited_longest(bot_client: TestClient) -> None:
    app = bot_client.app
    set_strategy(app, "consult", "longest_idle")
    make_user(app, "recent", max_chats=3)
    make_user(app, "rested", max_chats=3)
    login(app, "recent")
    login(app, "rested")
    with app.state.sessionmaker() as session:
        session.execute(update(DeskUser).where(DeskUser.username == "rested")
                        .values(idle_since=utcnow() - timedelta(hours=1)))
        session.commit()
    ref = handoff(bot_client, "web-ffffffffffffff01")["reference"]
    assert offered_to(app, ref) == "rested"


def test_returning_taxpayer_goes_to_the_agent_who_served_them(bot_client: TestClient) -> None:
    app = bot_client.app
    use_bot(app)
    make_user(app, "first", max_chats=3)
    make_user(app, "other", max_chats=3)
    first = login(app, "first")
    ref = handoff(bot_client, "web-gggggggggggggg01", taxpayer_identifier=ZHANG["identifier"])["reference"]
    case_id = case_of(app, ref).id
    assert first.post(f"/desk/api/cases/{case_id}/accept").status_code == 200
    assert first.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"}).status_code == 200
    login(app, "other")
    with app.state.sessionmaker() as session:  # "other" is idler and less busy: without 首问负责制 they would win
        session.execute(update(DeskUser).where(DeskUser.username == "other")
                        .values(idle_since=utcnow() - timedelta(hours=2)))
        session.commit()
    # the same taxpayer, from another conversation
    back = handoff(bot_client, "web-gggggggggggggg02", taxpayer_identifier=ZHANG["identifier"])["reference"]
    assert offered_to(app, back) == "first"
    stranger = handoff(bot_client, "web-gggggggggggggg03")["reference"]
    assert offered_to(app, stranger) == "other"


def test_unanswered_offer_goes_back_and_the_agent_is_set_away(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "sleepy")
    make_user(app, "awake")
    login(app, "sleepy")
    ref = handoff(bot_client, "web-hhhhhhhhhhhhhh01")["reference"]
    assert offered_to(app, ref) == "sleepy"
    login(app, "awake")
    with app.state.sessionmaker() as session:
        session.execute(update(HandoffRequest).values(offered_at=utcnow() - timedelta(seconds=31)))
        session.commit()
    desk_of(app).tick()
    assert offered_to(app, ref) == "awake"
    with app.state.sessionmaker() as session:
        assert session.scalar(select(DeskUser.state).where(DeskUser.username == "sleepy")) == "away"


# ---------------------------------------------------------------- accept, capacity, the race

def test_accept_assigns_and_tells_the_user(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "amy")
    amy = login(app, "amy")
    ref = handoff(bot_client, CONV, context=CONTEXT)["reference"]
    case_id = case_of(app, ref).id
    response = amy.post(f"/desk/api/cases/{case_id}/accept")
    assert response.status_code == 200
    assert response.json()["status"] == "assigned" and response.json()["agent"] == "Amy"
    assert [m["text"] for m in user_messages(app, SESSION)] == ["坐席Amy已接入，正在为您服务。"]
    package = amy.get(f"/desk/api/cases/{case_id}").json()
    assert package["context"]["transcript"][0]["text"] == "年终奖怎么交税"
    assert package["context"]["kb_candidates"][0]["id"] == "iit-annual-bonus"
    assert package["case"]["channel_user_id"] == SESSION


def test_capacity_and_busy_state(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "solo", max_chats=1)
    solo = login(app, "solo")
    one = case_of(app, handoff(bot_client, "web-iiiiiiiiiiiiii01")["reference"]).id
    two = case_of(app, handoff(bot_client, "web-iiiiiiiiiiiiii02")["reference"]).id
    assert solo.post(f"/desk/api/cases/{one}/accept").status_code == 200
    assert solo.get("/desk/api/me").json()["state"] == "busy"
    refused = solo.post(f"/desk/api/cases/{two}/accept")
    assert refused.status_code == 409 and refused.json()["error"] == "at_capacity"
    use_bot(app)
    assert solo.post(f"/desk/api/cases/{one}/close", json={"disposition": "resolved"}).status_code == 200
    assert solo.get("/desk/api/me").json()["state"] == "online"


def test_an_agent_away_cannot_accept(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "idle")
    idle = login(app, "idle", state="away")
    case_id = case_of(app, handoff(bot_client, "web-jjjjjjjjjjjjjj01")["reference"]).id
    response = idle.post(f"/desk/api/cases/{case_id}/accept")
    assert response.status_code == 409 and response.json()["error"] == "not_available"


def test_two_agents_accepting_at_once_exactly_one_gets_it(bot_client: TestClient) -> None:
    app = bot_client.app
    desk = desk_of(app)
    make_user(app, "racer1", max_chats=20)
    make_user(app, "racer2", max_chats=20)
    login(app, "racer1")
    login(app, "racer2")
    with app.state.sessionmaker() as session:
        racers = list(session.scalars(select(DeskUser).where(DeskUser.username.in_(["racer1", "racer2"]))))
    for round_ in range(10):
        case_id = case_of(app, handoff(bot_client, f"web-race0000000000{round_:02d}")["reference"]).id
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def grab(agent: DeskUser) -> None:
            barrier.wait()
            try:
                desk.accept(agent, case_id)
                outcomes.append(agent.username)
            except AlreadyTaken:
                outcomes.append("taken")

        threads = [threading.Thread(target=grab, args=(a,)) for a in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes)[-1] == "taken" and len([o for o in outcomes if o != "taken"]) == 1, outcomes
        with app.state.sessionmaker() as session:
            case = session.get_one(HandoffRequest, case_id)
            assert case.status == "assigned" and case.agent_id in {a.id for a in racers}
    with app.state.sessionmaker() as session:  # the capacity counters add up: one chat per round
        assert sum(session.scalars(select(DeskUser.active_chats).where(
            DeskUser.username.in_(["racer1", "racer2"])))) == 10


# ---------------------------------------------------------------- who sees what

def test_roles_and_visibility(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "consulter", ("consult",))
    make_user(app, "complainer", ("complaint",))
    make_user(app, "boss", (), role="supervisor")
    make_user(app, "writer", (), role="editor")
    consulter, complainer = login(app, "consulter", state=None), login(app, "complainer", state=None)
    boss, writer = login(app, "boss", state=None), login(app, "writer", state=None)
    case_id = case_of(app, handoff(bot_client, "web-kkkkkkkkkkkkkk01", context=CONTEXT)["reference"]).id
    assert [c["id"] for c in consulter.get("/desk/api/cases").json()["items"]] == [case_id]
    assert complainer.get("/desk/api/cases").json()["items"] == []
    assert complainer.get(f"/desk/api/cases/{case_id}").status_code == 404
    assert complainer.post(f"/desk/api/cases/{case_id}/accept").status_code == 404
    assert boss.get(f"/desk/api/cases/{case_id}").status_code == 200
    assert consulter.get("/desk/api/overview").status_code == 403
    assert boss.get("/desk/api/overview").status_code == 200
    assert writer.post(f"/desk/api/cases/{case_id}/accept").status_code == 403
    assert writer.get("/desk/api/cases").status_code == 403
    assert TestClient(app).get("/desk/api/cases").status_code == 401
    assert consulter.post("/desk/api/users", json={"username": "x1", "display_name": "x", "password": PASSWORD,
                                                   "role": "agent"}).status_code == 403


def test_login_is_checked_and_throttled(app: FastAPI) -> None:
    make_user(app, "careful")
    client = TestClient(app)
    wrong = client.post("/desk/api/login", json={"username": "careful", "password": "not-it-123"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong_login"
    nobody = client.post("/desk/api/login", json={"username": "nobody", "password": PASSWORD})
    assert nobody.status_code == 401 and nobody.json()["error"] == "wrong_login"
    for _ in range(5):
        client.post("/desk/api/login", json={"username": "careful", "password": "not-it-123"})
    locked = client.post("/desk/api/login", json={"username": "careful", "password": PASSWORD})
    assert locked.status_code == 429
    with app.state.sessionmaker() as session:  # only a salted scrypt hash is stored
        stored = session.scalar(select(DeskUser.password_hash).where(DeskUser.username == "careful"))
    assert stored.startswith("scrypt$") and PASSWORD not in stored


def test_admin_creates_users_with_a_strong_password(app: FastAPI) -> None:
    make_user(app, "root", (), role="admin")
    admin = login(app, "root", state=None)
    weak = admin.post("/desk/api/users", json={"username": "newbie", "display_name": "新人", "password": "12345678901",
                                               "role": "agent", "groups": ["consult"]})
    assert weak.status_code == 400 and "字母和数字" in weak.json()["message"]
    made = admin.post("/desk/api/users", json={"username": "newbie", "display_name": "新人", "password": PASSWORD,
                                               "role": "agent", "groups": ["consult", "invoice"]})
    assert made.status_code == 201 and made.json()["groups"] == ["consult", "invoice"]
    assert login(app, "newbie", state=None).get("/desk/api/me").json()["name"] == "新人"


def test_logout_ends_the_session_and_goes_offline(app: FastAPI) -> None:
    make_user(app, "leaver")
    leaver = login(app, "leaver")
    assert leaver.post("/desk/api/logout").status_code == 200
    assert leaver.get("/desk/api/me").status_code == 401
    with app.state.sessionmaker() as session:
        assert session.scalar(select(DeskUser.state).where(DeskUser.username == "leaver")) == "offline"


# ---------------------------------------------------------------- messages both ways

def test_while_people_own_it_the_user_talks_to_the_agent_not_the_bot(bot_client: TestClient) -> None:
    app = bot_client.app
    bot = use_bot(app)
    make_user(app, "ben")
    ben = login(app, "ben")
    user = TestClient(app)
    # before the handoff the bot answers
    replies = user.post("/chat/api/send", json={"session": SESSION, "text": "你好", "id": "m1"}).json()["replies"]
    assert [r["text"] for r in replies] == ["机器人答复：你好"]
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    # queued: the message waits for the agent, the bot is not asked
    waiting = user.post("/chat/api/send", json={"session": SESSION, "text": "我的发票开错了", "id": "m2"})
    assert waiting.json()["replies"] == [] and len(bot.sent) == 1
    assert ben.post(f"/desk/api/cases/{case_id}/accept").status_code == 200
    owned = user.post("/chat/api/send", json={"session": SESSION, "text": "税号写错了一位", "id": "m3"})
    assert owned.json()["replies"] == [] and len(bot.sent) == 1
    texts = [m["text"] for m in ben.get(f"/desk/api/cases/{case_id}").json()["messages"]]
    assert texts[:1] == ["我的发票开错了"] and "税号写错了一位" in texts
    # the agent answers; a note stays internal
    assert ben.post(f"/desk/api/cases/{case_id}/messages", json={"text": "可以作废重开，请稍等"}).status_code == 201
    assert ben.post(f"/desk/api/cases/{case_id}/messages", json={"text": "该户上月也开错过", "note": True}).status_code == 201
    seen = [(m["kind"], m["text"]) for m in user_messages(app, SESSION)]
    assert ("agent", "可以作废重开，请稍等") in seen
    assert all(kind != "note" for kind, _ in seen) and "该户上月也开错过" not in str(seen)


def test_a_message_sent_to_the_bot_directly_reaches_the_agent(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "dora")
    dora = login(app, "dora")
    case_id = case_of(app, handoff(bot_client, "rest-conv-1", channel="rest")["reference"]).id
    dora.post(f"/desk/api/cases/{case_id}/accept")
    response = bot_client.post("/api/v1/desk/inbound", json={"conversation_id": "rest-conv-1", "channel": "rest",
                                                             "text": "还在吗", "metadata": {"asr_confidence": 0.72}})
    assert response.json() == {"routed": "agent", "replies": []}
    [message] = [m for m in dora.get(f"/desk/api/cases/{case_id}").json()["messages"] if m["kind"] == "user"]
    assert message["text"] == "还在吗" and message["payload"] == {"asr_confidence": 0.72}
    # paused, but nobody at the desk owns it any more: the conversation is given back and the bot answers
    bot = use_bot(app)
    other = bot_client.post("/api/v1/desk/inbound", json={"conversation_id": "nobody", "text": "你好"})
    assert other.json() == {"routed": "bot", "replies": [{"text": "机器人答复：你好"}]}
    assert bot.resumed == [("nobody", False)] and [s[1] for s in bot.sent] == ["你好"]


def test_a_retried_message_is_stored_and_answered_once(bot_client: TestClient) -> None:
    app = bot_client.app
    bot = use_bot(app)
    user = TestClient(app)
    first = user.post("/chat/api/send", json={"session": SESSION, "text": "个税起征点", "id": "same"}).json()
    retry = user.post("/chat/api/send", json={"session": SESSION, "text": "个税起征点", "id": "same"}).json()
    assert first == retry and len(bot.sent) == 1
    with app.state.sessionmaker() as session:
        assert session.scalar(select(ChatMessage.id).where(ChatMessage.kind == "user").order_by(ChatMessage.id.desc())
                              .limit(1)) is not None
        assert len(session.scalars(select(ChatMessage).where(ChatMessage.kind == "user")).all()) == 1


def test_waiting_users_hear_their_position_move(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "eve", max_chats=5)
    ahead = case_of(app, handoff(bot_client, "web-llllllllllllll01")["reference"]).id
    handoff(bot_client, CONV)
    eve = login(app, "eve", state=None)
    with app.state.sessionmaker() as session:  # online, but the offers are not what this test is about
        session.execute(update(DeskUser).where(DeskUser.username == "eve").values(state="online"))
        session.commit()
    assert eve.post(f"/desk/api/cases/{ahead}/accept").status_code == 200
    assert [m["text"] for m in user_messages(app, SESSION)] == ["马上就轮到您了，请稍候。"]


def test_long_poll_wakes_up_for_an_agent_reply(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "fay")
    fay = login(app, "fay")
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    fay.post(f"/desk/api/cases/{case_id}/accept")
    last = user_messages(app, SESSION)[-1]["id"]
    result: dict = {}

    def poll() -> None:
        result["items"] = TestClient(app).get("/chat/api/messages",
                                              params={"session": SESSION, "after": last, "wait": 10}).json()["items"]

    thread = threading.Thread(target=poll)
    thread.start()
    threading.Event().wait(0.5)
    fay.post(f"/desk/api/cases/{case_id}/messages", json={"text": "您好，我是小冯"})
    thread.join(10)
    assert [m["text"] for m in result["items"]] == ["您好，我是小冯"]


# ---------------------------------------------------------------- transfer, take-over

def test_transfer_to_a_group_and_to_an_agent(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "gus", ("consult",))
    make_user(app, "hal", ("invoice",))
    gus, hal = login(app, "gus"), login(app, "hal")
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    gus.post(f"/desk/api/cases/{case_id}/accept")
    moved = gus.post(f"/desk/api/cases/{case_id}/transfer", json={"group": "invoice", "note": "发票问题"})
    assert moved.status_code == 200 and moved.json()["group"] == "invoice"
    assert offered_to(app, case_of(app, moved.json()["reference"]).reference) == "hal"
    assert gus.get(f"/desk/api/cases/{case_id}").status_code == 404  # no longer routed to gus
    assert hal.post(f"/desk/api/cases/{case_id}/accept").status_code == 200
    notes = [m["text"] for m in hal.get(f"/desk/api/cases/{case_id}").json()["messages"] if m["kind"] == "note"]
    assert notes == ["Gus将会话转给发票组：发票问题"]
    make_user(app, "ivy", ("consult",))
    login(app, "ivy")
    ivy_id = next(a["id"] for a in hal.get("/desk/api/agents").json()["agents"] if a["username"] == "ivy")
    direct = hal.post(f"/desk/api/cases/{case_id}/transfer", json={"agent_id": ivy_id})
    assert direct.status_code == 200 and direct.json()["agent"] == "Ivy"
    assert hal.get("/desk/api/me").json()["active_chats"] == 0


def test_supervisor_takes_over_and_blacklists(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "jay")
    make_user(app, "kim", (), role="supervisor")
    jay, kim = login(app, "jay"), login(app, "kim", state=None)
    ref = handoff(bot_client, CONV)["reference"]
    case_id = case_of(app, ref).id
    jay.post(f"/desk/api/cases/{case_id}/accept")
    assert jay.post(f"/desk/api/cases/{case_id}/takeover").status_code == 403
    taken = kim.post(f"/desk/api/cases/{case_id}/takeover")
    assert taken.status_code == 200 and taken.json()["agent"] == "Kim"
    assert jay.post(f"/desk/api/cases/{case_id}/messages", json={"text": "还是我"}).status_code == 404
    assert kim.post(f"/desk/api/cases/{case_id}/blacklist", json={"duration": "5m", "reason": "辱骂"}).status_code == 201
    use_bot(app)
    kim.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "invalid"})
    refused = handoff(bot_client, CONV)
    assert refused["status"] == "refused" and refused["position"] is None
    with app.state.sessionmaker() as session:  # five minutes later the blacklist has expired
        session.execute(update(BlacklistEntry).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert handoff(bot_client, CONV)["status"] == "queued"


# ---------------------------------------------------------------- close, hand back, rating

def test_close_gives_the_conversation_back_and_the_rating_is_recorded(bot_client: TestClient) -> None:
    app = bot_client.app
    bot = use_bot(app)
    make_user(app, "lou")
    lou = login(app, "lou")
    ref = handoff(bot_client, CONV)["reference"]
    case_id = case_of(app, ref).id
    lou.post(f"/desk/api/cases/{case_id}/accept")
    assert lou.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "bogus"}).status_code == 422
    assert lou.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"}).status_code == 200
    assert asyncio.run(app.state.hand_back.once()) == 1
    assert bot.resumed == [(CONV, True)]
    assert asyncio.run(app.state.hand_back.once()) == 0  # once only
    assert "评价" in user_messages(app, SESSION)[-1]["text"]
    user = TestClient(app)
    thanks = user.post("/chat/api/send", json={"session": SESSION, "text": "1", "id": "r1"}).json()["replies"]
    assert [r["text"] for r in thanks] == ["感谢您的评价！还有其他问题可以随时问我。"]
    assert case_of(app, ref).rating == 1 and len(bot.sent) == 0
    # the next "1" is just a message for the bot
    user.post("/chat/api/send", json={"session": SESSION, "text": "1", "id": "r2"})
    assert [s[1] for s in bot.sent] == ["1"]


def test_rating_zero_becomes_a_complaint(bot_client: TestClient) -> None:
    app = bot_client.app
    bot = use_bot(app)
    make_user(app, "max")
    mx = login(app, "max")
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    mx.post(f"/desk/api/cases/{case_id}/accept")
    mx.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "unresolved"})
    asyncio.run(app.state.hand_back.once())
    TestClient(app).post("/chat/api/send", json={"session": SESSION, "text": "0", "id": "z"})
    assert [s[1] for s in bot.sent] == ["/complaint"]


def test_hand_back_retries_until_the_bot_answers(bot_client: TestClient) -> None:
    app = bot_client.app
    from service.desk.bot import BotUnavailable

    bot = use_bot(app)
    make_user(app, "ned")
    ned = login(app, "ned")
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    ned.post(f"/desk/api/cases/{case_id}/accept")
    ned.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"})
    real = bot.resume

    async def down(conversation_id: str, ask_rating: bool) -> list:
        raise BotUnavailable("connection refused")

    bot.resume = down  # type: ignore[method-assign]
    assert asyncio.run(app.state.hand_back.once()) == 0
    with app.state.sessionmaker() as session:
        assert session.scalar(select(HandoffRequest.resume_pending).where(HandoffRequest.id == case_id))
    bot.resume = real  # type: ignore[method-assign]
    app.state.hand_back._retry_at.clear()
    assert asyncio.run(app.state.hand_back.once()) == 1


# ---------------------------------------------------------------- outside business hours, abandoned waits

def test_outside_business_hours_a_message_is_taken(make_client: Callable[..., TestClient]) -> None:
    today = datetime.now(CHINA_TZ).date()
    closed = ",".join(str(today + timedelta(days=d)) for d in (-1, 0, 1))  # a holiday around now
    client = quiet_timers(make_client(desk_tick_seconds=3600.0, desk_holidays=closed))
    app = client.app
    bot = use_bot(app)
    opened = handoff(client, CONV)
    assert opened["status"] == "after_hours"
    user = TestClient(app)
    reply = user.post("/chat/api/send", json={"session": SESSION, "text": "请回电13817414333，问退税进度", "id": "n1"})
    [text] = [r["text"] for r in reply.json()["replies"]]
    assert text.startswith("已收到您的留言，编号LY") and "按您留的电话" in text
    with app.state.sessionmaker() as session:
        [note] = session.scalars(select(FollowUp)).all()
    assert (note.contact_phone, note.message) == ("13817414333", "请回电13817414333，问退税进度")
    assert case_of(app, opened["reference"]).status == "closed" and not bot.sent
    asyncio.run(app.state.hand_back.once())
    assert bot.resumed == [(CONV, False)]  # back to the bot, no rating for a note


def test_user_who_gives_up_is_recorded_as_abandoned(bot_client: TestClient) -> None:
    app = bot_client.app
    use_bot(app)
    ref = handoff(bot_client, CONV)["reference"]
    reply = TestClient(app).post("/chat/api/send", json={"session": SESSION, "text": "不等了", "id": "q1"})
    assert [r["text"] for r in reply.json()["replies"]] == ["好的，已为您取消排队。您可以继续向智能助手提问。"]
    case = case_of(app, ref)
    assert (case.status, case.disposition, case.resume_pending) == ("abandoned", "user_cancelled", True)


def test_a_wait_that_times_out_is_abandoned_and_the_user_told(bot_client: TestClient) -> None:
    app = bot_client.app
    ref = handoff(bot_client, CONV)["reference"]
    with app.state.sessionmaker() as session:
        session.execute(update(HandoffRequest).values(enqueued_at=utcnow() - timedelta(hours=1)))
        session.commit()
    desk_of(app).tick()
    assert case_of(app, ref).status == "abandoned"
    assert "暂时没能为您接通人工" in user_messages(app, SESSION)[-1]["text"]


# ---------------------------------------------------------------- restart

def test_nothing_waiting_is_lost_when_the_service_restarts(make_client: Callable[..., TestClient]) -> None:
    first = make_client(desk_tick_seconds=3600.0)
    make_user(first.app, "oli")
    oli = login(first.app, "oli")
    owned = case_of(first.app, handoff(first, "web-mmmmmmmmmmmmmm01", context=CONTEXT)["reference"]).id
    oli.post(f"/desk/api/cases/{owned}/accept")
    oli.post(f"/desk/api/cases/{owned}/messages", json={"text": "请稍等"})
    waiting = [handoff(first, f"web-mmmmmmmmmmmmmm{i:02d}")["reference"] for i in range(2, 5)]
    first.__exit__(None, None, None)

    second = make_client(desk_tick_seconds=3600.0)  # same database
    again = TestClient(second.app, cookies=oli.cookies)  # the agent's session survives too
    mine = {c["id"]: c for c in again.get("/desk/api/cases").json()["items"]}
    assert mine[owned]["status"] == "assigned"
    assert [m["text"] for m in again.get(f"/desk/api/cases/{owned}").json()["messages"]][-1] == "请稍等"
    assert [case_of(second.app, r).status for r in waiting] == ["queued"] * 3
    assert [handoff(second, f"web-mmmmmmmmmmmmmm{i:02d}")["position"] for i in range(2, 5)] == [1, 2, 3]


def test_an_agent_who_fills_up_loses_their_other_offers_not_their_state(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "full", max_chats=2)
    full = login(app, "full")
    one = handoff(bot_client, "web-nnnnnnnnnnnnnn01")["reference"]
    two = handoff(bot_client, "web-nnnnnnnnnnnnnn02")["reference"]
    three = handoff(bot_client, "web-nnnnnnnnnnnnnn03")["reference"]
    assert [offered_to(app, r) for r in (one, two, three)] == ["full", "full", None]
    assert full.post(f"/desk/api/cases/{case_of(app, three).id}/accept").status_code == 200  # picked from the queue
    assert full.post(f"/desk/api/cases/{case_of(app, one).id}/accept").status_code == 200  # now at 2 of 2
    assert offered_to(app, two) is None  # the offer went back to the queue
    make_user(app, "spare")
    login(app, "spare")
    assert offered_to(app, two) == "spare"
    with app.state.sessionmaker() as session:
        session.execute(update(HandoffRequest).values(offered_at=utcnow() - timedelta(seconds=31)))
        session.commit()
    make_user(app, "third")
    desk_of(app).tick()  # spare missed it: spare is set away; "full" stays busy, not away
    with app.state.sessionmaker() as session:
        states = dict(session.execute(select(DeskUser.username, DeskUser.state)).all())
    assert states["full"] == "busy" and states["spare"] == "away"


def test_login_lock_lasts_five_minutes_and_then_counts_again(app: FastAPI) -> None:
    make_user(app, "locky")
    client = TestClient(app)
    failures = app.state.login_failures
    for _ in range(5):
        client.post("/desk/api/login", json={"username": "locky", "password": "wrong-pass-1"})
    assert client.post("/desk/api/login", json={"username": "locky", "password": PASSWORD}).status_code == 429
    count, since = failures["locky"]
    failures["locky"] = (count, since - 301)  # five minutes later
    assert client.post("/desk/api/login", json={"username": "locky", "password": "wrong-pass-1"}).status_code == 401
    for _ in range(4):
        client.post("/desk/api/login", json={"username": "locky", "password": "wrong-pass-1"})
    assert client.post("/desk/api/login", json={"username": "locky", "password": PASSWORD}).status_code == 429


def test_admin_configures_groups_and_users(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "root2", (), role="admin")
    make_user(app, "pat", ("consult",))
    admin, pat = login(app, "root2", state=None), login(app, "pat", state=None)
    assert pat.patch("/desk/api/groups/consult", json={"strategy": "round_robin"}).status_code == 403
    changed = admin.patch("/desk/api/groups/consult", json={"strategy": "round_robin", "hours": "mon-fri 09:00-17:00"})
    assert changed.status_code == 200 and changed.json()["strategy"] == "round_robin"
    assert admin.patch("/desk/api/groups/consult", json={"hours": "9 to 5"}).status_code == 400
    assert admin.patch("/desk/api/groups/nope", json={"name": "x"}).status_code == 404
    made = admin.post("/desk/api/groups", json={"code": "social", "name": "社保费", "strategy": "longest_idle"})
    assert made.status_code == 201
    assert admin.post("/desk/api/groups", json={"code": "social", "name": "社保费"}).status_code == 409
    pat_id = pat.get("/desk/api/me").json()["id"]
    moved = admin.patch(f"/desk/api/users/{pat_id}", json={"groups": ["social"], "max_chats": 5})
    assert moved.json()["groups"] == ["social"] and moved.json()["max_chats"] == 5
    assert admin.patch(f"/desk/api/users/{pat_id}", json={"password": "short"}).status_code == 400
    assert admin.patch(f"/desk/api/users/{pat_id}", json={"password": "new-pass-2027"}).status_code == 200
    assert pat.get("/desk/api/me").status_code == 401  # a new password logs the user out everywhere
    admin.patch(f"/desk/api/users/{pat_id}", json={"disabled": True})
    refused = TestClient(app).post("/desk/api/login", json={"username": "pat", "password": "new-pass-2027"})
    assert refused.status_code == 401


# ---------------------------------------------------------------- found in review

def test_close_after_a_take_over_is_refused_and_counters_add_up(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "quinn")
    make_user(app, "rose", (), role="supervisor")
    quinn, rose = login(app, "quinn"), login(app, "rose", state=None)
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    quinn.post(f"/desk/api/cases/{case_id}/accept")
    assert rose.post(f"/desk/api/cases/{case_id}/takeover").status_code == 200
    late = quinn.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"})
    assert late.status_code in (403, 404)
    assert rose.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"}).status_code == 200
    with app.state.sessionmaker() as session:
        counts = dict(session.execute(select(DeskUser.username, DeskUser.active_chats)).all())
    assert counts == {"quinn": 0, "rose": 0}


def test_a_supervisor_replies_only_after_taking_over_and_an_admin_not_at_all(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "sam")
    make_user(app, "tess", (), role="supervisor")
    make_user(app, "una", (), role="admin")
    sam, tess, una = login(app, "sam"), login(app, "tess", state=None), login(app, "una", state=None)
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    sam.post(f"/desk/api/cases/{case_id}/accept")
    assert tess.post(f"/desk/api/cases/{case_id}/messages", json={"text": "插一句"}).status_code == 403
    assert tess.post(f"/desk/api/cases/{case_id}/messages", json={"text": "监听备注", "note": True}).status_code == 201
    for call in (lambda: una.get(f"/desk/api/cases/{case_id}"),
                 lambda: una.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"})):
        assert call().status_code == 403


def test_a_case_transferred_to_a_group_waits_from_then(bot_client: TestClient) -> None:
    app = bot_client.app
    make_user(app, "vic")
    vic = login(app, "vic")
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    with app.state.sessionmaker() as session:  # it started 41 minutes ago
        session.execute(update(HandoffRequest).values(enqueued_at=utcnow() - timedelta(minutes=41)))
        session.commit()
    vic.post(f"/desk/api/cases/{case_id}/accept")
    vic.post(f"/desk/api/cases/{case_id}/transfer", json={"group": "invoice"})
    desk_of(app).tick()
    with app.state.sessionmaker() as session:
        assert session.get_one(HandoffRequest, case_id).status == "queued"


def test_an_unanswered_after_hours_request_ends_and_a_new_one_is_queued_when_people_are_back(
        make_client: Callable[..., TestClient]) -> None:
    today = datetime.now(CHINA_TZ).date()
    closed = ",".join(str(today + timedelta(days=d)) for d in (-1, 0, 1))
    night = quiet_timers(make_client(desk_tick_seconds=3600.0, desk_holidays=closed))
    first = handoff(night, CONV)
    assert first["status"] == "after_hours"
    desk = desk_of(night.app)
    desk.hours = type(desk.hours).parse("always")  # the next morning
    again = handoff(night, CONV)
    assert again["status"] == "queued" and again["reference"] != first["reference"]
    assert case_of(night.app, first["reference"]).status == "closed"
    third = handoff(night, "web-oooooooooooooo01")
    desk.hours = type(desk.hours).parse("always", holidays=closed)
    silent = handoff(night, "web-oooooooooooooo02")
    assert silent["status"] == "after_hours" and third["status"] == "queued"
    with night.app.state.sessionmaker() as session:  # nobody wrote anything for half an hour
        session.execute(update(HandoffRequest).where(HandoffRequest.reference == silent["reference"])
                        .values(created_at=utcnow() - timedelta(minutes=31)))
        session.commit()
    desk.tick()
    ended = case_of(night.app, silent["reference"])
    assert (ended.status, ended.disposition, ended.resume_pending) == ("closed", "no_message", True)


def test_the_sorry_for_a_timed_out_wait_is_said_once_and_only_if_it_ended(bot_client: TestClient) -> None:
    app = bot_client.app
    ref = handoff(bot_client, CONV)["reference"]
    desk = desk_of(app)
    assert desk.abandon(case_of(app, ref).id, "queue_timeout", "很抱歉，等太久了") is True
    assert desk.abandon(case_of(app, ref).id, "queue_timeout", "很抱歉，等太久了") is False
    assert [m["text"] for m in user_messages(app, SESSION)].count("很抱歉，等太久了") == 1


def test_cross_site_requests_are_refused(app: FastAPI) -> None:
    make_user(app, "wes")
    wes = login(app, "wes", state=None)
    evil = wes.post("/desk/api/state", json={"state": "online"}, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    sibling = wes.post("/desk/api/state", json={"state": "online"}, headers={"Sec-Fetch-Site": "same-site"})
    assert sibling.status_code == 403
    own = wes.post("/desk/api/state", json={"state": "online"},
                   headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200


def test_disabling_an_agent_takes_them_off_duty(app: FastAPI) -> None:
    make_user(app, "root3", (), role="admin")
    make_user(app, "xia")
    admin, xia = login(app, "root3", state=None), login(app, "xia")
    xia_id = xia.get("/desk/api/me").json()["id"]
    admin.patch(f"/desk/api/users/{xia_id}", json={"disabled": True})
    with app.state.sessionmaker() as session:
        assert session.get_one(DeskUser, xia_id).state == "offline"


def test_a_hand_back_claim_whose_replica_died_is_taken_over(bot_client: TestClient) -> None:
    app = bot_client.app
    desk = desk_of(app)
    make_user(app, "yan")
    yan = login(app, "yan")
    case_id = case_of(app, handoff(bot_client, CONV)["reference"]).id
    yan.post(f"/desk/api/cases/{case_id}/accept")
    yan.post(f"/desk/api/cases/{case_id}/close", json={"disposition": "resolved"})
    assert desk.claim_resume(case_id) is True  # replica A claims it, then dies
    assert desk.claim_resume(case_id) is False and desk.pending_resumes() == []
    with app.state.sessionmaker() as session:
        session.execute(update(HandoffRequest).values(resume_claimed_at=utcnow() - timedelta(minutes=3)))
        session.commit()
    bot = use_bot(app)
    assert asyncio.run(app.state.hand_back.once()) == 1 and bot.resumed == [(CONV, True)]


def test_the_cancel_button_ends_only_a_wait(bot_client: TestClient) -> None:
    app = bot_client.app
    user = TestClient(app)
    assert user.post("/chat/api/cancel", json={"session": SESSION}).json() == {"cancelled": False}  # nothing waits
    ref = handoff(bot_client, CONV)["reference"]
    assert user.post("/chat/api/cancel", json={"session": SESSION}).json() == {"cancelled": True}
    assert case_of(app, ref).status == "abandoned"
    assert user.post("/chat/api/cancel", json={"session": SESSION}).json() == {"cancelled": False}
