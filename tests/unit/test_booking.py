"""The booking catalog, rules and outbound webhook (app/booking.py).

The webhook is tested against a real HTTP receiver on 127.0.0.1 (``http.server`` in a thread)
that verifies signatures the way an external booking system would.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.booking import (
    CATALOG,
    BookingService,
    BookingWebhook,
    ensure_catalog,
    keep_slots_fresh,
    sign_body,
    verify_signature,
)
from app.storage import BookingRepository, Database
from pipeline.brain.booking_api import BookingRefused

TZ = ZoneInfo("America/Santo_Domingo")
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=TZ)  # Saturday
MONDAY = date(2026, 11, 23)
KNOWLEDGE = Path(__file__).resolve().parents[2] / "knowledge_data"
SECRET = "s3cr3t-for-tests"


def clock() -> datetime:
    return NOW


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[BookingRepository]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await db.migrate()
    repository = BookingRepository(db, clock=clock)
    await ensure_catalog(repository)
    yield repository
    await db.dispose()


# --- catalog ----------------------------------------------------------------------------------


def test_catalog_agrees_with_the_knowledge_base() -> None:
    """Addresses, phones, durations and fees in the catalog are the ones callers hear."""
    offices_md = (KNOWLEDGE / "oficinas.md").read_text("utf-8")
    citas_md = (KNOWLEDGE / "citas.md").read_text("utf-8")
    for office in CATALOG.offices:
        assert f"## {office.name}" in offices_md
        section = offices_md.split(f"## {office.name}")[1].split("\n## ")[0]
        assert office.phone and office.phone in section
        number = re.search(r"número \d+", office.address)
        assert number and number.group(0) in section, office.code
        assert ("sábados" in section and "No abre los sábados" not in section) == office.saturday
    where = offices_md.split("## Dónde se hace cada servicio")[1].split("\n## ")[0]
    line_names = {
        "cedula": "Cédula",
        "pasaporte": "Pasaporte",
        "licencia": "Licencia de conducir",
        "actas": "Actas del estado civil",
        "no_antecedentes": "Certificado de no antecedentes",
        "apostilla": "Legalización y apostilla",
    }
    assert set(line_names) == {s.code for s in CATALOG.services}
    for service in CATALOG.services:
        line = next(
            ln for ln in where.splitlines() if ln.startswith(f"- {line_names[service.code]}")
        )
        offices = [o.short for o in CATALOG.offices_for(service.code)]
        if "cuatro oficinas" in line:
            assert len(offices) == len(CATALOG.offices)
        else:
            assert all(o in line for o in offices) and len(offices) < len(CATALOG.offices)
        assert f"unos {service.duration_min} minutos" in citas_md, service.code
    fees = {
        "cedula": ("cedula.md", "RD$200"),
        "pasaporte": ("pasaporte.md", "RD$3,500"),
        "licencia": ("licencia_conducir.md", "RD$1,200"),
        "actas": ("actas_estado_civil.md", "RD$150"),
        "no_antecedentes": ("no_antecedentes_penales.md", "RD$250"),
        "apostilla": ("legalizacion_apostilla.md", "RD$800"),
    }
    for code, (doc, fee) in fees.items():
        service = CATALOG.service(code)
        assert service is not None and service.fee_text and fee in service.fee_text
        assert fee in (KNOWLEDGE / doc).read_text("utf-8")


def test_catalog_understands_how_callers_name_things() -> None:
    assert CATALOG.resolve_service("quiero renovar la cédula") == "cedula"
    assert CATALOG.resolve_service("papel de buena conducta") == "no_antecedentes"
    assert CATALOG.resolve_service("pasaporte") == "pasaporte"
    assert CATALOG.resolve_service("una pizza") is None
    assert CATALOG.resolve_office("santiago de los caballeros") == "STI"
    assert CATALOG.resolve_office("sti") == "STI"
    assert CATALOG.resolve_office("santo domingo este") == "SDE"
    assert CATALOG.find_offices("santo domingo") == ["SDC", "SDE"]  # ambiguous on purpose
    assert CATALOG.resolve_office("santo domingo") is None


async def test_ensure_catalog_is_idempotent_and_follows_office_hours(
    repo: BookingRepository,
) -> None:
    assert await ensure_catalog(repo) == 0  # second run creates nothing
    assert {o.code for o in await repo.list_offices()} == {"SDC", "SDE", "STI", "LRO"}
    assert {s.code for s in await repo.list_services()} == {s.code for s in CATALOG.services}
    saturday = date(2026, 11, 28)
    open_saturday = {
        s.office_code for s in await repo.available_slots("cedula", day=saturday, limit=200)
    }
    assert open_saturday == {"SDC", "STI"}
    monday = await repo.available_slots("cedula", "LRO", MONDAY, limit=50)
    times = [s.starts_at.strftime("%H:%M") for s in monday]
    assert times[0] == "08:00" and times[-1] == "15:30" and len(times) == 16
    assert not await repo.available_slots("cedula", day=date(2026, 11, 22), limit=5)  # Sunday
    assert not await repo.available_slots("cedula", day=date(2026, 12, 25), limit=5)  # holiday


async def test_keep_slots_fresh_extends_the_window_as_days_pass(repo: BookingRepository) -> None:
    last_day = date(2026, 12, 21)
    assert await repo.available_slots("cedula", "SDC", last_day + timedelta(days=1), limit=1) == []
    repo.clock = lambda: NOW + timedelta(days=1)
    task = asyncio.create_task(keep_slots_fresh(repo, interval_s=0.01))
    try:
        for _ in range(200):
            if await repo.available_slots("cedula", "SDC", last_day + timedelta(days=1), limit=1):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the window was not extended")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- rules ------------------------------------------------------------------------------------


async def test_service_refuses_what_the_office_does_not_do(repo: BookingRepository) -> None:
    service = BookingService(repo, clock=clock)
    with pytest.raises(BookingRefused) as refused:
        await service.available("pasaporte", "SDE", MONDAY)
    assert refused.value.reason == "not_offered"
    assert "Santo Domingo Centro" in refused.value.message and "Santiago" in refused.value.message
    slots = await service.available("pasaporte", None, MONDAY, limit=40)
    assert slots and {s.office_code for s in slots} <= {"SDC", "STI"}
    lro = (await repo.available_slots("cedula", "LRO", MONDAY, limit=1))[0]
    with pytest.raises(BookingRefused) as refused:
        await service.book(lro.id, "pasaporte", "Ana", "00112345678")
    assert refused.value.reason == "not_offered"


async def test_booking_window_and_validation(repo: BookingRepository) -> None:
    service = BookingService(repo, clock=clock)
    assert service.booking_window() == (date(2026, 11, 22), date(2026, 12, 21))
    assert await service.available("cedula", "SDC", NOW.date()) == []  # no same-day appointments
    assert await service.available("cedula", "SDC", date(2026, 12, 22)) == []  # beyond 30 days
    today = await repo.available_slots("cedula", "SDC", NOW.date(), limit=1)
    with pytest.raises(BookingRefused) as refused:
        await service.book(today[0].id, "cedula", "Ana", "00112345678")
    assert refused.value.reason == "too_soon"
    slot = (await service.available("cedula", "SDC", MONDAY))[0]
    with pytest.raises(BookingRefused) as refused:
        await service.book(slot.id, "cedula", "Ana", "123")
    assert refused.value.reason == "invalid"
    with pytest.raises(BookingRefused) as refused:
        await service.available("visas")
    assert refused.value.reason == "unknown_service"


async def test_duplicate_cancel_cutoff_and_find(repo: BookingRepository) -> None:
    service = BookingService(repo, clock=clock)
    first, second = (await service.available("cedula", "SDC", MONDAY))[:2]
    info = await service.book(first.id, "cedula", "Ana Gómez", "001-1234567-8", "+18095551234")
    assert info.cedula == "00112345678" and info.status == "confirmed"
    with pytest.raises(BookingRefused) as refused:
        await service.book(second.id, "cedula", "Ana Gómez", "00112345678")
    assert (
        refused.value.reason == "duplicate" and refused.value.details["existing_code"] == info.code
    )
    assert [b.code for b in await service.find(phone="809-555-1234")] == [info.code]
    assert [b.code for b in await service.find(cedula="00112345678")] == [info.code]
    moved = await service.reschedule(info.code, second.id)
    assert moved.slot_id == second.id and moved.code == info.code
    late = BookingService(repo, clock=lambda: moved.starts_at - timedelta(hours=1))
    with pytest.raises(BookingRefused) as refused:
        await late.cancel(info.code)
    assert refused.value.reason == "cutoff"
    cancelled = await service.cancel(info.code)
    assert cancelled.status == "cancelled"
    with pytest.raises(BookingRefused) as refused:
        await service.cancel(info.code)
    assert refused.value.reason == "not_active"
    assert await service.find(cedula="00112345678") == []


# --- webhook ----------------------------------------------------------------------------------


class Receiver:
    """An external booking system: verifies each request and answers from a script."""

    def __init__(self, statuses: list[int | tuple[int, dict[str, str]]], delay_s: float = 0.0):
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "body": body,
                            "signature": self.headers.get("X-Taina-Signature"),
                            "key": self.headers.get("Idempotency-Key"),
                            "event": self.headers.get("X-Taina-Event"),
                            "valid": verify_signature(
                                SECRET, body, self.headers.get("X-Taina-Signature")
                            ),
                        }
                    )
                    scripted = receiver.statuses.pop(0) if receiver.statuses else 200
                status, headers = scripted if isinstance(scripted, tuple) else (scripted, {})
                if receiver.delay_s:
                    threading.Event().wait(receiver.delay_s)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/taina"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def no_sleep() -> Iterator[list[float]]:
    delays: list[float] = []
    yield delays


def make_webhook(url: str, delays: list[float], **kw: Any) -> BookingWebhook:
    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    return BookingWebhook(url, SECRET, sleep=fake_sleep, **kw)


def test_signature_helpers() -> None:
    body = b'{"a":1}'
    header = sign_body(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, body + b" ", header)
    assert not verify_signature("other", body, header)
    assert not verify_signature(SECRET, body, None)


async def test_webhook_retries_after_500_with_the_same_body_key_and_signature(
    no_sleep: list[float],
) -> None:
    with Receiver([500, 503, 200]) as receiver:
        hook = make_webhook(receiver.url, no_sleep, backoff_s=0.5)
        task = hook.send("booking.created", {"code": "TA-7K3P9"}, "key-123")
        assert await task is True
        await hook.aclose()
    assert len(receiver.requests) == 3
    assert all(r["valid"] for r in receiver.requests)
    assert {r["key"] for r in receiver.requests} == {"key-123"}
    assert len({r["body"] for r in receiver.requests}) == 1
    assert len({r["signature"] for r in receiver.requests}) == 1
    payload = json.loads(receiver.requests[0]["body"])
    assert payload["event"] == "booking.created" and payload["data"]["code"] == "TA-7K3P9"
    assert payload["id"] == "key-123"
    assert len(no_sleep) == 2 and no_sleep[1] > no_sleep[0]  # exponential backoff


async def test_webhook_does_not_retry_a_client_error(no_sleep: list[float]) -> None:
    with Receiver([400]) as receiver:
        hook = make_webhook(receiver.url, no_sleep)
        assert await hook.send("booking.created", {"code": "X"}, "k") is False
        await hook.aclose()
    assert len(receiver.requests) == 1 and no_sleep == []


async def test_webhook_retries_timeouts_and_gives_up(no_sleep: list[float]) -> None:
    with Receiver([], delay_s=0.5) as receiver:
        hook = make_webhook(receiver.url, no_sleep, timeout_s=0.1, max_attempts=3)
        assert await hook.send("booking.cancelled", {"code": "X"}, "k2") is False
        await hook.aclose()
    assert len(receiver.requests) == 3 and len(no_sleep) == 2
    assert {r["key"] for r in receiver.requests} == {"k2"}


async def test_webhook_honours_retry_after(no_sleep: list[float]) -> None:
    with Receiver([(429, {"Retry-After": "7"}), 200]) as receiver:
        hook = make_webhook(receiver.url, no_sleep, backoff_s=0.5)
        assert await hook.send("booking.created", {"code": "X"}, "k3") is True
        await hook.aclose()
    assert len(receiver.requests) == 2 and no_sleep == [7.0]


async def test_service_notifies_every_change_in_the_background(
    repo: BookingRepository, no_sleep: list[float]
) -> None:
    with Receiver([]) as receiver:
        hook = make_webhook(receiver.url, no_sleep)
        service = BookingService(repo, webhook=hook, clock=clock)
        first, second = (await service.available("actas", "STI", MONDAY))[:2]
        info = await service.book(first.id, "actas", "Ana", "00112345678", "8095551234")
        # book() returned while the delivery may still be in flight: the call never waits.
        await service.reschedule(info.code, second.id)
        await service.reschedule(info.code, first.id)
        await service.cancel(info.code)
        await service.aclose()
    events = [r["event"] for r in receiver.requests]
    assert sorted(events) == sorted(
        ["booking.created", "booking.rescheduled", "booking.rescheduled", "booking.cancelled"]
    )
    assert all(r["valid"] for r in receiver.requests)
    assert len({r["key"] for r in receiver.requests}) == 4  # one key per change
    created = next(
        json.loads(r["body"]) for r in receiver.requests if r["event"] == "booking.created"
    )
    assert created["data"]["office"] == "STI" and created["data"]["starts_at"].startswith(
        "2026-11-23"
    )
