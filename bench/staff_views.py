"""How long the staff views' API answers take on a month of calls: the quality report, the
week calendar, one call's review.

Seeds ``--calls`` calls (default 3,000: ~100 a day for 30 days) of 9 turns each — a greeting,
four questions and four answers, each answer carrying a knowledge search with three whole
passages like the real tools store, one question in eight misunderstood, one in eight out of
scope — into a fresh database, starts the real app under uvicorn on loopback and times each
endpoint over HTTP as an agent (median and max of ``--rounds``).

Usage: ``.venv/bin/python bench/staff_views.py [--database-url postgresql+asyncpg://…]
[--calls 3000] [--rounds 5]`` (default database: SQLite in a temporary directory).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from app.main import create_app  # noqa: E402
from app.storage.models import Call, Turn  # noqa: E402
from app.users import create_user  # noqa: E402
from pipeline.brain import phrases  # noqa: E402
from pipeline.brain.tools import SEARCH_KNOWLEDGE  # noqa: E402
from pipeline.session import SORRY_NOT_UNDERSTOOD  # noqa: E402
from tests.integration.conftest import LiveServer, instant_engines, settings_for  # noqa: E402

PASSAGE = "Requisitos para renovar la cédula: acta de nacimiento, cédula anterior. " * 12
QUESTIONS = [
    "¿A qué hora abren las oficinas?",
    "¿Qué necesito para el pasaporte?",
    "¿Cuánto cuesta la licencia?",
    "¿Dónde queda la oficina de Santiago?",
]


def _rows(n_calls: int) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    now = datetime.now(UTC)
    calls, turns = [], []
    hits = [
        {"source": "cedula.md", "heading": f"Cédula > Sección {i}", "score": 3.2, "text": PASSAGE}
        for i in range(3)
    ]
    for c in range(n_calls):
        start = now - timedelta(minutes=c * 14)
        calls.append(
            {
                "call_sid": f"CA-bench-{c}",
                "ingress": "twilio",
                "started_at": start,
                "ended_at": start + timedelta(minutes=2),
                "meta": {},
            }
        )
        mine = [{"seq": 0, "speaker": "bot", "text": "Buenas tardes. ¿En qué le puedo ayudar?"}]
        for q in range(4):
            k = c * 4 + q
            said = QUESTIONS[q] if k % 8 not in (3, 6) else f"pregunta rara {k % 50}"
            if k % 8 == 3:
                reply, tools = SORRY_NOT_UNDERSTOOD, []
            elif k % 8 == 6:
                reply = f"{phrases.CANNOT_HELP_WITH_THAT} {phrases.CAPABILITIES}"
                tools = [
                    {"name": SEARCH_KNOWLEDGE, "arguments": {"query": said}, "result": {"hits": []}}
                ]
            else:
                reply = "Abrimos de lunes a viernes de ocho a cuatro."
                tools = [
                    {
                        "name": SEARCH_KNOWLEDGE,
                        "arguments": {"query": said},
                        "result": {"hits": hits, "answer": reply},
                    }
                ]
            mine.append(
                {
                    "seq": 1 + 2 * q,
                    "speaker": "caller",
                    "text": said,
                    "timings": {"audio_ms": 1500.0, "stream_at_ms": 4000.0 * q},
                }
            )
            mine.append(
                {
                    "seq": 2 + 2 * q,
                    "speaker": "bot",
                    "text": reply,
                    "tools": tools,
                    "timings": {
                        "endpoint_ms": 550.0,
                        "stt_wait_ms": 90.0,
                        "brain_first_sentence_ms": 40.0,
                        "tts_first_audio_ms": 30.0,
                        "first_byte_ms": 730.0,
                        "stream_at_ms": 4000.0 * q + 2200,
                    },
                }
            )
        for t in mine:
            at = start + timedelta(seconds=t["seq"] * 4)
            t.update(
                started_at=at,
                ended_at=at + timedelta(seconds=2),
                heard_text=t["text"],
                interrupted=False,
            )
            t.setdefault("timings", {})
            t.setdefault("tools", [])
        turns.append(mine)
    return calls, turns


async def _seed(server: LiveServer, n_calls: int) -> None:
    calls, turns = _rows(n_calls)
    db = server.services.db
    async with db.session(write=True) as s:
        for i in range(0, len(calls), 500):
            await s.execute(insert(Call), calls[i : i + 500])
    async with db.session() as s:
        ids = dict((await s.execute(select(Call.call_sid, Call.id))).all())
    flat = [
        {**t, "call_id": ids[c["call_sid"]]} for c, ts in zip(calls, turns, strict=True) for t in ts
    ]
    async with db.session(write=True) as s:
        for i in range(0, len(flat), 2000):
            await s.execute(insert(Turn), flat[i : i + 2000])
    await create_user(db, "agente@example.org", "agent", "clave-segura-123", actor="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="staff-bench-"))
    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    server = LiveServer(
        create_app(settings_for(tmp, **overrides), engines=instant_engines())
    ).start()
    try:
        t0 = time.perf_counter()
        server.run(_seed(server, args.calls), timeout=600)
        print(
            f"seeded {args.calls} calls ({args.calls * 9} turns) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        http = httpx.Client(base_url=server.url, timeout=120)
        token = http.post(
            "/api/auth/login", json={"email": "agente@example.org", "password": "clave-segura-123"}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        targets = {
            "GET /api/quality/report?days=30": ("/api/quality/report", {"days": 30}),
            "GET /api/calendar (week, SDC)": ("/api/calendar", {"office": "SDC", "days": 7}),
            "GET /api/calls/{sid}/review": ("/api/calls/CA-bench-7/review", {}),
        }
        for name, (path, params) in targets.items():
            times = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                r = http.get(path, params=params, headers=auth)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
            print(
                f"{name:36s} median {statistics.median(times):7.1f} ms   "
                f"max {max(times):7.1f} ms   ({len(r.content) / 1024:.0f} KB)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
