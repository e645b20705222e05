"""Initial schema: calls and transcripts, booking domain, administration.

Written by hand to mirror app/storage/models.py; tests/unit/test_storage.py compares the
migrated database against the models so the two cannot drift.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("ingress", sa.String(32), nullable=False),
        sa.Column("caller_number", sa.String(64), nullable=True),
        sa.Column("called_number", sa.String(64), nullable=True),
        sa.Column("stream_sid", sa.String(64), nullable=True),
        _ts("started_at", nullable=False),
        _ts("answered_at"),
        _ts("ended_at"),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("greeting_ms", sa.Float(), nullable=True),
        sa.Column("meta", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("call_sid", name=op.f("uq_calls_call_sid")),
    )
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_outcome", "calls", ["outcome"])
    op.create_index("ix_calls_caller_number", "calls", ["caller_number"])

    op.create_table(
        "turns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("speaker", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("heard_text", sa.Text(), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        _ts("started_at"),
        _ts("ended_at"),
        sa.Column("timings", JSONType, nullable=False),
        sa.Column("tools", JSONType, nullable=False),
        sa.Column("dtmf", sa.String(64), nullable=True),
        sa.CheckConstraint("speaker IN ('caller', 'bot')", name=op.f("ck_turns_speaker")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_turns_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_turns")),
        sa.UniqueConstraint("call_id", "seq", name=op.f("uq_turns_call_id_seq")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Trigram index so the dashboard's "search in transcripts" (ILIKE '%…%') stays fast on
        # big tables. pg_trgm may be unavailable or forbidden (managed Postgres without
        # privileges): then the search still works, just by scanning.
        op.execute(
            """
            DO $$
            BEGIN
                CREATE EXTENSION IF NOT EXISTS pg_trgm;
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'pg_trgm unavailable, transcript search will scan';
            END
            $$;
            """
        )
        op.execute(
            """
            DO $$
            BEGIN
                IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                    CREATE INDEX ix_turns_text_trgm ON turns USING gin (text gin_trgm_ops);
                END IF;
            END
            $$;
            """
        )

    op.create_table(
        "stream_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=True),
        sa.Column("stream_sid", sa.String(64), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("received_at", nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_events")),
    )
    op.create_index("ix_stream_events_call_sid", "stream_events", ["call_sid"])

    op.create_table(
        "offices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("hours", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offices")),
        sa.UniqueConstraint("code", name=op.f("uq_offices_code")),
    )

    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("duration_min", sa.Integer(), nullable=False),
        sa.Column("fee_text", sa.String(200), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("code", name=op.f("uq_services_code")),
    )

    op.create_table(
        "slots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("office_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=True),
        _ts("starts_at", nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.CheckConstraint("capacity >= 1", name=op.f("ck_slots_capacity_positive")),
        sa.CheckConstraint(
            "booked >= 0 AND booked <= capacity", name=op.f("ck_slots_booked_within_capacity")
        ),
        sa.ForeignKeyConstraint(
            ["office_id"], ["offices.id"], name=op.f("fk_slots_office_id_offices")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_slots_service_id_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slots")),
        sa.UniqueConstraint(
            "office_id",
            "service_id",
            "starts_at",
            name=op.f("uq_slots_office_id_service_id_starts_at"),
        ),
    )
    op.create_index("ix_slots_starts_at", "slots", ["starts_at"])
    op.create_index(
        "uq_slots_office_id_starts_at_any_service",
        "slots",
        ["office_id", "starts_at"],
        unique=True,
        sqlite_where=sa.text("service_id IS NULL"),
        postgresql_where=sa.text("service_id IS NULL"),
    )

    op.create_table(
        "bookings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("office_id", sa.Integer(), nullable=False),
        sa.Column("citizen_name", sa.String(200), nullable=False),
        sa.Column("cedula", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.CheckConstraint(
            "status IN ('confirmed', 'cancelled', 'rescheduled')", name=op.f("ck_bookings_status")
        ),
        sa.ForeignKeyConstraint(["slot_id"], ["slots.id"], name=op.f("fk_bookings_slot_id_slots")),
        sa.ForeignKeyConstraint(
            ["service_id"], ["services.id"], name=op.f("fk_bookings_service_id_services")
        ),
        sa.ForeignKeyConstraint(
            ["office_id"], ["offices.id"], name=op.f("fk_bookings_office_id_offices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
        sa.UniqueConstraint("code", name=op.f("uq_bookings_code")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_bookings_idempotency_key")),
    )
    op.create_index("ix_bookings_slot_id", "bookings", ["slot_id"])
    op.create_index("ix_bookings_cedula", "bookings", ["cedula"])
    op.create_index("ix_bookings_phone", "bookings", ["phone"])
    op.create_index(
        "uq_bookings_cedula_service_id_confirmed",
        "bookings",
        ["cedula", "service_id"],
        unique=True,
        sqlite_where=sa.text("status = 'confirmed'"),
        postgresql_where=sa.text("status = 'confirmed'"),
    )

    op.create_table(
        "system_prompts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_prompts")),
        sa.UniqueConstraint("version", name=op.f("uq_system_prompts_version")),
    )
    op.create_index(
        "uq_system_prompts_active",
        "system_prompts",
        ["active"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at", nullable=False),
        sa.CheckConstraint("role IN ('admin', 'agent', 'citizen')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("at", nullable=False),
        sa.Column("actor", sa.String(320), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("details", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "knowledge_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=True),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_documents")),
        sa.UniqueConstraint("path", name=op.f("uq_knowledge_documents_path")),
    )


def downgrade() -> None:
    op.drop_table("knowledge_documents")
    op.drop_table("audit_log")
    op.drop_table("users")
    op.drop_index("uq_system_prompts_active", table_name="system_prompts")
    op.drop_table("system_prompts")
    op.drop_table("bookings")
    op.drop_table("slots")
    op.drop_table("services")
    op.drop_table("offices")
    op.drop_table("stream_events")
    op.execute("DROP INDEX IF EXISTS ix_turns_text_trgm")
    op.drop_table("turns")
    op.drop_table("calls")
