"""``taina eval --spoken``: simulated citizens call a real server and are judged on the result.

Each scenario is a whole phone call over the Twilio stream (the same simulated call as
``taina call``: signed webhook, 50 frames a second, real-time playback) against a ``taina
serve`` with the embedded engines (Silero, Whisper, the offline brain, the default TTS) and a
fresh database. The citizen speaks with its scenario's voice through a phone-band chain, hears
the bot through the same line, transcribes it with Whisper and answers what it heard
(:mod:`app.spoken_eval_caller`). Judging and figures: :mod:`app.spoken_eval_report`.

By default the evaluation starts its own server; ``--server URL`` targets a running one (then
``--db`` may point at its SQLite file so bookings can be checked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from app.spoken_eval_caller import Citizen
from app.spoken_eval_report import (
    StoredBooking,
    Verdict,
    bot_wer,
    format_table,
    judge_booking,
    judge_goodbye,
    judge_human,
    judge_question,
    meets_targets,
    slot_asks,
    summarize,
    time_matches,
)
from app.spoken_eval_scenarios import DEFAULT_FILE, Scenario, load_scenarios, select
from telephony import caller_voices
from telephony.simulator import CallOptions, run_call

SUBSTITUTE = {"kokoro": "pico-es-slow-high"}  # when a family is not installed here


@dataclass
class EvalConfig:
    scenarios: list[Scenario]
    server: str | None = None
    db: Path | None = None
    auth_token: str | None = None
    concurrency: int = 2
    voices: list[str] | None = None
    timezone: str = "America/Santo_Domingo"
    call_timeout_s: float = 600.0
    seed: int = 0
    keep: Path | None = None  # keep the server's database and log, and call recordings
    commit: str | None = None  # run the server from this commit (default: the working tree)


class Ears:
    """The citizens' Whisper: one model shared by every call, one utterance at a time.

    A person's ears, not the product's tuned ones: no catalog prompt, beam search, the stock
    30 s encoder window, and the level brought to a normal loudness first (a person turns
    the volume up; Whisper base drops words of quiet audio)."""

    def __init__(self) -> None:
        from app.settings import Settings
        from pipeline.stt import WhisperSTT

        s = Settings()
        self.stt = WhisperSTT(
            s.whisper_dir, language="es", prompt="", beam_size=5, cpu_threads=1,
            temperatures=(0.0, 0.4), min_encoder_s=None,
        )  # fmt: skip

    async def transcribe(self, pcm: bytes, rate: int) -> str:
        return (await self.stt.transcribe(normalize_level(pcm), rate)).text

    def close(self) -> None:
        close = getattr(self.stt, "close", None)
        if close is not None:
            close()


def normalize_level(pcm: bytes, target_dbfs: float = -20.0) -> bytes:
    """Speech brought to ``target_dbfs`` RMS (measured over its louder part), clipped."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if x.size == 0:
        return pcm
    loud = x[np.abs(x) > 0.05 * (np.abs(x).max() or 1)]
    level = float(np.sqrt(np.mean(loud**2))) if loud.size else 0.0
    if level < 1:
        return pcm
    x *= 32768 * 10 ** (target_dbfs / 20) / level
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()

    def close(self) -> None:
        close = getattr(self.stt, "close", None)
        if close is not None:
            close()


# --- the database the server wrote --------------------------------------------------------------


def read_call(db: Path, call_sid: str, tz: ZoneInfo, wait_s: float = 10.0) -> dict[str, Any]:
    """The call's stored turns and bookings, once the server has recorded the call's end."""
    deadline = time.monotonic() + wait_s
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as con:
        while True:
            row = con.execute(
                "SELECT id, ended_at FROM calls WHERE call_sid = ?", (call_sid,)
            ).fetchone()
            if (row and row[1]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        turns: list[tuple[str, str, str | None]] = []
        if row:
            turns = con.execute(
                "SELECT speaker, text, dtmf FROM turns WHERE call_id = ? ORDER BY seq", (row[0],)
            ).fetchall()
        rows = con.execute(
            "SELECT b.status, s.code, o.code, sl.starts_at, b.citizen_name, b.cedula "
            "FROM bookings b JOIN services s ON s.id = b.service_id "
            "JOIN offices o ON o.id = b.office_id JOIN slots sl ON sl.id = b.slot_id "
            "WHERE b.call_sid = ? ORDER BY b.id",
            (call_sid,),
        ).fetchall()
    bookings = [
        StoredBooking(r[0], r[1], r[2], _local(r[3], tz), r[4], r[5]) for r in rows
    ]  # fmt: skip
    return {"turns": turns, "bookings": bookings}


def _local(value: str, tz: ZoneInfo) -> dt.datetime:
    t = dt.datetime.fromisoformat(str(value))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(tz)


# --- one scenario -------------------------------------------------------------------------------


def _voice_for(s: Scenario, cfg: EvalConfig, index: int) -> str:
    name = s.voice
    if cfg.voices:
        wanted = cfg.voices[index % len(cfg.voices)]
        family_voices = caller_voices.voices_of(wanted)
        name = family_voices[index % len(family_voices)].name if family_voices else wanted
    voice = caller_voices.get_voice(name)
    if not caller_voices.available(voice):
        name = SUBSTITUTE.get(voice.family, "pico-es")
    return name


async def run_scenario(
    s: Scenario, cfg: EvalConfig, server: str, ears: Ears, today: dt.date, index: int,
    cache_dir: Path | None, progress: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    voice = _voice_for(s, cfg, index)
    scenario = Scenario(**{**s.__dict__, "voice": voice})
    citizen = Citizen(scenario, ears.transcribe, today, cache_dir)
    t0 = time.monotonic()
    try:
        result = await asyncio.wait_for(
            run_call(
                CallOptions(
                    server=server,
                    responder=citizen.respond,
                    transcribe=False,
                    timeout_s=30,
                    greeting_timeout_s=30,
                    auth_token=cfg.auth_token,
                    max_steps=40,
                    from_number="+1809555" + f"{2000 + index:04d}",
                    out=str(cfg.keep / f"{s.id}.wav") if cfg.keep else None,
                )
            ),
            cfg.call_timeout_s,
        )
    except TimeoutError:
        return _row(s, voice, citizen, None, {}, Verdict(False, ["call timed out"]), t0)
    stored: dict[str, Any] = {"turns": [], "bookings": []}
    db = cfg.db
    if db is not None and db.is_file():
        stored = await asyncio.to_thread(read_call, db, result.call_sid, ZoneInfo(cfg.timezone))
    bot_texts = [t[1] for t in stored["turns"] if t[0] == "bot" and t[1]]
    if s.kind == "booking":
        if db is None:
            verdict = Verdict(citizen.log.heard_booked, ["(no database: judged by ear)"])
        else:
            verdict = judge_booking(s, stored["bookings"], citizen.date_phrase, today)
    elif s.kind == "question":
        verdict = judge_question(s, citizen.log.answers_heard)
    elif s.kind == "goodbye":
        verdict = judge_goodbye(
            bot_texts or [e.bot_heard for e in citizen.log.exchanges],
            result.hung_up_by_server,
            bool(stored["bookings"]),
        )
    else:
        verdict = judge_human(bot_texts or [e.bot_heard for e in citizen.log.exchanges])
    if result.error:
        verdict.reasons.append(result.error)
    if citizen.log.gave_up and not verdict.ok:
        verdict.reasons.append(f"caller gave up: {citizen.log.gave_up}")
    row = _row(s, voice, citizen, result, stored, verdict, t0)
    progress(
        f"{s.id:<28} {'ok ' if row['ok'] else 'NO '} {row['turns']:>2} turns  "
        f"wer {row['wer']:.2f}  {'; '.join(row['reasons'])[:100]}"
    )
    return row


def _row(s: Scenario, voice: str, citizen: Citizen, result: Any, stored: dict[str, Any],
         verdict: Verdict, t0: float) -> dict[str, Any]:  # fmt: skip
    bot_texts = [t[1] for t in stored.get("turns", []) if t[0] == "bot" and t[1]]
    heard = [e.bot_heard for e in citizen.log.exchanges if e.bot_heard]
    wer, errors, words = bot_wer(bot_texts, heard) if bot_texts else (0.0, 0, 0)
    bookings = stored.get("bookings", [])
    return {
        "id": s.id,
        "kind": s.kind,
        "voice": voice,
        "voice_family": caller_voices.get_voice(voice).family
        + ("+human-digits" if s.digits_voice else ""),
        "ok": verdict.ok,
        "reasons": verdict.reasons,
        "turns": citizen.turns,
        "wer": round(wer, 3),
        "wer_errors": errors,
        "wer_words": words,
        "slot_asks": slot_asks(bot_texts),
        "latencies_ms": result.latencies_ms if result is not None else [],
        "call_sid": result.call_sid if result is not None else None,
        "duration_s": round(time.monotonic() - t0, 1),
        "time_matches": [time_matches(s, b) for b in bookings if b.status == "confirmed"],
        "bookings": [{**b.__dict__, "starts_at": b.starts_at.isoformat()} for b in bookings],
        "bot_said": [
            {"speaker": t[0], "text": t[1], "dtmf": t[2]} for t in stored.get("turns", [])
        ],
        "citizen": citizen.summary(),
    }


# --- the whole run ------------------------------------------------------------------------------


async def run_eval(cfg: EvalConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    from app.load_bench import ServerProcess

    server_proc = None
    server = cfg.server
    tree: tempfile.TemporaryDirectory[str] | None = None
    if server is None:
        cfg.auth_token = cfg.auth_token or secrets.token_hex(16)
        env: dict[str, str] = {}
        models = Path(os.environ.get("TAINA_DATA_DIR", "data")) / "models" / "whisper-base"
        if models.is_dir():
            env["TAINA_STT_MODEL_DIR"] = str(models.resolve())
        cwd = Path.cwd()
        if cfg.commit:
            tree = tempfile.TemporaryDirectory(prefix="taina-eval-tree-")
            export_tree(cfg.commit, Path(tree.name))
            os.chdir(tree.name)  # the child starts in (and imports from) the exported tree
        try:
            server_proc = ServerProcess("embedded", None, cfg.auth_token, env)
        finally:
            os.chdir(cwd)
        cfg.db = server_proc.db_path
        server = server_proc.url
        progress(
            f"Starting taina serve (embedded engines) on {server}, data in {server_proc.data_dir}"
        )
    cache_dir = Path(os.environ.get("TAINA_DATA_DIR", "data")) / "cache" / "caller_voices"
    ears = await asyncio.to_thread(Ears)
    started = time.monotonic()
    try:
        if server_proc is not None:
            await server_proc.wait_ready()
        today = dt.datetime.now(ZoneInfo(cfg.timezone)).date()
        sem = asyncio.Semaphore(max(1, cfg.concurrency))

        async def one(i: int, s: Scenario) -> dict[str, Any]:
            async with sem:
                row = await run_scenario(s, cfg, server, ears, today, i, cache_dir, progress)
            if cfg.keep is not None:  # each call as it ends: a crash later loses nothing
                with (cfg.keep / "calls.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            return row

        calls = await asyncio.gather(*(one(i, s) for i, s in enumerate(cfg.scenarios)))
    finally:
        with contextlib.suppress(Exception):
            ears.close()
        if server_proc is not None:
            log_tail = server_proc.log_tail()
            if cfg.keep is not None:
                import shutil

                for name in ("taina.db", "server.log"):
                    with contextlib.suppress(OSError):
                        shutil.copy(server_proc.data_dir / name, cfg.keep / name)
            await asyncio.to_thread(server_proc.stop)
        if tree is not None:
            tree.cleanup()
    summary = summarize(calls)
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(cfg.commit or "HEAD"),
        "tree": f"commit {cfg.commit}" if cfg.commit else "working tree",
        "server": cfg.server or "spawned taina serve (embedded engines)",
        "concurrency": cfg.concurrency,
        "wall_s": round(time.monotonic() - started, 1),
        "summary": summary,
        "missed_targets": meets_targets(summary),
        "calls": calls,
    }
    if server_proc is not None and any(
        c["reasons"] and "error" in " ".join(c["reasons"]) for c in calls
    ):
        report["server_log_tail"] = log_tail
    return report


REPO = Path(__file__).resolve().parent.parent


def export_tree(rev: str, dest: Path) -> None:
    """The files of commit ``rev`` in ``dest``: the server runs committed code, not whatever
    half-made edit the working tree holds while others work in it."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        tar.extractall(dest, filter="data")


def _git_commit(rev: str = "HEAD") -> str | None:
    with contextlib.suppress(Exception):
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True,
            text=True, timeout=5,
        ).stdout.strip() or None  # fmt: skip
    return None


# --- CLI ----------------------------------------------------------------------------------------


def add_eval_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="spoken evaluation: simulated citizens call the server")
    p.add_argument("--spoken", action="store_true", required=True,
                   help="whole phone calls with simulated callers (the only mode)")  # fmt: skip
    p.add_argument("--scenarios", metavar="N|IDS",
                   help="the first N scenarios, or ids/prefixes separated by commas")  # fmt: skip
    p.add_argument("--file", default=str(DEFAULT_FILE), help="scenarios file (JSON lines)")
    p.add_argument("--voices", metavar="LIST",
                   help="voice families or names to use instead of the scenarios' "
                        f"(families: {', '.join(caller_voices.FAMILIES)})")  # fmt: skip
    p.add_argument("--server", help="URL of a running server (default: start one)")
    p.add_argument("--db", help="SQLite database of --server, to check bookings")
    p.add_argument("--auth-token", help="TWILIO_AUTH_TOKEN of --server (to sign)")
    p.add_argument("--concurrency", type=int, default=2, help="calls at a time (default 2)")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--commit", metavar="REV",
                   help="run the server from this commit (default: the working tree)")  # fmt: skip
    p.add_argument("--keep", metavar="DIR",
                   help="keep call recordings, the server's database and log in DIR")  # fmt: skip
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    scenarios = select(load_scenarios(args.file), args.scenarios)
    cfg = EvalConfig(
        scenarios=scenarios,
        server=args.server,
        db=Path(args.db) if args.db else None,
        auth_token=args.auth_token
        or (os.environ.get("TWILIO_AUTH_TOKEN") if args.server else None),
        concurrency=args.concurrency,
        voices=[v.strip() for v in args.voices.split(",")] if args.voices else None,
        keep=Path(args.keep) if args.keep else None,
        commit=args.commit,
    )
    if cfg.keep is not None:
        cfg.keep.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = asyncio.run(run_eval(cfg, say))
    print(format_table(report["calls"], report["summary"]))
    print(f"\n{len(scenarios)} calls in {report['wall_s']:.0f} s (commit {report['commit']}).")
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
        print(f"Report: {args.json}")
    if report["missed_targets"]:
        print("Targets missed: " + "; ".join(report["missed_targets"]))
        return 1 if args.strict else 0
    return 0
