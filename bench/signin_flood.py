"""A sign-in flood beside a live call: what the attacker gets, and what the caller feels.

One client sends ``--count`` sign-ins with distinct e-mails (and a made-up
``X-Forwarded-For`` each, which must not help it) as fast as ``--concurrency`` connections
allow. Meanwhile a simulated phone call (``taina call``'s engine: real-time 20 ms frames,
eSpeak questions, turn latency = end of caller speech to first bot audio on the wire) asks
``--turns`` questions. The same call is placed with no flood just before and just after, so
the ratio compares measurements of one run on one machine, and a change of the machine's
background load during the run (it is shared) weighs on both sides.

Two modes:

    # everything: starts `taina serve` (instant engines: the server's own work, no inference)
    .venv/bin/python bench/signin_flood.py [--count 1000] [--turns 4] [--json out.json]

    # only the flood, against a server that is already running (used by the test)
    .venv/bin/python bench/signin_flood.py --server http://127.0.0.1:8000 --flood-only \
        [--stop-file PATH]

The flood prints one JSON object: status counts over the first ``--count`` requests, how many
were sent before the first 429, whether every 429 had ``Retry-After``, and response times.
With ``--stop-file`` it keeps going (new e-mails) until that file exists, so it lasts as long
as the call beside it; only the first ``--count`` answers are judged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "¿A qué hora abren las oficinas?",
    "¿Dónde queda la oficina principal?",
    "¿Qué necesito para renovar la cédula?",
    "¿Cuánto cuesta sacar el pasaporte?",
    "¿Abren los sábados?",
    "Gracias, eso era todo.",
]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def flood(
    server: str, count: int, concurrency: int, stop_file: Path | None = None
) -> dict[str, object]:
    """Send sign-ins with distinct e-mails; the answers to the first ``count`` judged."""
    statuses: dict[int, int] = {}
    first_429: int | None = None
    missing_retry_after = 0
    times_ms: dict[int, list[float]] = {}
    sent = 0
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    stopped = asyncio.Event()
    if stop_file is None:
        stopped.set()

    async def watch_stop_file() -> None:
        assert stop_file is not None
        while not await asyncio.to_thread(stop_file.exists):  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.1)
        stopped.set()

    watcher = asyncio.create_task(watch_stop_file()) if stop_file is not None else None
    async with httpx.AsyncClient(base_url=server, timeout=30, limits=limits) as http:

        async def worker() -> None:
            nonlocal sent, first_429, missing_retry_after
            while True:
                i = sent
                if i >= count and stopped.is_set():
                    return
                sent += 1
                body = {"email": f"victima{i}@example.org", "password": f"adivina-{i}"}
                spoofed = {"X-Forwarded-For": f"10.{i % 250}.{(i // 250) % 250}.{i % 7 + 1}"}
                t = time.monotonic()
                try:
                    r = await http.post("/api/auth/login", json=body, headers=spoofed)
                    code = r.status_code
                except httpx.HTTPError:
                    code = 0
                if i >= count:
                    continue
                times_ms.setdefault(code, []).append((time.monotonic() - t) * 1000)
                statuses[code] = statuses.get(code, 0) + 1
                if code == 429:
                    if first_429 is None or i < first_429:
                        first_429 = i
                    if not r.headers.get("retry-after", "").isdigit():
                        missing_retry_after += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if watcher is not None:
        watcher.cancel()
    return {
        "count": count,
        "sent": sent,
        "seconds": round(time.monotonic() - started, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "first_429_at": first_429,
        "missing_retry_after": missing_retry_after,
        "p50_ms": {str(k): _pct(v, 0.5) for k, v in times_ms.items()},
        "p99_ms": {str(k): _pct(v, 0.99) for k, v in times_ms.items()},
    }


async def call_latencies(server: str, turns: int, rendered: dict[str, bytes]) -> list[float]:
    """One simulated phone call; the turn latencies (ms) the caller measured."""
    from telephony.simulator import CallOptions, Step, run_call

    says = [QUESTIONS[i % (len(QUESTIONS) - 1)] for i in range(turns)]
    options = CallOptions(
        server=server,
        steps=[Step("say", s) for s in says],
        transcribe=False,
        rendered=rendered,
        timeout_s=30.0,
    )
    result = await run_call(options)
    if result.error:
        raise RuntimeError(f"call failed: {result.error}")
    return result.latencies_ms


def start_flood(server: str, count: int, concurrency: int, stop_file: Path) -> subprocess.Popen:
    """The flood in its own process, so it competes with the server as a real client would,
    not with the measuring call's event loop."""
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--server",
            server,
            "--flood-only",
            "--count",
            str(count),
            "--concurrency",
            str(concurrency),
            "--stop-file",
            str(stop_file),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def quiet_vs_attacked(
    server: str, count: int, concurrency: int, turns: int, workdir: Path
) -> dict[str, object]:
    """The call alone, beside the flood, and alone again (A-B-A), all measured in this run."""
    rendered: dict[str, bytes] = {}
    await call_latencies(server, 1, rendered)  # warm-up: renders the questions, loads paths
    quiet = await call_latencies(server, turns, rendered)
    stop = workdir / "stop-flood"
    proc = start_flood(server, count, concurrency, stop)
    try:
        await asyncio.sleep(0.3)  # the flood is under way when the caller starts talking
        attacked = await call_latencies(server, turns, rendered)
    finally:
        stop.touch()
    out, _ = await asyncio.to_thread(proc.communicate, timeout=120)
    flood_stats = json.loads(out)
    quiet += await call_latencies(server, turns, rendered)
    q, a = statistics.median(quiet), statistics.median(attacked)
    return {
        "quiet_ms": quiet,
        "attacked_ms": attacked,
        "quiet_median_ms": round(q, 1),
        "attacked_median_ms": round(a, 1),
        "ratio": round(a / q, 3),
        "flood": flood_stats,
    }


def _serve(workdir: Path) -> object:
    from tests.faults.server_process import ServerProcess

    return ServerProcess(workdir / "server").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=None, help="an already running server")
    parser.add_argument("--flood-only", action="store_true")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--stop-file", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.flood_only:
        if not args.server:
            parser.error("--flood-only needs --server")
        stats = asyncio.run(flood(args.server, args.count, args.concurrency, args.stop_file))
        print(json.dumps(stats), flush=True)
        return 0

    with tempfile.TemporaryDirectory(prefix="taina-signin-flood-") as tmp:
        workdir = Path(tmp)
        server = None
        url = args.server
        if url is None:
            server = _serve(workdir)
            url = server.url  # type: ignore[attr-defined]
        try:
            result = asyncio.run(
                quiet_vs_attacked(url, args.count, args.concurrency, args.turns, workdir)
            )
        finally:
            if server is not None:
                server.kill()  # type: ignore[attr-defined]
    flood_stats = result["flood"]
    print(
        f"flood: {flood_stats['count']} sign-ins with distinct e-mails from one client "  # type: ignore[index]
        f"(concurrency {args.concurrency}): {flood_stats['statuses']}, "  # type: ignore[index]
        f"first 429 after {flood_stats['first_429_at']} requests, "  # type: ignore[index]
        f"p50 429 answer {flood_stats['p50_ms'].get('429')} ms"  # type: ignore[index,union-attr]
    )
    print(
        f"turn latency median: quiet {result['quiet_median_ms']} ms, "
        f"under the flood {result['attacked_median_ms']} ms, ratio {result['ratio']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
