"""The narrow interfaces every speech engine implements.

The CallSession only ever talks to these, so an embedded engine and a cloud provider are
interchangeable. Audio crossing these interfaces is PCM16 little-endian mono bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from telephony.audio_codec import pcm16_to_mulaw

# How audio crosses an interface: 16-bit linear PCM, or G.711 mu-law (one byte per sample),
# which phone transports speak natively and some TTS providers can produce directly.
AudioEncoding = Literal["pcm16", "mulaw"]


def bytes_per_sample(encoding: AudioEncoding) -> int:
    return 1 if encoding == "mulaw" else 2


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


class LiveTranscriber(Protocol):
    """One call's streaming recognition session (e.g. Deepgram live): audio goes in as it
    arrives, so the transcript is ready the moment the turn ends."""

    def send(self, audio: bytes) -> None:
        """Queue audio in the format the transcriber was opened with. Never blocks."""
        ...

    def on_endpoint(self, callback: Callable[[], None]) -> None:
        """Register what to call when the provider detects the end of an utterance."""
        ...

    async def final_text(self, timeout: float) -> Transcript:
        """Finalize and return everything recognised since the previous call. Raises on
        failure or timeout, so the session can fall back to batch recognition."""
        ...

    async def aclose(self) -> None: ...


class LiveSpeechToText(Protocol):
    name: str

    async def open(
        self, *, call_id: str, encoding: AudioEncoding, sample_rate: int
    ) -> LiveTranscriber: ...


# Called by a TTS engine when the first audio of a sentence exists: (provider name, seconds
# from the request to that audio). A failover chain reports the provider that actually served.
FirstAudioReport = Callable[[str, float], None]


class TextToSpeech(Protocol):
    """``synthesize`` yields PCM16. A provider that can produce other encodings directly
    (ElevenLabs' ``ulaw_8000``) lists them in ``native_encodings`` and accepts an
    ``encoding=`` keyword; ``synthesize_as`` picks the cheapest path. An engine that sets
    ``reports_first_audio = True`` accepts an ``on_first_audio=`` keyword (FirstAudioReport).
    """

    name: str

    def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Yield PCM16 mono chunks at ``sample_rate`` as soon as they exist.

        Must not block the event loop; cancellation of the consumer must stop the work.
        """
        ...


async def synthesize_as(
    tts: TextToSpeech,
    text: str,
    sample_rate: int,
    encoding: AudioEncoding,
    on_first_audio: FirstAudioReport | None = None,
) -> AsyncIterator[bytes]:
    """Speech in the transport's own format: natively when the engine can, else converted
    chunk by chunk (mu-law encoding is stateless, so chunk boundaries do not matter)."""
    kwargs: dict[str, object] = {}
    if on_first_audio is not None and getattr(tts, "reports_first_audio", False):
        kwargs["on_first_audio"] = on_first_audio
    native = encoding == "pcm16" or encoding in getattr(tts, "native_encodings", ())
    if native and encoding != "pcm16":
        kwargs["encoding"] = encoding
    async for chunk in tts.synthesize(text, sample_rate, **kwargs):  # type: ignore[call-arg]
        yield chunk if native else pcm16_to_mulaw(chunk)
