"""``taina bench``: many concurrent simulated phone calls against a real server.

Each call is the same simulated Twilio call ``taina call`` places (signed webhook, signed
WebSocket, 50 media frames a second of real eSpeak speech at real-time pace, a phone-like
earpiece that plays the bot's audio at real time and echoes marks), so the figures are what
callers would live through. The bench starts the server itself (a fresh ``taina serve``
process per concurrency level, pinned to the cores given, with its own SQLite database) so
it can also read the server's CPU time, memory and per-turn stage timings; ``--url`` points it
at a server that is already running instead (then only the caller-side figures are reported).

Instant engines (``--engines instant``: energy VAD, fixed transcript and reply, a tone for
speech) isolate the media path and TAINA's own overhead; ``--engines embedded`` measures the
real thing (Silero, Whisper, eSpeak, the offline brain).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from app.load_stats import (
    ProcessSample,
    capacity,
    client_summary,
    memory_slope_mb,
    peak_rss,
    stage_summary,
    steady_cpu_percent,
)
from telephony.simulator import CallOptions, render_utterances, run_call

# Questions the offline brain answers from the knowledge base (embedded mode), spoken by the
# caller voice. Instant engines ignore the words but still hear real speech.
UTTERANCES = (
    "¿A qué hora abren las oficinas?",
    "¿Qué documentos necesito para sacar el pasaporte?",
    "¿Cuánto cuesta renovar la licencia de conducir?",
    "¿Dónde queda la oficina de Santiago?",
    "¿Los sábados atienden?",
)
SAMPLE_EVERY_S = 0.5
MB = 1024 * 1024


@dataclass
class BenchConfig:
    levels: list[int]
    engines: str = "instant"
    url: str | None = None
    auth_token: str | None = None  # an external server's TWILIO_AUTH_TOKEN, to sign requests
    turns: int = 3
    ramp_s: float = 10.0
    pause_ms: int = 600
    server_cpus: set[int] | None = None
    client_cpus: set[int] | None = None
    p95_limit_ms: float = 2000.0
    out: Path = Path("bench-results")
    name: str | None = None
    chart: bool = True
    utterances: Sequence[str] = UTTERANCES
    server_env: dict[str, str] = field(default_factory=dict)


# --- the server under test ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``taina serve`` child with its own data directory, optionally pinned to cores."""

    def __init__(
        self, engines: str, cpus: set[int] | None, auth_token: str, extra_env: dict[str, str]
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="taina-bench-")
        self.data_dir = Path(self._tmp.name)
        self.db_path = self.data_dir / "taina.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAINA_")}
        for key in ("DATABASE_URL", "STT_PROVIDERS", "TTS_PROVIDERS", "OPENAI_API_KEY"):
            env.pop(key, None)
        env.update(
            {
                "TAINA_DATA_DIR": str(self.data_dir),
                "TAINA_ENGINE_MODE": engines,
                "TAINA_LOG_LEVEL": "WARNING",
                "TWILIO_AUTH_TOKEN": auth_token,
                "TAINA_MAX_CONCURRENT_CALLS": "0",
            }
        )
        # The embedded models are shared, not re-assembled per run.
        models = Path(os.environ.get("TAINA_DATA_DIR", "data")) / "models"
        if models.is_dir() and "TAINA_STT_MODEL_DIR" not in extra_env:
            env["TAINA_STT_MODEL_DIR"] = str((models / "whisper-base").resolve())
        env.update(extra_env)
        self._log = open(self.data_dir / "server.log", "wb")  # closed in stop()
        cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port)], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        if cpus:
            os.sched_setaffinity(self.proc.pid, cpus)
        self.ps = psutil.Process(self.proc.pid)

    async def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the server did not become ready in {timeout_s:g} s")

    def sample(self, t: float, active: int) -> ProcessSample:
        cpu = self.ps.cpu_times()
        return ProcessSample(
            t=t,
            cpu_s=cpu.user + cpu.system,
            rss_bytes=self.ps.memory_info().rss,
            active_calls=active,
        )

    def turn_records(
        self, call_sids: Sequence[str], timeout_s: float = 15.0
    ) -> list[tuple[str, dict]]:
        """(speaker, timings) of every stored turn of these calls, once the calls are all
        recorded as ended: what the database holds is what the bench counts."""
        sids = list(call_sids)
        marks = ",".join("?" * len(sids))
        deadline = time.monotonic() + timeout_s
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=5)) as db:
            while True:
                ended = db.execute(
                    "SELECT COUNT(*) FROM calls WHERE ended_at IS NOT NULL "
                    f"AND call_sid IN ({marks})",
                    sids,
                ).fetchone()[0]
                if ended >= len(sids) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            rows = db.execute(
                f"SELECT t.speaker, t.timings FROM turns t JOIN calls c ON c.id = t.call_id "
                f"WHERE c.call_sid IN ({marks})",
                sids,
            ).fetchall()
        return [(r[0], json.loads(r[1]) if isinstance(r[1], str) else r[1]) for r in rows]

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.data_dir / "server.log").read_bytes()[-n:].decode("utf-8", "replace")
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._tmp.cleanup()


# --- one concurrency level ----------------------------------------------------------------------


class _Active:
    def __init__(self) -> None:
        self.n = 0


def _script(index: int, cfg: BenchConfig) -> list[str]:
    u = list(cfg.utterances)
    return [u[(index + k) % len(u)] for k in range(cfg.turns)]


async def _one_call(
    index: int,
    delay_s: float,
    base: str,
    token: str | None,
    cfg: BenchConfig,
    rendered: dict[str, bytes],
    active: _Active,
) -> dict[str, Any]:
    await asyncio.sleep(delay_s)
    options = CallOptions(
        server=base,
        says=_script(index, cfg),
        auth_token=token,
        transcribe=False,
        timeout_s=30.0,
        greeting_timeout_s=30.0,
        pause_ms=cfg.pause_ms,
        rendered=rendered,
    )
    active.n += 1
    try:
        result = await run_call(options)
    finally:
        active.n -= 1
    return result.to_dict()


async def run_level(
    calls: int,
    cfg: BenchConfig,
    rendered: dict[str, bytes],
    server: ServerProcess | None,
    base: str,
    token: str | None,
    progress: Any = None,
) -> dict[str, Any]:
    """``calls`` callers started evenly over ``ramp_s``; every one talks ``turns`` times."""
    active = _Active()
    samples: list[ProcessSample] = []
    t0 = time.monotonic()
    self_ps = psutil.Process()
    self_cpu0 = sum(self_ps.cpu_times()[:2])

    async def sampler() -> None:
        while True:
            if server is not None:
                samples.append(server.sample(time.monotonic() - t0, active.n))
            await asyncio.sleep(SAMPLE_EVERY_S)

    baseline = server.sample(0.0, 0) if server is not None else None
    sampling = asyncio.create_task(sampler())
    step = cfg.ramp_s / calls if calls > 1 else 0.0
    try:
        results = await asyncio.gather(
            *(_one_call(i, i * step, base, token, cfg, rendered, active) for i in range(calls))
        )
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    wall = time.monotonic() - t0
    client_cpu = sum(self_ps.cpu_times()[:2]) - self_cpu0
    level: dict[str, Any] = {
        "calls": calls,
        "wall_s": round(wall, 1),
        "client": client_summary(results),
        "bench_process_cpu_percent": round(client_cpu / wall * 100, 1),
    }
    if server is not None and baseline is not None:
        turns = await asyncio.to_thread(server.turn_records, [r["call_sid"] for r in results])
        timings = [t for speaker, t in turns if speaker == "bot"]
        caller_turns = sum(1 for speaker, _ in turns if speaker == "caller")
        peak = peak_rss(samples, calls)
        steady = steady_cpu_percent(samples, calls)
        level["server"] = {
            "cpu_percent_steady": steady,
            "cpu_percent_per_call": round(steady / calls, 3) if steady is not None else None,
            "rss_baseline_mb": round(baseline.rss_bytes / MB, 1),
            "rss_peak_mb": round(peak / MB, 1) if peak else None,
            "rss_per_call_mb": round((peak - baseline.rss_bytes) / MB / calls, 3) if peak else None,
            "stages_ms": stage_summary(timings),
            "turns_recorded": len(timings),  # bot turns: greetings and replies
            "caller_turns_recorded": caller_turns,
            # Caller turns the bot answered but the database does not hold (must be 0).
            "caller_turns_missing": max(
                level["client"]["turns"] - level["client"]["turns_unanswered"] - caller_turns, 0
            ),
        }
        level["samples"] = [asdict(s) for s in samples]
    (progress or _say)(_level_line(level))
    return level


def _level_line(level: dict[str, Any]) -> str:
    c = level["client"]
    lat = c["turn_latency_ms"]
    out = c["outbound"]
    line = (
        f"{level['calls']:4d} calls: turn latency p50 {lat['p50']} / p95 {lat['p95']} / "
        f"p99 {lat['p99']} ms, late bot frames {out['late_frames']} of "
        f"{out['bot_frames_played']}, failed {c['failed_calls']}"
    )
    s = level.get("server")
    if s:
        line += (
            f"; server CPU {s['cpu_percent_steady']} % of a core, RSS {s['rss_peak_mb']} MB "
            f"(+{s['rss_per_call_mb']} MB/call), overhead p50 "
            f"{s['stages_ms']['overhead_ms']['p50']} ms"
        )
    return line


def _say(line: str) -> None:
    print(line, flush=True)


# --- the whole run ------------------------------------------------------------------------------


async def _warm_up(base: str, token: str | None, rendered: dict[str, bytes]) -> None:
    """One call first: lazy imports, first-use allocations and caches are not load."""
    await run_call(
        CallOptions(
            server=base,
            says=[next(iter(rendered))],
            auth_token=token,
            transcribe=False,
            rendered=rendered,
            pause_ms=200,
        )
    )


async def run_bench(cfg: BenchConfig, progress: Any = _say) -> dict[str, Any]:
    if cfg.client_cpus:
        os.sched_setaffinity(0, cfg.client_cpus)
    rendered = await render_utterances(list(cfg.utterances))
    gc.freeze()  # the callers' 20 ms clocks must not wait on collections of setup objects
    levels: list[dict[str, Any]] = []
    for calls in cfg.levels:
        if cfg.url:
            await _warm_up(cfg.url, cfg.auth_token, rendered)
            levels.append(
                await run_level(calls, cfg, rendered, None, cfg.url, cfg.auth_token, progress)
            )
            continue
        token = secrets.token_hex(16)
        server = ServerProcess(cfg.engines, cfg.server_cpus, token, cfg.server_env)
        try:
            await server.wait_ready()
            await _warm_up(server.url, token, rendered)
            await asyncio.sleep(1.0)
            levels.append(
                await run_level(calls, cfg, rendered, server, server.url, token, progress)
            )
        except Exception:
            progress(f"server log:\n{server.log_tail()}")
            raise
        finally:
            await asyncio.to_thread(server.stop)
    report: dict[str, Any] = {
        "bench": "load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "engines": cfg.engines if not cfg.url else "external",
        "url": cfg.url,
        "turns_per_call": cfg.turns,
        "ramp_s": cfg.ramp_s,
        "server_cpus": sorted(cfg.server_cpus) if cfg.server_cpus else "all",
        "client_cpus": sorted(cfg.client_cpus) if cfg.client_cpus else "all",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "levels": levels,
        "capacity_calls_p95_within_limit": capacity(levels, cfg.p95_limit_ms),
        "p95_limit_ms": cfg.p95_limit_ms,
        "memory_mb_per_call_slope": memory_slope_mb(levels),
    }
    return report


def write_report(report: dict[str, Any], cfg: BenchConfig) -> tuple[Path, Path | None]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    name = cfg.name or f"load-{report['engines']}-{'-'.join(str(n) for n in cfg.levels)}"
    json_path = cfg.out / f"{name}.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    png_path = None
    if cfg.chart:
        from app.load_chart import draw_chart

        png_path = cfg.out / f"{name}.png"
        draw_chart(report, png_path)
    return json_path, png_path


# --- command line -------------------------------------------------------------------------------


def _cpus(text: str | None) -> set[int] | None:
    if not text or text == "all":
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def add_bench_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "bench",
        help="load bench: N concurrent simulated phone calls against a real server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--calls",
        default="10",
        help="concurrent calls; a comma list (e.g. 50,100,150) runs one level after another",
    )
    p.add_argument("--engines", choices=["instant", "embedded"], default="instant")
    p.add_argument("--url", default=None, help="bench a server that is already running")
    p.add_argument(
        "--auth-token",
        default=os.environ.get("TWILIO_AUTH_TOKEN"),
        help="with --url: the server's Twilio auth token, to sign as Twilio does "
        "(default: $TWILIO_AUTH_TOKEN)",
    )
    p.add_argument("--turns", type=int, default=3, help="caller turns per call")
    p.add_argument("--ramp", type=float, default=10.0, help="seconds over which calls start")
    p.add_argument(
        "--server-cpus",
        default=None,
        help="cores the server may use, e.g. 0 or 0-1 (default: core 0 for instant "
        "engines, all for embedded)",
    )
    p.add_argument("--client-cpus", default=None, help="cores the callers may use")
    p.add_argument("--p95-limit-ms", type=float, default=2000.0)
    p.add_argument("--out", default="bench-results", help="directory for the JSON and PNG")
    p.add_argument("--name", default=None, help="file name (without extension)")
    p.add_argument("--no-chart", action="store_true")
    p.set_defaults(func=_cmd_bench)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    levels = [int(x) for x in str(args.calls).split(",") if x.strip()]
    if not levels or min(levels) < 1:
        raise SystemExit("--calls: positive numbers, e.g. 10 or 25,50,100")
    server_cpus = _cpus(args.server_cpus)
    client_cpus = _cpus(args.client_cpus)
    n = os.cpu_count() or 1
    if args.server_cpus is None and args.engines == "instant" and not args.url and n > 1:
        server_cpus = {0}  # "calls per core": the server gets exactly one
        client_cpus = client_cpus or set(range(1, n))
    return BenchConfig(
        levels=levels,
        engines=args.engines,
        url=args.url.rstrip("/") if args.url else None,
        auth_token=args.auth_token or None,
        turns=args.turns,
        ramp_s=args.ramp,
        server_cpus=server_cpus,
        client_cpus=client_cpus,
        p95_limit_ms=args.p95_limit_ms,
        out=Path(args.out),
        name=args.name,
        chart=not args.no_chart,
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    try:  # the callers need a fast event loop too: hundreds of 20 ms clocks share one core
        import uvloop

        report = uvloop.run(run_bench(cfg))
    except ImportError:
        report = asyncio.run(run_bench(cfg))
    json_path, png_path = write_report(report, cfg)
    print(f"report: {json_path}" + (f", chart: {png_path}" if png_path else ""))
    if report["capacity_calls_p95_within_limit"] is not None:
        print(
            f"highest level with turn latency p95 <= {cfg.p95_limit_ms:g} ms and no failed "
            f"call: {report['capacity_calls_p95_within_limit']}"
        )
    failed = sum(lv["client"]["failed_calls"] for lv in report["levels"])
    missing = sum(lv.get("server", {}).get("caller_turns_missing", 0) for lv in report["levels"])
    if missing:
        print(f"{missing} answered caller turn(s) missing from the database")
    return 1 if failed or missing else 0
