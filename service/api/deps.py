"""Request dependencies: settings, database session, SMS sender, and the two permission checks."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import GrantInvalid, Unauthorized
from service.models import Grant, Taxpayer, utcnow
from service.settings import Settings
from service.sms import SmsSender


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


def get_sms_sender(request: Request) -> SmsSender:
    return request.app.state.sms_sender


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SmsDep = Annotated[SmsSender, Depends(get_sms_sender)]


def require_service_token(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Every /api/v1 call comes from our own bot: a bearer token compared in constant time."""
    scheme, _, token = (authorization or "").partition(" ")
    expected = settings.service_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise Unauthorized


def grant_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def current_taxpayer(session: SessionDep, x_taxpayer_grant: Annotated[str | None, Header()] = None) -> Taxpayer:
    """The taxpayer a verified grant (header X-Taxpayer-Grant) lets the caller read."""
    if not x_taxpayer_grant:
        raise GrantInvalid
    grant = session.scalar(
        select(Grant).where(Grant.token_hash == grant_hash(x_taxpayer_grant), Grant.expires_at > utcnow())
    )
    if grant is None:
        raise GrantInvalid
    return grant.taxpayer


TaxpayerDep = Annotated[Taxpayer, Depends(current_taxpayer)]
