"""No answered turn is ever dropped (issue 13): keypad floods and a database outage.

Real server on loopback (uvicorn, the real Twilio route, transport and session, instant
engines), real PostgreSQL — through ``tests/faults/tcp_proxy.py`` for the outage. Before the
fix, one caller pressing keys as fast as possible (~100 turns a second) filled the recorder's
10,000-entry queue, which then dropped its oldest entries: normal callers' turns, and call
start records without which every later record of that call failed too (one ERROR each).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from pipeline.brain.offline import OfflineBrain
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines
from tests.faults.keypad import KeypadFlood, NormalCaller
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.pg_scratch import scratch_database_async
from tests.integration.test_faults import (
    QUESTION,
    TEST_DATABASE_URL,
    _turn_keys,
    ended,
    sample,
    start_server,
    stored,
)

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(
        not TEST_DATABASE_URL,
        reason="TEST_DATABASE_URL is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)",
    ),
]

FLOOD_S = 10.0
OUTAGE_S = 60.0


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A scratch PostgreSQL database for one test, dropped afterwards."""
    async with scratch_database_async("taina_records") as url:
        yield url


def engines() -> Engines:
    return Engines(
        vad=EnergyVad(), stt=FixedSTT(text=QUESTION), tts=ToneTTS(ms_per_char=5),
        brain=OfflineBrain(),
    )  # fmt: skip


async def check_stored(server, sids: list[str]) -> None:
    """Every turn the server reported for each call is in the database, identical."""
    for sid in sids:
        view = await ended(server, sid, timeout=30)
        record = await stored(server, sid)
        assert view.turn_count == len(view.turns), sid  # nothing let go: the call is recent
        assert _turn_keys(record.turns) == _turn_keys(view.turns), sid
        assert record.ended_at is not None and record.end_reason == view.end_reason


def recorder_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("app.storage") and r.levelno >= logging.ERROR
    ]


async def test_keypad_flood_from_3_calls_with_the_database_up_drops_nothing(
    live_server_factory, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(live_server_factory, engines=engines(), database_url=pg_url)
    recorder = server.services.recorder
    stop = asyncio.Event()
    floods = [KeypadFlood(server) for _ in range(3)]
    tasks = [asyncio.create_task(f.run(stop)) for f in floods]
    await asyncio.sleep(FLOOD_S)
    stop.set()
    await asyncio.gather(*tasks)
    sids = [f.call.call_sid for f in floods if f.call is not None]
    assert len(sids) == 3
    entries = sum(f.entries for f in floods)
    assert entries > 30 * FLOOD_S, f"not a flood: {entries} entries"

    await asyncio.to_thread(server.run, recorder.flushed(), 60)
    await check_stored(server, sids)
    assert recorder.dropped == 0 and recorder.overflowed == 0 and recorder.pending == 0
    refused = sample(server, "taina_turns_refused_total", reason="rate")
    assert refused > 0
    settings = server.services.settings
    for sid in sids:
        # The cap held: a burst, then the rate (plus a second of slack for the clock).
        allowed = settings.turn_burst + settings.max_turns_per_second * (FLOOD_S + 2)
        assert server.call_view(sid).caller_turns <= allowed
    assert recorder_errors(caplog) == []
    print(
        f"\nFIGURE keypad flood, database up: 3 calls, {entries} keypad entries in "
        f"{FLOOD_S:.0f} s ({entries / FLOOD_S:.0f}/s), {refused:.0f} refused by the turn rate, "
        f"{sum(server.call_view(s).turn_count for s in sids)} turns stored, 0 dropped"
    )


async def test_60_s_database_outage_with_a_keypad_flood_loses_no_turn_of_5_callers(
    live_server_factory, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL unreachable for 60 s while one caller floods the keypad and five others
    talk normally; the recorder's queue is kept small (100) so the spill file carries most of
    the outage. Every turn of every call is written once the database is back, in order."""
    caplog.set_level(logging.INFO)
    target = make_url(pg_url)
    async with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = target.set(host="127.0.0.1", port=proxy.port)
        server = await start_server(
            live_server_factory,
            engines=engines(),
            database_url=proxied.render_as_string(hide_password=False),
            records_max_pending=100,
        )
        recorder = server.services.recorder
        stop = asyncio.Event()
        normal = [NormalCaller(server) for _ in range(5)]
        flood = KeypadFlood(server)
        tasks = [asyncio.create_task(c.run(stop)) for c in [*normal, flood]]
        await asyncio.sleep(3.0)
        await proxy.cut()
        t_cut = time.monotonic()
        answered_before = sum(c.answered for c in normal)
        await asyncio.sleep(OUTAGE_S)
        answered_during = sum(c.answered for c in normal) - answered_before
        pending_at_restore = recorder.pending
        spilled = recorder.spilled
        assert recorder.spilling and spilled > 0
        await proxy.restore()
        t_back = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.to_thread(server.run, recorder.flushed(), 120)
        flushed_after = time.monotonic() - t_back
        assert t_back - t_cut >= OUTAGE_S

        sids = [c.call.call_sid for c in normal if c.call is not None]
        assert len(sids) == 5 and flood.call is not None
        await check_stored(server, [*sids, flood.call.call_sid])
        assert recorder.dropped == 0 and recorder.overflowed == 0 and recorder.pending == 0
        assert not recorder.spilling
        answered = sum(c.answered for c in normal)
        stored_caller_turns = sum(server.call_view(s).caller_turns for s in sids)
        assert answered_during >= 5 * 5  # the callers were served throughout the outage
        assert stored_caller_turns >= answered
        # Logged once per outage and rate-limited, not once per record.
        assert len(recorder_errors(caplog)) <= 2, recorder_errors(caplog)
    print(
        f"\nFIGURE outage + keypad flood: {OUTAGE_S:.0f} s PostgreSQL outage, 5 callers "
        f"answered {answered_during} turns during it ({answered} in all, "
        f"{sum(c.unanswered for c in normal)} unanswered), flood {flood.entries} entries; "
        f"{pending_at_restore} records pending at restore ({spilled} through the spill file); "
        f"all written {flushed_after:.1f} s after the database came back; 0 lost"
    )
