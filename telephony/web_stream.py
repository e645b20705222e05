"""The ``WS /web/stream`` transport: a visitor's browser ↔ CallSession.

Same shape as the Twilio transport: the receive loop turns the page's messages into audio
frames, DTMF digits and mark echoes for the session; one writer task owns the socket's sending
side through an outbox queue, so ``clear`` drops speech not yet sent and nothing is sent after
the socket closed. On top of that the page gets what a phone cannot show: live captions of
both sides and the conversation's state (escuchando / pensando / hablando).

Abuse limits: a frame larger than ``max_frame_bytes`` closes the stream at once (1009); more
than ``max_messages_per_s`` messages in a second are dropped and counted as bad; a stream with
more than ``max_bad_messages`` bad messages is closed (1008); audio is paced to real time and a
stream that keeps sending it faster is closed (1008, telephony/inbound_audio.py, shared with
the Twilio transport). Nothing one stream does can raise out of this class.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketState

from pipeline.metrics import PipelineMetrics
from pipeline.records import CallInfo, TurnRecord
from telephony.bad_messages import BadMessages
from telephony.inbound_audio import (
    DEFAULT_FLOOD_LIMIT_MS,
    DEFAULT_FORGIVE_RATIO,
    DEFAULT_JITTER_MS,
    FLOOD_REASON,
    InboundAudio,
    receive_loop,
)
from telephony.web_protocol import (
    WIRE_RATE,
    Audio,
    DtmfDigit,
    HangupRequest,
    MarkPlayed,
    ProtocolError,
    Speaker,
    StartRequest,
    State,
    audio_mark_message,
    caption_message,
    clear_message,
    error_message,
    hangup_message,
    parse_client_message,
    started_message,
    state_message,
)
from telephony.ws_lifecycle import serve_socket
from telephony.ws_outbox import WebSocketOutbox

log = logging.getLogger("taina.web")

# The close frame's reason for a refused call (1013 "try again later"); the page shows MSG_BUSY.
BUSY_CLOSE_REASON = "busy: try again later"
MSG_BUSY = (
    "En este momento no podemos atender su llamada. Por favor, intente de nuevo en unos minutos."
)


class SessionLike(Protocol):
    def feed_audio(self, pcm16: bytes, wire: bytes | None = None) -> None: ...
    def feed_dtmf(self, digit: str) -> None: ...
    def mark_played(self, name: str) -> None: ...
    async def start(self, greeting_t0: float | None = None) -> None: ...
    async def close(self, reason: str) -> None: ...
    @property
    def is_closed(self) -> bool: ...


# Builds the session for a started stream; None refuses it (at capacity).
WebSessionFactory = Callable[[StartRequest, "WebMediaStream"], Awaitable["SessionLike | None"]]


def new_call_id() -> str:
    return "web-" + secrets.token_hex(8)


class WebMediaStream:
    """One visitor's call. Implements the session's ``AudioSink`` (PCM16 16 kHz out)."""

    output_rate = WIRE_RATE
    output_encoding = "pcm16"

    def __init__(
        self,
        ws: WebSocket,
        *,
        pipeline_rate: int,
        max_frame_bytes: int,
        max_messages_per_s: int,
        max_bad_messages: int,
        metrics: PipelineMetrics,
        session_factory: WebSessionFactory,
        call_id: str | None = None,
        jitter_ms: float = DEFAULT_JITTER_MS,
        flood_limit_ms: float = DEFAULT_FLOOD_LIMIT_MS,
        forgive_ratio: float = DEFAULT_FORGIVE_RATIO,
    ) -> None:
        self._ws = ws
        self._max_frame = max_frame_bytes
        self._max_rate = max_messages_per_s
        self._metrics = metrics
        self._factory = session_factory
        self.call_id = call_id or new_call_id()
        self._inbound = InboundAudio(
            "web",
            wire_rate=WIRE_RATE,
            wire_encoding="pcm16",
            pipeline_rate=pipeline_rate,
            metrics=metrics,
            jitter_ms=jitter_ms,
            flood_limit_ms=flood_limit_ms,
            forgive_ratio=forgive_ratio,
        )
        self._out = WebSocketOutbox(ws, f"web-writer-{self.call_id}")
        self._session: SessionLike | None = None
        self._started = False
        self._window_start = 0.0
        self._window_count = 0
        self._closing = False
        self._state: State | None = None
        self._last_mark: str | None = None  # the newest audio mark sent and not yet played
        self._bot_caption = ""
        self._log = logging.LoggerAdapter(log, {"call_id": self.call_id})
        self._bad = BadMessages("web", max_bad_messages, metrics, self._log)
        self.accepted_at = time.monotonic()

    # --- AudioSink -------------------------------------------------------------------------
    def send_audio(
        self, pcm16: bytes, mark: str, on_sent: Callable[[float], None] | None = None
    ) -> None:
        if self._closing or not self._started:
            return
        self._set_state("hablando")
        self._out.put(pcm16, on_sent)
        self._out.put(audio_mark_message(mark))
        self._last_mark = mark

    def clear(self) -> None:
        if self._closing or not self._started:
            return
        self._out.drop_pending()
        self._last_mark = None
        self._state = None  # the queued state messages were dropped with the audio
        self._out.put(clear_message())
        self._set_state("escuchando")

    async def hangup(self) -> None:
        """The bot ends the call: tell the page, let the writer drain, close."""
        if self._closing:
            return
        self._out.put(hangup_message())
        self._closing = True
        await self._out.drain(5)
        await self._close_socket(1000)

    async def transfer(self, target: str | None) -> bool:
        return False  # a browser visit has no phone line to hand over

    # --- what the page sees besides audio --------------------------------------------------
    def caption(self, speaker: Speaker, text: str, final: bool) -> None:
        if not self._closing and self._started and text:
            self._out.put(caption_message(speaker, text, final))

    def sentence_spoken(self, sentence: str) -> None:
        """A bot sentence starts to be synthesized: grow the live caption of this bot turn."""
        sentence = sentence.strip()
        if sentence:
            self._bot_caption = f"{self._bot_caption} {sentence}".strip()
            self.caption("bot", self._bot_caption, final=False)

    def turn_ended(self, turn: TurnRecord) -> None:
        if turn.speaker == "caller":
            if turn.text:
                self.caption("caller", turn.text, final=True)
            self._set_state("pensando")
            return
        self._bot_caption = ""
        self.caption("bot", turn.heard_text or turn.text, final=True)
        if self._last_mark is None and not self._closing and self._started:
            self._set_state("escuchando")

    def _set_state(self, state: State) -> None:
        if state != self._state and not self._closing and self._started:
            self._state = state
            self._out.put(state_message(state))

    # --- the receive loop ------------------------------------------------------------------
    async def run(self) -> None:
        await serve_socket(
            self._ws,
            self._out,
            self._receive_loop,
            self._shutdown,
            started=lambda: self._started,
            log=self._log,
        )

    async def _receive_loop(self) -> str:
        return await receive_loop(
            self._ws,
            self._on_message,
            inbound=self._inbound,
            started=lambda: self._started,
            session=lambda: self._session,
            log=lambda: self._log,
        )

    async def _on_message(self, message: dict[str, Any]) -> str | None:
        if not self._within_rate():
            if self._bad_message("more messages per second than allowed", "rate"):
                return "protocol-error"
            return None
        parsed = parse_client_message(message.get("text"), message.get("bytes"), self._max_frame)
        if isinstance(parsed, Audio):
            if self._session is None:
                if self._bad_message("audio before start", "audio"):
                    return "protocol-error"
            else:
                await self._inbound.feed(self._inbound.admit(parsed.pcm16))
        elif isinstance(parsed, MarkPlayed):
            self._on_mark(parsed.name)
        elif isinstance(parsed, ProtocolError):
            if parsed.fatal:
                self._log.warning("closing web stream: %s", parsed.reason)
                self._metrics.bad_messages_total.labels("web", parsed.kind).inc()
                await self._close_socket(1009)
                return "protocol-error"
            if self._bad_message(parsed.reason, parsed.kind):
                return "protocol-error"
        elif isinstance(parsed, DtmfDigit):
            if self._session is not None:
                self._session.feed_dtmf(parsed.digit)
        elif isinstance(parsed, StartRequest):
            return await self._on_start(parsed)
        elif isinstance(parsed, HangupRequest):
            return "caller-hangup"
        return None

    def _within_rate(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._window_count = 0
        self._window_count += 1
        return self._window_count <= self._max_rate

    def _on_mark(self, name: str) -> None:
        if self._session is None:
            self._bad_message("mark before start", "mark")
            return
        self._session.mark_played(name)
        if name == self._last_mark:
            self._last_mark = None
            self._set_state("escuchando")

    async def _on_start(self, start: StartRequest) -> str | None:
        if self._started:
            self._bad_message("second start on one stream", "start")
            return None
        self._started = True
        session = await self._factory(start, self)
        if session is None:
            self._log.warning("web call refused at start")
            self._out.put(error_message(MSG_BUSY))
            self._closing = True
            await self._out.drain(2)
            await self._close_socket(1013, BUSY_CLOSE_REASON)
            return "refused"
        self._session = session
        self._inbound.attach(session, self.call_id)
        self._out.put(started_message(self.call_id))
        self._set_state("escuchando")
        await session.start(self.accepted_at)
        return None

    def _bad_message(self, reason: str, kind: str) -> bool:
        return self._bad.record(reason, kind)

    # --- sending ---------------------------------------------------------------------------
    async def _close_socket(self, code: int, reason: str = "") -> None:
        self._closing = True
        if reason and self._ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self._ws.close(code, reason)
        await self._out.close(code)

    async def _shutdown(self, reason: str) -> None:
        self._closing = True
        if self._session is not None:
            await self._session.close(reason)
        await self._out.shutdown(1008 if reason in ("protocol-error", FLOOD_REASON) else 1000)

    @property
    def flooded(self) -> bool:
        """The stream was closed for sending audio faster than real time."""
        return self._inbound.flooding

    def describe(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "bad": self._bad.count, "state": self._state}


# --- taps that feed the captions --------------------------------------------------------------


class CaptionObserver:
    """A ``CallObserver`` for one web call: finished turns become captions and states."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def call_started(self, info: CallInfo) -> None:
        pass

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        self._stream.turn_ended(turn)

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        pass


class CaptioningTTS:
    """Wraps the call's TTS so every sentence becomes a live caption when its synthesis starts.

    The session synthesizes one sentence per ``synthesize`` call, so this is the per-sentence
    hook the session does not (yet) offer; every other attribute is the inner engine's.
    """

    def __init__(self, inner: Any, on_sentence: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_sentence = on_sentence

    async def synthesize(self, text: str, sample_rate: int, **kwargs: Any) -> AsyncIterator[bytes]:
        self._on_sentence(text)
        async for chunk in self._inner.synthesize(text, sample_rate, **kwargs):
            yield chunk

    def __getattr__(self, name: str) -> Any:  # name, native_encodings, reports_first_audio…
        return getattr(self._inner, name)
