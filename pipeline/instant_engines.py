"""Engines that do no inference: an energy VAD, a fixed transcript, a tone for speech.

They isolate the media path and the session's own overhead (the load bench's "instant" mode)
and make session tests deterministic. Never the product's default.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import numpy as np

from pipeline.brain.base import BrainOutput, CallContext, TextChunk, UserInput
from pipeline.engines import Transcript

if TYPE_CHECKING:
    from pipeline.session import Engines


class EnergyVadStream:
    """Speech probability from loudness: 0 below ``floor`` RMS, 1 above ``ceiling``."""

    def __init__(self, sample_rate: int, floor: float = 0.01, ceiling: float = 0.03) -> None:
        self.sample_rate = sample_rate
        self.window_samples = 512 if sample_rate == 16000 else 256
        self._floor = floor
        self._span = max(ceiling - floor, 1e-6)

    def probability(self, window: np.ndarray) -> float:
        rms = math.sqrt(float(np.dot(window, window)) / max(len(window), 1))
        return min(max((rms - self._floor) / self._span, 0.0), 1.0)

    def reset(self) -> None:
        pass


class EnergyVad:
    def stream(self, sample_rate: int) -> EnergyVadStream:
        return EnergyVadStream(sample_rate)


class FixedSTT:
    """Returns ``text`` (or ``text_for(audio)``) after an optional simulated delay."""

    name = "fixed"

    def __init__(
        self,
        text: str = "¿A qué hora abren las oficinas?",
        delay_s: float = 0.0,
        text_for: Callable[[bytes], str] | None = None,
    ) -> None:
        self.text = text
        self.delay_s = delay_s
        self.text_for = text_for
        self.calls: list[int] = []  # byte lengths transcribed, for tests

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        t0 = time.perf_counter()
        self.calls.append(len(pcm16))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = self.text_for(pcm16) if self.text_for else self.text
        return Transcript(
            text=text,
            audio_s=len(pcm16) / 2 / sample_rate,
            elapsed_s=time.perf_counter() - t0,
            provider=self.name,
        )


class ToneTTS:
    """A quiet 440 Hz tone, ``ms_per_char`` long per character, in ``chunk_ms`` pieces."""

    name = "tone"

    def __init__(self, ms_per_char: float = 60.0, chunk_ms: int = 200, amplitude: float = 0.05):
        self.ms_per_char = ms_per_char
        self.chunk_ms = chunk_ms
        self.amplitude = amplitude
        self.spoken: list[str] = []
        self._cache: dict[tuple[int, int], bytes] = {}

    def _tone(self, n: int, rate: int) -> bytes:
        key = (n, rate)
        if key not in self._cache:
            t = np.arange(n, dtype=np.float32) / rate
            wave = self.amplitude * np.sin(2 * math.pi * 440.0 * t)
            self._cache[key] = (wave * 32767).astype(np.int16).tobytes()
        return self._cache[key]

    async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        self.spoken.append(text)
        total = int(len(text) * self.ms_per_char / 1000 * sample_rate)
        step = int(self.chunk_ms / 1000 * sample_rate)
        for start in range(0, total, step):
            yield self._tone(min(step, total - start), sample_rate)
            await asyncio.sleep(0)


BENCH_GREETING = "Punto Ciudadano, buenas tardes. ¿En qué le puedo ayudar?"
BENCH_REPLY = (
    "Nuestras oficinas abren de lunes a viernes, de ocho de la mañana a cuatro de la tarde."
)


class FixedBrain:
    """Always the same greeting and the same reply: the brain's cost taken out of a bench."""

    name = "fixed"

    def __init__(self, greeting: str = BENCH_GREETING, reply: str = BENCH_REPLY) -> None:
        self._greeting = greeting
        self._reply = reply

    async def greeting(self, ctx: CallContext) -> str:
        return self._greeting

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        yield TextChunk(self._reply)


def instant_engine_set() -> Engines:
    """Every engine instant: what ``TAINA_ENGINE_MODE=instant`` serves (load bench only)."""
    from pipeline.session import Engines

    return Engines(vad=EnergyVad(), stt=FixedSTT(), tts=ToneTTS(), brain=FixedBrain())
