"""Complaints, reports and suggestions: references, stored rows, validation, listing."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.schemas import reference
from service.models import CHINA_TZ, Ticket

TICKET = {"kind": "complaint", "subject": "办税服务厅排队时间过长", "detail": "上午在办税服务厅排队两个小时。",
          "contact_phone": "+86 138-1741-4333", "conversation_id": "conv-7", "channel": "wechat",
          "opening_message": "我要投诉"}


def tickets(db: Session) -> list[Ticket]:
    db.expire_all()
    return list(db.scalars(select(Ticket).order_by(Ticket.id)))


@pytest.mark.parametrize(("kind", "prefix"), [("complaint", "TS"), ("report", "JB"), ("suggestion", "JY")])
def test_create_ticket(client: TestClient, db: Session, kind: str, prefix: str) -> None:
    response = client.post("/api/v1/tickets", json=TICKET | {"kind": kind})
    assert response.status_code == 201
    body = response.json()
    [row] = tickets(db)
    today = datetime.now(CHINA_TZ).strftime("%Y%m%d")
    assert body == {"reference": f"{prefix}{today}{row.id:06d}", "kind": kind, "status": "open",
                    "created_at": row.created_at.astimezone(CHINA_TZ).isoformat()}
    assert re.fullmatch(rf"{prefix}\d{{14}}", body["reference"])
    assert (row.reference, row.kind, row.subject, row.detail, row.contact_phone, row.conversation_id, row.channel,
            row.opening_message, row.status) == (body["reference"], kind, TICKET["subject"], TICKET["detail"],
                                                 "13817414333", "conv-7", "wechat", "我要投诉", "open")


def test_references_follow_row_ids(client: TestClient, db: Session) -> None:
    refs = [client.post("/api/v1/tickets", json=TICKET | {"kind": k}).json()["reference"]
            for k in ("complaint", "suggestion", "report")]
    assert [r[:2] for r in refs] == ["TS", "JY", "JB"]
    assert [r[-6:] for r in refs] == [f"{row.id:06d}" for row in tickets(db)]
    assert len(set(refs)) == 3


def test_reference_uses_the_china_date() -> None:
    assert reference("TS", datetime(2026, 11, 23, 17, 0, tzinfo=UTC), 12) == "TS20261124000012"
    assert reference("JY", datetime(2026, 11, 23, 15, 59, tzinfo=UTC), 1234567) == "JY202611231234567"


def test_minimal_ticket(client: TestClient, db: Session) -> None:
    body = {"kind": "suggestion", "detail": "建议增加夜间咨询。", "conversation_id": "c", "channel": "phone"}
    assert client.post("/api/v1/tickets", json=body).status_code == 201
    assert client.post("/api/v1/tickets", json=body | {"contact_phone": None}).status_code == 201
    assert [(t.subject, t.contact_phone, t.opening_message) for t in tickets(db)] == [(None, None, None)] * 2


@pytest.mark.parametrize(("change", "error"), [
    ({"contact_phone": "12345"}, "invalid_phone"),
    ({"contact_phone": "021-64381234"}, "invalid_phone"),
    ({"kind": "praise"}, "invalid_request"),
    ({"detail": ""}, "invalid_request"),
    ({"detail": "字" * 4001}, "invalid_request"),
    ({"subject": 42}, "invalid_request"),
    ({"conversation_id": None}, "invalid_request"),
])
def test_invalid_ticket_is_refused(client: TestClient, db: Session, change: dict, error: str) -> None:
    response = client.post("/api/v1/tickets", json=TICKET | change)
    assert response.status_code == 422 and response.json()["error"] == error
    assert tickets(db) == []


def test_detail_of_4000_characters_is_accepted(client: TestClient, db: Session) -> None:
    assert client.post("/api/v1/tickets", json=TICKET | {"detail": "字" * 4000}).status_code == 201
    assert len(tickets(db)[0].detail) == 4000


def test_list_by_conversation(client: TestClient) -> None:
    created = [client.post("/api/v1/tickets", json=TICKET | {"conversation_id": c}).json() for c in ("a", "b", "a")]
    items = client.get("/api/v1/tickets", params={"conversation_id": "a"}).json()["items"]
    assert [i["reference"] for i in items] == [created[0]["reference"], created[2]["reference"]]
    assert items[0] | {"reference": None, "created_at": None} == {
        "reference": None, "kind": "complaint", "status": "open", "created_at": None, "subject": TICKET["subject"],
        "detail": TICKET["detail"], "contact_phone": "13817414333", "conversation_id": "a", "channel": "wechat",
        "opening_message": "我要投诉"}
    assert client.get("/api/v1/tickets", params={"conversation_id": "none"}).json() == {"items": []}
    assert client.get("/api/v1/tickets").status_code == 422
