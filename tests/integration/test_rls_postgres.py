"""Row-level security (migration 0002) on the real PostgreSQL, with role switching.

Each check runs in a transaction that does what Supabase's PostgREST does for a request:
``SET LOCAL ROLE authenticated`` (or ``anon``) and the caller's JWT claims in
``request.jwt.claims``. The server's own connection (the tables' owner) must stay unaffected.

Set ``TEST_DATABASE_URL`` (e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) to run;
its database is only used to create uniquely named scratch databases, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.live_events import asyncpg_dsn
from app.storage import CallRepository, Database
from tests.integration.pg_scratch import scratch_database

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="TEST_DATABASE_URL is not set: PostgreSQL row-level-security tests skipped "
    "(e.g. TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test)",
)

ADMIN = str(uuid.uuid4())
AGENT = str(uuid.uuid4())
ANA = str(uuid.uuid4())  # a citizen
BETO = str(uuid.uuid4())  # another citizen
NOBODY = str(uuid.uuid4())  # signed in, owns nothing

SENSITIVE = (
    "calls",
    "turns",
    "bookings",
    "users",
    "audit_log",
    "system_prompts",
    "knowledge_documents",
    "stream_events",
)


def jwt_claims(sub: str, role: str | None = None, *, hook_role: str | None = None) -> dict:
    claims: dict[str, Any] = {
        "sub": sub,
        "aud": "authenticated",
        "role": "authenticated",
        "app_metadata": {"provider": "email", **({"role": role} if role else {})},
    }
    if hook_role:
        claims["user_role"] = hook_role
    return claims


async def _admin_exec(statement: str) -> None:
    assert TEST_DATABASE_URL
    conn = await asyncpg.connect(asyncpg_dsn(TEST_DATABASE_URL))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def scratch_db() -> Iterator[str]:
    with scratch_database("taina_rls") as url:
        yield url


SEED = f"""
INSERT INTO calls (call_sid, ingress, started_at, meta, citizen_user_id) VALUES
    ('CA-ana-1', 'twilio', now(), '{{}}', '{ANA}'),
    ('CA-ana-2', 'web', now(), '{{}}', '{ANA}'),
    ('CA-beto-1', 'twilio', now(), '{{}}', '{BETO}'),
    ('CA-anon-1', 'twilio', now(), '{{}}', NULL);
INSERT INTO turns (call_id, seq, speaker, text, interrupted, timings, tools)
    SELECT id, 0, 'bot', 'Bienvenido, ' || call_sid, false, '{{}}', '[]' FROM calls;
INSERT INTO stream_events (call_sid, event, received_at, payload)
    VALUES ('CA-ana-1', 'start', now(), '{{}}');
INSERT INTO offices (code, name, address, city, hours)
    VALUES ('SD', 'Oficina Centro', 'Av. 27 de Febrero', 'Santo Domingo', '{{}}');
INSERT INTO services (code, name, duration_min) VALUES ('cedula', 'Cédula', 20);
INSERT INTO slots (office_id, service_id, starts_at, capacity, booked)
    SELECT o.id, s.id, now() + interval '1 day', 5, 3 FROM offices o, services s;
INSERT INTO bookings (code, slot_id, service_id, office_id, citizen_name, cedula, status,
                      created_at, updated_at, citizen_user_id)
    SELECT v.code, sl.id, sl.service_id, sl.office_id, v.name, v.cedula, 'confirmed',
           now(), now(), v.owner
    FROM slots sl, (VALUES ('BK-ANA', 'Ana Pérez', '001-0000001-1', '{ANA}'),
                           ('BK-BETO', 'Beto Núñez', '001-0000002-2', '{BETO}'),
                           ('BK-PHONE', 'Carla Díaz', '001-0000003-3', NULL))
         AS v(code, name, cedula, owner);
INSERT INTO users (email, password_hash, role, created_at, auth_user_id) VALUES
    ('admin@taina.do', '$argon2id$secret', 'admin', now(), '{ADMIN}'),
    ('agente@taina.do', NULL, 'agent', now(), '{AGENT}'),
    ('ana@correo.do', NULL, 'citizen', now(), '{ANA}'),
    ('beto@correo.do', NULL, 'citizen', now(), '{BETO}');
INSERT INTO audit_log (at, actor, action, target, details)
    VALUES (now(), 'admin@taina.do', 'prompt.activate', '2', '{{}}');
INSERT INTO system_prompts (version, text, created_at, active)
    VALUES (1, 'Usted es TAINA.', now(), true);
INSERT INTO knowledge_documents (path, sha256, updated_at) VALUES ('horarios.md', 'abc', now());
"""


async def _migrate_and_seed(url: str) -> None:
    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.dispose()
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(SEED)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def seeded(scratch_db: str) -> str:
    """Migrated to head by the app's own code path, then seeded as the owner (the server)."""
    asyncio.run(_migrate_and_seed(scratch_db))
    return scratch_db


@pytest.fixture
async def pg(seeded: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(seeded))
    yield conn
    await conn.close()


@asynccontextmanager
async def acting_as(
    conn: asyncpg.Connection, role: str, claims: dict | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """What PostgREST does per request; rolled back so nothing leaks between checks."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"SET LOCAL ROLE {role}")
        if claims is not None:
            await conn.execute(
                "SELECT set_config('request.jwt.claims', $1, true)", json.dumps(claims)
            )
        yield conn
    finally:
        await tx.rollback()


async def column(conn: asyncpg.Connection, sql: str) -> list[Any]:
    return sorted(r[0] for r in await conn.fetch(sql))


async def count(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


# --- reads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [jwt_claims(ADMIN, "admin"), jwt_claims(ADMIN, hook_role="admin")],
    ids=["app_metadata.role", "user_role claim"],
)
async def test_admin_reads_everything(pg: asyncpg.Connection, claims: dict) -> None:
    owner_counts = {t: await count(pg, t) for t in SENSITIVE}
    assert all(owner_counts.values())
    async with acting_as(pg, "authenticated", claims) as c:
        for table in SENSITIVE:
            assert await count(c, table) == owner_counts[table], table
        assert await column(c, "SELECT call_sid FROM calls") == [
            "CA-ana-1",
            "CA-ana-2",
            "CA-anon-1",
            "CA-beto-1",
        ]


@pytest.mark.parametrize(
    ("sub", "calls", "bookings", "email"),
    [
        (ANA, ["CA-ana-1", "CA-ana-2"], ["BK-ANA"], "ana@correo.do"),
        (BETO, ["CA-beto-1"], ["BK-BETO"], "beto@correo.do"),
    ],
    ids=["ana", "beto"],
)
async def test_a_citizen_reads_only_their_own_rows(
    pg: asyncpg.Connection, sub: str, calls: list, bookings: list, email: str
) -> None:
    async with acting_as(pg, "authenticated", jwt_claims(sub, "citizen")) as c:
        assert await column(c, "SELECT call_sid FROM calls") == calls
        assert await column(c, "SELECT text FROM turns") == [f"Bienvenido, {s}" for s in calls]
        assert await column(c, "SELECT code FROM bookings") == bookings
        assert await column(c, "SELECT email FROM users") == [email]
        for table in ("audit_log", "system_prompts", "knowledge_documents", "stream_events"):
            assert await count(c, table) == 0, table


async def test_a_citizen_without_a_role_claim_still_sees_only_their_rows(
    pg: asyncpg.Connection,
) -> None:
    async with acting_as(pg, "authenticated", jwt_claims(ANA)) as c:
        assert await column(c, "SELECT call_sid FROM calls") == ["CA-ana-1", "CA-ana-2"]
    async with acting_as(pg, "authenticated", jwt_claims(NOBODY)) as c:
        for table in SENSITIVE:
            assert await count(c, table) == 0, table


async def test_an_agent_reads_operations_but_not_users_or_audit(pg: asyncpg.Connection) -> None:
    async with acting_as(pg, "authenticated", jwt_claims(AGENT, "agent")) as c:
        # Calls, turns and bookings hold cédulas and phone numbers in clear: agents read them
        # only through the API, which masks them (migration 0005, app/personal_data.py).
        assert await count(c, "calls") == 0
        assert await count(c, "turns") == 0
        assert await count(c, "bookings") == 0
        assert await count(c, "system_prompts") == 1
        assert await count(c, "audit_log") == 0
        assert await column(c, "SELECT email FROM users") == ["agente@taina.do"]  # own profile


async def test_anon_sees_nothing_but_the_public_catalogue(pg: asyncpg.Connection) -> None:
    async with acting_as(pg, "anon", {"role": "anon"}) as c:
        for table in SENSITIVE:
            assert await count(c, table) == 0, table
        assert await column(c, "SELECT code FROM offices") == ["SD"]
        assert await count(c, "slots") == 1


async def test_a_forged_role_in_user_metadata_grants_nothing(pg: asyncpg.Connection) -> None:
    claims = jwt_claims(BETO, "citizen") | {"user_metadata": {"role": "admin"}}
    async with acting_as(pg, "authenticated", claims) as c:
        assert await column(c, "SELECT call_sid FROM calls") == ["CA-beto-1"]


# --- writes and columns -----------------------------------------------------------------------


async def test_api_roles_cannot_write(pg: asyncpg.Connection) -> None:
    for claims in (jwt_claims(ADMIN, "admin"), jwt_claims(ANA, "citizen")):
        async with acting_as(pg, "authenticated", claims) as c:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await c.execute(
                    "INSERT INTO calls (call_sid, ingress, started_at, meta) "
                    "VALUES ('CA-evil', 'web', now(), '{}')"
                )
        async with acting_as(pg, "authenticated", claims) as c:
            # No UPDATE policy: the row is invisible to UPDATE, nothing changes (or no grant).
            try:
                result = await c.execute("UPDATE bookings SET status = 'cancelled'")
            except asyncpg.InsufficientPrivilegeError:
                result = "UPDATE 0"
            assert result == "UPDATE 0"
    assert await pg.fetchval("SELECT count(*) FROM bookings WHERE status = 'cancelled'") == 0


async def test_password_hashes_are_not_readable_through_the_api_roles(
    pg: asyncpg.Connection,
) -> None:
    async with acting_as(pg, "authenticated", jwt_claims(ADMIN, "admin")) as c:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await c.fetch("SELECT password_hash FROM users")
    async with acting_as(pg, "authenticated", jwt_claims(ADMIN, "admin")) as c:
        assert len(await c.fetch("SELECT id, email, role FROM users")) == 4


async def test_service_role_bypasses_rls(pg: asyncpg.Connection) -> None:
    async with acting_as(pg, "service_role") as c:
        for table in SENSITIVE:
            assert await count(c, table) > 0, table
        await c.execute(
            "INSERT INTO calls (call_sid, ingress, started_at, meta) "
            "VALUES ('CA-service', 'web', now(), '{}')"
        )


async def test_the_server_itself_is_unaffected(seeded: str) -> None:
    db = Database(seeded)
    try:
        calls = CallRepository(db)
        await calls.start_call("CA-server-1", "twilio")
        got = await calls.get_call("CA-server-1")
        assert got is not None
        listed = await calls.list_calls(limit=100)
        assert {"CA-ana-1", "CA-beto-1", "CA-server-1"} <= {c.call_sid for c in listed}
    finally:
        await db.dispose()


# --- the migration itself ---------------------------------------------------------------------


async def _rls_state(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {
            "policies": await conn.fetchval(
                "SELECT count(*) FROM pg_policies WHERE policyname LIKE 'taina_%'"
            ),
            "rls_tables": await column(
                conn,
                "SELECT relname FROM pg_class WHERE relrowsecurity "
                "AND relnamespace = 'public'::regnamespace",
            ),
            "auth_schema": await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'"
            ),
            "role_fn": await conn.fetchval(
                "SELECT to_regprocedure('public.taina_jwt_role()') IS NOT NULL"
            ),
            "columns": await column(
                conn,
                "SELECT table_name || '.' || column_name FROM information_schema.columns "
                "WHERE column_name IN ('citizen_user_id', 'auth_user_id')",
            ),
            "roles": await column(
                conn,
                "SELECT rolname FROM pg_roles "
                "WHERE rolname IN ('anon', 'authenticated', 'service_role')",
            ),
        }
    finally:
        await conn.close()


async def test_migration_up_and_down() -> None:
    assert TEST_DATABASE_URL
    name = f"taina_rls_ud_{uuid.uuid4().hex[:12]}"
    await _admin_exec(f'CREATE DATABASE "{name}"')
    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    try:
        await db.migrate()
        assert await db.current_revision() == "0005"
        up = await _rls_state(url)
        assert up["policies"] > 0 and up["role_fn"] and up["auth_schema"] == 1
        assert {"calls", "turns", "bookings", "users", "audit_log", "alembic_version"} <= set(
            up["rls_tables"]
        )
        assert {"call_tags", "call_notes"} <= set(up["rls_tables"])  # migration 0004
        assert up["columns"] == [
            "bookings.citizen_user_id",
            "calls.citizen_user_id",
            "users.auth_user_id",
        ]
        assert up["roles"] == ["anon", "authenticated", "service_role"]

        await db.downgrade("0001")
        down = await _rls_state(url)
        assert down["policies"] == 0 and not down["role_fn"]
        assert down["rls_tables"] == [] and down["columns"] == []
        assert down["auth_schema"] == 0  # the shim we created is gone
        assert down["roles"] == up["roles"]  # cluster-wide: kept on purpose

        await db.migrate()  # and up again, cleanly
        assert (await _rls_state(url))["policies"] == up["policies"]
        await db.downgrade("base")
    finally:
        await db.dispose()
        await _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_an_existing_auth_schema_is_used_not_replaced() -> None:
    """On Supabase ``auth`` exists: the migration must neither touch it nor drop it."""
    assert TEST_DATABASE_URL
    name = f"taina_rls_sb_{uuid.uuid4().hex[:12]}"
    await _admin_exec(f'CREATE DATABASE "{name}"')
    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            """
            CREATE SCHEMA auth;
            CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS
                $$ SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb $$;
            CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS
                $$ SELECT (nullif(current_setting('request.jwt.claims', true), '')::jsonb
                           ->> 'sub')::uuid $$;
            CREATE TABLE auth.users (id uuid PRIMARY KEY);
            GRANT USAGE ON SCHEMA auth TO authenticated, anon;
            -- Supabase's default privileges: every new table fully granted to the API roles.
            ALTER DEFAULT PRIVILEGES IN SCHEMA public
                GRANT ALL ON TABLES TO anon, authenticated, service_role;
            """
        )
        db = Database(url)
        try:
            await db.migrate()
            await conn.execute(
                "INSERT INTO calls (call_sid, ingress, started_at, meta, citizen_user_id) "
                f"VALUES ('CA-1', 'web', now(), '{{}}', '{ANA}')"
            )
            async with acting_as(conn, "authenticated", jwt_claims(ANA)) as c:
                assert await column(c, "SELECT call_sid FROM calls") == ["CA-1"]
            async with acting_as(conn, "authenticated", jwt_claims(BETO)) as c:
                assert await count(c, "calls") == 0
            # Table-wide default grants do not open writes or the password hashes.
            async with acting_as(conn, "authenticated", jwt_claims(ANA, "admin")) as c:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await c.execute(
                        "INSERT INTO calls (call_sid, ingress, started_at, meta) "
                        "VALUES ('CA-evil', 'web', now(), '{}')"
                    )
            async with acting_as(conn, "authenticated", jwt_claims(ANA, "admin")) as c:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await c.fetch("SELECT password_hash FROM users")
            async with acting_as(conn, "authenticated", jwt_claims(ANA, "admin")) as c:
                assert await c.execute("DELETE FROM calls") == "DELETE 0"
            assert await conn.fetchval("SELECT count(*) FROM calls") == 1
            await db.downgrade("0001")
            assert await conn.fetchval("SELECT to_regclass('auth.users') IS NOT NULL")
        finally:
            await db.dispose()
    finally:
        await conn.close()
        await _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
