"""The narrow interfaces every speech engine implements.

The CallSession only ever talks to these, so an embedded engine and a cloud provider are
interchangeable. Audio crossing these interfaces is PCM16 little-endian mono bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_s: float  # duration of the audio that was transcribed
    elapsed_s: float  # wall time the engine took
    provider: str = "whisper"
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class VadStream(Protocol):
    """Per-call voice activity state (Silero keeps a recurrent state per stream)."""

    sample_rate: int
    window_samples: int

    def probability(self, window: np.ndarray) -> float:
        """Speech probability of exactly ``window_samples`` float32 samples in [-1, 1]."""
        ...

    def reset(self) -> None: ...


class VadModel(Protocol):
    """A loaded VAD model shared by all calls; hands out per-call streams."""

    def stream(self, sample_rate: int) -> VadStream: ...


class SpeechToText(Protocol):
    name: str

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        """Transcribe one finished utterance. Must not block the event loop."""
        ...


class TextToSpeech(Protocol):
    name: str

    def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Yield PCM16 mono chunks at ``sample_rate`` as soon as they exist.

        Must not block the event loop; cancellation of the consumer must stop the work.
        """
        ...
