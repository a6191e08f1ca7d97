"""Identity verification: an SMS code to the phone on file, exchanged for a short-lived read grant."""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import timedelta

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.deps import SessionDep, SettingsDep, SmsDep, grant_hash
from service.api.schemas import TaxpayerOut
from service.errors import (
    AlreadyUsed, CodeExpired, InvalidIdentifier, InvalidPhone, NoMatch, TooManyRequests, VerificationLocked,
    VerificationNotFound, WrongCode,
)
from service.models import Grant, Taxpayer, Verification, VerificationStart, utcnow
from service.settings import Settings
from taxlib.identifiers import classify_identifier, normalize_phone
from taxlib.privacy import mask_identifier

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/identity", tags=["identity"])

RATE_WINDOW = timedelta(minutes=10)
SMS_TEXT = "【12366纳税服务】您的验证码为{code}，{minutes}分钟内有效，请勿泄露给他人。"


class StartIn(BaseModel):
    identifier: str = Field(max_length=32)
    phone: str = Field(max_length=32)
    conversation_id: str = Field(min_length=1, max_length=128)
    channel: str = Field(min_length=1, max_length=32)


class StartOut(BaseModel):
    verification_id: str
    masked_phone: str
    expires_in: int


class ConfirmIn(BaseModel):
    code: str = Field(pattern=r"^\d{6}$")


class ConfirmOut(BaseModel):
    grant: str
    expires_in: int
    taxpayer: TaxpayerOut


def _keyed_hash(settings: Settings, purpose: str, value: str) -> str:
    """HMAC-SHA256 under a key derived from the service token, one key per purpose."""
    key = hmac.new(settings.service_token.get_secret_value().encode(), purpose.encode(), hashlib.sha256).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _code_hash(settings: Settings, verification_id: str, code: str) -> str:
    return _keyed_hash(settings, "otp", f"{verification_id}:{code}")


def _match(session: Session, settings: Settings, identifier: str, phone: str) -> Taxpayer:
    """Count the start against the identifier's rate limit, then find the taxpayer with both identifier and phone."""
    key, window_start = _keyed_hash(settings, "rate-limit", identifier), utcnow() - RATE_WINDOW
    session.execute(delete(VerificationStart).where(VerificationStart.created_at <= window_start))
    recent = session.scalar(select(func.count()).where(VerificationStart.identifier_hash == key))
    if recent >= settings.verification_rate_limit:
        session.commit()
        logger.warning("identity.rate_limited identifier=%s", mask_identifier(identifier))
        raise TooManyRequests
    session.add(VerificationStart(identifier_hash=key))
    taxpayer = session.scalar(
        select(Taxpayer).where(or_(Taxpayer.taxpayer_id == identifier, Taxpayer.id_number == identifier),
                               Taxpayer.phone == phone)
    )
    session.commit()  # the start counts whatever the outcome
    if taxpayer is None:
        logger.info("identity.no_match identifier=%s", mask_identifier(identifier))
        raise NoMatch
    return taxpayer


def _save(session: Session, verification: Verification) -> None:
    session.add(verification)
    session.commit()


@router.post("/verifications", status_code=201)
async def start_verification(body: StartIn, session: SessionDep, settings: SettingsDep, sms: SmsDep) -> StartOut:
    identifier = body.identifier.strip().upper()
    if classify_identifier(identifier) is None:
        raise InvalidIdentifier
    phone = normalize_phone(body.phone)
    if phone is None:
        raise InvalidPhone
    taxpayer = await run_in_threadpool(_match, session, settings, identifier, phone)
    code = settings.otp_fixed_code or f"{secrets.randbelow(10**6):06d}"
    verification = Verification(
        id=str(uuid.uuid4()), taxpayer_pk=taxpayer.id, attempts=0,
        expires_at=utcnow() + timedelta(seconds=settings.otp_ttl_seconds),
        conversation_id=body.conversation_id, channel=body.channel,
    )
    verification.code_hash = _code_hash(settings, verification.id, code)
    # Send first: when delivery fails (SmsDeliveryFailed -> 502) there is nothing to confirm.
    await sms.send(phone, SMS_TEXT.format(code=code, minutes=max(1, settings.otp_ttl_seconds // 60)))
    await run_in_threadpool(_save, session, verification)
    logger.info("identity.verification_started id=%s channel=%s", verification.id, body.channel)
    return StartOut(verification_id=verification.id, masked_phone=mask_identifier(phone),
                    expires_in=settings.otp_ttl_seconds)


@router.post("/verifications/{verification_id}/confirm")
def confirm_verification(verification_id: str, body: ConfirmIn, session: SessionDep, settings: SettingsDep) -> ConfirmOut:
    verification = session.get(Verification, verification_id)
    if verification is None:
        raise VerificationNotFound
    if verification.confirmed_at is not None:
        raise AlreadyUsed
    if verification.attempts >= settings.otp_max_attempts:
        raise VerificationLocked
    if verification.expires_at <= utcnow():
        raise CodeExpired
    if not hmac.compare_digest(_code_hash(settings, verification.id, body.code), verification.code_hash):
        # Conditional UPDATE: parallel guesses cannot share one attempt.
        counted = session.execute(
            update(Verification)
            .where(Verification.id == verification.id, Verification.attempts < settings.otp_max_attempts)
            .values(attempts=Verification.attempts + 1)
        ).rowcount
        session.commit()
        session.refresh(verification)
        attempts_left = settings.otp_max_attempts - verification.attempts
        logger.info("identity.wrong_code id=%s attempts_left=%s", verification.id, attempts_left)
        if not counted or attempts_left <= 0:
            raise VerificationLocked
        raise WrongCode(attempts_left=attempts_left)
    used = session.execute(
        update(Verification)
        .where(Verification.id == verification.id, Verification.confirmed_at.is_(None))
        .values(confirmed_at=utcnow())
    ).rowcount
    if not used:
        session.rollback()
        raise AlreadyUsed
    token = secrets.token_urlsafe(32)
    session.add(Grant(token_hash=grant_hash(token), taxpayer_pk=verification.taxpayer_pk,
                      expires_at=utcnow() + timedelta(seconds=settings.grant_ttl_seconds)))
    session.commit()
    taxpayer = session.get_one(Taxpayer, verification.taxpayer_pk)
    logger.info("identity.verified id=%s", verification.id)
    return ConfirmOut(grant=token, expires_in=settings.grant_ttl_seconds, taxpayer=TaxpayerOut.of(taxpayer))
