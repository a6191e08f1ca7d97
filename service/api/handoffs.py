"""Requests to hand a conversation over to a human agent."""
from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from service.api.deps import SessionDep
from service.api.schemas import ChinaTime, contact_phone, save_with_reference
from service.models import HANDOFF_REASONS, HandoffRequest

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/handoffs", tags=["handoffs"])


class HandoffIn(BaseModel):
    conversation_id: str = Field(min_length=1, max_length=128)
    channel: str = Field(min_length=1, max_length=32)
    reason: Literal[*HANDOFF_REASONS]  # type: ignore[valid-type]
    last_message: str | None = Field(default=None, max_length=4000)
    contact_phone: str | None = Field(default=None, max_length=32)


class HandoffCreated(BaseModel):
    reference: str
    status: str


class HandoffOut(HandoffCreated):
    conversation_id: str
    channel: str
    reason: str
    last_message: str | None
    contact_phone: str | None
    created_at: ChinaTime


class HandoffList(BaseModel):
    items: list[HandoffOut]


@router.post("", status_code=201)
def create_handoff(body: HandoffIn, session: SessionDep) -> HandoffCreated:
    handoff = HandoffRequest(**body.model_dump(exclude={"contact_phone"}), contact_phone=contact_phone(body.contact_phone),
                             status="pending")
    save_with_reference(session, handoff, "RG")
    logger.info("handoff.created reference=%s reason=%s channel=%s", handoff.reference, handoff.reason, handoff.channel)
    return HandoffCreated.model_validate(handoff, from_attributes=True)


@router.get("")
def list_handoffs(conversation_id: str, session: SessionDep) -> HandoffList:
    rows = session.scalars(
        select(HandoffRequest).where(HandoffRequest.conversation_id == conversation_id).order_by(HandoffRequest.id)
    ).all()
    return HandoffList(items=[HandoffOut.model_validate(row, from_attributes=True) for row in rows])
