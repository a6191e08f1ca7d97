"""The bot hands a conversation to people (the desk), and passes on what users send while people own it."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from service.api.deps import SessionDep
from service.api.schemas import ChinaTime, contact_phone
from service.desk.bot import BotUnavailable
from service.desk.core import Desk
from service.models import HANDOFF_REASONS, HandoffRequest, Taxpayer
from taxlib.identifiers import classify_identifier
from taxlib.text import strip_control

logger = logging.getLogger(__name__)
router = APIRouter(tags=["handoffs"])


class HandoffIn(BaseModel):
    conversation_id: str = Field(min_length=1, max_length=128)
    channel: str = Field(min_length=1, max_length=32)
    reason: Literal[*HANDOFF_REASONS]  # type: ignore[valid-type]
    last_message: str | None = Field(default=None, max_length=4000)
    contact_phone: str | None = Field(default=None, max_length=32)
    channel_user_id: str | None = Field(default=None, max_length=128)
    taxpayer_identifier: str | None = Field(default=None, max_length=32, description="only once verified")
    context: dict[str, Any] | None = Field(default=None, description="transcript, slots, knowledge candidates")


class HandoffCreated(BaseModel):
    reference: str
    status: str
    position: int | None = None
    wait_minutes: int | None = None
    group: str | None = None


class HandoffOut(BaseModel):
    reference: str
    status: str
    conversation_id: str
    channel: str
    reason: str
    last_message: str | None
    contact_phone: str | None
    created_at: ChinaTime


class HandoffList(BaseModel):
    items: list[HandoffOut]


@router.post("/handoffs", status_code=201)
async def create_handoff(body: HandoffIn, request: Request, session: SessionDep) -> HandoffCreated:
    desk: Desk = request.app.state.desk
    taxpayer = None
    raw = (body.taxpayer_identifier or "").strip().upper()
    identifier = raw if raw and classify_identifier(raw) else None
    if identifier:
        taxpayer = session.scalar(select(Taxpayer).where(
            or_(Taxpayer.taxpayer_id == identifier, Taxpayer.id_number == identifier)))
    opened = await asyncio.to_thread(
        desk.open_case, conversation_id=body.conversation_id, channel=body.channel, reason=body.reason,
        last_message=body.last_message, contact_phone=contact_phone(body.contact_phone),
        channel_user_id=body.channel_user_id, taxpayer=taxpayer, context=body.context)
    case = opened.case
    return HandoffCreated(reference=case.reference or "", status=case.status, position=opened.position,
                          wait_minutes=opened.wait_minutes, group=case.group.code if case.group else None)


@router.get("/handoffs")
def list_handoffs(conversation_id: str, session: SessionDep) -> HandoffList:
    rows = session.scalars(
        select(HandoffRequest).where(HandoffRequest.conversation_id == conversation_id).order_by(HandoffRequest.id)
    ).all()
    return HandoffList(items=[HandoffOut.model_validate(row, from_attributes=True) for row in rows])


class InboundIn(BaseModel):
    conversation_id: str = Field(min_length=1, max_length=128)
    channel: str = Field(default="rest", max_length=32)
    text: str = Field(max_length=4000)
    metadata: dict[str, Any] | None = None


class Reply(BaseModel):
    text: str


class InboundOut(BaseModel):
    routed: str
    replies: list[Reply]


@router.post("/desk/inbound")
async def inbound(body: InboundIn, request: Request) -> InboundOut:
    """A message that reached the bot directly while people own the conversation (the bot is paused)."""
    desk: Desk = request.app.state.desk
    result = await asyncio.to_thread(desk.inbound, body.conversation_id, strip_control(body.text).strip(),
                                     body.metadata)
    bot = request.app.state.bot
    forward = result.forward
    if result.routed == "bot":
        # The bot is paused but people no longer own the conversation (it was closed a moment ago and not yet
        # handed back, or a hand-back was lost): give it back now, and let the bot answer the message.
        try:
            await bot.resume(body.conversation_id, ask_rating=False)
        except BotUnavailable as exc:
            logger.warning("desk.inbound_resume_failed error=%s", exc)
            return InboundOut(routed="bot", replies=[])
        logger.info("desk.inbound_resumed a paused conversation nobody owned")
        forward = forward or body.text
    if forward:  # e.g. a rating of 0 starts a complaint: the bot takes that from here
        try:
            replies = await bot.send(body.conversation_id, forward, body.channel, body.metadata or {})
        except BotUnavailable:
            replies = []
        return InboundOut(routed=result.routed, replies=[Reply(text=r["text"]) for r in replies if r.get("text")])
    return InboundOut(routed=result.routed, replies=[Reply(text=t) for t in result.replies])
