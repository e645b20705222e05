"""Small SQL helpers that paper over the SQLite/Postgres differences the repositories meet."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func
from sqlalchemy.dialects import postgresql, sqlite

from app.storage.database import Database


def upsert(db: Database, table: Any) -> Any:
    """An INSERT that supports ``on_conflict_do_update`` / ``on_conflict_do_nothing``.

    Both dialects spell it the same way in SQLAlchemy; only the import differs.
    """
    if db.is_postgres:
        return postgresql.insert(table)
    if db.is_sqlite:
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {db.dialect!r}")


def contains_ci(db: Database, column: Any, needle: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, Unicode-aware on both backends (É matches é).

    Wildcards typed by a user (% and _) are escaped, so they match literally.
    """
    if db.is_sqlite:
        return func.taina_casefold(column).contains(needle.casefold(), autoescape=True)
    return column.icontains(needle, autoescape=True)
