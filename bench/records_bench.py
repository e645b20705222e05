"""Records under attack (issue 13): a database outage beside a keypad flood, and memory.

Both run the real ``taina serve`` in a subprocess (``TAINA_ENGINE_MODE=instant``: the server
is measured, not inference) and drive it with the Twilio callers of ``tests/faults/keypad.py``.

``outage``: PostgreSQL reached through ``tests/faults/tcp_proxy.py``; five normal callers talk
(at real time, waiting for each reply) and one caller presses "1#" as fast as the socket
takes it; after a few seconds the proxy is cut for ``--outage-s``, then restored. Afterwards
the database is read directly: every call must be closed and, for the normal callers, every
turn present — seq numbers 0..n-1 without a gap, at least as many caller turns as replies
heard. Figures: turns answered during the outage, records spilled, time to write everything
back, turns lost.

``memory``: ``--calls`` short calls (greeting, one keypad turn, hang-up), ten at a time; RSS
of the server after the first 10 and after all of them.

Usage::

    .venv/bin/python bench/records_bench.py outage [--outage-s 60] [--database-url URL]
    .venv/bin/python bench/records_bench.py memory [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from tests.faults.keypad import KeypadFlood, NormalCaller, short_call  # noqa: E402
from tests.faults.server_process import ServerProcess  # noqa: E402
from tests.faults.tcp_proxy import TcpProxy  # noqa: E402

DEFAULT_DB = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _pg(url: str, statement: str, *args: object) -> list:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        user=u.username,
        password=u.password,
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        database=u.database,
    )
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def _metric(server: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def outage(args: argparse.Namespace) -> dict:
    admin = make_url(args.database_url)
    name = f"taina_bench_records_{int(time.time())}"
    await _pg(args.database_url, f'CREATE DATABASE "{name}"')
    db_url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        async with TcpProxy(admin.host or "127.0.0.1", admin.port or 5432) as proxy:
            proxied = make_url(db_url).set(host="127.0.0.1", port=proxy.port)
            data = Path(tempfile.mkdtemp(prefix="taina-records-"))
            server = ServerProcess(
                data,
                database_url=proxied.render_as_string(hide_password=False),
                records_max_pending=args.max_pending,
            )
            await asyncio.to_thread(server.start)
            try:
                stop = asyncio.Event()
                normal = [NormalCaller(server) for _ in range(args.callers)]
                flood = KeypadFlood(server)
                tasks = [asyncio.create_task(c.run(stop)) for c in [*normal, flood]]
                await asyncio.sleep(3.0)
                await proxy.cut()
                before = sum(c.answered for c in normal)
                await asyncio.sleep(args.outage_s)
                during = sum(c.answered for c in normal) - before
                await proxy.restore()
                t_back = time.monotonic()
                await asyncio.sleep(3.0)
                stop.set()
                await asyncio.gather(*tasks)
                sids = [c.call.call_sid for c in normal if c.call is not None]
                everything = [*sids, flood.call.call_sid] if flood.call else sids
                # Written back: every call closed in the database.
                while time.monotonic() - t_back < 180:
                    rows = await _pg(
                        db_url,
                        "SELECT count(*) AS n FROM calls WHERE call_sid = ANY($1::text[]) "
                        "AND ended_at IS NOT NULL",
                        everything,
                    )
                    if rows[0]["n"] == len(everything):
                        break
                    await asyncio.sleep(0.2)
                written_s = time.monotonic() - t_back
                refused = await _metric(server, "taina_turns_refused_total")
                problems = [p for p in server.problems() if "Traceback" in p]
                log = server.log()
            finally:
                await asyncio.to_thread(server.kill)
        lost = 0
        stored_caller = 0
        for call in normal:
            assert call.call is not None
            rows = await _pg(
                db_url,
                "SELECT t.seq, t.speaker FROM turns t JOIN calls c ON c.id = t.call_id "
                "WHERE c.call_sid = $1 ORDER BY t.seq",
                call.call.call_sid,
            )
            seqs = [r["seq"] for r in rows]
            lost += len(set(range(max(seqs, default=-1) + 1)) - set(seqs))
            callers = sum(r["speaker"] == "caller" for r in rows)
            stored_caller += callers
            lost += max(0, call.answered - callers)
        return {
            "outage_s": args.outage_s,
            "normal_callers": args.callers,
            "answered_during_outage": during,
            "answered_total": sum(c.answered for c in normal),
            "unanswered": sum(c.unanswered for c in normal),
            "reply_latency_p50_ms": round(_p50([x for c in normal for x in c.latencies]) * 1000),
            "caller_turns_stored": stored_caller,
            "flood_entries": flood.entries,
            "input_refused_by_rate": refused,
            "spill_notices": log.count("spilling to"),
            "error_lines": sum(" ERROR " in line for line in log.splitlines()),
            "written_back_s_after_restore": round(written_s, 1),
            "turns_lost": lost,
            "tracebacks": len(problems),
        }
    finally:
        await _pg(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


async def memory(args: argparse.Namespace) -> dict:
    data = Path(tempfile.mkdtemp(prefix="taina-memory-"))
    server = ServerProcess(data)
    await asyncio.to_thread(server.start)
    try:
        points: dict[int, float] = {}
        done = 0
        t0 = time.monotonic()
        for target in sorted({10, *args.points, args.calls}):
            while done < target:
                n = min(10, target - done)
                await asyncio.gather(*[short_call(server) for _ in range(n)])
                done += n
            await asyncio.sleep(1.0)
            points[done] = round(rss_mb(server.pid), 1)
        took = time.monotonic() - t0
    finally:
        await asyncio.to_thread(server.kill)
    return {
        "calls": args.calls,
        "rss_mb_after": points,
        "growth_mb_10_to_all": round(points[args.calls] - points[10], 1),
        "seconds": round(took),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    o = sub.add_parser("outage", help="database outage beside a keypad flood")
    o.add_argument("--outage-s", type=float, default=60.0)
    o.add_argument("--callers", type=int, default=5)
    o.add_argument("--max-pending", type=int, default=10_000, help="recorder queue bound")
    o.add_argument("--database-url", default=DEFAULT_DB)
    m = sub.add_parser("memory", help="RSS after many finished calls")
    m.add_argument("--calls", type=int, default=1000)
    m.add_argument("--points", type=int, nargs="*", default=[100, 500])
    args = parser.parse_args(argv)
    result = asyncio.run(outage(args) if args.what == "outage" else memory(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
