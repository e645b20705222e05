"""The building blocks of the connection and payload limits, without a server."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.body_limit import BodyLimitMiddleware, RouteLimit, limit_text, too_large_message
from app.connection_limits import (
    CallSidRegistry,
    ConnectionCounter,
    Slot,
    run_with_start_deadline,
)


@settings(derandomize=True, database=None, max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans()), max_size=60))
def test_counter_never_passes_its_limit_and_returns_to_zero(ops: list[tuple[str, bool]]) -> None:
    counter = ConnectionCounter()
    held: list[Slot] = []
    for ip, acquire in ops:
        if acquire:
            if counter.acquire(ip, 2):
                held.append(Slot(counter, ip))
        elif held:
            slot = held.pop(0)
            slot.release()
            slot.release()  # a second release is a no-op
        for addr in "abc":
            assert 0 <= counter.count(addr) <= 2
    for slot in held:
        slot.release()
    assert counter.total == 0


def test_registry_answers_each_call_once_per_window() -> None:
    now = [1000.0]
    registry = CallSidRegistry(60, clock=lambda: now[0])
    assert registry.first_webhook("CA1") and not registry.first_webhook("CA1")
    assert registry.claim_stream("CA1") and not registry.claim_stream("CA1")
    now[0] += 3600  # a live call is never forgotten, however long it lasts
    assert not registry.claim_stream("CA1")
    registry.stream_ended("CA1")
    assert not registry.claim_stream("CA1")  # remembered for the window after it ended
    now[0] += 61
    assert registry.claim_stream("CA1") and registry.first_webhook("CA1")
    # A refused stream (bad token) leaves no trace.
    assert registry.claim_stream("CA2")
    registry.unclaim_stream("CA2")
    assert registry.claim_stream("CA2")


def test_registry_memory_is_bounded() -> None:
    registry = CallSidRegistry(3600, max_entries=100)
    for i in range(10_000):
        registry.first_webhook(f"CA{i}")
        registry.claim_stream(f"CA{i}")
        registry.stream_ended(f"CA{i}")
    assert registry.remembered <= 200 and registry.live == 0


async def test_start_deadline_cancels_only_what_never_started() -> None:
    started = False

    async def silent() -> None:
        await asyncio.sleep(10)

    assert await run_with_start_deadline(silent(), started=lambda: started, timeout_s=0.05)

    async def starts() -> None:
        nonlocal started
        started = True
        await asyncio.sleep(0.1)

    assert not await run_with_start_deadline(starts(), started=lambda: started, timeout_s=0.02)

    # Cancelling the caller still cancels the transport (server shutdown).
    inner_cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            inner_cancelled.set()
            raise

    outer = asyncio.create_task(
        run_with_start_deadline(forever(), started=lambda: True, timeout_s=5)
    )
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner_cancelled.is_set()


def test_body_limits_pick_the_most_specific_route() -> None:
    mw = BodyLimitMiddleware(
        None,  # type: ignore[arg-type]
        default_limit=100,
        routes=[
            RouteLimit("/api/", 1000, prefix=True),
            RouteLimit("/api/knowledge", 5000, method="POST"),
        ],
    )
    assert mw.limit_for("POST", "/twilio/voice") == 100
    assert mw.limit_for("POST", "/api/prompts") == 1000
    assert mw.limit_for("POST", "/api/knowledge") == 5000
    assert mw.limit_for("GET", "/api/knowledge") == 1000
    assert limit_text(64 * 1024) == "64 KB" and limit_text(1024 * 1024) == "1 MB"
    assert too_large_message(1500) == "La solicitud es demasiado grande: el límite es de 2 KB."
