"""Complaints (投诉), reports (举报) and suggestions (建议) filed from a conversation."""
from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from service.api.deps import SessionDep
from service.api.schemas import ChinaTime, contact_phone, save_with_reference
from service.models import TICKET_KINDS, Ticket

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/tickets", tags=["tickets"])

PREFIXES = {"complaint": "TS", "report": "JB", "suggestion": "JY"}
assert set(PREFIXES) == set(TICKET_KINDS), "every ticket kind needs a reference prefix"


class TicketIn(BaseModel):
    kind: Literal[*TICKET_KINDS]  # type: ignore[valid-type]
    subject: str | None = Field(default=None, max_length=200)
    detail: str = Field(min_length=1, max_length=4000)
    contact_phone: str | None = Field(default=None, max_length=32)
    conversation_id: str = Field(min_length=1, max_length=128)
    channel: str = Field(min_length=1, max_length=32)
    opening_message: str | None = Field(default=None, max_length=4000)


class TicketCreated(BaseModel):
    reference: str
    kind: str
    status: str
    created_at: ChinaTime


class TicketOut(TicketCreated):
    subject: str | None
    detail: str
    contact_phone: str | None
    conversation_id: str
    channel: str
    opening_message: str | None


class TicketList(BaseModel):
    items: list[TicketOut]


@router.post("", status_code=201)
def create_ticket(body: TicketIn, session: SessionDep) -> TicketCreated:
    ticket = Ticket(**body.model_dump(exclude={"contact_phone"}), contact_phone=contact_phone(body.contact_phone), status="open")
    save_with_reference(session, ticket, PREFIXES[ticket.kind])
    logger.info("ticket.created reference=%s kind=%s channel=%s", ticket.reference, ticket.kind, ticket.channel)
    return TicketCreated.model_validate(ticket, from_attributes=True)


@router.get("")
def list_tickets(conversation_id: str, session: SessionDep) -> TicketList:
    rows = session.scalars(select(Ticket).where(Ticket.conversation_id == conversation_id).order_by(Ticket.id)).all()
    return TicketList(items=[TicketOut.model_validate(row, from_attributes=True) for row in rows])
