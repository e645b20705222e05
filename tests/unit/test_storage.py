"""Storage layer against SQLite in a temporary directory.

The ``scenario_*`` coroutines take a migrated ``Database`` and are reused verbatim by
tests/integration/test_storage_postgres.py, so both backends are held to the same behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from app.storage import (
    OFFICE_TZ,
    BookingNotActive,
    BookingRepository,
    CallRecorder,
    CallRepository,
    Database,
    DuplicateBooking,
    OfficeSpec,
    ServiceSpec,
    SlotFull,
    SlotUnavailable,
    TurnRecord,
    UnknownCall,
)
from app.storage.models import UNMANAGED_INDEXES, Base, Booking, Slot, SystemPrompt

# A fixed "now" (a Sunday) so slot generation and "is this slot in the past" are deterministic.
NOW = datetime(2030, 3, 3, 16, 0, tzinfo=UTC)
MONDAY = date(2030, 3, 4)
SATURDAY = date(2030, 3, 9)

OFFICES = [
    OfficeSpec(
        code="SD-CENTRO",
        name="Oficina Santo Domingo Centro",
        address="Av. 27 de Febrero 100",
        city="Santo Domingo",
        hours={"lunes a viernes": "8:00-16:00", "sábado": "8:00-12:00"},
    ),
    OfficeSpec(code="STI", name="Oficina Santiago", address="Calle del Sol 5", city="Santiago"),
]
SERVICES = [
    ServiceSpec(code="cedula", name="Renovación de cédula", duration_min=20, fee_text="RD$ 0"),
    ServiceSpec(code="pasaporte", name="Pasaporte", duration_min=30, fee_text="RD$ 2,800"),
]
APP_TABLES = {
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
}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'taina.db'}")
    await database.migrate()
    yield database
    await database.dispose()


async def booking_repo(db: Database) -> BookingRepository:
    repo = BookingRepository(db, clock=lambda: NOW)
    await repo.seed_catalog(OFFICES, SERVICES)
    await repo.ensure_slots(days_ahead=7, start_date=MONDAY)
    return repo


async def first_slot(repo: BookingRepository, office: str = "SD-CENTRO") -> int:
    slots = await repo.available_slots("cedula", office_code=office, day=MONDAY, limit=1)
    return slots[0].id


async def slot_counts(db: Database, slot_id: int) -> tuple[int, int]:
    async with db.session() as s:
        row = (await s.execute(select(Slot.booked, Slot.capacity).where(Slot.id == slot_id))).one()
    return int(row[0]), int(row[1])


def at(hour: int, minute: int = 0, day: date = MONDAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


# --- scenarios shared with the Postgres integration tests ---------------------------------------


async def scenario_migrations_up_down(db: Database) -> None:
    def tables(sync_conn: Any) -> set[str]:
        return set(inspect(sync_conn).get_table_names())

    def schema_diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(
            sync_conn,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, *_: (
                    not (type_ == "index" and name in UNMANAGED_INDEXES)
                ),
            },
        )
        return compare_metadata(ctx, Base.metadata)

    async with db.engine.connect() as conn:
        assert APP_TABLES <= await conn.run_sync(tables)
        # The hand-written migration and the ORM models describe the same schema.
        assert await conn.run_sync(schema_diff) == []
    assert await db.current_revision() == "0005"

    await db.downgrade("base")
    async with db.engine.connect() as conn:
        assert not (APP_TABLES & await conn.run_sync(tables))
    assert await db.current_revision() is None

    await db.migrate()
    assert await db.current_revision() == "0005"
    calls = CallRepository(db)
    await calls.start_call("CA-after-remigrate", "twilio", started_at=NOW)
    assert await calls.get_call("CA-after-remigrate") is not None


async def scenario_call_round_trip(db: Database) -> None:
    calls = CallRepository(db)
    await calls.start_call(
        "CA100",
        "twilio",
        caller_number="+18095551234",
        called_number="+18095550000",
        stream_sid="MZ1",
        started_at=at(14),
        meta={"account": "AC1"},
    )
    await calls.set_greeting_ms("CA100", 612.5)
    bot = TurnRecord(
        seq=0,
        speaker="bot",
        text="Bienvenido a la oficina. ¿En qué le puedo ayudar?",
        heard_text="Bienvenido a la oficina.",
        interrupted=True,
        started_at=at(14, 0),
        ended_at=at(14, 1),
        timings={"tts_first_audio_ms": 180.0, "first_byte_ms": 210.5},
    )
    caller = TurnRecord(
        seq=1,
        speaker="caller",
        text="Quiero renovar la cédula",
        started_at=at(14, 1),
        ended_at=at(14, 2),
        timings={"stt_ms": 320.0, "turn_latency_ms": 850.0},
        tools=[{"name": "check_availability", "args": {"service": "cedula"}, "ok": True}],
        dtmf="1#",
    )
    # Written out of order on purpose: reading orders by seq.
    await calls.add_turn("CA100", caller)
    await calls.add_turn("CA100", bot)
    await calls.end_call(
        "CA100", ended_at=at(14, 5), end_reason="caller-hangup", outcome="answered"
    )

    detail = await calls.get_call("CA100")
    assert detail is not None
    assert detail.ingress == "twilio" and detail.stream_sid == "MZ1"
    assert detail.meta == {"account": "AC1"}
    assert detail.greeting_ms == pytest.approx(612.5)
    assert detail.started_at == at(14) and detail.started_at.tzinfo is not None
    assert detail.ended_at == at(14, 5)
    assert detail.duration_s == 300.0
    assert detail.end_reason == "caller-hangup" and detail.outcome == "answered"
    assert [t.seq for t in detail.turns] == [0, 1]
    assert detail.turns[0] == bot
    assert detail.turns[1] == caller
    assert detail.turns[1].heard_text == "Quiero renovar la cédula"
    assert detail.turn_count == 2
    assert await calls.get_call("CA-unknown") is None
    with pytest.raises(UnknownCall):
        await calls.add_turn("CA-unknown", caller)
    with pytest.raises(UnknownCall):
        await calls.end_call("CA-unknown", end_reason="error")

    await calls.record_stream_event("CA100", "MZ1", "stream-error", error="31921", payload={"a": 1})
    events = await calls.list_stream_events("CA100")
    assert [(e.event, e.error, e.payload) for e in events] == [("stream-error", "31921", {"a": 1})]


async def scenario_idempotent_writes(db: Database) -> None:
    calls = CallRepository(db)
    first_id = await calls.start_call("CA200", "web", started_at=at(9))
    # A retried start keeps the row and fills in what was missing.
    assert await calls.start_call("CA200", "web", stream_sid="MZ9", started_at=at(9)) == first_id
    turn = TurnRecord(seq=3, speaker="bot", text="Un momento, por favor.", heard_text="Un mo")
    await calls.add_turn("CA200", turn)
    await calls.add_turn("CA200", turn)
    retried = TurnRecord(
        seq=3, speaker="bot", text="Un momento, por favor.", heard_text="Un momento"
    )
    await calls.add_turn("CA200", retried)
    detail = await calls.get_call("CA200")
    assert detail is not None and detail.stream_sid == "MZ9"
    assert len(detail.turns) == 1
    assert detail.turns[0].heard_text == "Un momento"
    # An outcome set during the call survives end_call without one.
    await calls.set_outcome("CA200", "booked")
    await calls.end_call("CA200", end_reason="bot-hangup")
    await calls.end_call("CA200", end_reason="bot-hangup")
    detail = await calls.get_call("CA200")
    assert detail is not None and detail.outcome == "booked" and detail.end_reason == "bot-hangup"


async def scenario_list_filters(db: Database) -> None:
    calls = CallRepository(db)
    await calls.start_call("CA-A", "twilio", caller_number="+18095551111", started_at=at(8))
    await calls.add_turn("CA-A", TurnRecord(seq=0, speaker="caller", text="Necesito mi CÉDULA"))
    await calls.end_call("CA-A", end_reason="caller-hangup", outcome="booked")
    await calls.start_call("CA-B", "web", caller_number=None, started_at=at(10))
    await calls.add_turn(
        "CA-B", TurnRecord(seq=0, speaker="caller", text="¿Cuánto cuesta el 100% del pasaporte?")
    )
    await calls.end_call("CA-B", end_reason="caller-hangup", outcome="answered")
    await calls.start_call("CA-C", "twilio", caller_number="829-555-2222", started_at=at(12))

    def sids(rows: list[Any]) -> list[str]:
        return [r.call_sid for r in rows]

    assert sids(await calls.list_calls()) == ["CA-C", "CA-B", "CA-A"]  # newest first
    assert sids(await calls.list_calls(limit=1, offset=1)) == ["CA-B"]
    assert sids(await calls.list_calls(since=at(9))) == ["CA-C", "CA-B"]
    assert sids(await calls.list_calls(since=at(9), until=at(12))) == ["CA-B"]
    assert sids(await calls.list_calls(ingress="twilio")) == ["CA-C", "CA-A"]
    assert sids(await calls.list_calls(outcome="booked")) == ["CA-A"]
    assert sids(await calls.list_calls(phone="809-555-1111")) == ["CA-A"]
    assert sids(await calls.list_calls(phone="8295552222")) == ["CA-C"]
    # Case-insensitive beyond ASCII: "cédula" finds "CÉDULA".
    assert sids(await calls.list_calls(text="cédula")) == ["CA-A"]
    assert sids(await calls.list_calls(text="PASAPORTE")) == ["CA-B"]
    # User wildcards are literal: "%" matches only the turn that contains a percent sign.
    assert sids(await calls.list_calls(text="%")) == ["CA-B"]
    assert await calls.list_calls(text="licencia") == []
    assert await calls.count_calls(ingress="twilio") == 2
    summary = (await calls.list_calls(text="cédula"))[0]
    assert summary.turn_count == 1 and summary.outcome == "booked"


async def scenario_booking_flow(db: Database) -> None:
    repo = await booking_repo(db)
    # Idempotent catalog and slot generation.
    await repo.seed_catalog(OFFICES, SERVICES)
    assert await repo.ensure_slots(days_ahead=7, start_date=MONDAY) == 0
    assert [o.code for o in await repo.list_offices()] == ["SD-CENTRO", "STI"]

    monday = await repo.available_slots("cedula", office_code="SD-CENTRO", day=MONDAY, limit=100)
    assert len(monday) == 16  # 8:00 … 15:30 every 30 minutes
    assert monday[0].starts_at == datetime(2030, 3, 4, 8, 0, tzinfo=OFFICE_TZ)
    assert monday[-1].starts_at.astimezone(OFFICE_TZ).hour == 15
    assert all(s.capacity == 2 and s.available == 2 for s in monday)
    saturday = await repo.available_slots("cedula", office_code="STI", day=SATURDAY, limit=100)
    assert len(saturday) == 8  # 8:00 … 11:30
    sunday = await repo.available_slots("cedula", day=date(2030, 3, 10), limit=100)
    assert sunday == []
    later = await repo.available_slots("pasaporte", after=monday[3].starts_at, limit=3)
    assert all(s.starts_at > monday[3].starts_at for s in later) and len(later) == 3

    slot = monday[2]
    booking = await repo.book(
        slot.id,
        "cedula",
        citizen_name="María Pérez",
        cedula="001-1234567-8",
        phone="+1 809 555 3333",
        call_sid="CA-BOOK",
    )
    assert booking.status == "confirmed"
    assert booking.code.startswith("TA-") and len(booking.code) == 8
    assert booking.cedula == "00112345678"
    assert booking.starts_at == slot.starts_at
    assert (booking.office_code, booking.service_code) == ("SD-CENTRO", "cedula")
    assert await slot_counts(db, slot.id) == (1, 2)

    spoken = booking.code.lower().replace("-", " ")  # "ta 7k3p9", as a caller might say it
    assert (await repo.get_by_code(spoken)) == booking
    assert [b.code for b in await repo.find_by_phone("809-555-3333")] == [booking.code]
    assert [b.code for b in await repo.find_by_cedula("00112345678")] == [booking.code]
    assert await repo.find_by_phone("8090000000") == []

    with pytest.raises(SlotUnavailable):  # in the past relative to the repository clock
        past = BookingRepository(db, clock=lambda: NOW + timedelta(days=30))
        await past.book(slot.id, "cedula", "Ana", "40200000001")

    cancelled = await repo.cancel(booking.code)
    assert cancelled.status == "cancelled"
    assert await repo.find_by_cedula("001-1234567-8") == []
    assert len(await repo.find_by_cedula("001-1234567-8", active_only=False)) == 1


async def scenario_concurrent_capacity(db: Database, attempts: int = 20) -> None:
    repo = await booking_repo(db)
    slot_id = await first_slot(repo)

    async def attempt(i: int) -> str:
        try:
            await repo.book(slot_id, "cedula", f"Persona {i}", f"4020000{i:04d}")
        except SlotFull:
            return "full"
        return "booked"

    results = await asyncio.gather(*(attempt(i) for i in range(attempts)))
    assert results.count("booked") == 2
    assert results.count("full") == attempts - 2
    assert await slot_counts(db, slot_id) == (2, 2)
    async with db.session() as s:
        rows = (await s.scalars(select(Booking).where(Booking.slot_id == slot_id))).all()
    assert len(rows) == 2


async def scenario_concurrent_same_cedula(db: Database, attempts: int = 10) -> None:
    """Same person, many slots, at once: the partial unique index lets exactly one through."""
    repo = await booking_repo(db)
    slots = await repo.available_slots("cedula", day=MONDAY, limit=attempts)

    async def attempt(slot_id: int) -> str:
        try:
            await repo.book(slot_id, "cedula", "Juan Rosario", "402-0000000-9")
        except DuplicateBooking:
            return "duplicate"
        return "booked"

    results = await asyncio.gather(*(attempt(s.id) for s in slots))
    assert results.count("booked") == 1
    assert results.count("duplicate") == len(slots) - 1
    seats = sum([(await slot_counts(db, s.id))[0] for s in slots])
    assert seats == 1  # refused attempts released the seat they had claimed


async def scenario_cancel_frees_capacity(db: Database) -> None:
    repo = await booking_repo(db)
    slot_id = await first_slot(repo)
    a = await repo.book(slot_id, "cedula", "A", "40200000011")
    await repo.book(slot_id, "cedula", "B", "40200000012")
    with pytest.raises(SlotFull):
        await repo.book(slot_id, "cedula", "C", "40200000013")
    assert slot_id not in {s.id for s in await repo.available_slots("cedula", day=MONDAY)}

    await repo.cancel(a.code)
    assert await slot_counts(db, slot_id) == (1, 2)
    await repo.cancel(a.id)  # cancelling twice is a no-op, it must not free a second seat
    assert await slot_counts(db, slot_id) == (1, 2)
    assert slot_id in {s.id for s in await repo.available_slots("cedula", day=MONDAY)}
    c = await repo.book(slot_id, "cedula", "C", "40200000013")
    assert c.status == "confirmed"
    assert await slot_counts(db, slot_id) == (2, 2)


async def scenario_reschedule_atomic(db: Database) -> None:
    repo = await booking_repo(db)
    slots = await repo.available_slots("cedula", office_code="SD-CENTRO", day=MONDAY, limit=3)
    origin, full, free = (s.id for s in slots)
    mine = await repo.book(origin, "cedula", "Rosa", "40200000021")
    await repo.book(full, "cedula", "X", "40200000022")
    await repo.book(full, "cedula", "Y", "40200000023")

    with pytest.raises(SlotFull):
        await repo.reschedule(mine.code, full)
    unchanged = await repo.get_by_code(mine.code)
    assert unchanged is not None and unchanged.slot_id == origin
    assert await slot_counts(db, origin) == (1, 2)
    assert await slot_counts(db, full) == (2, 2)

    moved = await repo.reschedule(mine.code, free)
    assert moved.code == mine.code and moved.slot_id == free and moved.status == "confirmed"
    assert moved.starts_at == slots[2].starts_at
    assert await slot_counts(db, origin) == (0, 2)
    assert await slot_counts(db, free) == (1, 2)

    other_office = await first_slot(repo, office="STI")
    moved_again = await repo.reschedule(mine.code, other_office)
    assert moved_again.office_code == "STI"
    assert await slot_counts(db, free) == (0, 2)

    await repo.cancel(mine.code)
    with pytest.raises(BookingNotActive):
        await repo.reschedule(mine.code, free)


async def scenario_duplicate_cedula(db: Database) -> None:
    repo = await booking_repo(db)
    slots = await repo.available_slots("cedula", day=MONDAY, limit=2)
    first = await repo.book(slots[0].id, "cedula", "Luis", "001-7654321-0")
    with pytest.raises(DuplicateBooking) as refused:
        await repo.book(slots[1].id, "cedula", "Luis", "00176543210")
    assert refused.value.existing_code == first.code
    assert await slot_counts(db, slots[1].id) == (0, 2)
    # Another service is fine; after cancelling, the same service is fine again.
    await repo.book(slots[1].id, "pasaporte", "Luis", "00176543210")
    await repo.cancel(first.code)
    again = await repo.book(slots[1].id, "cedula", "Luis", "00176543210")
    assert again.status == "confirmed"

    # The rule lives in the database, not only in the repository.
    with pytest.raises(IntegrityError):
        async with db.session(write=True) as s:
            row = await s.get(Booking, again.id)
            assert row is not None
            s.add(
                Booking(
                    code="TA-ZZZZZ",
                    slot_id=row.slot_id,
                    service_id=row.service_id,
                    office_id=row.office_id,
                    citizen_name="Luis",
                    cedula=row.cedula,
                    status="confirmed",
                )
            )


async def scenario_idempotency_key(db: Database) -> None:
    repo = await booking_repo(db)
    slot_id = await first_slot(repo)
    one = await repo.book(slot_id, "cedula", "Ana", "40200000031", idempotency_key="req-1")
    two = await repo.book(slot_id, "cedula", "Ana", "40200000031", idempotency_key="req-1")
    assert one.code == two.code
    assert await slot_counts(db, slot_id) == (1, 2)


async def scenario_check_constraints(db: Database) -> None:
    repo = await booking_repo(db)
    slot_id = await first_slot(repo)
    with pytest.raises(IntegrityError):
        async with db.session(write=True) as s:
            await s.execute(update(Slot).where(Slot.id == slot_id).values(booked=3))
    with pytest.raises(IntegrityError):
        async with db.session(write=True) as s:
            await s.execute(update(Slot).where(Slot.id == slot_id).values(booked=-1))
    async with db.session(write=True) as s:
        s.add(SystemPrompt(version=1, text="v1", active=True))
    with pytest.raises(IntegrityError):  # at most one active prompt
        async with db.session(write=True) as s:
            s.add(SystemPrompt(version=2, text="v2", active=True))
    async with db.session(write=True) as s:
        s.add(SystemPrompt(version=2, text="v2", active=False))


class FlakyRepo:
    """A CallRepository stand-in whose database is "down" for the first ``failures`` writes."""

    def __init__(self, inner: CallRepository, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def guarded(*args: Any, **kw: Any) -> Any:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                raise OperationalError("INSERT ...", {}, ConnectionRefusedError("db down"))
            return await method(*args, **kw)

        return guarded


async def scenario_recorder_survives_outage(db: Database, failures: int = 25) -> None:
    flaky = FlakyRepo(CallRepository(db), failures=failures)
    recorder = CallRecorder(flaky, backoff_initial_s=0.001, backoff_max_s=0.01)  # type: ignore[arg-type]
    recorder.start()
    recorder.call_started("CA-OUT", "twilio", caller_number="+18095554444")
    for seq in range(30):
        speaker = "caller" if seq % 2 else "bot"
        recorder.turn_ended("CA-OUT", TurnRecord(seq=seq, speaker=speaker, text=f"turno {seq}"))
    recorder.call_ended("CA-OUT", end_reason="caller-hangup", outcome="answered")
    assert recorder.pending == 32  # nothing written yet: the writer has not run
    async with asyncio.timeout(60):
        await recorder.flushed()
    assert recorder.pending == 0
    assert recorder.retries == failures
    assert recorder.dropped == 0
    detail = await CallRepository(db).get_call("CA-OUT")
    assert detail is not None
    assert [t.seq for t in detail.turns] == list(range(30))
    assert [t.text for t in detail.turns] == [f"turno {i}" for i in range(30)]
    assert detail.end_reason == "caller-hangup" and detail.outcome == "answered"
    await recorder.stop()


# --- SQLite tests -------------------------------------------------------------------------------


async def test_database_creates_parent_dir_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "taina.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with database.session() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert path.exists()
    finally:
        await database.dispose()


async def test_migrations_up_down(db: Database) -> None:
    await scenario_migrations_up_down(db)


async def test_call_round_trip(db: Database) -> None:
    await scenario_call_round_trip(db)


async def test_idempotent_writes(db: Database) -> None:
    await scenario_idempotent_writes(db)


async def test_list_filters(db: Database) -> None:
    await scenario_list_filters(db)


async def test_turns_cascade_with_call(db: Database) -> None:
    calls = CallRepository(db)
    await calls.start_call("CA-DEL", "simulator")
    await calls.add_turn("CA-DEL", TurnRecord(seq=0, speaker="caller", text="hola"))
    async with db.session(write=True) as s:
        await s.execute(text("DELETE FROM calls WHERE call_sid = 'CA-DEL'"))
    async with db.session() as s:
        assert (await s.execute(text("SELECT count(*) FROM turns"))).scalar() == 0


async def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await CallRepository(db).start_call("CA-NAIVE", "web", started_at=datetime(2030, 1, 1))


async def test_booking_flow(db: Database) -> None:
    await scenario_booking_flow(db)


async def test_concurrent_capacity(db: Database) -> None:
    await scenario_concurrent_capacity(db)


async def test_concurrent_same_cedula(db: Database) -> None:
    await scenario_concurrent_same_cedula(db)


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


async def test_recorder_survives_outage(db: Database) -> None:
    await scenario_recorder_survives_outage(db)


async def test_recorder_stop_flushes(db: Database) -> None:
    recorder = CallRecorder(CallRepository(db))
    recorder.start()
    recorder.call_started("CA-STOP", "web")
    recorder.turn_ended("CA-STOP", TurnRecord(seq=0, speaker="bot", text="Hasta luego."))
    recorder.call_ended("CA-STOP", end_reason="server-shutdown")
    await recorder.stop(timeout=30)
    assert recorder.pending == 0 and not recorder.running
    detail = await CallRepository(db).get_call("CA-STOP")
    assert detail is not None and detail.end_reason == "server-shutdown"
    assert [t.text for t in detail.turns] == ["Hasta luego."]


async def test_recorder_never_drops_beyond_bound(db: Database, tmp_path: Path) -> None:
    """Past the bound, records go to the spill file (or, without one, stay in memory): all
    five calls are written, in order."""
    for spill_dir in (tmp_path / "spill", None):
        recorder = CallRecorder(CallRepository(db), max_pending=3, spill_dir=spill_dir)
        for i in range(5):
            recorder.call_started(f"CA-{spill_dir is None}-{i}", "simulator")
        assert recorder.pending == 5 and recorder.dropped == 0
        assert recorder.spilled == (2 if spill_dir else 0)
        recorder.start()
        async with asyncio.timeout(30):
            await recorder.flushed()
        await recorder.stop()
        assert recorder.pending == 0 and not recorder.spilling
    sids = sorted(c.call_sid for c in await CallRepository(db).list_calls())
    assert sids == sorted(f"CA-{flag}-{i}" for flag in (True, False) for i in range(5))


async def test_recorder_skips_unwritable_record(db: Database) -> None:
    """A write that can never succeed (here: a turn for an unknown call) is dropped and logged
    instead of blocking every record behind it."""
    recorder = CallRecorder(CallRepository(db))
    recorder.start()
    recorder.turn_ended("CA-NOPE", TurnRecord(seq=0, speaker="caller", text="?"))
    recorder.call_started("CA-OK", "web")
    async with asyncio.timeout(30):
        await recorder.flushed()
    await recorder.stop()
    assert recorder.dropped == 1
    assert await CallRepository(db).get_call("CA-OK") is not None
