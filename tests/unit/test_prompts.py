"""Versioned system prompts in the database, with the built-in default as the safety net."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from app.prompts import DEFAULT_SYSTEM_PROMPT, PromptNotFound, PromptStore
from app.storage import Database
from pipeline.brain.tools import TOOL_SCHEMAS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyDatabase:
    """Delegates to a real Database until ``down`` is set, then fails like a lost server."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.down = False

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[Any]:
        if self.down:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("db down"))
        async with self.db.session(write=write) as s:
            yield s


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await database.migrate()
    yield database
    await database.dispose()


async def test_default_prompt_when_nothing_is_stored(db: Database) -> None:
    store = PromptStore(db)
    assert await store.active() == DEFAULT_SYSTEM_PROMPT
    assert await store.active_version() is None
    assert await store.list_versions() == []
    assert await PromptStore(None).active() == DEFAULT_SYSTEM_PROMPT


async def test_versions_are_created_inactive_and_activated(db: Database) -> None:
    store = PromptStore(db, cache_s=0)
    v1 = await store.create_version("Versión uno.", author="ana@oficina.do")
    v2 = await store.create_version("Versión dos.")
    assert (v1, v2) == (1, 2)
    assert await store.active() == DEFAULT_SYSTEM_PROMPT  # creating is not activating

    await store.activate(v2)
    assert await store.active() == "Versión dos."
    await store.activate(v1)
    assert await store.active() == "Versión uno."
    versions = await store.list_versions()
    assert [(v.version, v.active, v.created_by) for v in versions] == [
        (2, False, None),
        (1, True, "ana@oficina.do"),
    ]
    assert versions[0].created_at.tzinfo is not None


async def test_rollback_activates_the_previous_version(db: Database) -> None:
    store = PromptStore(db, cache_s=0)
    for text in ("Uno.", "Dos.", "Tres."):
        await store.create_version(text, author="admin")
    with pytest.raises(PromptNotFound):
        await store.rollback()  # nothing active yet
    await store.activate(3)
    assert await store.rollback() == 2
    assert await store.active() == "Dos."
    assert await store.rollback() == 1
    with pytest.raises(PromptNotFound):
        await store.rollback()
    assert await store.active_version() == 1


async def test_activating_an_unknown_version_changes_nothing(db: Database) -> None:
    store = PromptStore(db, cache_s=0)
    await store.activate(await store.create_version("Uno."))
    with pytest.raises(PromptNotFound):
        await store.activate(7)
    assert await store.active() == "Uno."


async def test_use_default_deactivates_every_version(db: Database) -> None:
    store = PromptStore(db, cache_s=0)
    await store.activate(await store.create_version("Uno."))
    await store.use_default()
    assert await store.active() == DEFAULT_SYSTEM_PROMPT
    assert await store.active_version() is None


async def test_empty_prompt_is_refused(db: Database) -> None:
    with pytest.raises(ValueError):
        await PromptStore(db).create_version("   \n")


async def test_concurrent_saves_get_distinct_versions(db: Database) -> None:
    store = PromptStore(db)
    versions = await asyncio.gather(*(store.create_version(f"P{i}.") for i in range(5)))
    assert sorted(versions) == [1, 2, 3, 4, 5]


async def test_active_text_is_cached_for_a_few_seconds(db: Database) -> None:
    clock = Clock()
    calls = PromptStore(db, cache_s=5, clock=clock)  # what the calls read
    admin = PromptStore(db)  # another process: the admin API
    await admin.activate(await admin.create_version("Uno."))
    assert await calls.active() == "Uno."
    await admin.activate(await admin.create_version("Dos."))
    clock.now += 4
    assert await calls.active() == "Uno."  # still cached
    clock.now += 2
    assert await calls.active() == "Dos."


async def test_activation_through_the_same_store_is_seen_at_once(db: Database) -> None:
    store = PromptStore(db, cache_s=60, clock=Clock())
    assert await store.active() == DEFAULT_SYSTEM_PROMPT
    await store.activate(await store.create_version("Nuevo."))
    assert await store.active() == "Nuevo."


async def test_database_outage_keeps_the_last_known_prompt(db: Database) -> None:
    flaky = FlakyDatabase(db)
    store = PromptStore(flaky, cache_s=0)  # type: ignore[arg-type]
    await store.activate(await store.create_version("Editado por el admin."))
    assert await store.active() == "Editado por el admin."
    flaky.down = True
    assert await store.active() == "Editado por el admin."

    cold = PromptStore(flaky, cache_s=0)  # type: ignore[arg-type]
    assert await cold.active() == DEFAULT_SYSTEM_PROMPT


def test_default_prompt_is_spoken_spanish_and_names_real_tools() -> None:
    text = DEFAULT_SYSTEM_PROMPT
    assert "usted" in text.lower()
    assert "Markdown" in text  # it tells the model not to use it …
    assert not re.search(r"\*\*|^#|`", text, re.MULTILINE)  # … and uses none itself
    tool_names = {schema["function"]["name"] for schema in TOOL_SCHEMAS}
    mentioned = set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", text))
    assert mentioned, "the prompt should tell the model which tools to use"
    assert mentioned <= tool_names
    assert {"search_knowledge", "book_appointment", "end_call"} <= mentioned
