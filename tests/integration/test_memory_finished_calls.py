"""Bounded memory (issue 13): finished calls keep a summary, not their turns.

The real ``taina serve`` process (instant engines, SQLite in its data dir) takes 1,000 short
calls — greeting, one keypad turn, hang-up — ten at a time. Before the fix the last 200 calls
kept every turn in memory; now a finished call keeps a summary (``app/recent_calls.py``) and
its turns are read from the database. RSS after 1,000 calls stays within 50 MB of RSS after
the first 10.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.keypad import short_call
from tests.faults.server_process import ServerProcess

pytestmark = pytest.mark.timeout(900)

CALLS = 1000
AT_ONCE = 10
MAX_GROWTH_MB = 50.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def place_calls(server: ServerProcess, n: int) -> list[str]:
    sids: list[str] = []
    for start in range(0, n, AT_ONCE):
        batch = [short_call(server) for _ in range(min(AT_ONCE, n - start))]
        sids += await asyncio.gather(*batch)
    return sids


async def settled_rss(server: ServerProcess) -> float:
    """RSS once no call is active (the last hang-ups processed)."""
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            health = (await client.get(f"{server.url}/healthz")).json()
            if health["active_calls"] == 0:
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    return rss_mb(server.pid)


async def test_rss_after_1000_finished_calls_stays_within_50_mb_of_10(tmp_path: Path) -> None:
    server = await asyncio.to_thread(ServerProcess(tmp_path / "srv").start)
    try:
        first = await place_calls(server, 10)
        after_10 = await settled_rss(server)
        t0 = time.monotonic()
        rest = await place_calls(server, CALLS - 10)
        took = time.monotonic() - t0
        after_1000 = await settled_rss(server)
        assert len(set(first + rest)) == CALLS
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"{server.url}/healthz")).json()
        assert health["active_calls"] == 0
        assert not [p for p in server.problems() if "Traceback" in p], server.problems()[:5]
    finally:
        await asyncio.to_thread(server.kill)
    growth = after_1000 - after_10
    print(
        f"\nFIGURE memory: RSS {after_10:.1f} MB after 10 calls, {after_1000:.1f} MB after "
        f"{CALLS} ({growth:+.1f} MB; {CALLS - 10} calls in {took:.0f} s)"
    )
    assert growth < MAX_GROWTH_MB


async def test_finished_calls_keep_a_summary_and_the_dashboard_reads_turns_from_the_database(
    live_server_factory,
) -> None:
    """Past the 20 most recently finished calls, a call's turns leave memory (its summary
    stays); the dashboard's call view reads them from the database, all of them."""
    from app.users import create_user
    from tests.integration.conftest import instant_engines
    from tests.integration.test_faults import ended, start_server

    server = await start_server(live_server_factory, engines=instant_engines())
    sids: list[str] = []
    for _ in range(5):
        sids += await asyncio.gather(*[short_call(server) for _ in range(5)])
    for sid in sids:
        await ended(server, sid)
    recent = server.services.recent
    first, last = recent.get(sids[0]), recent.get(sids[-1])
    assert first is not None and last is not None
    assert first.turns == [] and first.turns_released and first.turn_count >= 2
    assert first.end_reason == "caller-hangup" and first.caller_turns == 1
    assert len(last.turns) == last.turn_count and not last.turns_released
    held = recent.turns_held
    assert held <= 20 * max(recent.get(s).turn_count for s in sids)  # type: ignore[union-attr]

    await asyncio.to_thread(server.run, server.services.recorder.flushed(), 30)
    account = create_user(
        server.services.db, "jefa@example.org", "admin", "clave-1234-segura", actor="test"
    )
    await asyncio.to_thread(server.run, account)
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post(
            "/api/auth/login", json={"email": "jefa@example.org", "password": "clave-1234-segura"}
        )
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        detail = await client.get(f"/api/calls/{sids[0]}", headers=auth)
    assert detail.status_code == 200, detail.text
    assert len(detail.json()["turns"]) == first.turn_count
