"""Shared by the call review, calendar and quality API tests: a real server under uvicorn on
SQLite and, when ``TEST_DATABASE_URL`` is set, on a scratch PostgreSQL database; a local
webhook receiver standing in for the external booking system.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.storage.models import Booking, Office, Service, Slot
from pipeline.session import Engines
from tests.integration.conftest import LiveServer
from tests.integration.pg_scratch import scratch_database
from tests.integration.test_admin_api import TEST_DATABASE_URL, Api, api_servers


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (the SQLite file in the data dir) or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set: the PostgreSQL variant is skipped")
    with scratch_database("taina_staff") as url:
        yield url


@pytest.fixture
def staff_api(tmp_path: Path, database_url: str | None) -> Iterator[Callable[..., Api]]:
    """``make(engines=None, **settings)``: a started server with the API on the chosen
    database, and a sync client for it."""
    with api_servers(tmp_path / "staff") as start:

        def make(engines: Engines | None = None, **overrides: Any) -> Api:
            if database_url is not None:
                overrides.setdefault("database_url", database_url)
            return start(engines, **overrides)

        yield make


def past_booking(
    server: LiveServer, code: str, *, name: str, ago: timedelta, capacity: int
) -> None:
    """A confirmed cédula booking at Santo Domingo Centro ``ago`` before now (staff mark
    attendance after it), in a slot of its own: written directly, since the booking rules
    (rightly) refuse to book the past."""

    async def go() -> None:
        async with server.services.db.session(write=True) as s:
            office = await s.scalar(select(Office).where(Office.code == "SDC"))
            service = await s.scalar(select(Service).where(Service.code == "cedula"))
            assert office is not None and service is not None
            at = datetime.now(UTC).replace(microsecond=0) - ago - timedelta(seconds=7)
            slot = Slot(office_id=office.id, starts_at=at, capacity=capacity, booked=1)
            s.add(slot)
            await s.flush()
            s.add(
                Booking(
                    code=code,
                    slot_id=slot.id,
                    service_id=service.id,
                    office_id=office.id,
                    citizen_name=name,
                    cedula="40200000099",
                    status="confirmed",
                )
            )

    server.run(go())


class WebhookReceiver:
    """An HTTP server on loopback that records every POST (headers and JSON body)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer._cond:
                    outer.received.append(
                        {"headers": dict(self.headers), "raw": body, "json": json.loads(body)}
                    )
                    outer._cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        """The first delivery of ``event`` (waits for it)."""

        def found() -> dict[str, Any] | None:
            return next((r for r in self.received if r["json"].get("event") == event), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
            hit = found()
        assert hit is not None, f"webhook {event} never arrived: {self.received}"
        return hit

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
