"""Everything a request handler needs, built once at startup and passed explicitly.

Loading the engines is the slow part of startup (Whisper ≈ 1 s), so it happens here, once,
before the server accepts calls — never on a caller's time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.booking import BookingService, build_booking_service, ensure_catalog, keep_slots_fresh
from app.call_records import StorageObserver
from app.drain import Drain
from app.knowledge_files import knowledge_source_dir
from app.prompts import PromptStore
from app.providers import (
    build_batch_stt,
    build_live_stt,
    build_tts,
    start_prerender,
    warm_up_tts,
)
from app.recent_calls import RecentCalls
from app.recordings import (
    Recordings,
    call_meta_writer,
    recordings_from_settings,
    with_consent_notice,
)
from app.settings import Settings
from app.shared_state import SharedState, shared_state_from_settings
from app.storage import BookingRepository, CallRecorder, CallRepository, Database
from app.storage.recorder import RecorderCollector
from knowledge import KnowledgeBase
from pipeline.brain.base import Brain
from pipeline.brain.office_tools import OfficeTools
from pipeline.brain.tools import Tools
from pipeline.engines import FairBrain, FairGate, SpeechToText, TextToSpeech, VadModel
from pipeline.instant_engines import instant_engine_set
from pipeline.metrics import PipelineMetrics
from pipeline.records import CallObserver, FanOutObserver
from pipeline.session import Engines, SessionConfig
from pipeline.smart_turn import runner_for
from pipeline.turn_taking import TurnConfig
from telephony.call_tokens import CallTokens
from telephony.signatures import TwilioSignatureChecker

log = logging.getLogger("taina.services")


@dataclass
class Services:
    settings: Settings
    engines: Engines
    metrics: PipelineMetrics
    tokens: CallTokens
    recent: RecentCalls
    observer: CallObserver
    signatures: TwilioSignatureChecker | None
    db: Database
    calls: CallRepository
    bookings: BookingRepository
    booking_service: BookingService
    knowledge: KnowledgeBase
    tools: Tools
    prompts: PromptStore
    recorder: CallRecorder
    recordings: Recordings | None = None
    drain: Drain = field(default_factory=Drain)  # graceful shutdown state (app/drain.py)
    # Replay cache and call cap shared by the deployment's processes (Redis) or per process.
    shared: SharedState = field(default_factory=lambda: SharedState(None, "taina:", 15.0))
    extra_observers: list[CallObserver] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[Any] | Any]] = field(default_factory=list)

    def session_config(self, sample_rate: int | None = None) -> SessionConfig:
        config = session_config_from(self.settings)
        return dataclasses.replace(config, sample_rate=sample_rate) if sample_rate else config

    async def aclose(self) -> None:
        """Close in reverse order of creation: the recorder flushes before the database goes."""
        for closer in reversed(self.closers):
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("closing %r failed", closer)


def session_config_from(s: Settings) -> SessionConfig:
    return SessionConfig(
        sample_rate=s.pipeline_sample_rate,
        turn=TurnConfig(
            threshold=s.vad_threshold,
            neg_threshold=s.vad_neg_threshold,
            min_speech_ms=s.vad_min_speech_ms,
            speculative_silence_ms=s.speculative_silence_ms,
            end_of_turn_silence_ms=s.end_of_turn_silence_ms,
            max_utterance_ms=int(s.max_utterance_s * 1000),
        ),
        barge_in_min_ms=s.barge_in_min_ms,
        speech_pad_ms=s.speech_pad_ms,
        chunk_ms=s.outbound_chunk_ms,
        goodbye_grace_s=s.goodbye_grace_s,
        live_final_timeout_s=s.stt_live_final_timeout_s,
        max_call_s=s.max_call_seconds,
        max_turns=s.max_turns_per_call,
        turns_per_s=s.max_turns_per_second,
        turn_burst=s.turn_burst,
        turn_model=(
            runner_for(
                s.turn_model, str(s.models_dir), s.turn_model_pause_ms, s.turn_model_threshold
            )
            if s.engine_mode == "embedded"
            else None
        ),
    )


def whisper_settings(settings: Settings) -> dict[str, Any]:
    """The embedded Whisper's keyword arguments (beam, prompt, hotwords…) from the settings,
    shared by the server and the tests that must hear as the server does."""
    return {
        "language": settings.stt_language,
        "prompt": settings.stt_prompt,
        "beam_size": settings.stt_beam_size,
        "cpu_threads": settings.stt_cpu_threads,
        "temperatures": settings.stt_temperatures,
        "hotwords": settings.stt_hotwords,
        "max_queued_per_call": settings.engine_max_queued_per_call,
    }


def load_embedded_engines(settings: Settings) -> tuple[VadModel, SpeechToText, TextToSpeech]:
    """The offline defaults. Assembles the Whisper model on first use (cached afterwards)."""
    from pipeline.model_files import ensure_whisper_model
    from pipeline.stt import WhisperSTT
    from pipeline.tts import EspeakTTS
    from pipeline.vad import SileroVadModel

    model_dir = ensure_whisper_model(settings.whisper_dir, progress=lambda m: log.info("%s", m))
    vad = SileroVadModel()
    stt = WhisperSTT(model_dir, **whisper_settings(settings))
    tts = EspeakTTS(
        voice=settings.tts_voice, rate_wpm=settings.tts_rate_wpm, pitch=settings.tts_pitch
    )
    return vad, stt, tts


def can_transfer(settings: Settings) -> bool:
    """Whether a person can take a call: a Twilio transfer needs the number and the REST
    credentials, a LiveKit SIP one a REFER target. Without either the brain must not promise
    a transfer; it offers the office's phone and hours instead."""
    twilio = bool(settings.transfer_number and settings.twilio_account_sid)
    twilio = twilio and bool(settings.twilio_auth_token)
    sip = bool(
        settings.livekit_url and (settings.livekit_sip_transfer_to or settings.transfer_number)
    )
    return twilio or sip


def build_brain(
    settings: Settings,
    tools: Tools | None = None,
    *,
    prompts: PromptStore | None = None,
    knowledge: KnowledgeBase | None = None,
    metrics: PipelineMetrics | None = None,
    closers: list[Callable[[], Awaitable[Any] | Any]] | None = None,
) -> Brain:
    """The offline dialogue engine, alone (no key) or as the LLM's fallback: when the LLM
    errors or misses its first-token budget, the offline engine answers the same turn with
    the same tools, so the caller only notices a short pause."""
    from pipeline.brain.offline import OfflineBrain

    offline = OfflineBrain(
        tools,
        office_name=settings.office_name,
        timezone=settings.timezone,
        can_transfer=can_transfer(settings),
    )
    # Its steps run locally: calls take turns fairly for two workers (pipeline/engines.py).
    offline = FairBrain(
        offline,
        FairGate(
            "brain",
            2,
            max_waiting_per_call=settings.engine_max_queued_per_call,
            metrics=metrics,
        ),
    )
    if not settings.openai_api_key:
        return offline
    from openai import AsyncOpenAI, Timeout
    from prometheus_client import Counter

    from pipeline.brain.fallback import FallbackBrain
    from pipeline.brain.llm import LLMBrain

    client = AsyncOpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url or None,
        max_retries=0,  # no backoff on the caller's time: the offline brain is the retry
        timeout=Timeout(30.0, connect=3.0),
    )
    if closers is not None:
        closers.append(client.close)
    llm = LLMBrain(
        client,
        model=settings.openai_model,
        temperature=settings.llm_temperature,
        tools=tools,
        knowledge=knowledge,
        prompt_provider=prompts.active if prompts else "",
        first_token_budget_s=settings.llm_first_token_budget_s,
        tool_timeout_s=settings.llm_tool_timeout_s,
        max_tool_rounds=settings.llm_max_tool_rounds,
        knowledge_mode=settings.knowledge_mode,
        office_name=settings.office_name,
        timezone=settings.timezone,
    )
    counter = (
        Counter(
            "taina_llm_fallbacks",
            "Turns the offline brain answered instead of the LLM",
            ["reason"],
            registry=metrics.registry,
        )
        if metrics
        else None
    )
    return FallbackBrain(
        llm, offline, first_token_budget_s=settings.llm_first_token_budget_s, counter=counter
    )


async def build_services(
    settings: Settings,
    *,
    engines: Engines | None = None,
    extra_observers: list[CallObserver] | None = None,
) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    closers: list[Callable[[], Awaitable[Any] | Any]] = []
    db = Database(settings.effective_database_url)
    await db.migrate()
    closers.append(db.dispose)
    calls = CallRepository(db)
    recorder = CallRecorder(
        calls, max_pending=settings.records_max_pending, spill_dir=settings.data_dir / "spill"
    )
    recorder.start()
    closers.append(recorder.stop)

    bookings = BookingRepository(db)
    await ensure_catalog(bookings, settings)  # offices, services, slots: idempotent
    booking_service = build_booking_service(bookings, settings)
    closers.append(booking_service.aclose)  # drains pending outbound webhook posts
    refresher = asyncio.create_task(keep_slots_fresh(bookings, settings), name="slots")
    closers.append(refresher.cancel)
    knowledge = await asyncio.to_thread(
        KnowledgeBase.from_settings, settings, knowledge_source_dir(settings)
    )
    tools = OfficeTools(knowledge, booking_service, timeout_s=settings.llm_tool_timeout_s)
    metrics = PipelineMetrics.create()
    metrics.registry.register(RecorderCollector(recorder))  # queue, spill: issue 13
    prompts = PromptStore(db)

    if engines is None and settings.engine_mode == "instant":
        engines = instant_engine_set()
    if engines is None:
        vad, whisper, espeak = await asyncio.to_thread(load_embedded_engines, settings)
        warm = getattr(whisper, "warm_up", None)
        if warm is not None:
            await warm()
        closers.append(whisper.close)
        tts = build_tts(settings, espeak, metrics, closers)
        await warm_up_tts(tts)
        engines = Engines(
            vad=vad,
            stt=build_batch_stt(settings, whisper, metrics, closers),
            tts=tts,
            brain=None,  # type: ignore[arg-type]
            live_stt=build_live_stt(settings, metrics),
        )
    for engine in (engines.stt, engines.tts, engines.live_stt):
        # Injected provider chains report into this app's registry.
        if engine is not None and getattr(engine, "metrics", False) is None:
            attach = getattr(engine, "attach_metrics", None)
            if attach is not None:
                attach(metrics)
            else:
                engine.metrics = metrics  # type: ignore[union-attr]
    if engines.brain is None:  # injected engines may leave the brain to the settings
        engines.brain = build_brain(
            settings, tools, prompts=prompts, knowledge=knowledge, metrics=metrics, closers=closers
        )
    # The voice's fixed phrases, rendered in the background at the phone and web rates.
    prerender = start_prerender(
        engines.tts,
        engines.brain,
        sorted({settings.phone_pipeline_rate, settings.pipeline_sample_rate}),
    )
    if prerender is not None:
        closers.append(prerender.cancel)
    recordings = recordings_from_settings(settings, on_saved=call_meta_writer(calls, recorder))
    if recordings is not None:  # off by default; when on, callers hear a consent notice first
        engines.brain = with_consent_notice(engines.brain)
        closers.append(recordings.aclose)
    recent = RecentCalls()
    observers: list[CallObserver] = [recent, StorageObserver(recorder), *(extra_observers or [])]
    signatures = (
        TwilioSignatureChecker(settings.twilio_auth_token, settings.public_url)
        if settings.twilio_auth_token
        else None
    )
    shared = shared_state_from_settings(settings)
    closers.append(shared.aclose)
    return Services(
        settings=settings,
        engines=engines,
        metrics=metrics,
        tokens=CallTokens(
            settings.signing_key, ttl_s=settings.call_token_ttl_s, replay=shared.replay
        ),
        shared=shared,
        recent=recent,
        observer=FanOutObserver(*observers),
        signatures=signatures,
        db=db,
        calls=calls,
        bookings=bookings,
        booking_service=booking_service,
        knowledge=knowledge,
        tools=tools,
        prompts=prompts,
        recorder=recorder,
        recordings=recordings,
        extra_observers=list(extra_observers or []),
        closers=closers,
    )
