"""Graceful shutdown: the calls in progress end properly before the process exits.

Uvicorn's own answer to SIGTERM is to stop listening and close every open WebSocket with
1012 at once: every caller on the line would hear the call drop mid-sentence, and a rolling
deploy would cut every call of the old process. ``taina serve`` runs :class:`DrainingServer`
instead, whose first SIGTERM (or Ctrl+C) starts a *drain*:

1. The app is draining. New calls are declined politely — the Twilio webhook answers the
   Spanish "unavailable" TwiML, the web stream refuses with a Spanish error — and
   ``GET /readyz`` answers 503, so a load balancer stops routing here. The server keeps
   listening meanwhile, so those refusals are heard instead of connection errors.
2. Calls in progress go on until they end, for at most ``drain_timeout_s``. A Twilio media
   stream whose webhook was already answered is still accepted: that caller was told the call
   is connected. A webhook answered in the last :data:`STREAM_GRACE_S` keeps the drain open
   until its stream had time to arrive.
3. At the deadline each remaining call hears :data:`DRAIN_GOODBYE` and is hung up (end reason
   ``server-shutdown``).
4. The call recorder is flushed, then uvicorn shuts down as usual and the process exits 0.

A second signal exits at once (uvicorn's forced exit, no waiting for anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.services import Services

log = logging.getLogger("taina.drain")

DRAIN_GOODBYE = (
    "Disculpe, debemos terminar la llamada por mantenimiento. "
    "Por favor, vuelva a llamar en unos minutos."
)
END_REASON = "server-shutdown"
# How long a goodbye may take to be heard before the call is hung up regardless (a caller
# who talks over it, a phone that never echoes marks).
GOODBYE_TIMEOUT_S = 15.0
# A webhook answered this recently may still bring its media stream (Twilio connects it a
# few hundred milliseconds later): the drain does not declare the server idle before that.
STREAM_GRACE_S = 5.0
FLUSH_TIMEOUT_S = 15.0  # the recorder's last writes (longer while the database is down)
POLL_S = 0.05


class EndableSession(Protocol):
    """What the drain needs from a call (``pipeline.session.CallSession``)."""

    @property
    def is_closed(self) -> bool: ...

    async def end_with_notice(self, text: str, reason: str, timeout_s: float = ...) -> None: ...


@dataclass(frozen=True)
class DrainReport:
    """What a drain did, for the log line and for tests."""

    calls_at_start: int
    ended_by_callers: int  # calls that ended on their own during the drain (late ones too)
    ended_at_deadline: int  # calls that heard the goodbye
    waited_s: float  # from the signal until no call was left
    total_s: float  # including the goodbyes and the recorder flush
    unwritten_records: int


class Drain:
    """Draining state of one app, and the calls it must see through.

    Sessions are registered by the session factories (``track``); a closed session is
    forgotten the next time the set is read, so nothing grows with the number of calls.
    """

    def __init__(self) -> None:
        self.draining = False
        self.started_at: float | None = None
        self.last_connect_at = float("-inf")  # monotonic time of the last <Connect> answered
        self.report: DrainReport | None = None
        self.joined = 0  # calls whose stream arrived while draining (webhook answered before)
        self._sessions: set[Any] = set()

    def track(self, session: EndableSession) -> None:
        self._prune()
        self._sessions.add(session)
        if self.draining:
            self.joined += 1

    def stream_promised(self) -> None:
        """The webhook just told Twilio to open a media stream here."""
        self.last_connect_at = time.monotonic()

    def open_sessions(self) -> list[EndableSession]:
        self._prune()
        return list(self._sessions)

    def _prune(self) -> None:
        self._sessions = {s for s in self._sessions if not s.is_closed}

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            self.started_at = time.monotonic()

    async def run(self, services: Services, timeout_s: float) -> DrainReport:
        """Decline new calls, wait for the calls in progress (at most ``timeout_s``), say
        goodbye to the rest, flush the call records."""
        self.begin()
        t0 = self.started_at or time.monotonic()
        at_start = max(len(self.open_sessions()), services.recent.active)
        log.warning(
            "draining: %d call(s) in progress, new calls are declined; "
            "remaining calls are ended in %.0f s (send the signal again to quit now)",
            at_start,
            timeout_s,
        )
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:  # a poll: idleness has several sources
            if self._idle(services):
                break
            await asyncio.sleep(POLL_S)
        waited = time.monotonic() - t0
        remaining = self.open_sessions()
        if remaining:
            log.warning("drain deadline: ending %d call(s) with a goodbye", len(remaining))
            results = await asyncio.gather(
                *(
                    s.end_with_notice(DRAIN_GOODBYE, END_REASON, GOODBYE_TIMEOUT_S)
                    for s in remaining
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    log.error("ending a call at the drain deadline failed", exc_info=result)
        recorder = services.recorder
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recorder.flushed(), FLUSH_TIMEOUT_S)
        self.report = DrainReport(
            calls_at_start=at_start,
            ended_by_callers=max(at_start + self.joined - len(remaining), 0),
            ended_at_deadline=len(remaining),
            waited_s=round(waited, 3),
            total_s=round(time.monotonic() - t0, 3),
            unwritten_records=recorder.pending,
        )
        log.warning(
            "drain complete in %.1f s: %d call(s) ended on their own, %d at the deadline, "
            "%d call record(s) unwritten",
            self.report.total_s,
            self.report.ended_by_callers,
            self.report.ended_at_deadline,
            self.report.unwritten_records,
        )
        return self.report

    def _idle(self, services: Services) -> bool:
        if self.open_sessions() or services.recent.active:
            return False
        return time.monotonic() - self.last_connect_at >= STREAM_GRACE_S


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` whose first SIGTERM/SIGINT drains the calls instead of exiting.

    Uvicorn installs ``handle_exit`` as the signal handler (main thread, between bytecodes
    of the running event loop): it only schedules the drain on the loop. When the drain is
    done it sets ``should_exit`` and uvicorn's normal shutdown follows (lifespan shutdown
    closes the services). The first signal is not re-raised afterwards, so the process exits
    0; a second one takes uvicorn's forced path and is re-raised as usual.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[DrainReport] | None = None
        self._drain_requested = False

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self._app.state, "services", None)
        can_drain = (
            not self._drain_requested
            and not self.should_exit
            and self.started
            and services is not None
            and self._loop is not None
        )
        if can_drain:
            assert self._loop is not None
            self._drain_requested = True
            self._loop.call_soon_threadsafe(self._start_drain, services)
            return
        if self._drain_requested:
            log.warning("second %s: quitting now", signal.Signals(sig).name)
            super().handle_exit(sig, frame)
            self.should_exit = self.force_exit = True
            return
        super().handle_exit(sig, frame)  # not serving calls yet: uvicorn's own shutdown

    def _start_drain(self, services: Services) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(
            self._drain_then_exit(services), name="drain"
        )

    async def _drain_then_exit(self, services: Services) -> DrainReport | None:
        try:
            return await services.drain.run(services, self._drain_timeout_s)
        except Exception:
            log.exception("drain failed; shutting down")
            return None
        finally:
            self.should_exit = True
