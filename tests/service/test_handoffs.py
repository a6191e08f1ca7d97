"""Requests for a human agent: references, stored rows, validation, listing."""
from __future__ import annotations

import re
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import CHINA_TZ, HANDOFF_REASONS, HandoffRequest

HANDOFF = {"conversation_id": "conv-9", "channel": "phone", "reason": "user_request", "last_message": "转人工",
           "contact_phone": "15718746331"}


def handoffs(db: Session) -> list[HandoffRequest]:
    db.expire_all()
    return list(db.scalars(select(HandoffRequest).order_by(HandoffRequest.id)))


@pytest.mark.parametrize("reason", HANDOFF_REASONS)
def test_create_handoff(client: TestClient, db: Session, reason: str) -> None:
    response = client.post("/api/v1/handoffs", json=HANDOFF | {"reason": reason})
    assert response.status_code == 201
    [row] = handoffs(db)
    group = "complaint" if reason == "complaint_escalation" else "consult"
    assert response.json() == {"reference": f"RG{datetime.now(CHINA_TZ):%Y%m%d}{row.id:06d}", "status": "queued",
                               "position": 1, "wait_minutes": 5, "group": group}
    assert re.fullmatch(r"RG\d{14}", row.reference or "")
    assert (row.conversation_id, row.channel, row.reason, row.last_message, row.contact_phone, row.status) == \
           ("conv-9", "phone", reason, "转人工", "15718746331", "queued")


def test_minimal_handoff(client: TestClient, db: Session) -> None:
    body = {"conversation_id": "c", "channel": "web", "reason": "low_confidence"}
    assert client.post("/api/v1/handoffs", json=body).status_code == 201
    assert [(h.last_message, h.contact_phone) for h in handoffs(db)] == [(None, None)]


@pytest.mark.parametrize(("change", "error"), [
    ({"reason": "bored"}, "invalid_request"),
    ({"channel": ""}, "invalid_request"),
    ({"last_message": "字" * 4001}, "invalid_request"),
    ({"contact_phone": "1571874633"}, "invalid_phone"),
])
def test_invalid_handoff_is_refused(client: TestClient, db: Session, change: dict, error: str) -> None:
    response = client.post("/api/v1/handoffs", json=HANDOFF | change)
    assert response.status_code == 422 and response.json()["error"] == error
    assert handoffs(db) == []


def test_list_by_conversation(client: TestClient) -> None:
    first = client.post("/api/v1/handoffs", json=HANDOFF).json()
    client.post("/api/v1/handoffs", json=HANDOFF | {"conversation_id": "other"})
    again = client.post("/api/v1/handoffs", json=HANDOFF | {"reason": "knowledge_gap"}).json()
    assert again["reference"] == first["reference"]  # still waiting: the same handoff, not a second one
    items = client.get("/api/v1/handoffs", params={"conversation_id": "conv-9"}).json()["items"]
    assert [(i["reference"], i["reason"], i["status"]) for i in items] == [(first["reference"], "user_request", "queued")]
    assert items[0]["last_message"] == "转人工" and items[0]["contact_phone"] == "15718746331"
    assert items[0]["created_at"].endswith("+08:00")
