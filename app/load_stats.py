"""Turning a load run's raw observations into the figures ``taina bench`` reports.

Pure functions over plain data (the simulator's ``CallResult`` dictionaries, the server's
per-turn timings, process samples), so the arithmetic is tested on its own and a report can be
recomputed from a saved JSON file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FRAME_MS = 20
# Server-side stages of a reply turn, in the order they happen (keys of a turn's timings).
STAGES = (
    "endpoint_ms",  # end-of-turn silence waited
    "stt_wait_ms",  # waiting for the transcript after the turn ended
    "brain_first_sentence_ms",  # brain start -> first complete sentence
    "tts_first_audio_ms",  # first sentence -> its first audio
    "overhead_ms",  # everything else: TAINA's own plumbing (target <= 5 ms p50)
    "first_byte_ms",  # end of speech -> first byte on the wire (the whole server view)
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    value = ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
    return round(value, 2)


def summary(values: Iterable[float | None]) -> dict[str, float | int | None]:
    data = [float(v) for v in values if v is not None]
    return {
        "n": len(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": round(max(data), 2) if data else None,
    }


def stage_summary(turn_timings: Iterable[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per-stage percentiles over reply turns (those that ended a caller's turn)."""
    replies = [t for t in turn_timings if "endpoint_ms" in t and "first_byte_ms" in t]
    return {stage: summary(t.get(stage) for t in replies) for stage in STAGES}


@dataclass
class ProcessSample:
    """One reading of the server process (taken every half second during a run)."""

    t: float  # seconds since the level started
    cpu_s: float  # cumulative user + system CPU seconds
    rss_bytes: int
    active_calls: int  # calls the bench had in conversation at that moment


def steady_cpu_percent(samples: Sequence[ProcessSample], calls: int) -> float | None:
    """Server CPU (% of one core) while every call of the level was in conversation."""
    steady = [s for s in samples if s.active_calls >= calls]
    if len(steady) < 2:
        return None
    span = steady[-1].t - steady[0].t
    if span <= 0:
        return None
    return round((steady[-1].cpu_s - steady[0].cpu_s) / span * 100, 2)


def peak_rss(samples: Sequence[ProcessSample], calls: int) -> int | None:
    steady = [s.rss_bytes for s in samples if s.active_calls >= calls]
    return max(steady) if steady else None


def client_summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the callers experienced, from the simulator's ``CallResult`` dictionaries."""
    turns = [t for r in results for t in r.get("turns", [])]
    answered = [t for t in turns if t.get("answered")]
    greetings = [r["greeting"] for r in results if r.get("greeting")]
    reply_tracks = answered + greetings
    played_frames = sum(math.ceil(t.get("bot_audio_ms", 0) / FRAME_MS) for t in reply_tracks)
    gap_frames = sum(t.get("gap_frames", 0) for t in reply_tracks)
    failed = [r for r in results if r.get("exit_code", 0) != 0]
    frames_sent = sum(r.get("frames_sent", 0) for r in results)
    late_sent = sum(r.get("late_frames", 0) for r in results)
    return {
        "calls": len(results),
        "failed_calls": len(failed),
        "errors": sorted({str(r.get("error")) for r in failed})[:5],
        "turns": len(turns),
        "turns_unanswered": len(turns) - len(answered),
        "turn_latency_ms": summary(t.get("latency_ms") for t in answered),
        "turn_latency_played_ms": summary(t.get("latency_played_ms") for t in answered),
        "dial_to_greeting_ms": summary(r.get("dial_to_greeting_ms") for r in results),
        "outbound": {
            "bot_frames_played": played_frames,
            "late_frames": gap_frames,
            "late_frame_percent": round(gap_frames / played_frames * 100, 4)
            if played_frames
            else None,
            "calls_with_gaps": sum(
                1
                for r in results
                if any(
                    t.get("gap_frames", 0)
                    for t in [*r.get("turns", []), *([r["greeting"]] if r.get("greeting") else [])]
                )
            ),
        },
        "inbound": {
            "frames_sent": frames_sent,
            "frames_sent_late": late_sent,
            "max_send_lag_ms": max((r.get("max_frame_lag_ms", 0.0) for r in results), default=0),
        },
    }


def capacity(levels: Sequence[dict[str, Any]], p95_limit_ms: float) -> int | None:
    """The largest tested concurrency whose turn-latency p95 (and every smaller level's)
    stayed within ``p95_limit_ms`` with no failed call; None when even the first failed."""
    best = None
    for level in sorted(levels, key=lambda lv: lv["calls"]):
        client = level["client"]
        p95 = client["turn_latency_ms"]["p95"]
        if client["failed_calls"] or p95 is None or p95 > p95_limit_ms:
            break
        best = level["calls"]
    return best


def memory_slope_mb(levels: Sequence[dict[str, Any]]) -> float | None:
    """Least-squares MB of server RSS per additional concurrent call across the levels."""
    points = [
        (lv["calls"], lv["server"]["rss_peak_mb"])
        for lv in levels
        if lv.get("server", {}).get("rss_peak_mb") is not None
    ]
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return round(sum((x - mx) * (y - my) for x, y in points) / sxx, 3)
