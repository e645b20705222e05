"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL.

SQLite needs a little help to behave under concurrency: WAL so readers never block the writer,
a busy timeout so writers queue instead of failing, foreign keys switched on, and explicit
``BEGIN IMMEDIATE`` for write transactions. The last one matters: a deferred transaction that
reads and then writes can fail with "database is locked" no matter the busy timeout, because
SQLite cannot upgrade a stale read snapshot; taking the write lock up front avoids that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
_WRITE_OPTION = "taina_write"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config that needs no ini file, so migrations work from an installed wheel."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def async_url(url: str) -> str:
    """Accept the URLs people paste (Supabase shows ``postgresql://…``, Heroku-style
    ``postgres://…``, plain ``sqlite:///…``) and pick the async driver for them."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


class Database:
    """One engine per process; sessions are short and scoped to one unit of work."""

    def __init__(self, url: str, *, echo: bool = False, **engine_kw: Any) -> None:
        url = async_url(url)
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kw: dict[str, Any] = {"echo": echo, "pool_pre_ping": self.dialect != "sqlite"}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database in ("", ":memory:"):
                # One shared connection, or every session would see its own empty database.
                # Sessions must then not overlap: fine for scripts, not for a server.
                kw["poolclass"] = StaticPool
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kw["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        kw.update(engine_kw)
        self.engine: AsyncEngine = create_async_engine(url, **kw)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on exit, rolled back on error.

        Pass ``write=True`` for units of work that modify rows: on SQLite it takes the write
        lock at BEGIN (see the module docstring); on Postgres it changes nothing.
        """
        async with self._sessions() as session, session.begin():
            if write and self.is_sqlite:
                # Procures the connection with the option set, before BEGIN is emitted.
                await session.connection(execution_options={_WRITE_OPTION: True})
            yield session

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` (Alembic upgrade) in one transaction."""
        await self._run_alembic(command.upgrade, revision)

    async def downgrade(self, revision: str = "base") -> None:
        await self._run_alembic(command.downgrade, revision)

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )

    async def _run_alembic(self, fn: Any, revision: str) -> None:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**{_WRITE_OPTION: True})
            async with conn.begin():
                if self.is_postgres:
                    # Two processes starting on an empty database must not both migrate.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext('taina_migrate'))")
                    )
                await conn.run_sync(_alembic_on_connection, fn, revision)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _alembic_on_connection(sync_conn: Connection, fn: Any, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    fn(cfg, revision)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver: we emit BEGIN ourselves below.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()
        dbapi_conn.create_function("taina_casefold", 1, _casefold, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _casefold(value: str | None) -> str | None:
    """Unicode-aware lower-casing for SQLite, whose LIKE only folds ASCII ("CÉDULA")."""
    return value.casefold() if value is not None else None


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database is not reachable right now, try again later".

    Constraint violations and programming errors are not: retrying them would stall a queue
    forever.
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, OperationalError | InterfaceError):
            return True
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig.__cause__, "sqlstate", None)
        # 08: connection exception, 57P: server shutting down / starting up, 40: the server
        # rolled us back (serialization failure, deadlock); all worth retrying.
        if isinstance(sqlstate, str) and sqlstate.startswith(("08", "57P", "40")):
            return True
        return isinstance(orig, OSError | TimeoutError)
    return isinstance(exc, OSError | TimeoutError | ConnectionError)
