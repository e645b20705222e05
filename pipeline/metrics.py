"""Prometheus instruments for the call pipeline.

Created once per registry and passed to each CallSession, so tests can use a private registry
and the app exposes its own at ``/metrics``.

Every label value comes from a closed set (issue 13): a value a peer can choose (an unknown
Twilio event name, a malformed message's kind) is counted as ``other``, and any other label
keeps at most ``MAX_LABEL_VALUES`` distinct values (then ``other``), so no input can grow
``/metrics``. The page is rendered in its own thread (``render``), never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip

OTHER = "other"
MAX_LABEL_VALUES = 32  # per label of a metric without a declared set: code-made values only

TRANSPORTS = frozenset({"twilio", "web", "livekit", "livekit-sip", "simulator"})
TWILIO_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})
BAD_MESSAGE_KINDS = TWILIO_EVENTS | frozenset(
    {
        "invalid", "refused-start", "ip-limit", "start-timeout",  # twilio / routes
        "oversize", "audio", "json", "unknown", "hangup",  # web
        "flood", "rate", "flood-ban",  # pacing
    }
)  # fmt: skip
TURN_LIMITS = frozenset({"rate", "max-turns", "max-duration"})


class _ClosedLabels:
    """Mixin: map each label value into its allowed set (or the first MAX_LABEL_VALUES
    seen) before the child is looked up; anything else becomes ``other``."""

    _allowed: tuple[frozenset[str] | None, ...] = ()
    _seen: tuple[set[str], ...] = ()

    def close_labels(self, allowed: Mapping[str, Iterable[str]] | None = None) -> Any:
        allowed = allowed or {}
        names: tuple[str, ...] = self._labelnames  # type: ignore[attr-defined]
        self._allowed = tuple(
            frozenset(allowed[n]) | {OTHER} if n in allowed else None for n in names
        )
        self._seen = tuple(set() for _ in names)
        return self

    def labels(self, *values: object, **kw: object) -> Any:
        names: tuple[str, ...] = self._labelnames  # type: ignore[attr-defined]
        if not self._allowed or len(values) + len(kw) != len(names):
            return super().labels(*values, **kw)  # type: ignore[misc]
        if kw:
            values = tuple(kw.get(n, "") for n in names)
        closed = [self._close(i, str(v)) for i, v in enumerate(values)]
        return super().labels(*closed)  # type: ignore[misc]

    def _close(self, i: int, value: str) -> str:
        allowed = self._allowed[i]
        if allowed is not None:
            return value if value in allowed else OTHER
        seen = self._seen[i]
        if value in seen:
            return value
        if len(seen) >= MAX_LABEL_VALUES:
            return OTHER
        seen.add(value)
        return value


class ClosedCounter(_ClosedLabels, Counter):
    pass


class ClosedGauge(_ClosedLabels, Gauge):
    pass


class ClosedHistogram(_ClosedLabels, Histogram):
    pass


def closed(metric: Any, **allowed: Iterable[str]) -> Any:
    """``metric`` (a Closed* instrument) with its label sets declared."""
    return metric.close_labels(allowed)


_RENDERER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")


async def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text page, built in its own thread: a scrape never stalls the calls'
    event loop, and never waits behind the engines' thread pool."""
    return await asyncio.get_running_loop().run_in_executor(_RENDERER, generate_latest, registry)


@dataclass(frozen=True)
class PipelineMetrics:
    registry: CollectorRegistry
    calls_total: Counter
    calls_active: Gauge
    call_end_total: Counter
    turns_total: Counter
    barge_ins_total: Counter
    stage_seconds: Histogram
    turn_latency_seconds: Histogram
    greeting_seconds: Histogram
    bad_messages_total: Counter
    engine_errors_total: Counter
    provider_ttfb_seconds: Histogram
    provider_failures_total: Counter
    provider_failovers_total: Counter
    tts_cache_total: Counter
    inbound_dropped_seconds_total: Counter
    flood_disconnects_total: Counter
    engine_wait_seconds: Histogram
    engine_shed_total: Counter
    turns_refused_total: Counter
    turn_model_decisions_total: Counter
    turn_model_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> PipelineMetrics:
        reg = registry or CollectorRegistry()
        metrics = cls(
            registry=reg,
            calls_total=ClosedCounter(
                "taina_calls_total", "Calls started", ["ingress"], registry=reg
            ),
            calls_active=ClosedGauge(
                "taina_calls_active", "Calls in progress", ["ingress"], registry=reg
            ),
            call_end_total=ClosedCounter(
                "taina_call_end_total", "Calls ended, by reason", ["reason"], registry=reg
            ),
            turns_total=ClosedCounter(
                "taina_turns_total", "Conversation turns", ["speaker"], registry=reg
            ),
            barge_ins_total=ClosedCounter(
                "taina_barge_ins_total", "Bot replies interrupted by the caller", registry=reg
            ),
            stage_seconds=ClosedHistogram(
                "taina_stage_seconds",
                "Time spent per pipeline stage of a turn",
                ["stage"],
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            turn_latency_seconds=ClosedHistogram(
                "taina_turn_latency_seconds",
                "End of caller speech to first bot audio byte sent",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            greeting_seconds=ClosedHistogram(
                "taina_greeting_seconds",
                "Stream start to first greeting audio byte sent",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            bad_messages_total=ClosedCounter(
                "taina_bad_messages_total",
                "Inbound transport messages refused",
                ["transport", "reason"],
                registry=reg,
            ),
            engine_errors_total=ClosedCounter(
                "taina_engine_errors_total", "Engine failures", ["engine"], registry=reg
            ),
            provider_ttfb_seconds=ClosedHistogram(
                "taina_provider_ttfb_seconds",
                "Time to first byte (TTS audio) or first result (STT) per provider",
                ["kind", "provider"],
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            provider_failures_total=ClosedCounter(
                "taina_provider_failures_total",
                "Provider requests that failed: error, refused, timeout (budget), dropped",
                ["kind", "provider", "reason"],
                registry=reg,
            ),
            provider_failovers_total=ClosedCounter(
                "taina_provider_failovers_total",
                "Turns completed by the next provider in the chain",
                ["kind", "from_provider", "to_provider"],
                registry=reg,
            ),
            tts_cache_total=ClosedCounter(
                "taina_tts_cache_total",
                "Sentences served from pre-rendered/recent audio (hit) or synthesized (miss)",
                ["result"],
                registry=reg,
            ),
            # Label values below come from closed sets: transport in {twilio, web},
            # engine in {stt, brain}.
            inbound_dropped_seconds_total=ClosedCounter(
                "taina_inbound_dropped_seconds_total",
                "Inbound audio dropped for arriving faster than real time (beyond the jitter "
                "allowance), in seconds of audio",
                ["transport"],
                registry=reg,
            ),
            flood_disconnects_total=ClosedCounter(
                "taina_flood_disconnects_total",
                "Media streams closed for sending audio faster than real time",
                ["transport"],
                registry=reg,
            ),
            engine_wait_seconds=ClosedHistogram(
                "taina_engine_wait_seconds",
                "Time a turn waited for a shared engine (fair per-call queue)",
                ["engine"],
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            engine_shed_total=ClosedCounter(
                "taina_engine_shed_total",
                "Engine requests refused because their call already had its bound of queued work",
                ["engine"],
                registry=reg,
            ),
            turns_refused_total=ClosedCounter(
                "taina_turns_refused_total",
                "Caller input ignored (rate: keys and turns beyond the turns per second) and calls "
                "ended by a bound (max-turns, max-duration)",
                ["reason"],
                registry=reg,
            ),
            turn_model_decisions_total=ClosedCounter(
                "taina_turn_model_decisions_total",
                "Smart Turn (shadow) at each pause of a caller turn: at a mid-sentence pause the "
                "caller went on (model=end there would have cut them off); at turn_end the "
                "silence rule ended the turn; guard is the transcript guard's verdict",
                ["at", "model", "guard"],
                registry=reg,
            ),
            turn_model_seconds=ClosedHistogram(
                "taina_turn_model_seconds",
                "Smart Turn inference time per pause (features + ONNX, in its worker thread)",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
        )
        declared: dict[str, dict[str, Iterable[str]]] = {
            "turn_model_decisions_total": {
                "at": ("mid_pause", "turn_end"),
                "model": ("end", "hold", "skipped", "none"),
                "guard": ("end", "hold", "none"),
            },
            "bad_messages_total": {"transport": TRANSPORTS, "reason": BAD_MESSAGE_KINDS},
            "inbound_dropped_seconds_total": {"transport": TRANSPORTS},
            "flood_disconnects_total": {"transport": TRANSPORTS},
            "turns_refused_total": {"reason": TURN_LIMITS},
            "turns_total": {"speaker": ("caller", "bot")},
        }
        for name, value in vars(metrics).items():
            if isinstance(value, _ClosedLabels):
                value.close_labels(declared.get(name))
        return metrics
