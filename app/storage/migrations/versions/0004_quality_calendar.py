"""Staff review of calls and bookings (issue 14): tags and notes on a call, and whether the
citizen came to the appointment.

- ``call_tags``: one row per (call, tag); the tag is a short free label ("respuesta
  incorrecta", "queja") that the quality report and the call list group by.
- ``call_notes``: free text by a staff member, kept with its author and time.
- ``bookings.attendance``: ``attended`` or ``no_show`` once staff mark it, NULL before. It is
  a separate column rather than a new ``status`` because attendance is a fact about a
  *confirmed* booking (the seat stays taken); ``status`` keeps meaning "is the seat held".

On PostgreSQL the new tables get row-level security like every other table (migration 0002):
the server (owner) is unaffected, ``service_role`` may do anything, admins and agents with a
Supabase JWT may read, nobody else.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_TABLES = ("call_tags", "call_notes")
ATTENDANCE_CHECK = "attendance IS NULL OR attendance IN ('attended', 'no_show')"


def upgrade() -> None:
    op.create_table(
        "call_tags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name="fk_call_tags_call_id_calls",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_call_tags"),
        sa.UniqueConstraint("call_id", "tag", name="uq_call_tags_call_id_tag"),
    )
    op.create_index("ix_call_tags_tag", "call_tags", ["tag"])
    op.create_table(
        "call_notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(320), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name="fk_call_notes_call_id_calls",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_call_notes"),
    )
    op.create_index("ix_call_notes_call_id", "call_notes", ["call_id"])
    op.add_column("bookings", sa.Column("attendance", sa.String(16), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # SQLite cannot add a CHECK to an existing table without rebuilding it (and the
        # bookings table carries partial indexes a rebuild would have to reproduce); there the
        # API is the only writer and validates the value itself.
        op.create_check_constraint("ck_bookings_attendance", "bookings", ATTENDANCE_CHECK)
        _postgres_rls()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ck_bookings_attendance", "bookings", type_="check")
    op.drop_column("bookings", "attendance")
    op.drop_index("ix_call_notes_call_id", table_name="call_notes")
    op.drop_table("call_notes")
    op.drop_index("ix_call_tags_tag", table_name="call_tags")
    op.drop_table("call_tags")


def _postgres_rls() -> None:
    bind = op.get_bind()
    roles = {
        r[0]
        for r in bind.execute(
            sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"),
            {"names": ["anon", "authenticated", "service_role"]},
        )
    }
    has_role_fn = bool(
        bind.execute(
            sa.text("SELECT to_regprocedure('public.taina_jwt_role()') IS NOT NULL")
        ).scalar()
    )
    for table in NEW_TABLES:
        op.execute(f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY")
        if "service_role" in roles:
            op.execute(f"GRANT ALL ON public.{table} TO service_role")
            op.execute(
                f"CREATE POLICY taina_service_all ON public.{table} FOR ALL TO service_role "
                "USING (true) WITH CHECK (true)"
            )
        if "authenticated" in roles and has_role_fn:
            op.execute(f"GRANT SELECT ON public.{table} TO authenticated")
            op.execute(
                f"CREATE POLICY taina_staff_read ON public.{table} FOR SELECT TO authenticated "
                "USING ((SELECT public.taina_jwt_role()) IN ('admin', 'agent'))"
            )
