"""An ordered chain of voices that never leaves a caller in silence.

``FailoverTTS`` is itself a TextToSpeech. For each sentence it asks the first provider that is
not cooling down; when that provider errors, refuses, misses its first-byte budget, stalls
longer than the caller's buffered audio can cover, or dies mid-stream, the *same sentence* is
synthesized again from the start by the next one, and the failed provider is skipped for a
cool-down so later sentences (of every call) do not pay the same wait. The last provider, the
embedded eSpeak, has no budget and no cool-down: it is the floor.

Phone calls want mu-law. The chain declares mu-law native when any provider produces it; a
provider that does not (OpenAI, eSpeak) is asked for PCM16 and its audio is encoded here,
chunk by chunk, so the caller's format never depends on who is speaking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from pipeline.engines import AudioEncoding, FirstAudioReport, TextToSpeech, bytes_per_sample
from pipeline.metrics import PipelineMetrics
from telephony.audio_codec import pcm16_to_mulaw

log = logging.getLogger("taina.tts.failover")

KIND = "tts"


class TtsUnavailable(RuntimeError):
    """Every provider of the chain failed on this sentence (the last one included)."""


class FailoverTTS:
    name = "failover"
    reports_first_audio = True

    def __init__(
        self,
        providers: Sequence[TextToSpeech],
        first_byte_budget_s: float = 1.2,
        cooldown_s: float = 30.0,
        metrics: PipelineMetrics | None = None,
        *,
        budgets: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("a TTS chain needs at least one provider")
        self.providers = list(providers)
        self.first_byte_budget_s = first_byte_budget_s
        self.cooldown_s = cooldown_s
        self.metrics = metrics
        self._budgets = dict(budgets or {})
        self._clock = clock
        self._cooldown_until = [0.0] * len(self.providers)
        self.native_encodings: tuple[AudioEncoding, ...] = tuple(
            enc
            for enc in ("mulaw",)
            if any(enc in getattr(p, "native_encodings", ()) for p in self.providers)
        )

    def attach_metrics(self, metrics: PipelineMetrics) -> None:
        """The app creates its registry after the engines; it hands it over here."""
        self.metrics = metrics

    def cooling_down(self) -> dict[str, float]:
        """Seconds of cool-down left per provider (only those cooling down)."""
        now = self._clock()
        return {
            p.name: until - now
            for p, until in zip(self.providers, self._cooldown_until, strict=True)
            if until > now
        }

    async def synthesize(
        self,
        text: str,
        sample_rate: int,
        *,
        encoding: AudioEncoding = "pcm16",
        on_first_audio: FirstAudioReport | None = None,
    ) -> AsyncIterator[bytes]:
        """Audio of ``text`` from the first provider able to say all of it."""
        if not text.strip():
            return
        bytes_per_s = sample_rate * bytes_per_sample(encoding)
        last = len(self.providers) - 1
        failed: TextToSpeech | None = None
        error: BaseException | None = None
        for index, provider in enumerate(self.providers):
            if index < last and self._cooldown_until[index] > self._clock():
                continue
            if failed is not None:
                self._count_failover(failed, provider)
            budget = (
                None
                if index == last
                else self._budgets.get(provider.name, self.first_byte_budget_s)
            )
            native = encoding == "pcm16" or encoding in getattr(provider, "native_encodings", ())
            kwargs: dict[str, Any] = {}
            if native and encoding != "pcm16":
                kwargs["encoding"] = encoding
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            first_at: float | None = None
            last_at = t0
            sent_s = 0.0
            reason: str | None = None
            stream = provider.synthesize(text, sample_rate, **kwargs)
            async with aclosing(stream):  # closing it stops the provider's request
                while True:
                    deadline = None
                    if budget is not None:
                        deadline = (
                            t0 + budget
                            if first_at is None
                            # Mid-stream, a pause is harmless while the caller still has
                            # audio to hear; beyond that it is a stall.
                            else max(last_at + budget, first_at + sent_s)
                        )
                    try:
                        chunk = await _next(stream, deadline)
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        reason, error = _reason(exc, first_at is not None), exc
                        break
                    if not chunk:
                        continue
                    last_at = loop.time()
                    if first_at is None:
                        first_at = last_at
                        self._first_audio(provider, last_at - t0, on_first_audio)
                    out = chunk if native else pcm16_to_mulaw(chunk)
                    sent_s += len(out) / bytes_per_s
                    yield out
            if reason is None and first_at is None and index < last and _speakable(text):
                reason, error = "empty", None
            if reason is None:
                self._cooldown_until[index] = 0.0
                return
            self._fail(index, provider, reason, error, audio_sent=first_at is not None)
            failed = provider
        raise TtsUnavailable(f"no TTS provider could say {text[:60]!r}") from error

    # --- bookkeeping -------------------------------------------------------------------------
    def _first_audio(
        self, provider: TextToSpeech, ttfb_s: float, on_first_audio: FirstAudioReport | None
    ) -> None:
        if self.metrics is not None:
            self.metrics.provider_ttfb_seconds.labels(KIND, provider.name).observe(ttfb_s)
        if on_first_audio is not None:
            on_first_audio(provider.name, ttfb_s)

    def _fail(
        self,
        index: int,
        provider: TextToSpeech,
        reason: str,
        error: BaseException | None,
        *,
        audio_sent: bool,
    ) -> None:
        if self.metrics is not None:
            self.metrics.provider_failures_total.labels(KIND, provider.name, reason).inc()
        if index < len(self.providers) - 1:
            self._cooldown_until[index] = self._clock() + self.cooldown_s
        log.warning(
            "TTS provider %s failed (%s%s)%s; %s",
            provider.name,
            reason,
            f": {error!r}" if error is not None else "",
            "; the sentence restarts" if audio_sent else "",
            f"cooling down {self.cooldown_s:.0f} s" if index < len(self.providers) - 1 else "",
        )

    def _count_failover(self, failed: TextToSpeech, to: TextToSpeech) -> None:
        if self.metrics is not None:
            self.metrics.provider_failovers_total.labels(KIND, failed.name, to.name).inc()


async def _next(stream: AsyncIterator[bytes], deadline: float | None) -> bytes:
    """The next chunk, abandoning the provider at ``deadline`` (loop time). The timeout
    cancels the pending read inside the provider's generator, which closes its request."""
    if deadline is None:
        return await anext(stream)
    async with asyncio.timeout_at(deadline):
        return await anext(stream)


def _reason(exc: BaseException, audio_sent: bool) -> str:
    if audio_sent:
        return "stalled" if isinstance(exc, TimeoutError) else "dropped"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(getattr(exc, "status_code", None), int):
        return "refused"
    return "error"


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)
