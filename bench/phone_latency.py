"""Turn latency and greeting time over the real phone path with the embedded engines.

Starts ``taina serve`` (unless ``--server`` is given), places ``--calls`` simulated Twilio calls
one after another with ``taina call``'s engine (real-time 20 ms frames, Spanish questions of
2–4 s synthesized with eSpeak), and reports:

- turn latency as the caller sees it: end of caller speech → first bot audio on the wire
  (measured by the simulator), median / p90 / max;
- the server's own per-stage timings from the call records (endpoint wait, STT, STT wait
  after the turn ended, brain, TTS, first byte);
- webhook → first greeting audio byte sent (server-side, from the call records).

    .venv/bin/python bench/phone_latency.py --calls 10 [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.settings import Settings
from app.storage import CallRepository, Database
from telephony.simulator import CallOptions, run_call

QUESTIONS = [
    "¿A qué hora abren las oficinas?",
    "¿Dónde queda la oficina principal?",
    "¿Qué necesito para renovar la cédula?",
    "¿Cuánto cuesta sacar el pasaporte por primera vez?",
    "¿Atienden los sábados en Santiago?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p90": _pct(values, 0.9),
        "max": max(values) if values else float("nan"),
    }


async def _records(database_url: str, call_sids: list[str]) -> list:
    db = Database(database_url)
    try:
        repo = CallRepository(db)
        return [await repo.get_call(sid) for sid in call_sids]
    finally:
        await db.dispose()


async def bench(server: str, calls: int, database_url: str | None) -> dict:
    latencies: list[float] = []
    sids: list[str] = []
    for i in range(calls):
        q = [QUESTIONS[i % len(QUESTIONS)], QUESTIONS[(i + 2) % len(QUESTIONS)]]
        result = await run_call(CallOptions(server=server, says=q, transcribe=False, timeout_s=30))
        sids.append(result.call_sid)
        latencies.extend(result.latencies_ms)
        print(
            f"call {i + 1}/{calls}: latencies {[round(x) for x in result.latencies_ms]} ms",
            file=sys.stderr,
        )
    out: dict = {"calls": calls, "turn_latency_ms": _summary(latencies)}
    if database_url:
        await asyncio.sleep(1.0)  # let the recorder flush the last call
        records = [r for r in await _records(database_url, sids) if r is not None]
        greeting = [r.greeting_ms for r in records if r.greeting_ms is not None]
        out["greeting_ms"] = _summary(greeting)
        stages: dict[str, list[float]] = {}
        for r in records:
            for t in r.turns:
                if t.speaker == "bot" and t.seq > 0:
                    for k, v in t.timings.items():
                        stages.setdefault(k, []).append(v)
        out["server_stages_ms"] = {k: _summary(v) for k, v in sorted(stages.items())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--server", default=None, help="use a running server instead")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()

    proc = None
    database_url = None
    server = args.server
    if server is None:
        data = Path(tempfile.mkdtemp(prefix="taina-bench-"))
        port = _free_port()
        env = dict(os.environ)
        env.update(
            TAINA_DATA_DIR=str(data),
            TAINA_STT_MODEL_DIR=str(Settings().whisper_dir.resolve()),
            TAINA_LOG_LEVEL="WARNING",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        server = f"http://127.0.0.1:{port}"
        database_url = f"sqlite+aiosqlite:///{data / 'taina.db'}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{server}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.3)
    try:
        result = asyncio.run(bench(server, args.calls, database_url))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
