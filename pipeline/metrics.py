"""Prometheus instruments for the call pipeline.

Created once per registry and passed to each CallSession, so tests can use a private registry
and the app exposes its own at ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip


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

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> PipelineMetrics:
        reg = registry or CollectorRegistry()
        return cls(
            registry=reg,
            calls_total=Counter("taina_calls_total", "Calls started", ["ingress"], registry=reg),
            calls_active=Gauge(
                "taina_calls_active", "Calls in progress", ["ingress"], registry=reg
            ),
            call_end_total=Counter(
                "taina_call_end_total", "Calls ended, by reason", ["reason"], registry=reg
            ),
            turns_total=Counter(
                "taina_turns_total", "Conversation turns", ["speaker"], registry=reg
            ),
            barge_ins_total=Counter(
                "taina_barge_ins_total", "Bot replies interrupted by the caller", registry=reg
            ),
            stage_seconds=Histogram(
                "taina_stage_seconds",
                "Time spent per pipeline stage of a turn",
                ["stage"],
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            turn_latency_seconds=Histogram(
                "taina_turn_latency_seconds",
                "End of caller speech to first bot audio byte sent",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            greeting_seconds=Histogram(
                "taina_greeting_seconds",
                "Stream start to first greeting audio byte sent",
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            bad_messages_total=Counter(
                "taina_bad_messages_total",
                "Inbound transport messages refused",
                ["transport", "reason"],
                registry=reg,
            ),
            engine_errors_total=Counter(
                "taina_engine_errors_total", "Engine failures", ["engine"], registry=reg
            ),
            provider_ttfb_seconds=Histogram(
                "taina_provider_ttfb_seconds",
                "Time to first byte (TTS audio) or first result (STT) per provider",
                ["kind", "provider"],
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            provider_failures_total=Counter(
                "taina_provider_failures_total",
                "Provider requests that failed: error, refused, timeout (budget), dropped",
                ["kind", "provider", "reason"],
                registry=reg,
            ),
            provider_failovers_total=Counter(
                "taina_provider_failovers_total",
                "Turns completed by the next provider in the chain",
                ["kind", "from_provider", "to_provider"],
                registry=reg,
            ),
            tts_cache_total=Counter(
                "taina_tts_cache_total",
                "Sentences served from pre-rendered/recent audio (hit) or synthesized (miss)",
                ["result"],
                registry=reg,
            ),
            # Label values below come from closed sets: transport in {twilio, web},
            # engine in {stt, brain}.
            inbound_dropped_seconds_total=Counter(
                "taina_inbound_dropped_seconds_total",
                "Inbound audio dropped for arriving faster than real time (beyond the jitter "
                "allowance), in seconds of audio",
                ["transport"],
                registry=reg,
            ),
            flood_disconnects_total=Counter(
                "taina_flood_disconnects_total",
                "Media streams closed for sending audio faster than real time",
                ["transport"],
                registry=reg,
            ),
            engine_wait_seconds=Histogram(
                "taina_engine_wait_seconds",
                "Time a turn waited for a shared engine (fair per-call queue)",
                ["engine"],
                buckets=_LATENCY_BUCKETS,
                registry=reg,
            ),
            engine_shed_total=Counter(
                "taina_engine_shed_total",
                "Engine requests refused because their call already had its bound of queued work",
                ["engine"],
                registry=reg,
            ),
        )
