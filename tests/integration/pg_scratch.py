"""Scratch PostgreSQL databases for tests, on the server ``TEST_DATABASE_URL`` names.

That URL's own database is only used to create a uniquely named database per test (or per
module / session) and to drop it afterwards (``WITH (FORCE)``: a server that did not close its
pool cannot keep it alive). One place for what several test files did by hand.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from sqlalchemy.engine import make_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


async def pg_admin(statement: str) -> None:
    """Run one statement (CREATE / DROP DATABASE) on ``TEST_DATABASE_URL``'s database."""
    import asyncpg

    assert TEST_DATABASE_URL
    url = make_url(TEST_DATABASE_URL)
    conn = await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        database=url.database,
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _scratch(prefix: str) -> tuple[str, str]:
    """A fresh database name and its SQLAlchemy URL (password kept: the app connects with it)."""
    assert TEST_DATABASE_URL, "TEST_DATABASE_URL is not set"
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    return name, url


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new database named ``<prefix>_<random>``, dropped on exit; for synchronous fixtures
    (it runs its own event loop, so not from inside a running one)."""
    name, url = _scratch(prefix)
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@asynccontextmanager
async def scratch_database_async(prefix: str) -> AsyncIterator[str]:
    """:func:`scratch_database` for async fixtures and tests (inside the running loop)."""
    name, url = _scratch(prefix)
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield url
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
