"""OfficeTools: every tool of tools.py against the real knowledge base and a SQLite database.

Includes the proof that double booking through the tools is impossible: concurrent
``book_appointment`` calls for one slot never exceed its capacity.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.booking import BookingService, ensure_catalog
from app.storage import BookingRepository, Database
from knowledge import KnowledgeBase
from pipeline.brain.base import CallContext
from pipeline.brain.office_tools import OfficeTools
from pipeline.brain.tools import TOOL_SCHEMAS

TZ = ZoneInfo("America/Santo_Domingo")
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=TZ)  # Saturday
MONDAY = date(2026, 11, 23)
SOURCE_DIR = Path(__file__).resolve().parents[2] / "knowledge_data"


def clock() -> datetime:
    return NOW


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    return KnowledgeBase.load(tmp_path_factory.mktemp("kb"), SOURCE_DIR)


@pytest.fixture
async def world(
    tmp_path: Path, kb: KnowledgeBase
) -> AsyncIterator[tuple[OfficeTools, BookingRepository]]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await db.migrate()
    repo = BookingRepository(db, clock=clock)
    await ensure_catalog(repo)
    yield OfficeTools(kb, BookingService(repo, clock=clock)), repo
    await db.dispose()


def ctx(call_id: str = "CA1", caller: str | None = "+18095551234") -> CallContext:
    return CallContext(call_id=call_id, caller_number=caller)


async def first_slot(tools: OfficeTools, service: str = "cedula", office: str = "SDC") -> dict:
    result = await tools.call(
        "check_availability",
        {"service": service, "office": office, "date": MONDAY.isoformat()},
        ctx(),
    )
    return result["slots"][0]


async def test_every_schema_tool_is_implemented(world: tuple[OfficeTools, Any]) -> None:
    tools, _ = world
    for schema in TOOL_SCHEMAS:
        name = schema["function"]["name"]
        result = await tools.call(name, {}, ctx())
        assert isinstance(result, dict)
        json.dumps(result)  # JSON-serialisable for the LLM and the call record
        assert "No conozco" not in result.get("error", ""), name
    unknown = await tools.call("launch_rocket", {}, ctx())
    assert "error" in unknown


async def test_search_knowledge_returns_cited_hits_and_a_spoken_answer(
    world: tuple[OfficeTools, Any],
) -> None:
    tools, _ = world
    result = await tools.call("search_knowledge", {"query": "¿Cuánto cuesta el pasaporte?"}, ctx())
    assert result["source"] == "pasaporte.md"
    assert result["hits"] and {"text", "source", "heading", "score", "citation"} <= set(
        result["hits"][0]
    )
    assert "pasaporte.md — Pasaporte" in result["hits"][0]["citation"]
    assert "3500 pesos" in result["answer"] and "RD$" not in result["answer"]
    empty = await tools.call("search_knowledge", {"query": "   "}, ctx())
    assert "error" in empty


async def test_check_availability_speaks_dates_and_offers_alternatives(
    world: tuple[OfficeTools, Any],
) -> None:
    tools, _ = world
    result = await tools.call(
        "check_availability",
        {"service": "cedula", "office": "STI", "date": "2026-11-23", "after_time": "10:00"},
        ctx(),
    )
    first = result["slots"][0]
    assert first["time"] == "10:00" and first["office"] == "STI" and first["slot_id"] > 0
    assert first["spoken"] == "el lunes 23 de noviembre a las diez de la mañana"
    assert result["day_status"] == "open" and result["notice"] is None
    sunday = await tools.call(
        "check_availability", {"service": "cedula", "office": "STI", "date": "2026-11-22"}, ctx()
    )
    assert sunday["slots"] == [] and sunday["day_status"] == "closed"
    assert "domingos" in sunday["notice"]
    assert sunday["alternatives"][0]["date"] == "2026-11-23"
    assert "lunes 23 de noviembre" in sunday["spoken"]
    sde_saturday = await tools.call(
        "check_availability", {"service": "cedula", "office": "SDE", "date": "2026-11-28"}, ctx()
    )
    assert sde_saturday["day_status"] == "closed" and "sábados" in sde_saturday["notice"]
    today = await tools.call(
        "check_availability", {"service": "cedula", "date": "2026-11-21"}, ctx()
    )
    assert today["day_status"] == "too_soon" and today["alternatives"]
    wrong = await tools.call("check_availability", {"service": "pasaporte", "office": "LRO"}, ctx())
    assert wrong["reason"] == "not_offered" and "Santiago" in wrong["error"]
    by_name = await tools.call(
        "check_availability", {"service": "Licencia de conducir", "office": "La Romana"}, ctx()
    )
    assert by_name["slots"] and by_name["slots"][0]["office"] == "LRO"
    bad_date = await tools.call(
        "check_availability", {"service": "cedula", "date": "el lunes"}, ctx()
    )
    assert bad_date["reason"] == "invalid"


async def test_book_reads_back_date_and_spelled_code(
    world: tuple[OfficeTools, BookingRepository],
) -> None:
    tools, repo = world
    slot = await first_slot(tools)
    args = {
        "slot_id": slot["slot_id"],
        "service": "cedula",
        "citizen_name": "Ana Gómez",
        "cedula": "001-1234567-8",
    }
    result = await tools.call("book_appointment", args, ctx())
    assert result["ok"] and result["code"].startswith("TA-")
    assert "el lunes 23 de noviembre a las ocho de la mañana" in result["confirmation"]
    assert result["code_spoken"] in result["confirmation"]
    assert all(part.strip() for part in result["code_spoken"].split(","))
    assert len(result["code_spoken"].split(",")) == 5
    stored = await repo.get_by_code(result["code"])
    assert stored is not None and stored.phone == "+18095551234"  # the caller's number
    again = await tools.call("book_appointment", args, ctx())  # an LLM retrying the same call
    assert again["code"] == result["code"]
    missing = await tools.call("book_appointment", {"slot_id": slot["slot_id"]}, ctx())
    assert "error" in missing and missing["reason"] == "invalid"


async def test_cancel_reschedule_and_find(world: tuple[OfficeTools, BookingRepository]) -> None:
    tools, _ = world
    slot = await first_slot(tools, "pasaporte", "STI")
    booked = await tools.call(
        "book_appointment",
        {
            "slot_id": slot["slot_id"],
            "service": "pasaporte",
            "citizen_name": "Luis Peña",
            "cedula": "00198765432",
            "phone": "8095550000",
        },
        ctx(caller=None),
    )
    found = await tools.call("find_my_appointments", {"phone": "809-555-0000"}, ctx())
    assert [a["code"] for a in found["appointments"]] == [booked["code"]]
    assert "pasaporte" in found["spoken"] and booked["code_spoken"] in found["spoken"]
    by_cedula = await tools.call("find_my_appointments", {"cedula": "00198765432"}, ctx())
    assert by_cedula["appointments"][0]["code"] == booked["code"]
    later = await tools.call(
        "check_availability", {"service": "pasaporte", "office": "STI", "date": "2026-11-24"}, ctx()
    )
    moved = await tools.call(
        "reschedule_appointment",
        {"code": booked["code"].lower().replace("-", " "), "slot_id": later["slots"][2]["slot_id"]},
        ctx(),
    )
    assert (
        moved["ok"] and "martes 24 de noviembre a las nueve de la mañana" in moved["confirmation"]
    )
    cancelled = await tools.call("cancel_appointment", {"code": booked["code"]}, ctx())
    assert cancelled["ok"] and "cancelada" in cancelled["confirmation"]
    assert "del martes 24" in cancelled["confirmation"]
    again = await tools.call("cancel_appointment", {"code": booked["code"]}, ctx())
    assert again["reason"] == "not_active"
    nothing = await tools.call("find_my_appointments", {"cedula": "00198765432"}, ctx())
    assert nothing["appointments"] == [] and "No encontré" in nothing["spoken"]
    unknown = await tools.call("cancel_appointment", {"code": "TA-22222"}, ctx())
    assert unknown["reason"] == "not_found"


async def test_transfer_and_end_call_are_acknowledged(world: tuple[OfficeTools, Any]) -> None:
    tools, _ = world
    assert await tools.call("transfer_to_human", {"reason": "caller asked"}, ctx()) == {"ok": True}
    assert await tools.call("end_call", {}, ctx()) == {"ok": True}


async def test_slow_or_broken_backends_become_spoken_errors() -> None:
    class Slow:
        async def asearch(self, query: str, k: int = 3) -> list[Any]:
            await asyncio.sleep(5)
            return []

    class Broken:
        async def asearch(self, query: str, k: int = 3) -> list[Any]:
            raise RuntimeError("index corrupted")

    slow = await OfficeTools(Slow(), None, timeout_s=0.05).call(
        "search_knowledge", {"query": "horario"}, ctx()
    )
    assert slow["reason"] == "timeout" and "tardando" in slow["error"]
    broken = await OfficeTools(Broken(), None).call("search_knowledge", {"query": "x"}, ctx())
    assert broken["reason"] == "internal" and "problema" in broken["error"]
    no_booking = await OfficeTools(None, None).call(
        "check_availability", {"service": "cedula"}, ctx()
    )
    assert "no está disponible" in no_booking["error"]


async def test_double_booking_through_the_tools_is_impossible(
    world: tuple[OfficeTools, BookingRepository],
) -> None:
    """Eight callers race for one slot (capacity 2) at the same moment."""
    tools, repo = world
    slot = await first_slot(tools, "actas", "LRO")

    async def attempt(i: int) -> dict[str, Any]:
        return await tools.call(
            "book_appointment",
            {
                "slot_id": slot["slot_id"],
                "service": "actas",
                "citizen_name": f"Persona {i}",
                "cedula": f"0010000000{i}",
            },
            ctx(call_id=f"CA-race-{i}"),
        )

    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    won = [r for r in results if r.get("ok")]
    lost = [r for r in results if not r.get("ok")]
    assert len(won) == 2 and len(lost) == 6
    assert all(r["reason"] == "slot_full" and "ocupar" in r["error"] for r in lost)
    assert all(r["alternatives"] for r in lost)  # the loser is offered something close
    stored = await repo.get_slot(slot["slot_id"])
    assert stored is not None and stored.booked == stored.capacity == 2
    bookings = [b for b in await repo.list_bookings() if b.slot_id == slot["slot_id"]]
    assert len(bookings) == 2
