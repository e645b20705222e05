"""Fire-and-forget call recording that survives a database outage.

The CallSession must never wait on the database: a slow or absent database would become dead
air on the phone. So every write is queued and one background task performs them strictly in
order (a turn is never written before its call). When the database is unreachable the writer
keeps the entry at the head of the queue and retries it with backoff until it succeeds; every
write is idempotent (upserts keyed by call_sid and seq), so retrying one that actually landed
is harmless. Only when the queue passes its bound are the oldest entries dropped, loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app.storage.calls_repo import CallRepository
from app.storage.database import is_unavailable
from app.storage.models import utcnow
from app.storage.records import TurnRecord

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000


@dataclass(slots=True)
class _Write:
    kind: str
    call_sid: str | None
    run: Callable[[CallRepository], Awaitable[Any]]

    def __str__(self) -> str:
        return f"{self.kind}({self.call_sid})"


class CallRecorder:
    """Queue call records from synchronous code; write them in the background."""

    def __init__(
        self,
        repo: CallRepository,
        max_pending: int = DEFAULT_MAX_PENDING,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.repo = repo
        self.max_pending = max_pending
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.dropped = 0  # entries lost to overflow or to non-retryable errors
        self.retries = 0  # failed attempts against an unavailable database
        self._queue: deque[_Write] = deque()
        self._inflight: _Write | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._outage_logged = False

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
        started_at = started_at or utcnow()  # the time of the event, not of the write
        meta = dict(meta or {})
        self._enqueue(
            "call_started",
            call_sid,
            lambda r: r.start_call(
                call_sid,
                ingress,
                caller_number=caller_number,
                called_number=called_number,
                stream_sid=stream_sid,
                started_at=started_at,
                meta=meta,
            ),
        )

    def turn_ended(self, call_sid: str, turn: TurnRecord) -> None:
        # Snapshot: the session may keep mutating its own record after handing it over.
        turn = replace(turn, timings=dict(turn.timings), tools=list(turn.tools))
        self._enqueue(f"turn#{turn.seq}", call_sid, lambda r: r.add_turn(call_sid, turn))

    def greeting_measured(self, call_sid: str, greeting_ms: float) -> None:
        self._enqueue("greeting_ms", call_sid, lambda r: r.set_greeting_ms(call_sid, greeting_ms))

    def outcome_set(self, call_sid: str, outcome: str) -> None:
        self._enqueue("outcome", call_sid, lambda r: r.set_outcome(call_sid, outcome))

    def call_ended(
        self,
        call_sid: str,
        end_reason: str | None = None,
        outcome: str | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        ended_at = ended_at or utcnow()
        self._enqueue(
            "call_ended",
            call_sid,
            lambda r: r.end_call(
                call_sid, ended_at=ended_at, end_reason=end_reason, outcome=outcome
            ),
        )

    def stream_event(
        self,
        call_sid: str | None,
        stream_sid: str | None,
        event: str,
        error: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        received_at = utcnow()
        self._enqueue(
            "stream_event",
            call_sid,
            lambda r: r.record_stream_event(
                call_sid, stream_sid, event, error=error, received_at=received_at, payload=payload
            ),
        )

    def _enqueue(
        self, kind: str, call_sid: str | None, run: Callable[[CallRepository], Awaitable[Any]]
    ) -> None:
        if len(self._queue) >= self.max_pending:
            lost = self._queue.popleft()
            self.dropped += 1
            log.error("call recorder queue full (%d): dropped %s", self.max_pending, lost)
        self._queue.append(_Write(kind, call_sid, run))
        self._idle.clear()
        self._wake.set()

    # --- consumer side ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Writes not yet confirmed by the database (queued plus the one in flight)."""
        return len(self._queue) + (1 if self._inflight is not None else 0)

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
        """Flush what can be flushed within ``timeout``, then stop the writer."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flushed(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self.pending:
            log.error("call recorder stopped with %d unwritten records", self.pending)

    async def _writer(self) -> None:
        attempt = 0
        while True:
            if self._inflight is None:
                if not self._queue:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._inflight = self._queue.popleft()
            item = self._inflight
            try:
                await item.run(self.repo)
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
                log.exception("call record %s could not be written; dropped", item)
            else:
                if self._outage_logged:
                    log.warning("database is back; flushing %d queued call records", self.pending)
                    self._outage_logged = False
            attempt = 0
            self._inflight = None
