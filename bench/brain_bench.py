"""How fast the offline brain starts answering: time to the first text chunk of each reply.

Replays every conversation of ``tests/eval/dialogue_set.jsonl`` against OfflineBrain +
OfficeTools + the knowledge base + a SQLite database, and reports per turn:

* ``first_text`` — from ``respond()`` to the first TextChunk (what the caller waits for);
* ``brain_only`` — the same minus the time spent inside tool calls before that chunk
  (database and index I/O), i.e. the dialogue engine's own cost (target ≤ 20 ms);
* ``turn`` — the whole reply, tools included.

Usage: ``.venv/bin/python bench/brain_bench.py [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.booking import BookingService, ensure_catalog  # noqa: E402
from app.storage import BookingRepository, Database  # noqa: E402
from knowledge import KnowledgeBase  # noqa: E402
from pipeline.brain.base import CallContext, TextChunk, UserInput  # noqa: E402
from pipeline.brain.office_tools import OfficeTools  # noqa: E402
from pipeline.brain.offline import OfflineBrain  # noqa: E402
from pipeline.brain.spoken import speak_code  # noqa: E402

TZ = ZoneInfo("America/Santo_Domingo")
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=TZ)
SET_PATH = ROOT / "tests" / "eval" / "dialogue_set.jsonl"


def clock() -> datetime:
    return NOW


class TimedTools:
    """Wraps the tools and adds up the time spent inside them."""

    def __init__(self, tools: OfficeTools) -> None:
        self.tools = tools
        self.catalog = tools.catalog
        self.spent = 0.0

    def now(self) -> datetime | None:
        return self.tools.now()

    async def call(self, name: str, arguments: dict[str, Any], ctx: CallContext) -> dict:
        t0 = time.perf_counter()
        try:
            return await self.tools.call(name, arguments, ctx)
        finally:
            self.spent += time.perf_counter() - t0


async def template(directory: Path) -> Path:
    path = directory / "taina.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.migrate()
    await ensure_catalog(BookingRepository(db, clock=clock))
    await db.dispose()
    return path


async def replay(case: dict[str, Any], kb: KnowledgeBase, tpl: Path, work: Path) -> list[dict]:
    shutil.copy(tpl, work / tpl.name)
    db = Database(f"sqlite+aiosqlite:///{work / tpl.name}")
    repo = BookingRepository(db, clock=clock)
    service = BookingService(repo, clock=clock)
    code = ""
    for spec in case.get("setup", []):
        slots = await service.available(
            spec["service"], spec["office"], date.fromisoformat(spec["date"]), limit=50
        )
        slot = next(s for s in slots if s.starts_at.strftime("%H:%M") == spec["time"])
        info = await service.book(slot.id, spec["service"], "Ana", spec["cedula"], spec["phone"])
        code = code or info.code
    tools = TimedTools(OfficeTools(kb, service, timeout_s=10))
    brain = OfflineBrain(tools, clock=clock)  # type: ignore[arg-type]
    ctx = CallContext(call_id=f"CA-{case['id']}", caller_number=case.get("caller"))
    await brain.greeting(ctx)
    rows = []
    for turn in case["turns"]:
        text = turn.get("text", "") if isinstance(turn, dict) else turn
        dtmf = turn.get("dtmf", "") if isinstance(turn, dict) else ""
        if code:
            text = text.replace("{code_spoken}", speak_code(code).replace(",", ""))
            text = text.replace("{code}", code)
        tools.spent = 0.0
        first = before_first = None
        t0 = time.perf_counter()
        ended = False
        async for out in brain.respond(ctx, UserInput(text=text, dtmf=dtmf)):
            if isinstance(out, TextChunk) and first is None:
                first = time.perf_counter() - t0
                before_first = tools.spent
            ended = ended or type(out).__name__ in ("EndCall", "Transfer")
        total = time.perf_counter() - t0
        if first is not None:
            rows.append(
                {
                    "first_text": first * 1000,
                    "brain_only": (first - (before_first or 0.0)) * 1000,
                    "turn": total * 1000,
                    "tools": tools.spent * 1000,
                }
            )
        if ended:
            break
    await db.dispose()
    return rows


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return (
        f"{name:<11} n={len(values):<5} p50={statistics.median(values):6.2f} ms  "
        f"p95={p(0.95):6.2f} ms  p99={p(0.99):6.2f} ms  max={values[-1]:6.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cases = [json.loads(x) for x in SET_PATH.read_text("utf-8").splitlines() if x.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="brain-bench-"))
    kb = KnowledgeBase.load(tmp / "kb")
    (tmp / "tpl").mkdir()
    tpl = await template(tmp / "tpl")
    rows: list[dict] = []
    for r in range(args.rounds):
        for case in cases:
            work = tmp / f"{r}-{case['id']}"
            work.mkdir()
            rows.extend(await replay(case, kb, tpl, work))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"offline brain, {len(cases)} conversations x {args.rounds} rounds, {len(rows)} replies")
    for key in ("brain_only", "first_text", "turn"):
        print(summary(key, [row[key] for row in rows]))
    no_tools = [row["turn"] for row in rows if row["tools"] == 0]
    print(summary("no_tool", no_tools) + "   (replies that needed no tool at all)")


if __name__ == "__main__":
    asyncio.run(main())
