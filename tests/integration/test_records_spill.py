"""The recorder's spill file (``app/storage/spill.py``): order kept, nothing dropped, and
records that outlive their process are written by the next one.

A real database (SQLite file) behind a repository that can be switched "down" (every write
raises the connection error an outage raises), so the recorder's own code paths are what is
tested: the bound, the spill, the read-back, the leftovers at shutdown and an orphaned file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from app.storage import CallRecorder, CallRepository, Database, TurnRecord

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


class SwitchableRepo:
    """A CallRepository whose database is down while ``down`` is True."""

    def __init__(self, inner: CallRepository) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def guarded(*args: Any, **kw: Any) -> Any:
            if self.down:
                raise OperationalError("INSERT ...", {}, ConnectionRefusedError("db down"))
            return await method(*args, **kw)

        return guarded


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await database.migrate()
    yield database
    await database.dispose()


def turns(call: str, n: int) -> list[TurnRecord]:
    return [
        TurnRecord(seq=i, speaker="caller" if i % 2 else "bot", text=f"{call} turno {i}")
        for i in range(n)
    ]


async def test_past_the_bound_records_spill_and_come_back_in_order(db, tmp_path: Path) -> None:
    repo = SwitchableRepo(CallRepository(db))
    recorder = CallRecorder(
        repo,  # type: ignore[arg-type]
        max_pending=10,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        spill_dir=tmp_path / "spill",
    )
    repo.down = True
    recorder.start()
    for c in range(20):  # 20 calls x (start + 30 turns + end) = 640 records, bound 10
        sid = f"CA-{c}"
        recorder.call_started(sid, "twilio")
        for t in turns(sid, 30):
            recorder.turn_ended(sid, t)
        recorder.call_ended(sid, end_reason="caller-hangup")
    await asyncio.sleep(0.3)
    assert recorder.spilling and recorder.spilled >= 600 and recorder.pending == 640
    assert len(recorder._queue) <= 10  # memory stays at the bound
    repo.down = False
    async with asyncio.timeout(60):
        await recorder.flushed()
    assert recorder.pending == 0 and not recorder.spilling and recorder.dropped == 0
    calls = CallRepository(db)
    for c in range(20):
        detail = await calls.get_call(f"CA-{c}")
        assert detail is not None and detail.end_reason == "caller-hangup"
        assert [t.text for t in detail.turns] == [t.text for t in turns(f"CA-{c}", 30)]
    # The spill file is emptied once written back (it stays ours until stop).
    assert all(p.stat().st_size == 0 for p in (tmp_path / "spill").glob("records-*.jsonl"))
    await recorder.stop()
    assert list((tmp_path / "spill").glob("records-*.jsonl")) == []


async def test_records_unwritten_at_shutdown_are_written_by_the_next_start(
    db, tmp_path: Path
) -> None:
    repo = SwitchableRepo(CallRepository(db))
    spill = tmp_path / "spill"
    first = CallRecorder(repo, max_pending=5, backoff_initial_s=0.01, spill_dir=spill)  # type: ignore[arg-type]
    repo.down = True
    first.start()
    first.call_started("CA-left", "web")
    for t in turns("CA-left", 12):
        first.turn_ended("CA-left", t)
    first.call_ended("CA-left", end_reason="server-shutdown")
    await first.stop(timeout=0.3)  # the database is still down
    assert len(list(spill.glob("records-*.jsonl"))) == 1

    repo.down = False
    second = CallRecorder(CallRepository(db), spill_dir=spill)
    second.start()
    async with asyncio.timeout(30):
        await second.flushed()
    await second.stop()
    assert second.replayed_orphans == 14
    detail = await CallRepository(db).get_call("CA-left")
    assert detail is not None and detail.end_reason == "server-shutdown"
    assert [t.seq for t in detail.turns] == list(range(12))
    assert list(spill.glob("records-*.jsonl")) == []


async def test_a_spill_file_left_by_a_killed_process_is_adopted(db, tmp_path: Path) -> None:
    """A process spilling records is killed (SIGKILL, no shutdown): its file's lock is
    released by the kernel, and the next recorder writes what it holds."""
    spill = tmp_path / "spill"
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from app.storage import CallRecorder, TurnRecord
        class Down:
            def __getattr__(self, name):
                async def fail(*a, **k):
                    from sqlalchemy.exc import OperationalError
                    raise OperationalError("x", {{}}, ConnectionRefusedError("down"))
                return fail
        async def main():
            r = CallRecorder(
                Down(), max_pending=2, backoff_initial_s=5, spill_dir=Path({str(spill)!r})
            )
            r.start()
            r.call_started("CA-mem-0", "twilio")  # these two stay in memory (bound 2)
            r.call_started("CA-mem-1", "twilio")
            r.call_started("CA-killed", "twilio")  # from here on, in the spill file
            for i in range(8):
                r.turn_ended("CA-killed", TurnRecord(seq=i, speaker="bot", text=f"t{{i}}"))
            r.call_ended("CA-killed", end_reason="caller-hangup")
            print("spilled", r.spilled, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.startswith(b"spilled"), line
    # While it lives, its file is locked: nobody adopts it.
    live = CallRecorder(CallRepository(db), spill_dir=spill)
    live.start()
    async with asyncio.timeout(10):
        await live.flushed()
    await live.stop()
    assert live.replayed_orphans == 0
    proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 10)

    after = CallRecorder(CallRepository(db), spill_dir=spill)
    after.start()
    async with asyncio.timeout(30):
        await after.flushed()
    await after.stop()
    # What had spilled (everything past the bound of 2) is written, in order; the two
    # records still in the dead process's memory died with it.
    assert after.replayed_orphans == int(line.split()[1]) == 10
    assert after.dropped == 0
    detail = await CallRepository(db).get_call("CA-killed")
    assert detail is not None and detail.end_reason == "caller-hangup"
    assert [t.text for t in detail.turns] == [f"t{i}" for i in range(8)]
