"""OpenAI text-to-speech: the lower-latency cloud fallback for ElevenLabs.

``response_format="pcm"`` is raw 24 kHz PCM16 with no container, streamed as generated, so the
first bytes can go to the caller before the sentence is finished; a streaming soxr filter
takes it to the rate the transport wants (8 kHz for phone calls, which the failover chain then
encodes to mu-law: OpenAI has no mu-law output).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from openai import AsyncOpenAI, Timeout

from pipeline.engines import FirstAudioReport
from pipeline.providers.tts_audio import PcmStream

OPENAI_PCM_RATE = 24000

# Only the gpt-4o-*-tts models take instructions; tts-1 / tts-1-hd reject them.
DEFAULT_INSTRUCTIONS = (
    "Habla en español latinoamericano con acento dominicano suave y neutro. "
    "Eres la voz de una oficina de servicios al ciudadano: trata siempre de usted, "
    "con un tono cálido, amable y profesional. Habla claro y a un ritmo tranquilo, "
    "porque la persona te escucha por teléfono. Pronuncia los números, fechas y horas "
    "de forma natural."
)


class OpenAITTSError(RuntimeError):
    """The speech endpoint answered something that is not audio."""


def supports_instructions(model: str) -> bool:
    return not model.startswith("tts-1")


class OpenAITTS:
    """TextToSpeech on OpenAI's ``/v1/audio/speech`` (gpt-4o-mini-tts, tts-1, …)."""

    name = "openai"
    reports_first_audio = True

    def __init__(
        self,
        client: AsyncOpenAI | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gpt-4o-mini-tts",
        voice: str = "coral",
        instructions: str | None = DEFAULT_INSTRUCTIONS,
        speed: float | None = None,
    ) -> None:
        self._owns_client = client is None
        if client is None:
            # No SDK retries: the failover chain is the retry, within the caller's budget.
            client = AsyncOpenAI(
                api_key=api_key,
                base_url=base_url or None,
                max_retries=0,
                timeout=Timeout(30.0, connect=3.0),
            )
        self._client = client
        self.model = model
        self.voice = voice
        self.instructions = instructions if supports_instructions(model) else None
        self.speed = speed

    async def synthesize(
        self,
        text: str,
        sample_rate: int,
        *,
        on_first_audio: FirstAudioReport | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield PCM16 at ``sample_rate`` as OpenAI streams it; cancelling closes the
        response (and with it the generation)."""
        text = " ".join(text.split())
        if not text:
            return
        t0 = time.perf_counter()
        pcm = PcmStream(OPENAI_PCM_RATE, sample_rate)
        extra: dict[str, object] = {}
        if self.instructions:
            extra["instructions"] = self.instructions
        if self.speed is not None:
            extra["speed"] = self.speed
        first = True
        async with self._client.audio.speech.with_streaming_response.create(
            model=self.model,
            voice=self.voice,
            input=text,
            response_format="pcm",
            **extra,  # type: ignore[arg-type]
        ) as response:
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind.startswith("text/") or kind.endswith("json"):
                raise OpenAITTSError(f"expected audio, got {kind}")
            async for raw in response.iter_bytes():
                out = pcm.push(raw)
                if not out:
                    continue
                if first:
                    first = False
                    if on_first_audio is not None:
                        on_first_audio(self.name, time.perf_counter() - t0)
                yield out
        tail = pcm.finish()
        if tail:
            yield tail

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()
