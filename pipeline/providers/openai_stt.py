"""OpenAI transcription as a batch SpeechToText (gpt-4o-mini-transcribe, whisper-1, …).

The utterance is already complete when the session asks, so one request with an in-memory
WAV is all it takes: no file on disk, no re-encoding beyond the 44-byte header.
"""

from __future__ import annotations

import io
import time
import wave

from openai import AsyncOpenAI, Timeout

from pipeline.engines import Transcript


def pcm16_to_wav(pcm16: bytes, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)
    return buf.getvalue()


class OpenAISTT:
    """SpeechToText on ``/v1/audio/transcriptions``. Raises on any failure, so a chain (or
    the session) can hand the same utterance to the next recogniser."""

    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gpt-4o-mini-transcribe",
        language: str = "es",
        prompt: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._owns_client = client is None
        if client is None:
            client = AsyncOpenAI(
                api_key=api_key,
                base_url=base_url or None,
                max_retries=0,
                timeout=Timeout(timeout_s, connect=3.0),
            )
        self._client = client
        self.model = model
        self.language = language
        self.prompt = prompt
        self.timeout_s = timeout_s

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        t0 = time.perf_counter()
        audio_s = len(pcm16) / 2 / sample_rate
        extra: dict[str, object] = {}
        if self.prompt:
            extra["prompt"] = self.prompt
        result = await self._client.audio.transcriptions.create(
            model=self.model,
            file=("utterance.wav", pcm16_to_wav(pcm16, sample_rate), "audio/wav"),
            language=self.language,
            response_format="json",
            timeout=self.timeout_s,
            **extra,  # type: ignore[arg-type]
        )
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise ValueError("transcription response without text")
        return Transcript(
            text=text.strip(),
            audio_s=audio_s,
            elapsed_s=time.perf_counter() - t0,
            provider=self.name,
            extra={"model": self.model},
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    close = aclose  # services.py's closers call ``close`` and await coroutines
