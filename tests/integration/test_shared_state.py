"""The deployment-wide replay cache and call cap (app/shared_state.py) on a real Redis.

Several ``SharedState`` handles on one Redis stand for several server processes. Set
``TEST_REDIS_URL`` to run (CI sets it); each test uses its own key prefix.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from app.connection_limits import ActiveCalls
from app.shared_state import SharedState
from telephony.call_tokens import CallTokens

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")

pytestmark = pytest.mark.skipif(
    not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set: shared-state tests skipped"
)


class Live:
    """A session stand-in: open until closed."""

    def __init__(self) -> None:
        self.is_closed = False


def _handle(prefix: str, lease_s: float = 3.0) -> SharedState:
    import redis.asyncio as aioredis

    assert TEST_REDIS_URL
    return SharedState(aioredis.from_url(TEST_REDIS_URL), prefix, lease_s)


@pytest.fixture
async def processes() -> AsyncIterator[list[SharedState]]:
    prefix = f"taina-test:{uuid.uuid4().hex[:10]}:"
    handles = [_handle(prefix) for _ in range(3)]
    try:
        yield handles
    finally:
        client = handles[0].client
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        for h in handles:
            await h.aclose()


async def test_a_token_is_accepted_once_by_the_whole_deployment(
    processes: list[SharedState],
) -> None:
    tokens = [CallTokens(b"k" * 32, replay=p.replay) for p in processes]
    token = tokens[0].mint("CA" + "1" * 32)
    first = await tokens[1].verify_shared(token, "CA" + "1" * 32)
    assert first.ok
    for t in tokens:  # every process, including the one that accepted it
        again = await t.verify_shared(token, "CA" + "1" * 32)
        assert not again.ok and again.reason == "replayed"
    # Without the shared store each process would have accepted it once.
    local = [CallTokens(b"k" * 32) for _ in range(2)]
    other = local[0].mint("CA" + "2" * 32)
    assert local[0].verify(other, "CA" + "2" * 32).ok and local[1].verify(other, "CA" + "2" * 32)


async def test_the_cap_holds_across_processes_under_concurrent_attempts(
    processes: list[SharedState],
) -> None:
    calls = [ActiveCalls() for _ in processes]
    attempts = [
        processes[i % 3].reserve(calls[i % 3], f"call-{i}", 5) for i in range(30)
    ]  # 30 at once over three processes, cap 5
    results = await asyncio.gather(*attempts)
    assert sum(results) == 5
    # The refused ones left nothing behind here.
    assert sum(c.held for c in calls) == 5


async def test_a_promise_is_adopted_where_the_stream_lands_and_freed_when_it_ends(
    processes: list[SharedState],
) -> None:
    a, b, c = processes
    calls = [ActiveCalls() for _ in processes]
    assert await a.promise(calls[0], "CA-x", 2, ttl_s=10)  # webhook on A
    assert await b.promise(calls[1], "CA-y", 2, ttl_s=10)  # webhook on B
    assert not await c.promise(calls[2], "CA-z", 2, ttl_s=10)  # full
    # CA-x's stream lands on C: it adopts the promised slot (no extra slot needed).
    assert await c.reserve(calls[2], "CA-x", 2)
    session = Live()
    calls[2].started("CA-x", session)
    c.start(calls[2].live_ids)
    b.start(calls[1].live_ids)
    await asyncio.sleep(0.2)
    assert c.fleet is not None and c.fleet.fleet_size == 2
    # A refused replay of CA-x's stream on B does not free the real call's slot.
    assert await b.reserve(calls[1], "CA-x", 2)
    b.cancel(calls[1], "CA-x")
    await asyncio.sleep(0.1)
    assert not await a.promise(calls[0], "CA-z", 2, ttl_s=10)
    # The call ends on C: at C's next renewal its slot is free for a new call anywhere.
    session.is_closed = True
    await asyncio.sleep(c.fleet.lease_s / 3 + 0.3)
    assert await a.promise(calls[0], "CA-z", 2, ttl_s=10)


async def test_a_dead_process_frees_its_slots_after_the_lease(
    processes: list[SharedState],
) -> None:
    a, b, _ = processes
    calls_a, calls_b = ActiveCalls(), ActiveCalls()
    assert await a.reserve(calls_a, "web-1", 1)
    calls_a.started("web-1", Live())
    a.start(calls_a.live_ids)
    await asyncio.sleep(1.2)  # renewed at least once
    assert not await b.reserve(calls_b, "web-2", 1)
    # A dies: no goodbye, no more renewals (its task is cancelled, its client dropped).
    assert a._task is not None
    a._task.cancel()
    await asyncio.sleep(a.fleet.lease_s + 0.5)  # type: ignore[union-attr]
    assert await b.reserve(calls_b, "web-2", 1)


async def test_without_redis_each_process_counts_its_own() -> None:
    mem = SharedState(None, "x:", 3.0)
    calls = ActiveCalls()
    assert await mem.reserve(calls, "a", 1)
    assert not await mem.reserve(calls, "b", 1)
    mem.cancel(calls, "a")
    assert await mem.reserve(calls, "b", 1)
    token = CallTokens(b"k" * 32).mint("CA1")
    t = CallTokens(b"k" * 32, replay=mem.replay)
    assert (await t.verify_shared(token, "CA1")).ok
    assert (await t.verify_shared(token, "CA1")).reason == "replayed"


async def test_a_call_sid_is_answered_and_streamed_once_by_the_deployment(
    processes: list[SharedState],
) -> None:
    a, b, c = processes
    assert await a.first("webhook", "CA-1", 60)
    assert not await b.first("webhook", "CA-1", 60)
    assert await b.first("stream", "CA-1", 60)
    assert not await c.first("stream", "CA-1", 60)
    # A stream refused for a bad token gives the CallSid back (only where it was taken).
    b.forget("stream", "CA-1")
    await asyncio.sleep(0.1)
    assert await c.first("stream", "CA-1", 60)


async def test_an_unreachable_redis_never_refuses_a_caller() -> None:
    """Redis down: tokens are checked in this process's memory, the cap admits, a CallSid's
    first webhook and stream are this process's to decide (with a warning each)."""
    import redis.asyncio as aioredis

    dead = SharedState(
        aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5), "x:", 3.0
    )
    try:
        calls = ActiveCalls()
        assert await dead.reserve(calls, "web-1", 1)
        assert await dead.promise(calls, "CA-2", 1, ttl_s=5)
        assert await dead.first("webhook", "CA-2", 60)
        tokens = CallTokens(b"k" * 32, replay=dead.replay)
        token = tokens.mint("CA-2")
        assert (await tokens.verify_shared(token, "CA-2")).ok
        assert (await tokens.verify_shared(token, "CA-2")).reason == "replayed"  # in memory
    finally:
        await dead.aclose()
