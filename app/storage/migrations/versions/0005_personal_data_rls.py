"""Agents read callers' personal data only through the TAINA API (issue 13).

Migration 0002 let an agent's Supabase JWT read ``calls``, ``turns`` and ``bookings`` directly
(PostgREST with the project's anon key), and 0004 likewise ``call_notes``. Those rows hold
cédulas and phone numbers in clear — in the caller's words, keyed digits, tool arguments, the
booking itself, a note quoting them — which the API masks for agents
(``app/personal_data.py``). Reading the tables directly would skip that masking, so these
policies now admit admins only; agents (whose dashboard only ever calls the API) keep reading
everything through it, masked. Tags (``call_tags``) hold no personal data and stay readable.

PostgreSQL only (SQLite has no roles); on a database where 0002/0004 could not create their
policies (no Supabase roles or auth functions), there is nothing to drop.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AGENT_READ_DROPPED = ("calls", "turns", "bookings")  # policy taina_agent_read (0002)
APP_ROLE = "(SELECT public.taina_jwt_role())"


def _ready(bind: sa.Connection) -> bool:
    """Whether 0002's role function and the ``authenticated`` role exist (policies to change)."""
    return bool(
        bind.execute(
            sa.text(
                "SELECT to_regprocedure('public.taina_jwt_role()') IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated')"
            )
        ).scalar()
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in AGENT_READ_DROPPED:
        op.execute(f"DROP POLICY IF EXISTS taina_agent_read ON public.{table}")
    op.execute("DROP POLICY IF EXISTS taina_staff_read ON public.call_notes")
    if _ready(bind):
        op.execute(
            "CREATE POLICY taina_admin_read ON public.call_notes FOR SELECT TO authenticated "
            f"USING ({APP_ROLE} = 'admin')"
        )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP POLICY IF EXISTS taina_admin_read ON public.call_notes")
    if not _ready(bind):
        return
    for table in AGENT_READ_DROPPED:
        op.execute(
            f"CREATE POLICY taina_agent_read ON public.{table} FOR SELECT TO authenticated "
            f"USING ({APP_ROLE} = 'agent')"
        )
    op.execute(
        "CREATE POLICY taina_staff_read ON public.call_notes FOR SELECT TO authenticated "
        f"USING ({APP_ROLE} IN ('admin', 'agent'))"
    )
