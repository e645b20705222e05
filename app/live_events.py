"""Live call events for the dashboard, across every server process of one deployment.

One ``LiveEvents`` hub per process. ``publish`` never waits: the event is handed at once to
this process's subscribers and queued for the broker, which carries it to the other
processes (Postgres LISTEN/NOTIFY on channel ``taina_live``, or Redis pub/sub). Each event
carries its origin (host and pid), so a process skips its own events when they come back
from the broker; local subscribers therefore keep working even while the broker is down.

The broker is a courtesy, not a record: the database holds every turn. When the broker
connection is lost the hub reconnects with backoff and tells subscribers to ``resync`` (reload
from the API), because events of other processes may have been missed meanwhile.

Postgres caps a NOTIFY payload at 8000 bytes, so events carry ids and short texts only:
longer texts are cut and marked ``truncated`` (the full turn is in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import make_url

from pipeline.records import CallInfo, TurnRecord

log = logging.getLogger("taina.live")

CHANNEL = "taina_live"
MAX_PAYLOAD_BYTES = 7900  # Postgres refuses NOTIFY payloads of 8000 bytes or more
MAX_ACTIVE_CALLS = 1000
MAX_TURNS_PER_CALL = 200
ACTIVE_CALL_TTL_S = 4 * 3600.0  # a call whose process died never sends call_ended

Deliver = Callable[[str], None]


class Backend(Protocol):
    """Carries serialized events between processes."""

    name: str

    async def start(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None: ...

    async def send(self, payload: str) -> None:
        """Publish one payload; raise when the broker is unreachable (the hub retries)."""
        ...

    async def aclose(self) -> None: ...


# --- events -----------------------------------------------------------------------------------


def fit_payload(event: dict[str, Any], limit: int = MAX_PAYLOAD_BYTES) -> str:
    """JSON for ``event`` no larger than ``limit`` bytes: the longest strings are cut first."""
    data = _dumps(event)
    if len(data.encode()) <= limit:
        return data
    event = dict(event, truncated=True)
    while True:
        strings = [(len(v), k) for k, v in event.items() if isinstance(v, str) and len(v) > 16]
        if not strings:
            raise ValueError("event too large even with its texts cut")
        _, key = max(strings)
        event[key] = event[key][: len(event[key]) // 2] + "…"
        data = _dumps(event)
        if len(data.encode()) <= limit:
            return data


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class LiveObserver:
    """A ``CallObserver`` that publishes what a CallSession reports, as it happens."""

    def __init__(self, hub: LiveEvents) -> None:
        self._hub = hub

    def call_started(self, info: CallInfo) -> None:
        self._hub.publish(
            {
                "type": "call_started",
                "call_sid": info.call_id,
                "ingress": info.ingress,
                "caller_number": info.caller_number,
                "started_at": _iso(info.started_at),
            }
        )

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        event: dict[str, Any] = {
            "type": "turn",
            "call_sid": call_id,
            "seq": turn.seq,
            "speaker": turn.speaker,
            "text": turn.text,
            "heard_text": turn.heard_text,
            "interrupted": turn.interrupted,
            "ended_at": _iso(turn.ended_at),
        }
        if turn.dtmf:
            event["dtmf"] = turn.dtmf
        if "first_byte_ms" in turn.timings:
            event["latency_ms"] = round(turn.timings["first_byte_ms"], 1)
        self._hub.publish(event)

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        self._hub.publish(
            {
                "type": "call_ended",
                "call_sid": call_id,
                "reason": reason,
                "outcome": outcome,
                "ended_at": _iso(ended_at),
            }
        )


# --- subscribers ------------------------------------------------------------------------------

_CLOSED: dict[str, Any] = {"type": "__closed__"}


class Subscription:
    """One listener's bounded queue. A listener that falls behind loses its oldest events
    (``dropped`` counts them) rather than slowing the calls down."""

    def __init__(self, hub: LiveEvents, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def put(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event; None when ``timeout`` passes first. Raises StopAsyncIteration once
        the hub has closed."""
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if event is _CLOSED:
            self.closed = True
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        self._hub._unsubscribe(self)
        self.closed = True

    def _end(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            while self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(_CLOSED)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = await self.get()
        assert event is not None
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the hub ----------------------------------------------------------------------------------


class LiveEvents:
    def __init__(
        self,
        backend: Backend | None = None,
        *,
        origin: str | None = None,
        max_pending: int = 1000,
        subscriber_queue: int = 500,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self.backend = backend
        self.pid = os.getpid()
        self.origin = origin or f"{socket.gethostname()}:{self.pid}:{os.urandom(3).hex()}"
        self._max_pending = max_pending
        self._subscriber_queue = subscriber_queue
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._subs: set[Subscription] = set()
        self._pending: deque[str] = deque()
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._active: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.published = 0
        self.received = 0  # events from other processes
        self.dropped = 0  # events the broker never got (queue overflow)
        self.closed = False

    @property
    def backend_name(self) -> str:
        return self.backend.name if self.backend is not None else "memory"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.backend is not None:
            await self.backend.start(self._on_remote, self._on_reconnect)
            self._sender = asyncio.create_task(self._send_loop(), name="live-events-sender")
        log.info("live events: backend=%s origin=%s", self.backend_name, self.origin)

    async def aclose(self) -> None:
        self.closed = True
        for sub in list(self._subs):
            sub._end()
        self._subs.clear()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self.backend is not None:
            await self.backend.aclose()

    # --- producers ----------------------------------------------------------------------------

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver locally and queue for the other processes. Never blocks, never raises on
        broker trouble. Safe to call from another thread (hops onto the hub's loop)."""
        if self.closed:
            return
        stamped = {**event, "origin": self.origin, "pid": self.pid, "ts": time.time()}
        try:
            payload = fit_payload(stamped)
        except (TypeError, ValueError):
            log.exception("live event not publishable: %r", event.get("type"))
            return
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._publish_on_loop, payload)
        else:
            self._publish_on_loop(payload)

    def _publish_on_loop(self, payload: str) -> None:
        self.published += 1
        self._deliver(json.loads(payload))
        if self.backend is None:
            return
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("live events: broker backlog full, %d events dropped", self.dropped)
        self._pending.append(payload)
        self._wake.set()

    async def _send_loop(self) -> None:
        assert self.backend is not None
        delay = self._retry_initial_s
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            payload = self._pending[0]
            try:
                await self.backend.send(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("live events: send failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            delay = self._retry_initial_s
            if self._pending and self._pending[0] is payload:
                self._pending.popleft()

    # --- from the broker ----------------------------------------------------------------------

    def _on_remote(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("live events: unreadable payload ignored")
            return
        if not isinstance(event, dict) or event.get("origin") == self.origin:
            return  # our own event coming back: already delivered locally
        self.received += 1
        self._deliver(event)

    def _on_reconnect(self) -> None:
        """Events of other processes may have been missed while the broker was away."""
        self._deliver({"type": "resync", "origin": self.origin, "pid": self.pid, "ts": time.time()})

    # --- consumers ----------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """A new listener. Use as a context manager (or call ``close``) to stop listening."""
        sub = Subscription(self, self._subscriber_queue)
        if self.closed:
            sub._end()
        else:
            self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def active_calls(self) -> list[dict[str, Any]]:
        """Calls in progress this hub has heard of (any process), with their turns so far:
        what a dashboard that connects mid-call needs to draw the current state."""
        self._expire()
        return [{**entry["call"], "turns": list(entry["turns"])} for entry in self._active.values()]

    def _deliver(self, event: dict[str, Any]) -> None:
        event["id"] = next(self._ids)
        self._track(event)
        for sub in list(self._subs):
            sub.put(event)

    def _track(self, event: dict[str, Any]) -> None:
        kind, sid = event.get("type"), event.get("call_sid")
        if not isinstance(sid, str):
            return
        if kind == "call_started":
            self._active[sid] = {"call": event, "turns": deque(maxlen=MAX_TURNS_PER_CALL)}
            while len(self._active) > MAX_ACTIVE_CALLS:
                self._active.popitem(last=False)
        elif kind == "turn":
            entry = self._active.get(sid)
            if entry is not None:
                entry["turns"].append(event)
        elif kind == "call_ended":
            self._active.pop(sid, None)

    def _expire(self) -> None:
        cutoff = time.time() - ACTIVE_CALL_TTL_S
        for sid in [s for s, e in self._active.items() if e["call"].get("ts", 0) < cutoff]:
            del self._active[sid]


# --- backends ---------------------------------------------------------------------------------


def asyncpg_dsn(url: str) -> str:
    """A libpq-style DSN for asyncpg from a SQLAlchemy URL (``postgresql+asyncpg://…``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresBackend:
    """LISTEN/NOTIFY over one dedicated asyncpg connection (not from the SQLAlchemy pool: a
    pooled connection would be recycled and lose its LISTEN)."""

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        channel: str = CHANNEL,
        *,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        ping_interval_s: float = 15.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.dsn = asyncpg_dsn(dsn) if "+" in dsn.split("://", 1)[0] else dsn
        self.channel = channel
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = reconnect_max_s
        self._ping_interval_s = ping_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one query at a time on the connection
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connects = 0

    async def start(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None:
        self._task = asyncio.create_task(
            self._supervise(deliver, on_reconnect), name="live-events-postgres"
        )
        # Give the first connection a moment so early events are not queued needlessly; a
        # database that is down must not hold up startup.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), self._connect_timeout_s)

    async def _supervise(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None:
        import asyncpg

        delay = self._reconnect_initial_s
        while True:
            lost = asyncio.Event()
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self._connect_timeout_s)
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())  # this conn's own
                await conn.add_listener(self.channel, lambda _c, _pid, _ch, p: deliver(p))
                self._conn = conn
                self.connects += 1
                self.connected.set()
                if self.connects > 1:
                    log.warning("live events: Postgres listener reconnected")
                    on_reconnect()
                delay = self._reconnect_initial_s
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._ping_interval_s)
                    if not lost.is_set():
                        async with self._lock:
                            await asyncio.wait_for(conn.execute("SELECT 1"), 5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live events: Postgres listener down (%s); retrying", exc)
            finally:
                self.connected.clear()
                self._conn = None
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_s)

    async def send(self, payload: str) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise ConnectionError("live events: no Postgres connection")
        async with self._lock:
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, payload)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class RedisBackend:
    """Redis pub/sub through ``redis.asyncio``: for deployments that already run Redis or
    whose Postgres sits behind a transaction-mode pooler (where LISTEN does not work)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        channel: str = CHANNEL,
        *,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        client_name: str = "taina-live",
    ) -> None:
        import redis.asyncio as aioredis

        self.channel = channel
        self.client_name = client_name  # shows in CLIENT LIST, to tell our connections apart
        self._client = aioredis.from_url(
            url,
            health_check_interval=15,
            socket_connect_timeout=5,
            socket_timeout=None,  # a subscriber waits for messages indefinitely
            client_name=client_name,
        )
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = reconnect_max_s
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connects = 0

    async def start(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None:
        self._task = asyncio.create_task(
            self._supervise(deliver, on_reconnect), name="live-events-redis"
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 5.0)

    async def _supervise(self, deliver: Deliver, on_reconnect: Callable[[], None]) -> None:
        delay = self._reconnect_initial_s
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.connects += 1
                self.connected.set()
                if self.connects > 1:
                    log.warning("live events: Redis subscriber reconnected")
                    on_reconnect()
                delay = self._reconnect_initial_s
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=15.0)
                    if msg is not None and msg.get("type") == "message":
                        data = msg["data"]
                        deliver(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live events: Redis subscriber down (%s); retrying", exc)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_s)

    async def send(self, payload: str) -> None:
        await self._client.publish(self.channel, payload)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()


def choose_backend(settings: Any) -> str:
    """``live_backend`` resolved: auto → redis (REDIS_URL) → postgres (Postgres DATABASE_URL)
    → memory."""
    wanted = (getattr(settings, "live_backend", "auto") or "auto").lower()
    if wanted != "auto":
        return wanted
    if getattr(settings, "redis_url", None):
        return "redis"
    if settings.effective_database_url.startswith(("postgres://", "postgresql")):
        return "postgres"
    return "memory"


def live_events_from_settings(settings: Any) -> LiveEvents:
    kind = choose_backend(settings)
    channel = getattr(settings, "live_channel", CHANNEL) or CHANNEL
    backend: Backend | None
    if kind == "memory":
        backend = None
    elif kind == "postgres":
        url = settings.effective_database_url
        if not url.startswith(("postgres://", "postgresql")):
            raise ValueError("TAINA_LIVE_BACKEND=postgres needs a PostgreSQL DATABASE_URL")
        backend = PostgresBackend(url, channel)
    elif kind == "redis":
        if not settings.redis_url:
            raise ValueError("TAINA_LIVE_BACKEND=redis needs REDIS_URL")
        backend = RedisBackend(settings.redis_url, channel)
    else:
        raise ValueError(f"unknown TAINA_LIVE_BACKEND {kind!r} (auto, memory, postgres, redis)")
    return LiveEvents(backend)
