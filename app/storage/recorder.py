"""Fire-and-forget call recording that survives a database outage and never drops a record.

The CallSession must never wait on the database: a slow or absent database would become dead
air on the phone. So every write is queued and one background task performs them strictly in
order (a turn is never written before its call). When the database is unreachable the writer
keeps the entry at the head of the queue and retries it with backoff until it succeeds; every
write is idempotent (upserts keyed by call_sid and seq), so retrying one that actually landed
is harmless.

Memory is bounded without losing anything: past ``max_pending`` queued records, every new
record goes to an append-only file in the data dir (``app/storage/spill.py``) — all of them,
not only the overflow, so the order of the records is kept — and the writer reads the file
back in order once it has written the queue. Records still unwritten at shutdown are left in
a file that the next process writes first, as is a spill file left by a process that died.
A record the database refuses for good (a bug, not an outage) is kept in a dead-letter file
(``records-failed.jsonl``) instead of blocking the queue. Spills and failures are logged at
most once per ``notice_interval_s`` with their counts, never once per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.storage.calls_repo import CallRepository
from app.storage.database import is_unavailable
from app.storage.models import utcnow
from app.storage.records import TurnRecord
from app.storage.spill import SpillFile, write_leftovers

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000
REPLAY_BATCH = 500
DEAD_LETTER = "records-failed.jsonl"
_DATETIMES = ("started_at", "ended_at", "received_at")


@dataclass(slots=True)
class _Write:
    """One record: ``kind`` names the repository call, ``args`` its keyword arguments (plain
    data, so it can go to the spill file and come back)."""

    kind: str
    args: dict[str, Any]

    @property
    def call_sid(self) -> str | None:
        return self.args.get("call_sid")

    def __str__(self) -> str:
        turn = self.args.get("turn")
        seq = f"#{turn.seq}" if isinstance(turn, TurnRecord) else ""
        return f"{self.kind}{seq}({self.call_sid})"

    def encode(self) -> bytes:
        args = dict(self.args)
        if isinstance(args.get("turn"), TurnRecord):
            args["turn"] = asdict(args["turn"])
        return orjson.dumps(
            {"kind": self.kind, "args": args}, option=orjson.OPT_NON_STR_KEYS, default=str
        )

    @classmethod
    def decode(cls, line: bytes) -> _Write:
        data = orjson.loads(line)
        args: dict[str, Any] = data["args"]
        _parse_datetimes(args)
        if isinstance(args.get("turn"), dict):
            turn = args["turn"]
            _parse_datetimes(turn)
            args["turn"] = TurnRecord(**turn)
        return cls(data["kind"], args)


def _parse_datetimes(d: dict[str, Any]) -> None:
    for key in _DATETIMES:
        if isinstance(d.get(key), str):
            d[key] = datetime.fromisoformat(d[key])


_RUN: dict[str, Callable[[CallRepository, dict[str, Any]], Awaitable[Any]]] = {
    "call_started": lambda r, a: r.start_call(**a),
    "turn": lambda r, a: r.add_turn(a["call_sid"], a["turn"]),
    "greeting_ms": lambda r, a: r.set_greeting_ms(**a),
    "outcome": lambda r, a: r.set_outcome(**a),
    "call_ended": lambda r, a: r.end_call(**a),
    "stream_event": lambda r, a: r.record_stream_event(**a),
}


class Notice:
    """A repeating event logged at most once per interval, with how many happened since."""

    def __init__(self, level: int, interval_s: float) -> None:
        self.level = level
        self.interval_s = interval_s
        self.total = 0
        self._since = 0
        self._last = -float("inf")

    def __call__(self, msg: str, *args: Any) -> None:
        self.total += 1
        self._since += 1
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            log.log(self.level, msg + " (%d since the last notice, %d in all)", *args,
                    self._since, self.total)  # fmt: skip
            self._since = 0
            self._last = now


class CallRecorder:
    """Queue call records from synchronous code; write them in the background."""

    def __init__(
        self,
        repo: CallRepository,
        max_pending: int = DEFAULT_MAX_PENDING,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        spill_dir: Path | None = None,
        notice_interval_s: float = 10.0,
    ) -> None:
        self.repo = repo
        self.max_pending = max_pending
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.spill_dir = spill_dir
        self.dropped = 0  # records the database refused for good (kept in the dead letter)
        self.retries = 0  # failed attempts against an unavailable database
        self.spilled = 0  # records that went through the spill file
        self.overflowed = 0  # records kept in memory past the bound (no spill file possible)
        self.replayed_orphans = 0  # records written from files left by earlier processes
        self._queue: deque[_Write] = deque()
        self._inflight: _Write | None = None
        self._spill: SpillFile | None = None
        self._spilling = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._outage_logged = False
        self._spill_notice = Notice(logging.WARNING, notice_interval_s)
        self._overflow_notice = Notice(logging.ERROR, notice_interval_s)
        self._failed_notice = Notice(logging.ERROR, notice_interval_s)

    # --- producer side: never blocks, never raises on database trouble -----------------------

    def call_started(
        self,
        call_sid: str,
        ingress: str,
        caller_number: str | None = None,
        called_number: str | None = None,
        stream_sid: str | None = None,
        started_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self._enqueue(
            "call_started",
            call_sid=call_sid,
            ingress=ingress,
            caller_number=caller_number,
            called_number=called_number,
            stream_sid=stream_sid,
            started_at=started_at or utcnow(),  # the time of the event, not of the write
            meta=dict(meta or {}),
        )

    def turn_ended(self, call_sid: str, turn: TurnRecord) -> None:
        # Snapshot: the session may keep mutating its own record after handing it over.
        turn = replace(turn, timings=dict(turn.timings), tools=list(turn.tools))
        self._enqueue("turn", call_sid=call_sid, turn=turn)

    def greeting_measured(self, call_sid: str, greeting_ms: float) -> None:
        self._enqueue("greeting_ms", call_sid=call_sid, greeting_ms=greeting_ms)

    def outcome_set(self, call_sid: str, outcome: str) -> None:
        self._enqueue("outcome", call_sid=call_sid, outcome=outcome)

    def call_ended(
        self,
        call_sid: str,
        end_reason: str | None = None,
        outcome: str | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        self._enqueue(
            "call_ended",
            call_sid=call_sid,
            ended_at=ended_at or utcnow(),
            end_reason=end_reason,
            outcome=outcome,
        )

    def stream_event(
        self,
        call_sid: str | None,
        stream_sid: str | None,
        event: str,
        error: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        self._enqueue(
            "stream_event",
            call_sid=call_sid,
            stream_sid=stream_sid,
            event=event,
            error=error,
            received_at=utcnow(),
            payload=payload,
        )

    def _enqueue(self, kind: str, **args: Any) -> None:
        item = _Write(kind, args)
        if self._spilling or len(self._queue) >= self.max_pending:
            if self._spill_write(item):
                self._wake_writer()
                return
            self.overflowed += 1  # no file to spill to: keep it in memory, never drop it
            self._overflow_notice(
                "call recorder: queue past its bound (%d) and no spill file; %d records in memory",
                self.max_pending,
                len(self._queue),
            )
        self._queue.append(item)
        self._wake_writer()

    def _spill_write(self, item: _Write) -> bool:
        """Append ``item`` to the spill file; False when there is no file to append to."""
        if self.spill_dir is None:
            return False
        try:
            if self._spill is None:
                self._spill = SpillFile.create(self.spill_dir)
            line = item.encode()
            self._spill.append(line)
        except (OSError, TypeError, ValueError) as exc:
            self._overflow_notice("call recorder: cannot spill to %s: %s", self.spill_dir, exc)
            return False
        if not self._spilling:
            self._spilling = True
            log.warning(
                "call recorder queue full (%d records): spilling to %s until the database "
                "catches up",
                self.max_pending,
                self._spill.path,
            )
        self.spilled += 1
        self._spill_notice(
            "call recorder: %d records waiting in the spill file", self._spill.unread_lines
        )
        return True

    def _wake_writer(self) -> None:
        self._idle.clear()
        self._wake.set()

    # --- consumer side ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records not yet confirmed by the database (queued, spilled, the one in flight)."""
        spilled = self._spill.unread_lines if self._spill is not None else 0
        return len(self._queue) + spilled + (1 if self._inflight is not None else 0)

    @property
    def spilling(self) -> bool:
        return self._spilling

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._writer(), name="call-recorder")

    async def flushed(self) -> None:
        """Wait until every write queued so far (and since) has reached the database."""
        await self._idle.wait()

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed within ``timeout``, then stop the writer. What is still
        unwritten is left in a file for the next process (when there is a data dir)."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flushed(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        pending = self.pending
        kept = self._keep_leftovers() if pending else None
        if self._spill is not None:
            self._spill.close(remove=True)
            self._spill = None
            self._spilling = False
        if pending and kept is not None:
            log.error(
                "call recorder stopped with %d unwritten records; kept in %s for the next start",
                pending,
                kept,
            )
        elif pending:
            log.error("call recorder stopped with %d unwritten records", pending)

    def _keep_leftovers(self) -> Path | None:
        if self.spill_dir is None:
            return None
        items = ([self._inflight] if self._inflight is not None else []) + list(self._queue)
        try:
            lines = [i.encode() for i in items]
            tail = self._spill.remaining() if self._spill is not None else b""
            return write_leftovers(self.spill_dir, lines, tail)
        except (OSError, TypeError, ValueError):
            log.exception("could not keep the unwritten call records")
            return None

    async def _writer(self) -> None:
        self._idle.clear()  # flushed() waits for the orphans too
        await self._replay_orphans()
        while True:
            if self._inflight is None:
                item = await self._next()
                self._inflight = item
            await self._write(self._inflight)
            self._inflight = None

    async def _next(self) -> _Write:
        while True:
            if self._queue:
                return self._queue.popleft()
            spill = self._spill
            if self._spilling and spill is not None:
                if spill.unread_bytes > 0:
                    lines = await spill.read_batch(min(REPLAY_BATCH, max(1, self.max_pending)))
                    self._queue.extend(self._decode(lines))
                    continue
                # Caught up: the file holds nothing unread, and appends only happen on this
                # loop, so none can slip in between this check and the switch.
                spill.clear()
                self._spilling = False
                log.warning(
                    "call recorder: spill file written back (%d records through it so far)",
                    self.spilled,
                )
                continue
            self._idle.set()
            self._wake.clear()
            await self._wake.wait()

    def _decode(self, lines: list[bytes]) -> list[_Write]:
        out: list[_Write] = []
        for line in lines:
            try:
                out.append(_Write.decode(line))
            except (ValueError, KeyError, TypeError):
                self._dead_letter(line)
                self._failed_notice("call recorder: unreadable spilled record kept aside")
        return out

    async def _write(self, item: _Write) -> None:
        """Write one record, retrying while the database is unavailable."""
        attempt = 0
        while True:
            try:
                await _RUN[item.kind](self.repo, item.args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_unavailable(exc):
                    self.retries += 1
                    delay = min(self.backoff_max_s, self.backoff_initial_s * 2**attempt)
                    attempt += 1
                    if not self._outage_logged:
                        log.error(
                            "database unavailable, %d call records queued; retrying: %s",
                            self.pending,
                            exc,
                        )
                        self._outage_logged = True
                    await asyncio.sleep(delay)
                    continue
                self.dropped += 1
                with contextlib.suppress(TypeError, ValueError):
                    self._dead_letter(item.encode())
                self._failed_notice(
                    "call record %s refused by the database (kept in %s): %r",
                    item,
                    DEAD_LETTER,
                    exc,
                )
                return
            if self._outage_logged:
                log.warning("database is back; flushing %d queued call records", self.pending)
                self._outage_logged = False
            return

    def _dead_letter(self, line: bytes) -> None:
        if self.spill_dir is None:
            return
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            with open(self.spill_dir / DEAD_LETTER, "ab") as fh:
                fh.write(line + b"\n")
        except OSError:
            log.exception("dead-letter file not writable")

    async def _replay_orphans(self) -> None:
        """Write the records a previous process left behind (crash, or shutdown with the
        database down) before this process's own."""
        if self.spill_dir is None:
            return
        try:
            orphans = await asyncio.to_thread(SpillFile.orphans, self.spill_dir)
        except OSError:
            log.exception("spill dir not readable")
            return
        for orphan in orphans:
            log.warning("writing call records left in %s by an earlier process", orphan.path)
            while orphan.unread_bytes > 0:
                lines = await orphan.read_batch(REPLAY_BATCH)
                if not lines:
                    break
                for item in self._decode(lines):
                    self._inflight = item
                    await self._write(item)
                    self._inflight = None
                    self.replayed_orphans += 1
            orphan.close(remove=True)


class RecorderCollector(Collector):
    """The recorder's state on ``/metrics``, read at scrape time (no per-record cost)."""

    def __init__(self, recorder: CallRecorder) -> None:
        self._recorder = recorder

    def collect(self) -> Any:
        r = self._recorder
        yield GaugeMetricFamily(
            "taina_records_pending",
            "Call records not yet in the database (queued, spilled, in flight)",
            value=r.pending,
        )
        yield GaugeMetricFamily(
            "taina_records_spilling", "1 while records go to the spill file", value=r.spilling
        )
        yield CounterMetricFamily(
            "taina_records_spilled", "Records that went through the spill file", value=r.spilled
        )
        yield CounterMetricFamily(
            "taina_records_refused",
            "Records the database refused for good (kept in the dead-letter file)",
            value=r.dropped,
        )
