"""Storage layer against a real PostgreSQL server.

Set ``TEST_DATABASE_URL`` (e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) to run.
The URL's database is only used to create a uniquely named scratch database for this session,
which is dropped afterwards; each test migrates it up from empty and back down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.storage import CallRecorder, CallRepository, Database, TurnRecord
from tests.integration.pg_scratch import scratch_database
from tests.unit.test_storage import (
    booking_repo,
    first_slot,
    scenario_booking_flow,
    scenario_call_round_trip,
    scenario_cancel_frees_capacity,
    scenario_check_constraints,
    scenario_concurrent_capacity,
    scenario_concurrent_same_cedula,
    scenario_duplicate_cedula,
    scenario_idempotency_key,
    scenario_idempotent_writes,
    scenario_list_filters,
    scenario_migrations_up_down,
    scenario_recorder_survives_outage,
    scenario_reschedule_atomic,
    slot_counts,
)

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="TEST_DATABASE_URL is not set: PostgreSQL storage tests skipped "
    "(e.g. TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test)",
)

PARALLEL = 24  # concurrent booking attempts, each on its own connection


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    with scratch_database("taina_test") as url:
        yield url


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(pg_url, pool_size=PARALLEL + 2, max_overflow=4)
    await database.downgrade("base")  # whatever an earlier failed test left behind
    await database.migrate()
    yield database
    await database.downgrade("base")
    await database.dispose()


async def test_migrations_up_down(db: Database) -> None:
    await scenario_migrations_up_down(db)


async def test_transcript_search_has_trigram_index(db: Database) -> None:
    async with db.session() as s:
        has_trgm = (
            await s.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"))
        ).scalar()
        indexes = set(
            (
                await s.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'turns'"))
            ).scalars()
        )
    if not has_trgm:
        pytest.skip("pg_trgm is not available on this server")
    assert "ix_turns_text_trgm" in indexes


async def test_call_round_trip(db: Database) -> None:
    await scenario_call_round_trip(db)


async def test_idempotent_writes(db: Database) -> None:
    await scenario_idempotent_writes(db)


async def test_list_filters(db: Database) -> None:
    await scenario_list_filters(db)


async def test_booking_flow(db: Database) -> None:
    await scenario_booking_flow(db)


async def test_concurrent_capacity_on_separate_connections(db: Database) -> None:
    # Prove the pool really holds PARALLEL distinct server connections (one backend each),
    # so the booking attempts below run in parallel on the server, not one after another.
    barrier = asyncio.Barrier(PARALLEL)

    async def backend_pid() -> int:
        async with db.session() as s:
            pid = int((await s.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await barrier.wait()  # hold this connection until all are checked out
            return pid

    pids = await asyncio.gather(*(backend_pid() for _ in range(PARALLEL)))
    assert len(set(pids)) == PARALLEL
    await scenario_concurrent_capacity(db, attempts=PARALLEL)


async def test_conditional_update_is_atomic_across_open_transactions(db: Database) -> None:
    """The raw claim statement from PARALLEL transactions opened at the same moment."""
    repo = await booking_repo(db)
    slot_id = await first_slot(repo)
    barrier = asyncio.Barrier(PARALLEL)
    claim = text("UPDATE slots SET booked = booked + 1 WHERE id = :id AND booked < capacity")

    async def claimer() -> int:
        async with db.session(write=True) as s:
            await s.execute(text("SELECT 1"))  # transaction open on its own connection
            await barrier.wait()
            return (await s.execute(claim, {"id": slot_id})).rowcount

    results = await asyncio.gather(*(claimer() for _ in range(PARALLEL)))
    assert sorted(results) == [0] * (PARALLEL - 2) + [1, 1]
    assert await slot_counts(db, slot_id) == (2, 2)


async def test_concurrent_same_cedula(db: Database) -> None:
    await scenario_concurrent_same_cedula(db, attempts=12)


async def test_cancel_frees_capacity(db: Database) -> None:
    await scenario_cancel_frees_capacity(db)


async def test_reschedule_atomic(db: Database) -> None:
    await scenario_reschedule_atomic(db)


async def test_duplicate_cedula_refused(db: Database) -> None:
    await scenario_duplicate_cedula(db)


async def test_idempotency_key(db: Database) -> None:
    await scenario_idempotency_key(db)


async def test_check_constraints(db: Database) -> None:
    await scenario_check_constraints(db)


async def test_recorder_survives_simulated_outage(db: Database) -> None:
    await scenario_recorder_survives_outage(db)


class TcpProxy:
    """A loopback TCP proxy to the Postgres server that can be switched off: a real outage as
    the driver sees it (connections reset, new ones refused), without touching the server."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def _until(condition: Any) -> None:
    """Wait for a counter the recorder updates; it exposes no event for it, so poll."""
    async with asyncio.timeout(60):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_recorder_survives_real_connection_loss(db: Database, pg_url: str) -> None:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.up()
    via_proxy = Database(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        connect_args={"timeout": 5},
    )
    recorder = CallRecorder(CallRepository(via_proxy), backoff_initial_s=0.01, backoff_max_s=0.1)
    recorder.start()
    try:
        recorder.call_started("CA-PG-OUT", "twilio", caller_number="+18095555555")
        for seq in range(3):
            recorder.turn_ended("CA-PG-OUT", TurnRecord(seq=seq, speaker="bot", text=f"t{seq}"))
        async with asyncio.timeout(60):
            await recorder.flushed()

        await proxy.down()
        for seq in range(3, 10):
            recorder.turn_ended("CA-PG-OUT", TurnRecord(seq=seq, speaker="caller", text=f"t{seq}"))
        recorder.call_ended("CA-PG-OUT", end_reason="caller-hangup")
        await _until(lambda: recorder.retries >= 3)
        assert recorder.pending == 8  # everything since the outage is still held

        await proxy.up()
        async with asyncio.timeout(60):
            await recorder.flushed()
        assert recorder.dropped == 0
    finally:
        await recorder.stop(timeout=5)
        await via_proxy.dispose()
        if proxy._server is not None:
            await proxy.down()

    detail = await CallRepository(db).get_call("CA-PG-OUT")
    assert detail is not None
    assert [t.text for t in detail.turns] == [f"t{i}" for i in range(10)]
    assert detail.end_reason == "caller-hangup"
