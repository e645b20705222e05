"""Instant engines made slow on purpose, that say whether they were interrupted.

A hang-up "during TTS" or "during STT" only means something if the engine is provably busy
at that moment and provably stopped afterwards: these count the work in progress and the
work abandoned (generator closed, coroutine cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pipeline.engines import Transcript
from pipeline.instant_engines import FixedSTT, ToneTTS


class PacedTTS(ToneTTS):
    """A tone voice that synthesizes in real time (each chunk takes as long as it plays),
    like a cloud voice streaming a long sentence."""

    name = "paced"

    def __init__(self, ms_per_char: float = 60.0, chunk_ms: int = 100) -> None:
        super().__init__(ms_per_char=ms_per_char, chunk_ms=chunk_ms)
        self.active = 0  # sentences being synthesized right now
        self.abandoned = 0  # sentences whose synthesis was stopped before the end

    async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        self.active += 1
        finished = False
        try:
            async for chunk in super().synthesize(text, sample_rate):
                yield chunk
                await asyncio.sleep(len(chunk) / 2 / sample_rate)
            finished = True
        finally:
            self.active -= 1
            if not finished:
                self.abandoned += 1


class SlowSTT(FixedSTT):
    """A recognizer that takes ``delay_s`` per utterance (a slow cloud or a loaded CPU)."""

    name = "slow"

    def __init__(self, text: str = "¿A qué hora abren las oficinas?", delay_s: float = 3.0):
        super().__init__(text=text, delay_s=delay_s)
        self.active = 0
        self.cancelled = 0

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        self.active += 1
        try:
            return await super().transcribe(pcm16, sample_rate)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
