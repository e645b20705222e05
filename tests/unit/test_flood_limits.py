"""The pieces of the flood defence on their own: real-time pacing, the flood meter, the fair
engine gate and the active-call registry (integration: tests/integration/test_flood_*.py)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.connection_limits import ActiveCalls, FloodBans
from pipeline.engines import EngineBusy, FairGate, bind_call
from pipeline.metrics import PipelineMetrics
from telephony.inbound_audio import FloodMeter, InboundAudio, RealTimePacer


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_pacer_lets_real_time_and_the_jitter_allowance_through() -> None:
    clock = Clock()
    pacer = RealTimePacer(500, clock)
    assert pacer.admit(500) == 500  # a burst up to the allowance
    assert pacer.admit(20) == 0  # nothing banked
    for _ in range(100):  # then exactly real time, 20 ms every 20 ms
        clock.t += 0.02
        assert pacer.admit(20) == pytest.approx(20)
    clock.t += 10  # a long pause banks no more than the allowance
    assert pacer.admit(5000) == pytest.approx(500)


def test_flood_meter_forgives_a_hiccup_but_not_a_flood() -> None:
    clock = Clock()
    meter = FloodMeter(2000, 0.1, clock)
    assert not meter.dropped(1500)  # a second and a half late, once
    clock.t += 20  # forgiven at a tenth of real time
    assert meter.score_ms == 1500 and not meter.dropped(0) and meter.score_ms == 0
    for _ in range(3):
        flooding = meter.dropped(900)  # ten times real time for a tenth of a second
        clock.t += 0.1
    assert flooding


def test_inbound_audio_drops_and_counts_what_outruns_real_time() -> None:
    clock = Clock()
    metrics = PipelineMetrics.create()
    inbound = InboundAudio(
        "web",
        wire_rate=16000,
        wire_encoding="pcm16",
        pipeline_rate=16000,
        metrics=metrics,
        jitter_ms=500,
        flood_limit_ms=2000,
        clock=clock,
    )
    second = bytes(32000)  # 1 s of 16 kHz PCM16
    assert len(inbound.admit(second)) == 16000  # the 500 ms allowance
    assert not inbound.flooding
    for _ in range(3):
        inbound.admit(second)
    assert inbound.flooding
    dropped = metrics.registry.get_sample_value(
        "taina_inbound_dropped_seconds_total", {"transport": "web"}
    )
    assert dropped == pytest.approx(3.5)
    assert (
        metrics.registry.get_sample_value("taina_flood_disconnects_total", {"transport": "web"})
        == 1
    )


async def test_fair_gate_serves_the_quiet_call_before_a_backlog() -> None:
    gate = FairGate("stt", 1, max_waiting_per_call=2)
    pool = ThreadPoolExecutor(1)
    order: list[str] = []

    def work(tag: str) -> str:
        time.sleep(0.05)
        order.append(tag)
        return tag

    async def ask(call: str, tag: str) -> str:
        bind_call(call)
        return await gate.run(pool, work, tag)

    flood = [asyncio.create_task(ask("flood", f"f{i}")) for i in range(3)]
    await asyncio.sleep(0.01)
    shed = asyncio.create_task(ask("flood", "f3"))  # a third queued request of one call
    await asyncio.sleep(0.01)
    healthy = asyncio.create_task(ask("healthy", "h"))
    await asyncio.gather(*flood, healthy)
    with pytest.raises(EngineBusy):
        await shed
    assert order == ["f0", "h", "f1", "f2"]  # the healthy turn waited for one job, not three
    pool.shutdown()


async def test_an_abandoned_job_keeps_the_worker_until_its_thread_is_done() -> None:
    gate = FairGate("stt", 1)
    pool = ThreadPoolExecutor(1)
    slow = asyncio.create_task(gate.run(pool, time.sleep, 0.3))
    await asyncio.sleep(0.05)
    slow.cancel()  # the session gave up on it; the thread cannot be stopped
    t0 = time.monotonic()
    await gate.run(pool, time.sleep, 0)
    assert time.monotonic() - t0 >= 0.2
    pool.shutdown()


def test_active_calls_cap_counts_promises_and_sessions() -> None:
    clock = Clock()
    calls = ActiveCalls(clock)

    class Session:
        is_closed = False

    assert calls.promise("CA1", 2, 10) and calls.promise("CA2", 2, 10)
    assert not calls.promise("CA3", 2, 10)  # two promised: full
    assert not calls.reserve("web-1", 2)
    assert calls.reserve("CA1", 2)  # the promised stream takes its own slot
    s1 = Session()
    calls.started("CA1", s1)
    assert calls.active == 1 and calls.held == 2
    clock.t += 11  # CA2's stream never came: its promise lapses
    assert calls.reserve("web-1", 2)
    calls.cancel("web-1")
    s1.is_closed = True
    assert calls.active == 0 and calls.held == 0


def test_flood_ban_expires() -> None:
    clock = Clock()
    bans = FloodBans(clock)
    bans.ban("203.0.113.9", 30)
    assert bans.banned("203.0.113.9") and not bans.banned("203.0.113.10")
    clock.t += 31
    assert not bans.banned("203.0.113.9")
