"""Speech providers chosen by settings: ordered chains that always end in the embedded engines.

``STT_PROVIDERS`` / ``TTS_PROVIDERS`` name the order; a provider whose keys are missing is
skipped with a warning (never a crash: the embedded engines keep the office answering).
Deepgram is a *live* recognizer (audio streamed while the caller talks); the others are batch
recognizers for one finished utterance, chained with failover.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.settings import Settings
from pipeline.engines import LiveSpeechToText, SpeechToText, TextToSpeech
from pipeline.metrics import PipelineMetrics

log = logging.getLogger("taina.providers")

Closers = list[Callable[[], Awaitable[Any] | Any]]


def build_tts(
    settings: Settings, espeak: TextToSpeech, metrics: PipelineMetrics, closers: Closers
) -> TextToSpeech:
    """The voice chain, e.g. ElevenLabs → OpenAI TTS → eSpeak."""
    providers: list[TextToSpeech] = []
    for name in settings.tts_provider_chain[:-1]:
        if name == "elevenlabs":
            if not (settings.elevenlabs_api_key and settings.elevenlabs_voice_id):
                log.warning("TTS provider elevenlabs skipped: ELEVENLABS_API_KEY/VOICE_ID unset")
                continue
            from pipeline.providers.elevenlabs_tts import ElevenLabsTTS

            provider: Any = ElevenLabsTTS(
                settings.elevenlabs_api_key,
                settings.elevenlabs_voice_id,
                model=settings.elevenlabs_model,
                base_url=settings.elevenlabs_base_url,
                mode=settings.elevenlabs_mode,
            )
        elif name == "openai":
            if not settings.openai_api_key:
                log.warning("TTS provider openai skipped: OPENAI_API_KEY unset")
                continue
            from pipeline.providers.openai_tts import OpenAITTS

            provider = OpenAITTS(
                api_key=settings.openai_api_key,
                base_url=settings.openai_base_url,
                model=settings.openai_tts_model,
                voice=settings.openai_tts_voice,
            )
        else:
            raise ValueError(f"unknown TTS provider {name!r} (known: elevenlabs, openai, espeak)")
        providers.append(provider)
        closers.append(provider.aclose)
    if not providers:
        return espeak
    from pipeline.providers.failover_tts import FailoverTTS

    return FailoverTTS(
        [*providers, espeak], settings.tts_first_byte_budget_s, settings.tts_cooldown_s, metrics
    )


async def warm_up_tts(tts: TextToSpeech) -> None:
    """Open provider connections before the first caller needs them (never raises)."""
    for provider in getattr(tts, "providers", [tts]):
        warm = getattr(provider, "warm_up", None)
        if warm is not None:
            try:
                await warm()
            except Exception:
                log.warning("warming up %s failed", getattr(provider, "name", provider))


def build_batch_stt(
    settings: Settings, whisper: SpeechToText, metrics: PipelineMetrics, closers: Closers
) -> SpeechToText:
    """Batch recognition of a finished utterance: e.g. OpenAI transcription → Whisper."""
    providers: list[SpeechToText] = []
    for name in settings.stt_provider_chain[:-1]:
        if name == "deepgram":
            continue  # live, see build_live_stt
        if name == "openai":
            if not settings.openai_api_key:
                log.warning("STT provider openai skipped: OPENAI_API_KEY unset")
                continue
            from pipeline.providers.openai_stt import OpenAISTT

            provider: Any = OpenAISTT(
                api_key=settings.openai_api_key,
                base_url=settings.openai_base_url,
                model=settings.openai_stt_model,
                language=settings.stt_language,
                prompt=settings.stt_prompt,
            )
            providers.append(provider)
            closers.append(provider.aclose)
        else:
            raise ValueError(f"unknown STT provider {name!r} (known: deepgram, openai, whisper)")
    if not providers:
        return whisper
    from pipeline.providers.failover_stt import FailoverSTT

    return FailoverSTT(
        [*providers, whisper],
        settings.stt_first_result_budget_s,
        settings.stt_cooldown_s,
        metrics,
    )


def build_live_stt(settings: Settings, metrics: PipelineMetrics) -> LiveSpeechToText | None:
    if "deepgram" not in settings.stt_provider_chain:
        return None
    if not settings.deepgram_api_key:
        log.warning("STT provider deepgram skipped: DEEPGRAM_API_KEY unset")
        return None
    from pipeline.providers.deepgram_stt import DeepgramLiveSTT

    return DeepgramLiveSTT(
        settings.deepgram_api_key,
        settings.deepgram_model,
        settings.stt_language,
        base_url=settings.deepgram_base_url,
        endpointing_ms=settings.deepgram_endpointing_ms,
        utterance_end_ms=settings.deepgram_utterance_end_ms,
        keepalive_s=settings.deepgram_keepalive_s,
        connect_timeout_s=settings.deepgram_connect_timeout_s,
        cooldown_s=settings.stt_cooldown_s,
        metrics=metrics,
    )
