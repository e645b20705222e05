"""Row-level security for Supabase (and any PostgreSQL): admins read everything, a citizen
only their own rows, the server itself is unaffected.

Who owns a row: ``calls.citizen_user_id`` and ``bookings.citizen_user_id`` hold the Supabase
Auth user id (``auth.uid()``, a UUID in canonical lower-case text) of the citizen the row
belongs to, when one is known; ``users.auth_user_id`` links a profile to its Supabase user.
These columns exist on both backends so the schema stays one; everything else here is
PostgreSQL only (SQLite has no roles and no RLS).

The policies read the caller's JWT the way Supabase's PostgREST exposes it: ``auth.jwt()``
(the claims) and ``auth.uid()`` (``sub``). The TAINA role is ``app_metadata.role`` or a
``user_role`` claim. On a plain PostgreSQL without Supabase's ``auth`` schema, a minimal shim
of those two functions is created (and removed by the downgrade); on Supabase the real ones
are used. Roles ``anon``, ``authenticated`` and ``service_role`` are created NOLOGIN when
missing, as Supabase has them.

The server connects as the tables' owner, which RLS does not restrict (no FORCE), so calls
and the admin API work as before; ``service_role`` gets an explicit allow-all policy as well
as BYPASSRLS where we can grant it. Writes by ``anon``/``authenticated`` have no policy and
are therefore refused: all writes go through the server.

Nothing here may stop the server from starting on a managed PostgreSQL with fewer rights:
missing privileges (create role, create schema) downgrade to a NOTICE and RLS is still enabled,
which then denies everyone but the owner.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("anon", "authenticated", "service_role")
SHIM_MARKER = "taina shim of Supabase auth.jwt()/auth.uid(); dropped by migration 0002 downgrade"

# Every table of the app: RLS on all of them, since on Supabase any table in ``public`` without
# RLS is readable by anyone holding the project's anon key.
TABLES = (
    "calls",
    "turns",
    "stream_events",
    "offices",
    "services",
    "slots",
    "bookings",
    "system_prompts",
    "users",
    "audit_log",
    "knowledge_documents",
    "alembic_version",
)
ADMIN_READ = TABLES[:-1]
# Agents work the dashboard: calls, transcripts, bookings, prompts and documents, not the
# user list or the audit log.
AGENT_READ = ("calls", "turns", "bookings", "system_prompts", "knowledge_documents")
# The office catalogue is public information (addresses, services, free slots).
PUBLIC_READ = ("offices", "services", "slots")
USER_COLUMNS = "id, email, role, created_at, auth_user_id"  # not password_hash

APP_ROLE = "(SELECT public.taina_jwt_role())"
UID = "(SELECT auth.uid())::text"
OWN_ROWS = {
    "calls": f"citizen_user_id = {UID}",
    "bookings": f"citizen_user_id = {UID}",
    "users": f"auth_user_id = {UID}",
    "turns": (
        "EXISTS (SELECT 1 FROM public.calls c "
        f"WHERE c.id = turns.call_id AND c.citizen_user_id = {UID})"
    ),
}


def upgrade() -> None:
    op.add_column("calls", sa.Column("citizen_user_id", sa.String(36), nullable=True))
    op.create_index("ix_calls_citizen_user_id", "calls", ["citizen_user_id"])
    op.add_column("bookings", sa.Column("citizen_user_id", sa.String(36), nullable=True))
    op.create_index("ix_bookings_citizen_user_id", "bookings", ["citizen_user_id"])
    op.add_column("users", sa.Column("auth_user_id", sa.String(36), nullable=True))
    op.create_index("uq_users_auth_user_id", "users", ["auth_user_id"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        _postgres_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_downgrade()
    op.drop_index("uq_users_auth_user_id", table_name="users")
    op.drop_column("users", "auth_user_id")
    op.drop_index("ix_bookings_citizen_user_id", table_name="bookings")
    op.drop_column("bookings", "citizen_user_id")
    op.drop_index("ix_calls_citizen_user_id", table_name="calls")
    op.drop_column("calls", "citizen_user_id")


# --- PostgreSQL -------------------------------------------------------------------------------


def _postgres_upgrade() -> None:
    bind = op.get_bind()
    _create_roles()
    _create_auth_shim_if_missing()
    roles = _existing_roles(bind)
    has_auth = bool(
        bind.execute(
            sa.text(
                "SELECT to_regprocedure('auth.jwt()') IS NOT NULL "
                "AND to_regprocedure('auth.uid()') IS NOT NULL"
            )
        ).scalar()
    )
    if has_auth:
        op.execute(
            """
            CREATE OR REPLACE FUNCTION public.taina_jwt_role() RETURNS text
            LANGUAGE sql STABLE SET search_path = '' AS $$
                SELECT coalesce(
                    auth.jwt() -> 'app_metadata' ->> 'role',
                    auth.jwt() ->> 'user_role',
                    ''
                )
            $$
            """
        )
        op.execute(
            "COMMENT ON FUNCTION public.taina_jwt_role() IS "
            "'TAINA role of the caller''s JWT (app_metadata.role or user_role), for RLS'"
        )

    api_roles = [r for r in ("anon", "authenticated") if r in roles]
    if api_roles:
        op.execute(f"GRANT USAGE ON SCHEMA public TO {', '.join(api_roles)}")
    for table in TABLES:
        op.execute(f"ALTER TABLE public.{table} ENABLE ROW LEVEL SECURITY")
        if table == "users" and api_roles:
            # Never the password hashes of local accounts, not even to an admin's JWT. Supabase
            # grants ALL on new tables to the API roles by default: take that back first, or
            # the column grant would change nothing.
            op.execute(f"REVOKE ALL ON public.users FROM {', '.join(api_roles)}")
            op.execute(f"GRANT SELECT ({USER_COLUMNS}) ON public.users TO {', '.join(api_roles)}")
        elif table != "alembic_version" and api_roles:
            op.execute(f"GRANT SELECT ON public.{table} TO {', '.join(api_roles)}")
        if "service_role" in roles:
            op.execute(f"GRANT ALL ON public.{table} TO service_role")
            op.execute(
                f"CREATE POLICY taina_service_all ON public.{table} FOR ALL TO service_role "
                "USING (true) WITH CHECK (true)"
            )
    if "service_role" in roles:
        op.execute("GRANT USAGE ON SCHEMA public TO service_role")
        op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO service_role")

    if not has_auth or "authenticated" not in roles:
        op.execute(
            "DO $$ BEGIN RAISE NOTICE 'TAINA RLS: auth functions or roles unavailable; "
            "tables are closed to everyone but their owner'; END $$"
        )
        return
    for table in ADMIN_READ:
        _policy(table, "taina_admin_read", "authenticated", f"{APP_ROLE} = 'admin'")
    for table in AGENT_READ:
        _policy(table, "taina_agent_read", "authenticated", f"{APP_ROLE} = 'agent'")
    for table, condition in OWN_ROWS.items():
        _policy(table, "taina_citizen_own", "authenticated", condition)
    for table in PUBLIC_READ:
        _policy(table, "taina_public_read", ", ".join(api_roles), "true")


def _policy(table: str, name: str, roles: str, using: str) -> None:
    op.execute(f"CREATE POLICY {name} ON public.{table} FOR SELECT TO {roles} USING ({using})")


def _existing_roles(bind: sa.Connection) -> set[str]:
    rows = bind.execute(
        sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"),
        {"names": list(ROLES)},
    )
    return {r[0] for r in rows}


def _create_roles() -> None:
    """Roles are cluster-wide: another database (or a concurrent migration) may create them
    first, and a non-superuser may not be allowed to; neither is an error."""
    for role in ROLES:
        options = "NOLOGIN NOINHERIT"
        bypass = "ALTER ROLE service_role BYPASSRLS;" if role == "service_role" else ""
        op.execute(
            f"""
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {role} {options};
                    BEGIN
                        {bypass}
                    EXCEPTION WHEN insufficient_privilege THEN
                        RAISE NOTICE 'TAINA RLS: cannot grant BYPASSRLS to {role}';
                    END;
                END IF;
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN NULL;
                WHEN insufficient_privilege THEN
                    RAISE NOTICE 'TAINA RLS: cannot create role {role}';
            END
            $$
            """
        )


def _create_auth_shim_if_missing() -> None:
    """Supabase's ``auth.jwt()`` and ``auth.uid()``, reading the same settings PostgREST sets
    (``request.jwt.claims``), for a PostgreSQL that is not Supabase."""
    op.execute(
        f"""
        DO $do$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
                RETURN;
            END IF;
            CREATE SCHEMA auth;
            COMMENT ON SCHEMA auth IS '{SHIM_MARKER}';
            CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $f$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), ''),
                    '{{}}'
                )::jsonb
            $f$;
            CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
                )::uuid
            $f$;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
                GRANT USAGE ON SCHEMA auth TO anon;
            END IF;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
                GRANT USAGE ON SCHEMA auth TO authenticated;
            END IF;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
                GRANT USAGE ON SCHEMA auth TO service_role;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'TAINA RLS: cannot create the auth schema shim';
        END
        $do$
        """
    )


def _postgres_downgrade() -> None:
    bind = op.get_bind()
    roles = _existing_roles(bind)
    for table in TABLES:
        for name in (
            "taina_service_all",
            "taina_admin_read",
            "taina_agent_read",
            "taina_citizen_own",
            "taina_public_read",
        ):
            op.execute(f"DROP POLICY IF EXISTS {name} ON public.{table}")
        op.execute(f"ALTER TABLE public.{table} DISABLE ROW LEVEL SECURITY")
        # Without RLS a SELECT grant would expose every row through the Supabase API: take
        # back what the API roles could read. service_role (the server's own key) keeps its
        # access, as Supabase grants it by default.
        for role in ("anon", "authenticated"):
            if role in roles:
                op.execute(f"REVOKE ALL ON public.{table} FROM {role}")
    op.execute("DROP FUNCTION IF EXISTS public.taina_jwt_role()")
    marker = bind.execute(
        sa.text(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'auth'"
        )
    ).scalar()
    if marker == SHIM_MARKER:
        op.execute("DROP SCHEMA auth CASCADE")
    # The roles stay: they are cluster-wide, shared with every other database on the server
    # (and with Supabase itself), so one database's downgrade must not drop them.
