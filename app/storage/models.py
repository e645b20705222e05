"""ORM tables of TAINA: one schema for SQLite (embedded default) and PostgreSQL/Supabase.

The initial Alembic migration (``migrations/versions/0001_initial.py``) spells out the same
tables by hand; a unit test compares the two so they can never drift apart. Table, column and
constraint names are a contract (admin API, RLS policies, ad-hoc SQL by operators): change them
only through a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable, predictable constraint names: Alembic downgrades and later migrations refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Indexes created by migrations only where the backend allows it (Postgres with pg_trgm); they
# are not modelled, so autogenerate and schema comparisons must ignore them.
UNMANAGED_INDEXES = frozenset({"ix_turns_text_trgm"})

# JSONB on Postgres (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    Postgres ``timestamptz`` does this natively; SQLite has no time zones and hands back naive
    values, which would silently compare wrong against aware ones. Naive input is rejected so a
    local wall-clock time can never be stored by mistake.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Stored as naive UTC text so lexical order equals time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- calls and transcripts --------------------------------------------------------------------


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_sid: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    ingress: Mapped[str] = mapped_column(String(32), nullable=False)
    caller_number: Mapped[str | None] = mapped_column(String(64))
    called_number: Mapped[str | None] = mapped_column(String(64))
    stream_sid: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32), index=True)
    greeting_ms: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    citizen_user_id: Mapped[str | None] = mapped_column(String(36), index=True)

    __table_args__ = (Index("ix_calls_caller_number", "caller_number"),)


class Turn(Base):
    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    speaker: Mapped[str] = mapped_column(String(16), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    heard_text: Mapped[str | None] = mapped_column(Text)
    interrupted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    timings: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    tools: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)
    dtmf: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # The unique constraint doubles as the (call_id, seq) lookup index and is the conflict
        # target that makes a retried turn write an upsert instead of a duplicate.
        UniqueConstraint("call_id", "seq"),
        CheckConstraint("speaker IN ('caller', 'bot')", name="speaker"),
    )


class CallTag(Base):
    """A staff label on a call ("respuesta incorrecta", "queja"), one row per call and tag."""

    __tablename__ = "call_tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), nullable=False)
    tag: Mapped[str] = mapped_column(String(40), nullable=False, index=True)
    created_by: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    __table_args__ = (UniqueConstraint("call_id", "tag"),)


class CallNote(Base):
    """A staff member's note on a call, kept with its author."""

    __tablename__ = "call_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), nullable=False, index=True
    )
    author: Mapped[str | None] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class StreamEvent(Base):
    """Twilio stream status callbacks, kept raw: they explain calls that never reached us."""

    __tablename__ = "stream_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    stream_sid: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)


# --- booking domain ---------------------------------------------------------------------------


class Office(Base):
    __tablename__ = "offices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    address: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    city: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    phone: Mapped[str | None] = mapped_column(String(64))
    hours: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)


class Service(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    duration_min: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    fee_text: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)


class Slot(Base):
    __tablename__ = "slots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), nullable=False)
    # NULL means the slot can be used for any service.
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    booked: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (
        UniqueConstraint("office_id", "service_id", "starts_at"),
        # NULLs are distinct in unique constraints on both backends, so "any service" slots
        # need their own partial index to stay unique per office and time.
        Index(
            "uq_slots_office_id_starts_at_any_service",
            "office_id",
            "starts_at",
            unique=True,
            sqlite_where=sql_text("service_id IS NULL"),
            postgresql_where=sql_text("service_id IS NULL"),
        ),
        CheckConstraint("capacity >= 1", name="capacity_positive"),
        # The last line of defence against double booking: even a buggy writer cannot push a
        # slot over its capacity.
        CheckConstraint("booked >= 0 AND booked <= capacity", name="booked_within_capacity"),
    )


class Booking(Base):
    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slots.id"), nullable=False, index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), nullable=False)
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), nullable=False)
    citizen_name: Mapped[str] = mapped_column(String(200), nullable=False)
    cedula: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    phone: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="confirmed")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    call_sid: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    citizen_user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # Marked by staff (migration 0004): 'attended' or 'no_show'; NULL until then.
    attendance: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint("status IN ('confirmed', 'cancelled', 'rescheduled')", name="status"),
        CheckConstraint(
            "attendance IS NULL OR attendance IN ('attended', 'no_show')", name="attendance"
        ),
        # One confirmed appointment per person and service, enforced by the database so two
        # concurrent calls from the same citizen cannot both book.
        Index(
            "uq_bookings_cedula_service_id_confirmed",
            "cedula",
            "service_id",
            unique=True,
            sqlite_where=sql_text("status = 'confirmed'"),
            postgresql_where=sql_text("status = 'confirmed'"),
        ),
    )


# --- administration ---------------------------------------------------------------------------


class SystemPrompt(Base):
    __tablename__ = "system_prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, unique=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        # At most one active prompt: a partial unique index over the rows where active is true.
        Index(
            "uq_system_prompts_active",
            "active",
            unique=True,
            sqlite_where=sql_text("active"),
            postgresql_where=sql_text("active"),
        ),
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="agent")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    auth_user_id: Mapped[str | None] = mapped_column(String(36))  # Supabase Auth user id

    __table_args__ = (
        CheckConstraint("role IN ('admin', 'agent', 'citizen')", name="role"),
        Index("uq_users_auth_user_id", "auth_user_id", unique=True),
    )


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)


class KnowledgeDocument(Base):
    __tablename__ = "knowledge_documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class RefreshToken(Base):
    """A dashboard session's renewal ticket (migration 0003).

    Only the SHA-256 of the token is stored: the raw value lives in the browser's httpOnly
    cookie, so a copy of the database cannot be replayed. Tokens of one sign-in share a
    ``family``; each use replaces the token (``used_at`` set, a new row inserted) and a token
    presented twice revokes its whole family (someone copied it). ``expires_at`` slides with
    use (the idle limit); ``family_expires_at`` is the sign-in's absolute limit.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    family: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    family_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
