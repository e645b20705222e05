"""Personal data by role, endpoint by endpoint, against a real server on real PostgreSQL.

One citizen's cédula (001-1234567-8) and phone (+1 809-555-0100) are put everywhere a call can
put them: the caller's words as the transcriber writes them (dashed groups, spaced digits,
Spanish digit words), keys pressed on the phone (over the Twilio protocol), the assistant's
read-back, the booking tool's arguments and result, the booking itself, the caller id. Signed in
as an agent, no answer of the API, the live stream or the exports may contain the full numbers
(the last four digits may show); signed in as an admin, every one of them must be there in clear.

Set ``TEST_DATABASE_URL`` (CI: ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.storage import TurnRecord
from tests.integration.conftest import instant_engines
from tests.integration.test_admin_api import (  # noqa: F401  (pg_database_url: a fixture)
    Api,
    api_servers,
    book,
    insert_call,
    pg_database_url,
)
from tests.integration.test_twilio_stream import RawStream, frames_of

CEDULA = "00112345678"
PHONE = "+18095550100"
SAID = "Mi cédula es 001-1234567-8 y mi teléfono 809-555-0100"
SEEDED = "CA-privacy-seeded"
# What an agent may never read, however the number was written. The last four digits may show.
LEAKS = [
    re.compile(r"0\D{0,3}0\D{0,3}1\D{0,3}1\D{0,3}2\D{0,3}3\D{0,3}4"),  # 0011234… any separators
    # The whole phone number (the office's own line, 809-555-0199, is not the caller's).
    re.compile(r"\D{0,3}".join("8095550100")),
    re.compile(r"cero\W+cero\W+uno\W+uno\W+dos", re.IGNORECASE),
]


def leaks(body: str) -> list[str]:
    return [m.group(0) for rx in LEAKS for m in rx.finditer(body)]


def seeded_turns() -> list[TurnRecord]:
    book_args = {
        "slot_id": 7,
        "service": "cedula",
        "citizen_name": "Ana Pérez",
        "cedula": "001-1234567-8",
        "phone": PHONE,
    }
    return [
        TurnRecord(seq=0, speaker="bot", text="Hola, ¿en qué le ayudo?"),
        TurnRecord(seq=1, speaker="caller", text=SAID),
        TurnRecord(
            seq=2,
            speaker="bot",
            text="Su cédula es cero cero uno, uno dos tres cuatro cinco seis siete, ocho.",
            heard_text="Su cédula es cero cero uno, uno dos tres",
            interrupted=True,
        ),
        TurnRecord(
            seq=3, speaker="caller", text="cero cero uno uno dos tres cuatro cinco seis siete ocho"
        ),
        TurnRecord(seq=4, speaker="caller", text="", dtmf=CEDULA + "#"),
        TurnRecord(
            seq=5,
            speaker="bot",
            text="Listo, su cita quedó reservada.",
            tools=[
                {
                    "name": "book_appointment",
                    "arguments": book_args,
                    "result": {
                        "ok": True,
                        "code": "TA-7K3P9",
                        "cedula": CEDULA,
                        "starts_at": "2030-03-01T08:00:00-04:00",
                        "confirmation": "Le llamaremos al 8095550100.",
                    },
                },
                {"name": "find_appointments", "arguments": json.dumps({"cedula": CEDULA})},
            ],
        ),
        TurnRecord(seq=6, speaker="caller", text="1", dtmf="1"),  # a menu choice stays readable
    ]


@pytest.fixture
def pg_api(tmp_path: Path, pg_database_url: str) -> Iterator[Api]:  # noqa: F811
    """The app under uvicorn on a scratch PostgreSQL database; callers "say" ``SAID``."""
    with api_servers(tmp_path / "pd") as make:
        yield make(instant_engines(SAID), database_url=pg_database_url, live_stream_max_s=30.0)


@pytest.fixture
def seeded(pg_api: Api) -> Api:
    insert_call(
        pg_api,
        SEEDED,
        started_at=datetime.now(UTC) - timedelta(minutes=3),
        turns=seeded_turns(),
        caller=PHONE,
        outcome="booked",
    )
    book(pg_api, SEEDED)
    return pg_api


def sign_in_both(client: Api) -> tuple[dict[str, str], dict[str, str]]:
    return client.token("agente@example.org", "agent"), client.token("admin@example.org", "admin")


# --- REST endpoints ---------------------------------------------------------------------------


def test_call_detail_masks_every_place_a_number_sits(seeded: Api) -> None:
    agent, admin = sign_in_both(seeded)
    as_agent = seeded.get(f"/api/calls/{SEEDED}", agent)
    as_admin = seeded.get(f"/api/calls/{SEEDED}", admin)
    assert as_agent.status_code == as_admin.status_code == 200
    assert leaks(as_agent.text) == []

    a, full = as_agent.json(), as_admin.json()
    assert a["caller_number"] == "+*******0100" and full["caller_number"] == PHONE
    assert a["called_number"] == full["called_number"] == "+18095550199"  # the office's line
    turns, clear = a["turns"], full["turns"]
    assert turns[1]["text"] == "Mi cédula es *******5678 y mi teléfono ******0100"
    assert clear[1]["text"] == SAID
    assert turns[2]["text"] == "Su cédula es *******5678."
    assert "cero cero uno, uno dos tres cuatro" in clear[2]["text"]
    # Interrupted mid-number: the six digits heard are masked too (the whole reply had 11).
    assert turns[2]["heard_text"] == "Su cédula es ******"
    assert turns[3]["text"] == "*******5678" and clear[3]["text"].startswith("cero cero uno")
    assert turns[4]["dtmf"] == "*******5678#" and clear[4]["dtmf"] == CEDULA + "#"
    assert turns[6]["dtmf"] == "1" and turns[6]["text"] == "1"

    tool, raw_tool = turns[5]["tools"][0], clear[5]["tools"][0]
    assert tool["arguments"]["cedula"] == "***-****567-8"
    assert tool["arguments"]["phone"] == "+*******0100"
    assert tool["arguments"]["slot_id"] == 7 and tool["arguments"]["citizen_name"] == "Ana Pérez"
    assert tool["result"]["cedula"] == "*******5678"
    assert tool["result"]["code"] == "TA-7K3P9"
    assert tool["result"]["starts_at"] == "2030-03-01T08:00:00-04:00"
    assert tool["result"]["confirmation"] == "Le llamaremos al ******0100."
    assert turns[5]["tools"][1]["arguments"] == '{"cedula": "*******5678"}'
    assert raw_tool["arguments"]["cedula"] == "001-1234567-8"
    assert raw_tool["result"]["confirmation"] == "Le llamaremos al 8095550100."

    [booking], [raw_booking] = a["bookings"], full["bookings"]
    assert (booking["cedula"], booking["phone"]) == ("*******5678", "+*******0100")
    assert (raw_booking["cedula"], raw_booking["phone"]) == (CEDULA, PHONE)


def test_call_list_and_search_mask_the_caller_number(seeded: Api) -> None:
    agent, admin = sign_in_both(seeded)
    for params in ({}, {"q": "cédula"}, {"phone": "809-555-0100"}, {"outcome": "booked"}):
        as_agent = seeded.get("/api/calls", agent, **params)
        assert as_agent.status_code == 200 and as_agent.json()["total"] == 1, params
        assert leaks(as_agent.text) == [], params
        assert as_agent.json()["items"][0]["caller_number"] == "+*******0100"
        as_admin = seeded.get("/api/calls", admin, **params).json()
        assert as_admin["items"][0]["caller_number"] == PHONE
    # The search snippet (the matching line) is cut from the masked line, never from the raw.
    [item] = seeded.get("/api/calls", agent, q="teléfono").json()["items"]
    assert item["match"]["text"] == "Mi cédula es *******5678 y mi teléfono ******0100"
    [item] = seeded.get("/api/calls", admin, q="teléfono").json()["items"]
    assert item["match"]["text"] == SAID
    # Searching by the number finds the call for an agent too, without showing the line.
    [item] = seeded.get("/api/calls", agent, q="809-555-0100").json()["items"]
    assert item["match"] is None
    # Part of a number would be an oracle ("does 45678 occur? 345678?"): agents may not.
    for path in ("/api/calls", "/api/calls/export.csv"):
        for params in ({"q": "45678"}, {"q": "cuatro cinco seis siete"}, {"phone": "50100"}):
            refused = seeded.get(path, agent, **params)
            assert refused.status_code == 422, (path, params)
            assert "número completo" in refused.json()["detail"]
            assert seeded.get(path, admin, **params).status_code == 200
        assert seeded.get(path, agent, phone="0100").status_code == 200  # shown anyway
        assert seeded.get(path, agent, q="8 de marzo").status_code == 200


def test_bookings_mask_cedula_and_phone_for_agents(seeded: Api) -> None:
    agent, admin = sign_in_both(seeded)
    as_agent = seeded.get("/api/bookings", agent)
    assert leaks(as_agent.text) == []
    [item] = as_agent.json()["items"]
    assert (item["cedula"], item["phone"]) == ("*******5678", "+*******0100")
    [full] = seeded.get("/api/bookings", admin).json()["items"]
    assert (full["cedula"], full["phone"]) == (CEDULA, PHONE)


def test_analytics_top_questions_mask_numbers_for_agents(seeded: Api) -> None:
    agent, admin = sign_in_both(seeded)
    as_agent = seeded.get("/api/analytics", agent)
    assert as_agent.status_code == 200 and leaks(as_agent.text) == []
    assert [q["text"] for q in as_agent.json()["top_questions"]] == [
        "Mi cédula es *******5678 y mi teléfono ******0100"
    ]
    assert [q["text"] for q in seeded.get("/api/analytics", admin).json()["top_questions"]] == [
        SAID
    ]


def test_no_get_route_shows_an_agent_a_full_number(seeded: Api) -> None:
    """Every GET route the API documents, as an agent: none leaks. A route added later that
    forgets the masking fails here; the admin's answers prove the seed is actually reachable."""
    agent, admin = sign_in_both(seeded)
    note = {"text": "Pidió cambiar la cita; cédula 001-1234567-8, teléfono 809-555-0100."}
    assert seeded.http.post(f"/api/calls/{SEEDED}/notes", json=note, headers=admin).is_success
    [booking] = seeded.get("/api/bookings", admin).json()["items"]
    day = booking["starts_at"][:10]
    spec = seeded.http.get("/openapi.json").json()
    skip = {"/api/live"}  # a stream: tested below with a real call
    paths = [
        p
        for p, ops in spec["paths"].items()
        if p.startswith("/api/") and "get" in ops and p not in skip
    ]
    assert "/api/calls/{call_sid}" in paths and "/api/bookings" in paths
    seen_by_admin: set[str] = set()
    for template in paths:
        path = re.sub(r"\{[^}]+\}", SEEDED, template)
        for params in ({}, {"q": "cédula"}, {"start": day, "days": 7, "date": day}):
            r = seeded.get(path, agent, **params)
            assert r.status_code < 500, (path, r.status_code)
            body = r.content.decode("utf-8", "replace")
            assert leaks(body) == [], (path, params, leaks(body))
            full = seeded.get(path, admin, **params).content.decode("utf-8", "replace")
            if leaks(full):
                seen_by_admin.add(template)
    reach = {
        "/api/calls",
        "/api/calls/{call_sid}",
        "/api/calls/{call_sid}/review",
        "/api/calls/export.csv",
        "/api/bookings",
        "/api/bookings/export.csv",
        "/api/calendar",
        "/api/analytics",
    }
    assert reach & set(paths) <= seen_by_admin, reach - seen_by_admin


# --- the live stream, with a real call over the Twilio protocol -------------------------------


@dataclass
class LiveReader:
    """``GET /api/live`` read in the background into a list of events."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def _run(self) -> None:
        async with self.client.stream("GET", "/api/live", headers=self.headers) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                self.raw.append(line)
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    self.events.append(event)
                    if event.get("type") == "snapshot":
                        self._ready.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LiveReader]:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def of(self, sid: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("call_sid") == sid and e.get("type") == kind]


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.05)


async def test_live_stream_masks_for_agents_not_admins(pg_api: Api) -> None:
    api = pg_api
    agent, admin = await asyncio.to_thread(sign_in_both, api)
    async with httpx.AsyncClient(base_url=api.server.url, timeout=30) as http:
        async with (
            LiveReader(http, agent).running() as as_agent,
            LiveReader(http, admin).running() as as_admin,
        ):
            call = RawStream(api.server)
            token = await call.webhook()
            await call.connect()
            await call.start(token)
            await call.collect(1.0)
            for frame in frames_of(True, 600) + frames_of(False, 800):
                await call.media([frame])  # at real time: faster audio is paced away
                await asyncio.sleep(0.018)
            await call.collect(1.5)
            for digit in CEDULA + "#":
                await call.send(
                    {"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": digit}}
                )
            await call.collect(1.5)
            await wait_for(lambda: any(e.get("dtmf") for e in as_admin.of(call.call_sid, "turn")))
            # A dashboard opened mid-call gets the call so far in its snapshot: masked too.
            async with LiveReader(http, agent).running() as late:
                snapshot = next(e for e in late.events if e["type"] == "snapshot")
            await call.stop()
            await wait_for(lambda: bool(as_agent.of(call.call_sid, "call_ended")))

    sid = call.call_sid
    agent_text = "\n".join(as_agent.raw)
    assert leaks(agent_text) == [], leaks(agent_text)
    assert leaks("\n".join(as_admin.raw))  # the admin's stream has them in clear

    [started] = as_agent.of(sid, "call_started")
    assert started["caller_number"] == "+*******0100"
    assert as_admin.of(sid, "call_started")[0]["caller_number"] == PHONE
    said = [e["text"] for e in as_agent.of(sid, "turn") if e["speaker"] == "caller"]
    assert "Mi cédula es *******5678 y mi teléfono ******0100" in said
    # "#" ends the entry and is not kept.
    assert [e["dtmf"] for e in as_agent.of(sid, "turn") if e.get("dtmf")] == ["*******5678"]
    assert [e["dtmf"] for e in as_admin.of(sid, "turn") if e.get("dtmf")] == [CEDULA]

    [live_call] = [c for c in snapshot["calls"] if c["call_sid"] == sid]
    assert live_call["caller_number"] == "+*******0100"
    assert leaks(json.dumps(snapshot, ensure_ascii=False)) == []
    assert any(t.get("dtmf") == "*******5678" for t in live_call["turns"])

    # The same call stored: the REST view masks it the same way.
    detail = await asyncio.to_thread(api.get, f"/api/calls/{sid}", agent)
    assert leaks(detail.text) == []
    assert any(t["dtmf"] == "*******5678" for t in detail.json()["turns"])
