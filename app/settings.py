"""The one configuration object of TAINA.

Every knob lives here so an operator can read one file to learn what can be set. Names the
outside world already knows (PUBLIC_URL, OPENAI_API_KEY, TWILIO_AUTH_TOKEN, DATABASE_URL, …)
are read without a prefix; TAINA's own tunables use the ``TAINA_`` prefix.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Whisper's initial prompt biases recognition toward the office's words. It starts with the
# short answers callers give most ("Sí.", "No.") because a prompt made only of domain nouns
# makes Whisper hear "Cédula, pasaporte…" in a lone "Sí"; it holds no whole caller sentence,
# since the STT drops output that repeats six or more words of its prompt.
DEFAULT_STT_PROMPT = (
    "Sí. No. Correcto. Gracias. Hola, buenos días. Llamo a Punto Ciudadano por una cita: "
    "cédula, pasaporte, licencia, actas; lunes, martes, mañana por la mañana, a las ocho, "
    "a las diez."
)


def _plain(name: str) -> AliasChoices:
    """Accept the well-known unprefixed name and the TAINA_-prefixed one."""
    return AliasChoices(name, f"TAINA_{name}")


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
    max_ws_message_bytes: int = 64 * 1024
    max_bad_messages: int = 50  # a stream sending more malformed messages than this is closed
    outbound_chunk_ms: int = 100  # audio sent per media message (each followed by a mark)

    # --- audio pipeline ---------------------------------------------------------------------
    pipeline_sample_rate: int = 16000
    vad_threshold: float = 0.5
    vad_neg_threshold: float = 0.35
    vad_min_speech_ms: int = 96
    end_of_turn_silence_ms: int = 550
    speculative_silence_ms: int = 250
    barge_in_min_ms: int = 350
    speech_pad_ms: int = 250
    max_utterance_s: float = 30.0
    goodbye_grace_s: float = 1.5

    # --- engines ----------------------------------------------------------------------------
    stt_model_dir: Path | None = None  # default: {data_dir}/models/whisper-base
    stt_language: str = "es"
    stt_prompt: str = DEFAULT_STT_PROMPT
    stt_beam_size: int = 1
    # One greedy pass: a temperature retry doubles the time on exactly the hard utterances.
    stt_temperatures: tuple[float, ...] = (0.0,)
    stt_cpu_threads: int = 2
    # A fixed es-419 variant: plain "es-419" drifts in pitch from run to run, and "+miguel" was
    # the most intelligible variant over the 8 kHz phone band in our recognition tests.
    tts_voice: str = "es-419+miguel"
    tts_rate_wpm: int = 160
    tts_pitch: int = 45

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
