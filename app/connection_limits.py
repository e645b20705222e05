"""Who may hold a media-stream socket, and for how long without saying who they are.

Shared by ``WS /twilio/stream`` and ``WS /web/stream``:

* :class:`ConnectionCounter` counts sockets per client address. The browser stream caps every
  open socket per address; the Twilio stream caps only sockets that have not yet sent a valid
  ``start`` (*pending*), because Twilio carries many real calls from a few addresses and a low
  cap on all of them would refuse real calls, while an attacker's sockets never get past
  ``start`` (they have no call token).
* :func:`run_with_start_deadline` closes a socket that sends no ``start`` in time (slowloris:
  sockets opened and left silent to exhaust the pending slots or memory).
* :class:`CallSidRegistry` answers each Twilio CallSid's voice webhook once and lets it open
  one media stream, so a replayed signed request cannot mint a second live call for it.

Everything here is per process and in memory, like the one-time call tokens it backs up.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

DEFAULT_REPLAY_WINDOW_S = 3600.0
MAX_REMEMBERED_CALLS = 100_000  # ~10 MB at worst; far above any office's calls per window

T = TypeVar("T")


def client_ip(conn: Any) -> str:
    """The client's address as ``app.forwarded`` settled it (X-Forwarded-For is applied only
    from ``TAINA_TRUSTED_PROXIES``, so a client cannot choose its own key)."""
    client = getattr(conn, "client", None)
    return client.host if client else "-"


def _per_app(app: Any, name: str, create: Callable[[], T]) -> T:
    """The app's one object kept as ``app.state.<name>``, made by ``create`` on first use (no
    await in between, so two requests cannot both make it)."""
    found: T | None = getattr(app.state, name, None)
    if found is None:
        found = create()
        setattr(app.state, name, found)
    return found


def app_counter(app: Any, name: str) -> ConnectionCounter:
    """The app's counter called ``name`` (one per route), created on first use."""
    return _per_app(app, name, ConnectionCounter)


class ConnectionCounter:
    """Sockets per client address, so one host cannot hold every slot. ``limit`` 0: no cap."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, ip: str, limit: int) -> bool:
        current = self._open.get(ip, 0)
        if limit and current >= limit:
            return False
        self._open[ip] = current + 1
        return True

    def release(self, ip: str) -> None:
        left = self._open.get(ip, 0) - 1
        if left > 0:
            self._open[ip] = left
        else:
            self._open.pop(ip, None)

    def count(self, ip: str) -> int:
        return self._open.get(ip, 0)

    @property
    def total(self) -> int:
        return sum(self._open.values())


class Slot:
    """One acquired counter slot, released exactly once however many times it is asked."""

    __slots__ = ("_counter", "_ip", "released")

    def __init__(self, counter: ConnectionCounter, ip: str) -> None:
        self._counter = counter
        self._ip = ip
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._counter.release(self._ip)


async def run_with_start_deadline(
    run: Awaitable[None], *, started: Callable[[], bool], timeout_s: float
) -> bool:
    """Run a transport; cancel it if ``started()`` is still false after ``timeout_s``.

    Cancelling lands in the transport's receive loop (the only place a not-yet-started stream
    waits), whose own shutdown then closes the socket. Returns True when the deadline closed
    it. ``timeout_s`` <= 0 disables the deadline. Cancellation of the caller still propagates.
    """
    task = asyncio.ensure_future(run)
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        if not started() and not task.done():
            timed_out = True
            task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout_s, expire) if timeout_s > 0 else None
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if not timed_out or (current is not None and current.cancelling()):
            raise
    finally:
        if handle is not None:
            handle.cancel()
    return timed_out


class CallSidRegistry:
    """Which Twilio CallSids this process has answered and streamed, for ``window_s``.

    Twilio calls the voice webhook once per call and opens one media stream for it, and its
    signatures carry no timestamp, so a signed request or a stream token captured once could
    be replayed. The webhook answers a CallSid once per window (a replay gets 409 and no new
    call token); a CallSid gets one media stream per window (a replayed ``start`` is refused
    even with another valid token). Memory is bounded by the window and by
    :data:`MAX_REMEMBERED_CALLS`.
    """

    def __init__(
        self,
        window_s: float = DEFAULT_REPLAY_WINDOW_S,
        *,
        max_entries: int = MAX_REMEMBERED_CALLS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = max(0.0, float(window_s))
        self._max = max(1, int(max_entries))
        self._clock = clock
        self._answered: OrderedDict[str, float] = OrderedDict()  # call sid -> forget at
        self._streamed: OrderedDict[str, float] = OrderedDict()  # ended streams -> forget at
        self._live: set[str] = set()  # streams in progress (never forgotten while live)

    def first_webhook(self, call_sid: str) -> bool:
        """True the first time this CallSid's webhook is seen within the window."""
        now = self._clock()
        self._prune(self._answered, now)
        if call_sid in self._answered:
            return False
        self._remember(self._answered, call_sid, now)
        return True

    def claim_stream(self, call_sid: str) -> bool:
        """Reserve the CallSid's one media stream; False if it is live or was streamed."""
        now = self._clock()
        self._prune(self._streamed, now)
        if call_sid in self._live or call_sid in self._streamed:
            return False
        self._live.add(call_sid)
        return True

    def unclaim_stream(self, call_sid: str) -> None:
        """The claimed stream was refused (bad token): it never existed, forget it."""
        self._live.discard(call_sid)

    def stream_ended(self, call_sid: str) -> None:
        if call_sid in self._live:
            self._live.discard(call_sid)
            self._remember(self._streamed, call_sid, self._clock())

    @property
    def live(self) -> int:
        return len(self._live)

    @property
    def remembered(self) -> int:
        return len(self._answered) + len(self._streamed) + len(self._live)

    def _remember(self, entries: OrderedDict[str, float], key: str, now: float) -> None:
        if self._window <= 0:
            return
        entries[key] = now + self._window
        entries.move_to_end(key)
        while len(entries) > self._max:
            entries.popitem(last=False)

    @staticmethod
    def _prune(entries: OrderedDict[str, float], now: float) -> None:
        # Entries are kept in insertion order with one fixed window, so the oldest expire first.
        while entries:
            key, forget_at = next(iter(entries.items()))
            if forget_at > now:
                return
            del entries[key]


def call_registry(app: Any, window_s: float) -> CallSidRegistry:
    """The app's one :class:`CallSidRegistry`, created on first use."""
    return _per_app(app, "twilio_call_sids", lambda: CallSidRegistry(window_s))


class ActiveCalls:
    """The calls on the line, counted where they live: the sessions themselves.

    ``TAINA_MAX_CONCURRENT_CALLS`` used to be checked against the ring of recent calls, which
    forgets calls and counts a call only once its session has announced itself — concurrent
    attempts all saw room and the cap was exceeded. Here a slot is taken synchronously (no
    ``await`` between the check and the count) by the Twilio webhook (a *promise*: the media
    stream follows within ``promise_ttl_s``) or by a starting web call, and held by the
    session until it closes, so the cap holds exactly however many attempts arrive at once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._promised: OrderedDict[str, float] = OrderedDict()  # call id -> expires at
        self._reserved: set[str] = set()  # web calls between the check and their session
        self._sessions: dict[str, Any] = {}  # call id -> session (has ``is_closed``)

    def _prune(self) -> None:
        now = self._clock()
        while self._promised:
            key, expires = next(iter(self._promised.items()))
            if expires > now:
                break
            del self._promised[key]
        closed = [k for k, s in self._sessions.items() if s.is_closed]
        for key in closed:
            del self._sessions[key]

    @property
    def active(self) -> int:
        """Calls on the line now (sessions not yet closed)."""
        self._prune()
        return len(self._sessions)

    def live_ids(self) -> list[str]:
        """The calls on the line here (app/shared_state.py renews their deployment-wide slots)."""
        self._prune()
        return list(self._sessions)

    @property
    def held(self) -> int:
        """Slots taken: calls on the line, promised streams, calls being set up."""
        self._prune()
        return len(self._sessions) + len(self._promised) + len(self._reserved)

    def promise(self, call_id: str, limit: int, ttl_s: float) -> bool:
        """The Twilio webhook: keep a slot for this call's stream, if there is room."""
        if not limit:
            return True  # no cap: nothing to keep (and nothing a webhook flood can grow)
        if self.held >= limit:
            return False
        self._promised[call_id] = self._clock() + max(ttl_s, 0.0)
        self._promised.move_to_end(call_id)
        return True

    def reserve(self, call_id: str, limit: int) -> bool:
        """A call is being set up (web start, or a stream whose promise has lapsed): take its
        promised slot, or a free one. False: at capacity."""
        self._prune()
        if call_id in self._sessions or call_id in self._reserved:
            return False
        if self._promised.pop(call_id, None) is None and limit and self.held >= limit:
            return False
        self._reserved.add(call_id)
        return True

    def started(self, call_id: str, session: Any) -> None:
        """The reserved call has its session: it holds the slot until it closes."""
        self._reserved.discard(call_id)
        self._sessions[call_id] = session

    def cancel(self, call_id: str) -> None:
        """The reserved (or promised) call never started: free its slot."""
        self._reserved.discard(call_id)
        self._promised.pop(call_id, None)


def active_calls(app: Any) -> ActiveCalls:
    """The app's one :class:`ActiveCalls`, created on first use."""
    return _per_app(app, "active_calls", ActiveCalls)


class FloodBans:
    """Client addresses whose stream was just closed for flooding audio, refused for a while.

    A flooding client closed after a second or two would otherwise reconnect at once and
    flood again, each new call costing a greeting, records and the audio heard before the
    flood was detected. Its address is refused at the upgrade (403, before any work) for
    ``ban_s``. Applied to the browser stream always and to the Twilio stream only when
    signatures are not enforced: signed streams come from Twilio's few shared addresses.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def ban(self, ip: str, ban_s: float) -> None:
        if ban_s <= 0:
            return
        self._until[ip] = self._clock() + ban_s
        self._until.move_to_end(ip)
        while len(self._until) > MAX_REMEMBERED_CALLS:
            self._until.popitem(last=False)

    def banned(self, ip: str) -> bool:
        until = self._until.get(ip)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[ip]
            return False
        return True


def flood_bans(app: Any) -> FloodBans:
    """The app's one :class:`FloodBans`, created on first use."""
    return _per_app(app, "flood_bans", FloodBans)
