"""The load bench's arithmetic: percentiles, stage split, steady-state CPU, capacity."""

from __future__ import annotations

import pytest

from app.load_stats import (
    ProcessSample,
    capacity,
    client_summary,
    memory_slope_mb,
    percentile,
    stage_summary,
    steady_cpu_percent,
)


def test_percentile_interpolates_like_numpy() -> None:
    data = [10.0, 20.0, 30.0, 40.0]
    assert percentile(data, 50) == 25.0
    assert percentile(data, 100) == 40.0
    assert percentile(data, 95) == pytest.approx(38.5)
    assert percentile([], 50) is None


def test_stage_summary_uses_only_reply_turns() -> None:
    greeting = {"first_byte_ms": 9.0}
    replies = [
        {"endpoint_ms": 576, "overhead_ms": 0.5, "first_byte_ms": 580},
        {"endpoint_ms": 576, "overhead_ms": 1.5, "first_byte_ms": 590},
    ]
    stages = stage_summary([greeting, *replies])
    assert stages["first_byte_ms"]["n"] == 2
    assert stages["overhead_ms"]["p50"] == 1.0
    assert stages["stt_wait_ms"]["n"] == 0


def test_steady_cpu_counts_only_while_every_call_was_up() -> None:
    samples = [
        ProcessSample(0.0, 1.0, 100, 1),
        ProcessSample(1.0, 1.1, 100, 4),  # ramp-up: not steady yet
        ProcessSample(2.0, 1.5, 100, 5),
        ProcessSample(4.0, 2.5, 100, 5),  # 1.0 CPU s over 2 s = 50 %
        ProcessSample(5.0, 2.6, 100, 3),
    ]
    assert steady_cpu_percent(samples, 5) == 50.0
    assert steady_cpu_percent(samples, 6) is None


def _call(latencies: list[float], gaps: int = 0, exit_code: int = 0) -> dict:
    turns = [
        {"answered": True, "latency_ms": ms, "bot_audio_ms": 1000.0, "gap_frames": gaps}
        for ms in latencies
    ]
    return {
        "call_sid": "CA1",
        "exit_code": exit_code,
        "error": "boom" if exit_code else None,
        "turns": turns,
        "greeting": {"answered": True, "bot_audio_ms": 2000.0, "gap_frames": 0},
        "dial_to_greeting_ms": 12.0,
        "frames_sent": 100,
        "late_frames": 1,
        "max_frame_lag_ms": 11.0,
    }


def test_client_summary_counts_late_frames_and_failures() -> None:
    summary = client_summary([_call([600, 700]), _call([650], gaps=2, exit_code=1)])
    assert summary["failed_calls"] == 1 and summary["errors"] == ["boom"]
    assert summary["turn_latency_ms"]["p50"] == 650
    out = summary["outbound"]
    # 3 replies of 50 frames + 2 greetings of 100 frames; one reply had a 2-frame hole
    assert out["bot_frames_played"] == 350 and out["late_frames"] == 2
    assert out["calls_with_gaps"] == 1
    assert summary["inbound"] == {"frames_sent": 200, "frames_sent_late": 2, "max_send_lag_ms": 11}


def _level(calls: int, p95: float | None, failed: int = 0, rss: float = 0.0) -> dict:
    return {
        "calls": calls,
        "client": {"failed_calls": failed, "turn_latency_ms": {"p95": p95}},
        "server": {"rss_peak_mb": rss},
    }


def test_capacity_is_the_last_level_within_the_limit() -> None:
    levels = [_level(4, 900), _level(8, 1500), _level(12, 2100), _level(16, 1900)]
    assert capacity(levels, 2000) == 8  # 16 passing after 12 failed does not count
    assert capacity([_level(4, 900, failed=1)], 2000) is None


def test_memory_slope_is_a_least_squares_fit() -> None:
    levels = [_level(50, 1, rss=150.0), _level(100, 1, rss=175.0), _level(150, 1, rss=200.0)]
    assert memory_slope_mb(levels) == 0.5
    assert memory_slope_mb(levels[:1]) is None
