"""Database tables (SQLAlchemy 2 declarative). Times are stored in UTC; the service speaks China time."""
from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON, Boolean, CheckConstraint, DateTime, Enum, ForeignKey, Index, Integer, MetaData, Numeric, String, Text,
    TypeDecorator, UniqueConstraint, event,
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
# A handoff's life: queued → assigned → closed, or abandoned (the user gave up); after_hours → message taken
# (closed); refused (blacklisted). "pending" is what the first schema wrote before the desk existed.
HANDOFF_STATUSES = ("pending", "queued", "assigned", "closed", "abandoned", "after_hours", "refused")
OPEN_STATUSES = ("queued", "assigned", "after_hours")
DESK_ROLES = ("agent", "supervisor", "editor", "admin")
AGENT_STATES = ("online", "busy", "away", "offline")
STRATEGIES = ("round_robin", "least_busy", "longest_idle")
MESSAGE_KINDS = ("user", "bot", "agent", "system", "note")
DISPOSITIONS = ("resolved", "unresolved", "callback", "ticket", "invalid")


def utcnow() -> datetime:
    return datetime.now(UTC)


def reference(prefix: str, created_at: datetime, row_id: int) -> str:
    """Prefix + China date + zero-padded row id, e.g. TS20261123000012."""
    return f"{prefix}{created_at.astimezone(CHINA_TZ):%Y%m%d}{row_id:06d}"


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


class SkillGroup(Base):
    """A queue: the agents with its skill take its conversations, distributed by ``strategy``."""

    __tablename__ = "skill_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(_choice(STRATEGIES, "strategy"), default="least_busy")
    hours: Mapped[str | None] = mapped_column(String(200))  # None: the desk's default business hours
    last_agent_id: Mapped[int | None] = mapped_column(Integer)  # round-robin cursor


class DeskUser(Base):
    """A person who logs in to the desk: an agent, supervisor, knowledge editor or administrator."""

    __tablename__ = "desk_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(_choice(DESK_ROLES, "desk_role"))
    state: Mapped[str] = mapped_column(_choice(AGENT_STATES, "agent_state"), default="offline")
    state_since: Mapped[datetime] = mapped_column(default=utcnow)
    max_chats: Mapped[int] = mapped_column(default=3)
    active_chats: Mapped[int] = mapped_column(default=0)  # kept by conditional updates: the capacity check
    idle_since: Mapped[datetime] = mapped_column(default=utcnow)  # last time a chat ended (longest idle)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    groups: Mapped[list[SkillGroup]] = relationship(secondary="agent_skills", lazy="selectin")


class AgentSkill(Base):
    __tablename__ = "agent_skills"

    user_id: Mapped[int] = mapped_column(ForeignKey("desk_users.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("skill_groups.id", ondelete="CASCADE"), primary_key=True)


class DeskSession(Base):
    """A login; only the SHA-256 of the cookie's token is kept."""

    __tablename__ = "desk_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("desk_users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[DeskUser] = relationship(lazy="joined")


class HandoffRequest(Base):
    """A conversation handed to people: queued in a skill group, owned by one agent, closed with a disposition."""

    __tablename__ = "handoff_requests"
    __table_args__ = (Index("ix_handoff_requests_queue", "status", "group_id", "priority", "enqueued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(24), unique=True)
    conversation_id: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(_choice(HANDOFF_REASONS, "handoff_reason"))
    last_message: Mapped[str | None] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(String(11))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel_user_id: Mapped[str | None] = mapped_column(String(128), index=True)
    taxpayer_pk: Mapped[int | None] = mapped_column(ForeignKey("taxpayers.id", ondelete="SET NULL"), index=True)
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(default=0)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("skill_groups.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("desk_users.id"), index=True)
    offered_to: Mapped[int | None] = mapped_column(ForeignKey("desk_users.id"))
    offered_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    assigned_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    disposition: Mapped[str | None] = mapped_column(String(32))
    position: Mapped[int | None]  # the last queue position the user was told
    rating: Mapped[int | None]
    rating_asked_at: Mapped[datetime | None]
    resume_pending: Mapped[bool] = mapped_column(Boolean, default=False)  # the bot still has to be given back the conversation
    resume_claimed_at: Mapped[datetime | None]  # a replica is giving it back now (a stale claim is taken over)
    context: Mapped[dict | None] = mapped_column(JSON)  # type: ignore[type-arg]
    group: Mapped[SkillGroup | None] = relationship(lazy="joined")
    agent: Mapped[DeskUser | None] = relationship(foreign_keys=[agent_id], lazy="joined")
    taxpayer: Mapped[Taxpayer | None] = relationship(lazy="joined")


class ChatMessage(Base):
    """Every message of a conversation the gateway or the desk handled, in order: what the user sent, what the bot
    or an agent answered, system notices, and agents' internal notes (never shown to the user)."""

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(128), index=True)
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoff_requests.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(_choice(MESSAGE_KINDS, "message_kind"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("desk_users.id"))
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict | None] = mapped_column(JSON)  # type: ignore[type-arg]  # buttons, metadata
    client_id: Mapped[str | None] = mapped_column(String(64))  # the sender's message id: a retry is stored once
    reply_to: Mapped[int | None] = mapped_column(Integer, index=True)  # the user message a bot reply answers
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str | None] = mapped_column(String(32))
    # Outgoing messages of channels that deliver through an API (WeChat): pending → sending → sent | failed.
    # None for everything else (the web chat reads messages from here itself).
    delivery: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    delivery_error: Mapped[str | None] = mapped_column(String(200))


Index("ix_chat_messages_delivery", ChatMessage.delivery, ChatMessage.next_attempt_at)
PUSH_CHANNELS = ("wechat",)  # channels whose replies the outbox delivers through the channel's API
OUTGOING_KINDS = ("bot", "agent", "system")


@event.listens_for(ChatMessage, "before_insert")
def _queue_for_delivery(_mapper: object, _connection: object, message: ChatMessage) -> None:
    if message.delivery is None and message.channel in PUSH_CHANNELS and message.kind in OUTGOING_KINDS:
        message.delivery = "pending"


class BlacklistEntry(Base):
    __tablename__ = "desk_blacklist"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(160), index=True)  # channel:channel_user_id
    reason: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None]  # None: permanent
    created_by: Mapped[int | None] = mapped_column(ForeignKey("desk_users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowUp(Base):
    """A message taken outside business hours (or when nobody can answer): a person calls or writes back."""

    __tablename__ = "follow_ups"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(24), unique=True)
    handoff_id: Mapped[int | None] = mapped_column(ForeignKey("handoff_requests.id", ondelete="SET NULL"))
    conversation_id: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    contact_phone: Mapped[str | None] = mapped_column(String(11))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
