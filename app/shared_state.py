"""State every server process of one deployment must agree on, kept in Redis when one is set.

Two things break when several ``taina serve`` processes sit behind a load balancer and each
keeps them in its own memory:

* **The call-token replay cache** (telephony/call_tokens.py): a stream token is accepted once
  *per process*, so a replayed ``start`` could be accepted once more by every other process.
  :class:`RedisReplay` records each accepted token with ``SET NX`` until the token expires:
  the first process to record it wins, every other one sees it taken.
* **The concurrent-call cap** (``TAINA_MAX_CONCURRENT_CALLS``): each process counting its own
  calls lets N processes hold N times the cap. :class:`FleetCalls` keeps one sorted set of the
  deployment's calls (member = call id, score = when the entry lapses). A slot is checked and
  taken in one Lua script (atomic in Redis, so concurrent webhooks on different processes
  cannot both take the last slot). The process holding a call renews its entry every
  ``lease_s / 3`` and removes it when the call ends; a process that dies stops renewing, and
  its calls free their slots after ``lease_s``.

Without Redis (``REDIS_URL`` unset, or ``TAINA_SHARED_STATE=memory``) both fall back to the
per-process behaviour, which is exact for one process. The webhook and its media stream may
land on different processes (the balancer does not need stickiness): the webhook *promises*
the slot under the CallSid, and whichever process receives the stream *adopts* it.

Redis being unreachable never refuses a caller: the replay check falls back to this process's
memory and the cap to this process's own count, with a warning (the token's signature and TTL
still bound a replay, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.connection_limits import ActiveCalls

log = logging.getLogger("taina.shared")

# KEYS[1] = the calls set; ARGV = call id, limit (0 = none), ttl in ms.
# Time comes from Redis itself, so the processes' clocks need not agree.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[2])
local until_ms = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], until_ms, ARGV[1])
  return 1
end
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], until_ms, ARGV[1])
return 2
"""

# KEYS[1] = the calls set; ARGV = lease in ms, then the call ids on this process's line (a
# live call holds its slot, even if a refused replay of its stream removed the entry).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], until_ms, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class ReplayStore(Protocol):
    """Remembers accepted one-time tokens until they expire."""

    async def first_use(self, key: bytes, expires_at: int) -> bool | None:
        """True the first time ``key`` is seen deployment-wide, False on a replay, None when
        the store cannot answer (the caller then uses its own memory)."""
        ...


class RedisReplay:
    """Accepted call tokens, one Redis key each (``SET NX EXAT``: gone when the token is)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def first_use(self, key: bytes, expires_at: int) -> bool | None:
        name = f"{self._prefix}token:{key.hex()}"
        try:
            ok = await self._client.set(name, b"1", nx=True, exat=max(int(expires_at), 1))
        except Exception as exc:  # Redis down: this process's memory answers instead
            log.warning("shared replay cache unreachable (%s): checking this process only", exc)
            return None
        return bool(ok)


class FleetCalls:
    """The deployment's concurrent calls, counted in one Redis sorted set.

    ``admit`` takes (or re-takes) a slot; ``sync`` — run every ``lease_s / 3`` by
    :meth:`run` — renews the entries of the calls this process holds and removes the ones
    that ended here. ``live_ids`` tells which calls this process holds (the sessions on its
    line, from ``app.connection_limits.ActiveCalls``).
    """

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        lease_s: float = 15.0,
        live_ids: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self._client = client
        self._key = f"{prefix}calls"
        self.lease_s = max(float(lease_s), 1.0)
        self._live_ids = live_ids
        self._admit = client.register_script(_ADMIT)
        self._renew = client.register_script(_RENEW)
        self._held: set[str] = set()  # call ids this process took or adopted
        self._promises: set[str] = set()  # webhooks answered here, streams maybe elsewhere
        self._created: set[str] = set()  # slots this process added (not adopted or renewed)
        self.fleet_size: int | None = None  # calls deployment-wide at the last sync

    def bind(self, live_ids: Callable[[], Iterable[str]]) -> None:
        self._live_ids = live_ids

    async def admit(self, call_id: str, limit: int, ttl_s: float | None = None) -> bool:
        """Take a slot for ``call_id`` (kept ``ttl_s``, default the lease), or renew its
        existing one. False: the deployment is at ``limit``. Redis unreachable: True (this
        process's own cap still applies)."""
        ttl_ms = int(1000 * (ttl_s if ttl_s is not None else self.lease_s))
        try:
            got = int(await self._admit(keys=[self._key], args=[call_id, int(limit), ttl_ms]))
        except Exception as exc:
            log.warning("shared call cap unreachable (%s): admitting on this process's count", exc)
            return True
        if got:
            self._held.add(call_id)
            self._promises.discard(call_id)  # adopted: now this process holds the call
            if got == 2:
                self._created.add(call_id)
        return bool(got)

    async def release(self, call_id: str) -> None:
        """The call will not happen here (refused after ``admit``): free its slot now, if
        this process created it (a refused replay of another process's call leaves the real
        call's slot alone)."""
        self._held.discard(call_id)
        if call_id in self._created:
            self._created.discard(call_id)
            with contextlib.suppress(Exception):
                await self._client.zrem(self._key, call_id)

    async def sync(self) -> None:
        """Renew this process's live calls; free the slots of those that ended here."""
        live = set(self._live_ids()) if self._live_ids is not None else set()
        ended = [c for c in self._held if c not in live and not self._promised(c)]
        if ended:
            await self._client.zrem(self._key, *ended)
            self._held.difference_update(ended)
            self._created.difference_update(ended)
        self._held |= live
        self.fleet_size = int(
            await self._renew(keys=[self._key], args=[int(self.lease_s * 1000), *sorted(live)])
        )

    def _promised(self, call_id: str) -> bool:
        # A promise (webhook answered here, stream not yet seen here) lapses on its own TTL:
        # it may be adopted by the process that receives the stream, so it is not removed.
        return call_id in self._promises

    async def promise(self, call_id: str, limit: int, ttl_s: float) -> bool:
        """The Twilio webhook: keep a slot for ``ttl_s`` for the stream, wherever it lands."""
        ok = await self.admit(call_id, limit, ttl_s)
        if ok:
            self._held.discard(call_id)  # it lapses on its own unless a stream adopts it
            self._created.discard(call_id)
            self._promises.add(call_id)
            loop = asyncio.get_running_loop()
            loop.call_later(ttl_s, self._promises.discard, call_id)
        return ok

    async def run(self, stop: asyncio.Event) -> None:
        """Renew until ``stop``; then free every slot this process still holds."""
        period = self.lease_s / 3
        while not stop.is_set():
            try:
                await self.sync()
            except Exception as exc:
                log.warning("shared call cap: renewal failed (%s)", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
        with contextlib.suppress(Exception):
            if self._held:
                await self._client.zrem(self._key, *self._held)


class SharedState:
    """This process's handle on the deployment's shared state (Redis, or nothing)."""

    def __init__(self, client: Any | None, prefix: str, lease_s: float) -> None:
        self.client = client
        self.prefix = prefix
        self.replay: ReplayStore | None = RedisReplay(client, prefix) if client else None
        self.fleet: FleetCalls | None = (
            FleetCalls(client, prefix, lease_s=lease_s) if client else None
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[Any]] = set()

    @property
    def shared(self) -> bool:
        return self.client is not None

    @property
    def backend(self) -> str:
        return "redis" if self.client is not None else "memory"

    # --- once per deployment: a CallSid's webhook answer and its one media stream --------

    async def first(self, kind: str, key: str, window_s: float) -> bool:
        """True the first time ``kind``/``key`` is seen by the deployment within ``window_s``
        (``SET NX EX``). Without Redis, or when it cannot answer: True (the caller's own
        per-process registry has already decided)."""
        if self.client is None or window_s <= 0:
            return True
        try:
            ok = await self.client.set(
                f"{self.prefix}{kind}:{key}", b"1", nx=True, ex=max(int(window_s), 1)
            )
        except Exception as exc:
            log.warning("shared %s registry unreachable (%s): this process decides", kind, exc)
            return True
        return bool(ok)

    def forget(self, kind: str, key: str) -> None:
        """Undo a ``first`` that returned True *here* (the stream was refused for a bad token:
        it never existed, so the CallSid is not used up). Only call it after such a ``first``:
        a key another process set must be left alone."""
        if self.client is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.client.delete(f"{self.prefix}{kind}:{key}")
        )
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    # --- the cap, for the routes: this process's ActiveCalls, then the deployment's slot ----
    # Without Redis these run to completion without suspending (no await is reached), so the
    # local check-and-take stays one step, as ActiveCalls requires.

    async def promise(self, calls: ActiveCalls, call_id: str, limit: int, ttl_s: float) -> bool:
        """The Twilio webhook: keep a slot for the stream, wherever the balancer sends it."""
        if self.fleet is None or not limit:
            return calls.promise(call_id, limit, ttl_s)
        # The deployment's count is the cap; the promise lives in Redis, not in this
        # process (the stream may land on another one).
        return await self.fleet.promise(call_id, limit, ttl_s)

    async def reserve(self, calls: ActiveCalls, call_id: str, limit: int) -> bool:
        """A call is being set up here (web start, Twilio stream): take or adopt its slot."""
        if self.fleet is None or not limit:
            return calls.reserve(call_id, limit)
        if not calls.reserve(call_id, 0):  # already live here
            return False
        if await self.fleet.admit(call_id, limit):
            return True
        calls.cancel(call_id)
        return False

    def cancel(self, calls: ActiveCalls, call_id: str) -> None:
        """The reserved call never started: free its slot here and, if taken, in Redis."""
        calls.cancel(call_id)
        if self.fleet is not None:
            task = asyncio.get_running_loop().create_task(self.fleet.release(call_id))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    def start(self, live_ids: Callable[[], Iterable[str]]) -> None:
        """Begin renewing this process's calls (needs the running loop)."""
        if self.fleet is None or self._task is not None:
            return
        self.fleet.bind(live_ids)
        self._task = asyncio.get_running_loop().create_task(
            self.fleet.run(self._stop), name="fleet-calls"
        )

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=5)  # never raises: the task's own end
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()


def shared_state_from_settings(settings: Any) -> SharedState:
    """``TAINA_SHARED_STATE``: auto = Redis when ``REDIS_URL`` is set, else memory."""
    kind = (getattr(settings, "shared_state", "auto") or "auto").lower()
    url = getattr(settings, "redis_url", None)
    if kind == "auto":
        kind = "redis" if url else "memory"
    if kind == "memory":
        return SharedState(None, settings.redis_prefix, settings.fleet_lease_s)
    if kind != "redis":
        raise ValueError(f"unknown TAINA_SHARED_STATE {kind!r} (auto, memory, redis)")
    if not url:
        raise ValueError("TAINA_SHARED_STATE=redis needs REDIS_URL")
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return SharedState(client, settings.redis_prefix, settings.fleet_lease_s)
