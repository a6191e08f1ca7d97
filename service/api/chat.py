"""The web chat's HTTP side, through the channels gateway: send a message, fetch (or wait for) what the bot,
agents and the desk said, give up waiting for a person. A browser keeps a random session id; the conversation is
``web-<session>``. (The WebSocket chat with resume is the channels issue's; these endpoints stay for simple
clients such as ``taxbot chat``.)"""
from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from channels.gateway import Envelope, Gateway
from service.errors import ServiceError
from taxlib.text import strip_control

router = APIRouter(prefix="/chat/api", tags=["web chat"])
SESSION = r"^[A-Za-z0-9_-]{16,64}$"
MAX_TEXT = 2000


def conversation_of(session: str) -> str:
    return f"web-{session}"


class SendIn(BaseModel):
    session: str = Field(pattern=SESSION)
    text: str = Field(max_length=MAX_TEXT)
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="client message id")
    channel: str = Field(default="webchat", pattern=r"^(webchat|rest)$")


class TooManyMessages(ServiceError):
    status_code, code, message = 429, "rate_limited", "发送太频繁了，请稍后再试"


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


@router.post("/send")
async def send(body: SendIn, request: Request) -> dict[str, Any]:
    text = strip_control(body.text).strip()
    if not text:
        raise ServiceError(message="消息不能为空")
    from channels.webchat import rate_limit  # one budget for the page's socket and this endpoint

    wait = rate_limit(request.app, body.session, request.client.host if request.client else "unknown", body.id)
    if wait > 0:
        raise TooManyMessages(retry_after=max(1, round(wait)))
    envelope = Envelope(channel=body.channel, channel_user_id=body.session, conversation_id=conversation_of(body.session),
                        text=text, message_id=body.id)
    return {"replies": await gateway(request).handle(envelope)}


@router.get("/messages")
async def messages(request: Request, session: Annotated[str, Query(pattern=SESSION)],
                   after: Annotated[int, Query(ge=0)] = 0,
                   wait: Annotated[float, Query(ge=0, le=30)] = 0) -> dict[str, Any]:
    items = await gateway(request).wait_for(conversation_of(session), after, wait)
    return {"items": items}


class CancelIn(BaseModel):
    session: str = Field(pattern=SESSION)


@router.post("/cancel")
async def cancel(body: CancelIn, request: Request) -> dict[str, Any]:
    """The user stops waiting for a person."""
    cancelled = await asyncio.to_thread(request.app.state.desk.cancel_wait, conversation_of(body.session))
    if cancelled:
        request.app.state.hand_back_soon()
    return {"cancelled": cancelled}
