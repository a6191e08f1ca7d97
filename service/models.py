"""Database tables (SQLAlchemy 2 declarative). Times are stored in UTC; the service speaks China time."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CheckConstraint, DateTime, Enum, ForeignKey, MetaData, Numeric, String, Text, TypeDecorator, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

CHINA_TZ = ZoneInfo("Asia/Shanghai")

TAXPAYER_KINDS = ("enterprise", "individual", "household")
CATEGORIES = ("normal", "VIP")
DUE_STATUSES = ("unpaid", "overdue", "paid")
PAYMENT_STATUSES = ("success", "processing", "failed")
REFUND_STATUSES = ("submitted", "reviewing", "approved", "paid", "rejected", "returned")
TICKET_KINDS = ("complaint", "report", "suggestion")
HANDOFF_REASONS = ("user_request", "low_confidence", "complaint_escalation", "verification_failed", "knowledge_gap", "other")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _choice(values: tuple[str, ...], name: str) -> Enum:
    return Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


Money = Numeric(14, 2)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })
    type_annotation_map = {datetime: UTCDateTime, Decimal: Money}


class Taxpayer(Base):
    __tablename__ = "taxpayers"
    __table_args__ = (CheckConstraint("taxpayer_id IS NOT NULL OR id_number IS NOT NULL", name="identified"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    taxpayer_id: Mapped[str | None] = mapped_column(String(18), unique=True)  # 统一社会信用代码
    id_number: Mapped[str | None] = mapped_column(String(18), unique=True)  # 居民身份证号码
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(_choice(TAXPAYER_KINDS, "taxpayer_kind"))
    category: Mapped[str] = mapped_column(_choice(CATEGORIES, "taxpayer_category"), default="normal")
    phone: Mapped[str] = mapped_column(String(11), index=True)
    email: Mapped[str | None] = mapped_column(String(120))
    address: Mapped[str | None] = mapped_column(String(200))
    tax_office: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def identifier(self) -> str:
        return self.taxpayer_id or self.id_number or ""


class _TaxRecord:
    """Columns every per-taxpayer record has: whose, which tax, which period, how much."""

    id: Mapped[int] = mapped_column(primary_key=True)
    taxpayer_pk: Mapped[int] = mapped_column(ForeignKey("taxpayers.id", ondelete="CASCADE"), index=True)
    tax_type: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal]


class TaxDue(_TaxRecord, Base):
    __tablename__ = "tax_due"
    __table_args__ = (UniqueConstraint("taxpayer_pk", "tax_type", "period"),)

    due_date: Mapped[date]
    status: Mapped[str] = mapped_column(_choice(DUE_STATUSES, "due_status"))
    taxpayer: Mapped[Taxpayer] = relationship()


class Payment(_TaxRecord, Base):
    __tablename__ = "payments"

    paid_at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(32))
    voucher_no: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(_choice(PAYMENT_STATUSES, "payment_status"))
    taxpayer: Mapped[Taxpayer] = relationship()


class Refund(_TaxRecord, Base):
    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("taxpayer_pk", "tax_type", "period"),)

    applied_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(_choice(REFUND_STATUSES, "refund_status"))
    updated_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(String(200))
    taxpayer: Mapped[Taxpayer] = relationship()


class Verification(Base):
    """One SMS code sent to a taxpayer's phone. Only an HMAC of the code is kept."""

    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    taxpayer_pk: Mapped[int] = mapped_column(ForeignKey("taxpayers.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    confirmed_at: Mapped[datetime | None]
    conversation_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VerificationStart(Base):
    """Every accepted start request, matched or not, keyed by an HMAC of the identifier: the rate limit's ledger."""

    __tablename__ = "verification_starts"

    id: Mapped[int] = mapped_column(primary_key=True)
    identifier_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Grant(Base):
    """Short-lived permission to read one taxpayer's records; only the token's SHA-256 is kept."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    taxpayer_pk: Mapped[int] = mapped_column(ForeignKey("taxpayers.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]
    taxpayer: Mapped[Taxpayer] = relationship()


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(24), unique=True)  # set right after the id is known
    kind: Mapped[str] = mapped_column(_choice(TICKET_KINDS, "ticket_kind"))
    subject: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(String(11))
    conversation_id: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    opening_message: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HandoffRequest(Base):
    __tablename__ = "handoff_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(24), unique=True)
    conversation_id: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(_choice(HANDOFF_REASONS, "handoff_reason"))
    last_message: Mapped[str | None] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(String(11))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
