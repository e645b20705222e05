"""The one configuration object of TAINA.

Every knob lives here so an operator can read one file to learn what can be set. Names the
outside world already knows (PUBLIC_URL, OPENAI_API_KEY, TWILIO_AUTH_TOKEN, DATABASE_URL, …)
are read without a prefix; TAINA's own tunables use the ``TAINA_`` prefix.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The fixed prompt used before the catalog-built one (``office_stt_prompt``), kept for the tests
# and benches that compare against it. Whisper's initial prompt biases recognition toward the
# office's words. It starts with the short answers callers give most ("Sí.", "No.") because a
# prompt made only of domain nouns makes Whisper hear "Cédula, pasaporte…" in a lone "Sí"; it
# holds no whole caller sentence, since the STT drops output that repeats six or more words of
# its prompt.
DEFAULT_STT_PROMPT = (
    "Sí. No. Correcto. Gracias. Hola, buenos días. Llamo a Punto Ciudadano por una cita: "
    "cédula, pasaporte, licencia, actas; lunes, martes, mañana por la mañana, a las ocho, "
    "a las diez."
)


def office_stt_prompt() -> str:
    """Whisper's prompt from the sample office's catalog (imported late: the catalog module
    pulls in the booking code, which settings must not depend on at import time)."""
    from app.booking import CATALOG
    from pipeline.brain.heard import whisper_prompt

    return whisper_prompt(CATALOG)


def _plain(name: str) -> AliasChoices:
    """Accept the well-known unprefixed name and the TAINA_-prefixed one."""
    return AliasChoices(name, f"TAINA_{name}")


def _chain(names: str, embedded: str) -> list[str]:
    """A provider list from "a, b": lower-case, de-duplicated, ending in the embedded engine."""
    out: list[str] = []
    for raw in names.split(","):
        name = raw.strip().lower()
        if name and name not in out and name != embedded:
            out.append(name)
    return [*out, embedded]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TAINA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- server -----------------------------------------------------------------------------
    data_dir: Path = Path("./data")
    host: str = "0.0.0.0"
    port: int = 8000
    public_url: str | None = Field(default=None, validation_alias=_plain("PUBLIC_URL"))
    secret_key: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # "text" or "json"
    # On SIGTERM `taina serve` declines new calls and lets the calls in progress finish for at
    # most this long; then each remaining caller hears a short goodbye (app/drain.py).
    drain_timeout_s: float = 60.0

    office_name: str = "Punto Ciudadano"
    timezone: str = "America/Santo_Domingo"

    # --- telephony --------------------------------------------------------------------------
    twilio_account_sid: str | None = Field(
        default=None, validation_alias=_plain("TWILIO_ACCOUNT_SID")
    )
    twilio_auth_token: str | None = Field(
        default=None, validation_alias=_plain("TWILIO_AUTH_TOKEN")
    )
    twilio_api_base_url: str | None = None  # REST base override (tests point it at loopback)
    transfer_number: str | None = None  # E.164 number of a human agent
    call_token_ttl_s: int = 120
    max_concurrent_calls: int = 0  # 0 = no limit; beyond it new calls hear a polite refusal
    # Call records (issue 13): a call ends with a spoken notice after max_call_seconds or
    # max_turns_per_call turns; caller turns (speech or keypad) beyond max_turns_per_second
    # (a burst of turn_burst allowed) are ignored, so one caller cannot flood the records.
    max_call_seconds: float = 1800.0
    max_turns_per_call: int = 400
    max_turns_per_second: float = 2.0
    turn_burst: int = 5
    # The recorder's in-memory queue; past it records spill to {data_dir}/spill (never lost).
    records_max_pending: int = 10_000
    max_ws_message_bytes: int = 64 * 1024
    # Bad-input limits (docs/RELIABILITY.md, "Bad input"). uvicorn closes (1009) a socket
    # whose one WebSocket message is larger than ws_max_size_bytes, before the app reads it.
    ws_max_size_bytes: int = 1024 * 1024
    # HTTP request bodies (webhooks, …) above this get 413 unread; /api has 1 MB, uploads more.
    max_request_body_bytes: int = 64 * 1024
    # Twilio streams per client address that have not sent a valid start yet (Twilio carries
    # many calls from few addresses: started calls are not counted). 0 = no limit.
    twilio_max_pending_per_ip: int = 20
    stream_start_timeout_s: float = 10.0  # a media socket silent this long after connecting
    # A CallSid's webhook is answered, and its media stream opened, once per this window.
    twilio_replay_window_s: float = 3600.0
    max_bad_messages: int = 50  # a stream sending more malformed messages than this is closed
    outbound_chunk_ms: int = 100  # audio sent per media message (each followed by a mark)
    web_max_connections_per_ip: int = 4  # browser calls (WS /web/stream) at once per address
    web_max_frame_bytes: int = 8192
    web_max_messages_per_s: int = 200
    # Inbound audio is paced to real time per call (telephony/inbound_audio.py): a stream may
    # run this far ahead of the wall clock (network jitter); audio beyond it is dropped.
    inbound_jitter_ms: int = 500
    # A stream whose dropped audio (decaying by inbound_flood_forgive_ratio of real time)
    # exceeds this much is flooding and is closed (1008).
    inbound_flood_limit_ms: int = 2000
    inbound_flood_forgive_ratio: float = 0.1
    # The address of a stream closed for flooding is refused new streams this long (browser
    # always; Twilio only without TWILIO_AUTH_TOKEN). 0 = no ban.
    inbound_flood_ban_s: float = 30.0
    # Fair shared engines: queued requests per call beyond this are refused (pipeline/engines.py).
    engine_max_queued_per_call: int = 2

    # --- audio pipeline ---------------------------------------------------------------------
    pipeline_sample_rate: int = 16000
    # Phone calls arrive as 8 kHz mu-law: their VAD runs at that rate and STT resamples each
    # utterance once, instead of upsampling every 20 ms frame to hear nothing new above 4 kHz.
    phone_pipeline_rate: int = 8000
    vad_threshold: float = 0.5
    vad_neg_threshold: float = 0.35
    vad_min_speech_ms: int = 96
    end_of_turn_silence_ms: int = 550
    speculative_silence_ms: int = 250
    # Smart Turn v3 (pipeline/smart_turn.py): "auto" = shadow when `taina models install` put the
    # model in place, else off. Shadow runs it at a pause of turn_model_pause_ms and logs its
    # decision beside the silence rule's; "on" is NOT implemented yet and runs as shadow.
    turn_model: Literal["auto", "off", "shadow", "on"] = "auto"
    turn_model_pause_ms: int = 200
    turn_model_threshold: float = 0.5
    barge_in_min_ms: int = 350
    speech_pad_ms: int = 250
    max_utterance_s: float = 30.0
    goodbye_grace_s: float = 1.5

    # --- engines ----------------------------------------------------------------------------
    # "instant": no inference at all (energy VAD, fixed transcript and reply, a tone for
    # speech) — only for `taina bench --engines instant`, to measure the media path alone.
    engine_mode: Literal["embedded", "instant"] = "embedded"
    stt_model_dir: Path | None = None  # default: {data_dir}/models/whisper-base
    stt_language: str = "es"
    # Default: built from the office's catalog (services, offices, weekdays, months; see
    # pipeline.brain.heard.whisper_prompt); set TAINA_STT_PROMPT to override ("" for none).
    stt_prompt: str = Field(default_factory=lambda: office_stt_prompt())
    # Beam search 5 with the catalog prompt: on caller speech through the phone band WER 0.33 ->
    # 0.26 and office facts recovered 0.67 -> 0.82 (0.85 after heard.repair_transcript), for
    # about +0.1 s per 3 s turn on 2 loaded cores (bench/stt_wer_bench.py, docs/PERFORMANCE.md).
    stt_beam_size: int = 5
    stt_hotwords: str = ""  # faster-whisper hotwords; measured no better than the prompt alone
    # One greedy pass: a temperature retry doubles the time on exactly the hard utterances.
    stt_temperatures: tuple[float, ...] = (0.0,)
    stt_cpu_threads: int = 2
    # A fixed es-419 variant: plain "es-419" drifts in pitch from run to run, and "+miguel" was
    # the most intelligible variant over the 8 kHz phone band in our recognition tests.
    tts_voice: str = "es-419+miguel"
    tts_rate_wpm: int = 160
    tts_pitch: int = 45
    # The embedded voice callers hear; eSpeak (above) stays the last fallback. "pico": SVOX Pico
    # es-ES, the default (best intelligibility over 8 kHz mu-law per unit of CPU, see
    # bench/tts_voices_bench.py; there is no es-419 Pico voice); "kokoro": Kokoro-82M, opt-in
    # (natural but ~0.6 core per second of speech); "espeak": eSpeak only.
    tts_voice_engine: Literal["pico", "kokoro", "espeak"] = "pico"
    tts_pico_speed: float = 0.9
    # Presence boost + 4:1 compression of the embedded voice (pipeline/voice_shaping.py): on a
    # noisy line plain Whisper's WER on the bot's sentences went 0.19 -> 0.07.
    tts_phone_shaping: bool = True
    tts_kokoro_voice: str = "jm_kumo"  # the clearer of the shipped styles (WER 0.060 vs 0.117)
    # Recently spoken sentences kept as audio (the fixed phrases are pre-rendered on top).
    tts_cache_mb: int = 32

    # --- brain and knowledge (issue 3) ---------------------------------------------------
    openai_model: str = Field(default="gpt-4o-mini", validation_alias=_plain("OPENAI_MODEL"))
    llm_temperature: float = 0.7
    llm_first_token_budget_s: float = 2.5  # beyond it, the offline brain answers this turn
    llm_tool_timeout_s: float = 5.0
    llm_max_tool_rounds: int = 4
    knowledge_dir: Path | None = None  # default: the packaged knowledge_data/
    knowledge_mode: str = "rag_prompt"  # rag_prompt | query_engine | chat_engine
    embedding_model: str = "text-embedding-3-small"
    booking_days_ahead: int = 30
    booking_webhook_url: str | None = None  # optional external booking system
    booking_webhook_secret: str | None = None

    # --- admin and auth (issue 5) -------------------------------------------------------------
    admin_jwt_ttl_s: int = 900  # local admin sessions are short: sign in again after 15 minutes
    # Dashboard sessions are renewed by a refresh token (httpOnly cookie, rotated on use) while
    # they are used; one unused for admin_idle_timeout_s ends (sign in again), and none outlives
    # admin_session_max_s after its sign-in.
    admin_idle_timeout_s: int = 30 * 60
    admin_session_max_s: int = 12 * 3600
    # Failed sign-ins allowed per account (e-mail, from any address) within the window (per
    # server process); per client address (any e-mail) and in total (issue 13, app/login_guard.py).
    login_rate_limit: int = 5
    login_rate_window_s: float = 60.0
    login_ip_rate_limit: int = 20
    login_global_rate_limit: int = 200
    # argon2 (64 MiB, ~0.1 s of CPU) runs in its own pool of this many threads, never in the
    # default pool the calls use; beyond this many sign-ins waiting for it the answer is 429.
    password_hash_workers: int = 1
    password_hash_queue: int = 8
    # Peers whose X-Forwarded-For / -Proto / -Host are believed: comma-separated addresses or
    # CIDR networks (e.g. "10.0.0.0/8"). From anyone else those headers are dropped. Default none.
    trusted_proxies: str = ""
    # `taina serve` refuses a non-loopback address without TWILIO_AUTH_TOKEN (anyone could then
    # place calls and write status records) unless this is true.
    allow_unsigned: bool = False
    knowledge_upload_max_bytes: int = 200 * 1024
    # CSV exports (calls, bookings): rows per file; a bigger result is cut and says so.
    export_max_rows: int = Field(default=50_000, ge=1, le=1_000_000)
    # Call review (issue 14): a reply slower than this (end of speech to first audio) is marked
    # slow in the per-turn timeline.
    slow_turn_ms: float = 1500.0

    # --- live events, Supabase, recordings (issue 5) ---------------------------------------
    # Live call events for the dashboard, shared by every server process of one deployment:
    # auto = Redis when REDIS_URL is set, else Postgres LISTEN/NOTIFY when DATABASE_URL is
    # Postgres, else in-process only (SQLite means one process anyway).
    live_backend: str = "auto"  # auto | memory | postgres | redis
    live_channel: str = "taina_live"
    redis_url: str | None = Field(default=None, validation_alias=_plain("REDIS_URL"))
    # State every process of a deployment must agree on (app/shared_state.py): the call-token
    # replay cache and the concurrent-call cap. auto = Redis when REDIS_URL is set, else per
    # process. Keys start with redis_prefix (several deployments may share one Redis); a dead
    # process's calls free their cap slots after fleet_lease_s.
    shared_state: str = "auto"  # auto | memory | redis
    redis_prefix: str = "taina:"
    fleet_lease_s: float = 15.0
    # An SSE response ends after this long and the browser reconnects: keeps a server
    # shutdown from waiting on dashboards that never hang up.
    live_stream_max_s: float = 60.0
    supabase_jwks_url: str | None = None  # default {SUPABASE_URL}/auth/v1/.well-known/jwks.json
    supabase_service_role_key: str | None = Field(
        default=None, validation_alias=_plain("SUPABASE_SERVICE_ROLE_KEY")
    )
    # Off by default: the original design keeps no conversation audio. When on, callers hear
    # a consent notice first and each call is saved as a stereo WAV (caller left, bot right).
    record_calls: bool = False
    recordings_bucket: str | None = None  # Supabase Storage bucket; unset: {data_dir}/recordings

    # --- LiveKit (issue 6) ------------------------------------------------------------------
    # Web visitors get one room each (prefix + session id); LiveKit SIP callers get one room
    # each from the dispatch rule (SIP prefix + number + random suffix). The agent worker joins
    # every room with either prefix.
    livekit_room_prefix: str = "web-"
    livekit_sip_room_prefix: str = "call-"
    livekit_agent_name: str = "taina"  # dispatch rule's roomConfig agents[].agentName
    livekit_agent_identity: str = "taina-agente"
    livekit_token_ttl_s: int = 300  # how long a visitor token may be used to join
    livekit_room_max_s: int = 1800  # the agent ends (and deletes) a room after this long
    livekit_empty_timeout_s: int = 60  # room closes if nobody joins within this
    livekit_departure_timeout_s: int = 10  # room closes this long after the last one leaves
    livekit_token_per_minute: int = 10  # token requests per client IP
    livekit_poll_interval_s: float = 1.0  # the agent's ListRooms period (--poll mode only)
    # Dispatch by webhook (telephony/livekit_dispatch.py): a worker's claim on a room lasts
    # this long unless renewed; a dead worker's rooms are taken over after it.
    livekit_claim_lease_s: float = 10.0
    livekit_sample_rate: int = 48000  # rate of the agent's published track and its AudioStream
    # Comma-separated E.164 numbers the inbound trunk accepts (empty: any number).
    livekit_sip_trunk_numbers: str = ""
    livekit_sip_trunk_name: str = "taina-entrada"
    livekit_sip_dispatch_name: str = "taina-despacho"
    livekit_sip_auth_username: str | None = None
    livekit_sip_auth_password: str | None = None
    # SIP REFER target for a transfer ("tel:+1809…" or "sip:…"); unset: tel: + transfer_number.
    livekit_sip_transfer_to: str | None = None

    # --- storage ----------------------------------------------------------------------------
    database_url: str | None = Field(default=None, validation_alias=_plain("DATABASE_URL"))

    # --- providers (later issues) -----------------------------------------------------------
    openai_api_key: str | None = Field(default=None, validation_alias=_plain("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=_plain("OPENAI_BASE_URL"))
    deepgram_api_key: str | None = Field(default=None, validation_alias=_plain("DEEPGRAM_API_KEY"))
    elevenlabs_api_key: str | None = Field(
        default=None, validation_alias=_plain("ELEVENLABS_API_KEY")
    )
    elevenlabs_voice_id: str | None = Field(
        default=None, validation_alias=_plain("ELEVENLABS_VOICE_ID")
    )
    livekit_url: str | None = Field(default=None, validation_alias=_plain("LIVEKIT_URL"))
    livekit_api_key: str | None = Field(default=None, validation_alias=_plain("LIVEKIT_API_KEY"))
    livekit_api_secret: str | None = Field(
        default=None, validation_alias=_plain("LIVEKIT_API_SECRET")
    )
    supabase_url: str | None = Field(default=None, validation_alias=_plain("SUPABASE_URL"))
    supabase_anon_key: str | None = Field(
        default=None, validation_alias=_plain("SUPABASE_ANON_KEY")
    )
    supabase_jwt_secret: str | None = Field(
        default=None, validation_alias=_plain("SUPABASE_JWT_SECRET")
    )

    # --- speech providers: STT (issue 4) ----------------------------------------------------
    # Ordered, comma-separated. "deepgram" streams live during the call; the others form the
    # batch chain that completes a turn when the one before fails. The embedded "whisper" is
    # always last (see ``stt_provider_chain``), so a turn is never lost.
    # Ordered, comma-separated; the embedded engine always ends the chain. Empty = decided by
    # the keys present: deepgram (live), openai (batch), whisper.
    stt_providers: str = Field(default="", validation_alias=_plain("STT_PROVIDERS"))
    deepgram_model: str = "nova-2"  # or nova-3
    deepgram_base_url: str | None = None  # None = Deepgram's own; tests point it at loopback
    deepgram_endpointing_ms: int = 300  # silence before Deepgram marks speech_final
    deepgram_utterance_end_ms: int = 1000  # gap after the last word before UtteranceEnd
    deepgram_keepalive_s: float = 5.0  # KeepAlive when no audio went out for this long
    deepgram_connect_timeout_s: float = 3.0
    # How long the live transcript may take after the end of a turn before batch STT
    # transcribes the same turn (SessionConfig.live_final_timeout_s).
    stt_live_final_timeout_s: float = 1.0
    stt_first_result_budget_s: float = 2.0  # per batch provider, except the last (Whisper)
    stt_cooldown_s: float = 30.0  # a failed provider is skipped for this long

    @property
    def stt_provider_chain(self) -> list[str]:
        """``stt_providers`` as a list, de-duplicated, always ending in the embedded engine."""
        wanted = self.stt_providers
        if not wanted.strip():
            wanted = ",".join(
                n
                for n, key in (("deepgram", self.deepgram_api_key), ("openai", self.openai_api_key))
                if key
            )
        return _chain(wanted, "whisper")

    # --- speech providers: TTS (issue 4) ----------------------------------------------------
    elevenlabs_model: str = Field(
        default="eleven_multilingual_v2", validation_alias=_plain("ELEVENLABS_MODEL")
    )
    elevenlabs_base_url: str | None = Field(  # None = ElevenLabs' own API
        default=None, validation_alias=_plain("ELEVENLABS_BASE_URL")
    )
    # "http": one streaming request per sentence (lower first audio for whole sentences);
    # "websocket": input-streaming socket per sentence, pre-opened so the handshake is paid
    # between sentences instead of on the caller's time.
    elevenlabs_mode: str = "http"
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "coral"
    openai_stt_model: str = "gpt-4o-mini-transcribe"
    # A cloud voice that has not produced audio within this budget is abandoned for the next
    # one in the chain (the embedded eSpeak, always last, has none).
    tts_first_byte_budget_s: float = 1.2
    tts_cooldown_s: float = 30.0  # a failed provider is skipped for this long
    # Ordered, comma-separated; eSpeak always ends the chain, preceded by the embedded voice
    # (tts_voice_engine) unless listed elsewhere. Empty = decided by the keys present:
    # elevenlabs (key and voice id), openai, then e.g. pico, espeak.
    tts_providers: str = Field(default="", validation_alias=_plain("TTS_PROVIDERS"))

    @property
    def tts_provider_chain(self) -> list[str]:
        wanted = self.tts_providers
        if not wanted.strip():
            eleven = bool(self.elevenlabs_api_key and self.elevenlabs_voice_id)
            wanted = ",".join(
                n for n, ok in (("elevenlabs", eleven), ("openai", bool(self.openai_api_key))) if ok
            )
        chain = _chain(wanted, "espeak")
        if self.tts_voice_engine != "espeak" and self.tts_voice_engine not in chain:
            chain.insert(len(chain) - 1, self.tts_voice_engine)  # the embedded voice, then eSpeak
        return chain

    # --- derived ----------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def whisper_dir(self) -> Path:
        return self.stt_model_dir or (self.models_dir / "whisper-base")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'taina.db').resolve()}"

    @cached_property
    def signing_key(self) -> bytes:
        """Key for call tokens; persisted in the data dir so every process of one deployment
        (and a restart) agrees on it without the operator having to set one."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_hex(32))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip().encode()
