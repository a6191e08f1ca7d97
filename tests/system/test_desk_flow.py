"""A conversation handed to a person and back, with every real process: the web chat's HTTP side through the
gateway, Rasa (which pauses itself), the desk's API as the console uses it, and the rating afterwards."""
from __future__ import annotations

import time
import uuid

import httpx

from tests.system.conftest import System


def send(system: System, session: str, text: str) -> list[dict]:
    reply = httpx.post(f"{system.service_url}/chat/api/send", timeout=60,
                       json={"session": session, "text": text, "id": uuid.uuid4().hex})
    assert reply.status_code == 200, reply.text
    return reply.json()["replies"]


def wait_for(system: System, session: str, after: int, needle: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = httpx.get(f"{system.service_url}/chat/api/messages", timeout=40,
                          params={"session": session, "after": after, "wait": 10}).json()["items"]
        for item in items:
            if needle in item["text"]:
                return item
            after = max(after, item["id"])
    raise AssertionError(f"no message with {needle!r}")


def test_handoff_to_an_agent_and_back(system: System) -> None:
    session = f"sys-{uuid.uuid4().hex}"
    conversation = f"web-{session}"
    assert "5000" in " ".join(r["text"] for r in send(system, session, "个税起征点是多少"))
    handed = " ".join(r["text"] for r in send(system, session, "我要转人工"))
    assert "RG" in handed and "人工" in handed, handed

    agent = httpx.Client(base_url=system.service_url, timeout=30)
    assert agent.post("/desk/api/login", json={"username": "zuoxi1", "password": system.desk_password}).status_code == 200
    assert agent.post("/desk/api/state", json={"state": "online"}).status_code == 200
    [case] = [c for c in agent.get("/desk/api/cases").json()["items"] if c["conversation_id"] == conversation]
    assert case["status"] == "queued" and case["reason"] == "user_request" and case["channel"] == "webchat"
    assert agent.post(f"/desk/api/cases/{case['id']}/accept").status_code == 200
    package = agent.get(f"/desk/api/cases/{case['id']}").json()
    said = [turn["text"] for turn in package["context"]["transcript"] if turn["role"] == "user"]
    assert said[:2] == ["个税起征点是多少", "我要转人工"]
    assert package["context"]["transcript"][0]["intent_ranking"], "each user turn carries its intent ranking"
    assert package["context"]["kb_candidates"], "retrieval's candidates travel with the handoff"

    # the bot stays silent: through the gateway, and even when Rasa's REST channel is called directly
    assert send(system, session, "我的专票抬头开错了") == []
    direct = httpx.post(system.webhook, json={"sender": conversation, "message": "还在吗"}, timeout=60).json()
    assert direct == [], direct
    texts = [m["text"] for m in agent.get(f"/desk/api/cases/{case['id']}").json()["messages"] if m["kind"] == "user"]
    assert "我的专票抬头开错了" in texts and "还在吗" in texts

    assert agent.post(f"/desk/api/cases/{case['id']}/messages",
                      json={"text": "您好，专票开错了可以开具红字发票后重开。"}).status_code == 201
    last = wait_for(system, session, 0, "红字发票")["id"]

    assert agent.post(f"/desk/api/cases/{case['id']}/close", json={"disposition": "resolved"}).status_code == 200
    rating = wait_for(system, session, last, "评价")
    assert [b["payload"] for b in rating["payload"]["buttons"]] == ["1", "2", "3", "0"]
    assert "感谢您的评价" in " ".join(r["text"] for r in send(system, session, "1"))
    # and the bot is back
    assert "5000" in " ".join(r["text"] for r in send(system, session, "个税起征点是多少"))
