"""Helpers for the desk tests: desk users, logged-in clients, handoffs as the bot sends them, a bot stand-in."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.desk import auth
from service.desk.bot import BotClient
from service.desk.core import Desk
from service.models import DeskUser, HandoffRequest
from tests.service.service_support import AUTH

PASSWORD = "desk-pass-2026"


def make_user(app: FastAPI, username: str, groups: tuple[str, ...] = ("consult",), role: str = "agent",
              max_chats: int = 2) -> DeskUser:
    with app.state.sessionmaker() as session:
        return auth.create_user(session, username, PASSWORD, role, username.title(), groups, max_chats)


def login(app: FastAPI, username: str, state: str | None = "online") -> TestClient:
    """A client with its own cookie jar, logged in as ``username`` (and set online)."""
    client = TestClient(app)
    response = client.post("/desk/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    if state:
        assert client.post("/desk/api/state", json={"state": state}).status_code == 200
    return client


def handoff(client: TestClient, conversation_id: str, **fields: Any) -> dict[str, Any]:
    body = {"conversation_id": conversation_id, "channel": "webchat", "reason": "user_request",
            "last_message": "转人工", "channel_user_id": conversation_id.removeprefix("web-")} | fields
    response = client.post("/api/v1/handoffs", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


def case_of(app: FastAPI, reference: str) -> HandoffRequest:
    with app.state.sessionmaker() as session:
        return session.scalars(select(HandoffRequest).where(HandoffRequest.reference == reference)).one()


def desk_of(app: FastAPI) -> Desk:
    return app.state.desk


class RecordingBot(BotClient):
    """Stands in for the Rasa server in service-only tests (the system tests use the real one): replies with a
    fixed text and records what it was asked."""

    def __init__(self) -> None:
        super().__init__("http://bot.invalid", None)
        self.sent: list[tuple[str, str, str, dict[str, Any]]] = []
        self.resumed: list[tuple[str, bool]] = []

    async def send(self, conversation_id: str, text: str, channel: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        self.sent.append((conversation_id, text, channel, metadata))
        return [{"recipient_id": conversation_id, "text": f"机器人答复：{text}"}]

    async def resume(self, conversation_id: str, ask_rating: bool) -> list[dict[str, Any]]:
        self.resumed.append((conversation_id, ask_rating))
        if not ask_rating:
            return []
        return [{"text": "请为本次服务评价：回复 1 满意，2 一般，3 不满意；如需投诉请回复 0。",
                 "buttons": [{"title": "满意", "payload": "1"}]}]


def use_bot(app: FastAPI) -> RecordingBot:
    bot = RecordingBot()
    app.state.bot = bot
    app.state.gateway.bot = bot
    app.state.hand_back.bot = bot
    return bot
