"""Batch speech recognition over an ordered chain of providers ending in the embedded engine.

Why: a cloud provider that errors, refuses or is slow must not cost the caller the turn. The
same utterance goes to the next provider at once, and the one that failed is skipped for a
cool-down so the following turns do not pay for its failure again. The last provider (local
Whisper) has no budget and no cool-down: it is the floor that always answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from pipeline.engines import SpeechToText, Transcript
from pipeline.metrics import PipelineMetrics

log = logging.getLogger("taina.stt.failover")

KIND = "stt"


class AllProvidersFailed(RuntimeError):
    """Even the last provider failed (only possible when the floor itself is broken)."""


def failure_reason(exc: BaseException) -> str:
    """``timeout`` (budget), ``refused`` (auth, quota, rate limit) or ``error``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int) and status in (401, 402, 403, 429):
        return "refused"
    return "error"


class FailoverSTT:
    """Implements ``SpeechToText``; ``Transcript.provider`` names the provider that served."""

    name = "failover"

    def __init__(
        self,
        providers: Sequence[SpeechToText],
        first_result_budget_s: float,
        cooldown_s: float,
        metrics: PipelineMetrics | None = None,
        *,
        budgets: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``budgets`` overrides the budget per provider name; ``clock`` is for tests."""
        if not providers:
            raise ValueError("FailoverSTT needs at least one provider")
        self.providers = list(providers)
        self.first_result_budget_s = first_result_budget_s
        self.cooldown_s = cooldown_s
        self.metrics = metrics  # public: the app binds its registry after construction
        self._budgets = dict(budgets or {})
        self._clock = clock
        self._down_until: dict[str, float] = {}

    def in_cooldown(self, provider: SpeechToText) -> bool:
        return self._clock() < self._down_until.get(provider.name, 0.0)

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        t0 = time.perf_counter()
        last = len(self.providers) - 1
        failed: list[dict[str, object]] = []
        first_tried: str | None = None
        for i, provider in enumerate(self.providers):
            if i < last and self.in_cooldown(provider):
                continue
            if first_tried is None:
                first_tried = provider.name
            budget = (
                None if i == last else self._budgets.get(provider.name, self.first_result_budget_s)
            )
            p0 = time.perf_counter()
            try:
                if budget is None:
                    transcript = await provider.transcribe(pcm16, sample_rate)
                else:
                    transcript = await asyncio.wait_for(
                        provider.transcribe(pcm16, sample_rate), budget
                    )
            except asyncio.CancelledError:
                raise  # barge-in: not the provider's fault
            except Exception as exc:
                reason = failure_reason(exc)
                spent = time.perf_counter() - p0
                failed.append({"provider": provider.name, "reason": reason, "ms": spent * 1000})
                self._failed(provider, reason, exc, spent, cooldown=i < last)
                continue
            spent = time.perf_counter() - p0
            self._served(provider, first_tried, spent, bool(failed))
            extra = dict(transcript.extra)
            extra["provider_elapsed_s"] = transcript.elapsed_s
            if failed:
                extra["failed"] = failed
            # elapsed_s is what the turn waited, failed attempts included.
            return replace(
                transcript,
                provider=transcript.provider or provider.name,
                elapsed_s=time.perf_counter() - t0,
                extra=extra,
            )
        raise AllProvidersFailed(
            "no speech provider could transcribe the turn: "
            + ", ".join(f"{f['provider']} ({f['reason']})" for f in failed)
        )

    def _failed(
        self, provider: SpeechToText, reason: str, exc: Exception, spent: float, *, cooldown: bool
    ) -> None:
        if cooldown and self.cooldown_s > 0:
            self._down_until[provider.name] = self._clock() + self.cooldown_s
        if self.metrics is not None:
            self.metrics.provider_failures_total.labels(KIND, provider.name, reason).inc()
        log.warning(
            "STT provider %s failed (%s after %.0f ms: %s)%s",
            provider.name,
            reason,
            spent * 1000,
            str(exc)[:200] or type(exc).__name__,
            f"; skipped for {self.cooldown_s:.0f} s" if cooldown and self.cooldown_s > 0 else "",
        )

    def _served(
        self, provider: SpeechToText, first_tried: str | None, spent: float, after_failure: bool
    ) -> None:
        if self.metrics is None:
            return
        self.metrics.provider_ttfb_seconds.labels(KIND, provider.name).observe(spent)
        if after_failure and first_tried is not None and first_tried != provider.name:
            self.metrics.provider_failovers_total.labels(KIND, first_tried, provider.name).inc()
