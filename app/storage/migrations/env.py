"""Alembic environment for TAINA.

Two ways in: ``Database.migrate()`` hands over an open connection through
``config.attributes["connection"]`` (the normal path, inside the app's own transaction);
the ``alembic`` command line gets an async engine built from the configured URL.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from app.storage.models import UNMANAGED_INDEXES, Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Keep autogenerate from proposing to drop indexes that only some backends get."""
    return not (type_ == "index" and name in UNMANAGED_INDEXES)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.settings import Settings

    return Settings().effective_database_url


async def _run_with_own_engine() -> None:
    from app.storage.database import Database

    db = Database(_url())
    try:
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(taina_write=True)
            async with conn.begin():
                await conn.run_sync(_configure_and_run)
    finally:
        await db.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    if config.config_file_name:
        fileConfig(config.config_file_name)
    asyncio.run(_run_with_own_engine())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
