"""The ``WS /twilio/stream`` transport: Twilio Media Streams ↔ CallSession.

Turns Twilio's JSON messages into audio frames, DTMF digits and mark echoes for the session,
and the session's audio into mu-law ``media`` + ``mark`` messages. A single writer task owns
the socket's sending side, so a barge-in ``clear`` can drop audio that has not gone out yet
and nothing is ever sent after the socket closed.

A bad message is logged with the call id and ignored; a stream that keeps sending them is
closed. Inbound audio is paced to real time and fed in bounded slices, and a stream that keeps
sending faster than real time is closed (telephony/inbound_audio.py, shared with the browser
transport). Nothing one stream does can raise out of this class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.websockets import WebSocket

from pipeline.metrics import PipelineMetrics
from telephony.bad_messages import BadMessages
from telephony.inbound_audio import (
    DEFAULT_FLOOD_LIMIT_MS,
    DEFAULT_FORGIVE_RATIO,
    DEFAULT_JITTER_MS,
    FLOOD_REASON,
    InboundAudio,
    receive_loop,
)
from telephony.twilio_protocol import (
    Dtmf,
    MarkEcho,
    Media,
    ProtocolError,
    Start,
    Stop,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)
from telephony.ws_lifecycle import serve_socket
from telephony.ws_outbox import WebSocketOutbox

log = logging.getLogger("taina.twilio")

MAX_GAP_FILL_MS = 1000  # silence inserted for a hole in Twilio's timestamps, at most


class SessionLike(Protocol):
    def feed_audio(self, pcm16: bytes, wire: bytes | None = None) -> None: ...
    def feed_dtmf(self, digit: str) -> None: ...
    def mark_played(self, name: str) -> None: ...
    async def start(self, greeting_t0: float | None = None) -> None: ...
    async def close(self, reason: str) -> None: ...
    @property
    def is_closed(self) -> bool: ...


# Builds the session for an accepted stream. Returns None to refuse the stream (bad token).
SessionFactory = Callable[[Start, "TwilioMediaStream"], Awaitable["SessionLike | None"]]
TransferHandler = Callable[[str, str | None], Awaitable[bool]]


class TwilioMediaStream:
    """One Twilio media stream. Implements the session's ``AudioSink``.

    The session sends audio already in Twilio's format (mu-law 8 kHz: ``output_rate`` and
    ``output_encoding``), so the outbound path is only base64 + JSON; inbound audio is
    decoded and resampled to the pipeline rate.
    """

    output_rate = 8000
    output_encoding = "mulaw"
    input_rate = 8000
    input_encoding = "mulaw"

    def __init__(
        self,
        ws: WebSocket,
        *,
        pipeline_rate: int,
        max_message_bytes: int,
        max_bad_messages: int,
        metrics: PipelineMetrics,
        session_factory: SessionFactory,
        transfer_handler: TransferHandler | None = None,
        jitter_ms: float = DEFAULT_JITTER_MS,
        flood_limit_ms: float = DEFAULT_FLOOD_LIMIT_MS,
        forgive_ratio: float = DEFAULT_FORGIVE_RATIO,
    ) -> None:
        self._ws = ws
        self._rate = pipeline_rate
        self._max_bytes = max_message_bytes
        self._metrics = metrics
        self._factory = session_factory
        self._transfer_handler = transfer_handler
        self._inbound = InboundAudio(
            "twilio",
            wire_rate=8000,
            wire_encoding="mulaw",
            pipeline_rate=pipeline_rate,
            metrics=metrics,
            jitter_ms=jitter_ms,
            flood_limit_ms=flood_limit_ms,
            forgive_ratio=forgive_ratio,
        )
        self._out = WebSocketOutbox(ws, "twilio-writer")
        self._session: SessionLike | None = None
        self._start: Start | None = None
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self._next_ts: int | None = None
        self._closing = False
        self._log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(
            log, {"call_id": "-"}
        )
        self._bad = BadMessages("twilio", max_bad_messages, metrics, self._log)
        self.accepted_at = time.monotonic()

    # --- AudioSink -------------------------------------------------------------------------
    def send_audio(
        self, mulaw: bytes, mark: str, on_sent: Callable[[float], None] | None = None
    ) -> None:
        if self._closing or self.stream_sid is None:
            return
        self._out.put(media_message(self.stream_sid, mulaw), on_sent)
        self._out.put(mark_message(self.stream_sid, mark))

    def clear(self) -> None:
        if self._closing or self.stream_sid is None:
            return
        dropped = self._out.drop_pending()
        self._out.put(clear_message(self.stream_sid))
        self._log.debug("clear sent (%d queued messages dropped)", dropped)

    async def hangup(self) -> None:
        """Closing the socket ends ``<Connect>``; with no verb after it, Twilio hangs up."""
        if self._closing:
            return
        self._closing = True
        await self._out.drain(5)
        await self._close_socket(1000)

    async def transfer(self, target: str | None) -> bool:
        if self._transfer_handler is None or self.call_sid is None:
            return False
        try:
            return await self._transfer_handler(self.call_sid, target)
        except Exception:
            self._log.exception("transfer failed")
            return False

    # --- the receive loop ------------------------------------------------------------------
    async def run(self) -> None:
        await serve_socket(
            self._ws,
            self._out,
            self._receive_loop,
            self._shutdown,
            started=lambda: self._start is not None,
            log=self._log,
        )

    async def _receive_loop(self) -> str:
        return await receive_loop(
            self._ws,
            self._on_message,
            inbound=self._inbound,
            started=lambda: self._start is not None,
            session=lambda: self._session,
            log=lambda: self._log,
        )

    async def _on_message(self, message: dict[str, Any]) -> str | None:
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        parsed = parse_message(raw, self._max_bytes)
        if isinstance(parsed, Media):
            await self._on_media(parsed)
        elif isinstance(parsed, ProtocolError):
            if self._bad_message(parsed.reason, parsed.event or "invalid"):
                return "protocol-error"
        elif isinstance(parsed, MarkEcho):
            if self._check_sid(parsed.stream_sid, "mark") and self._session:
                self._session.mark_played(parsed.name)
        elif isinstance(parsed, Dtmf):
            if self._check_sid(parsed.stream_sid, "dtmf") and self._session:
                self._session.feed_dtmf(parsed.digit)
        elif isinstance(parsed, Start):
            return await self._on_start(parsed)
        elif isinstance(parsed, Stop):
            if self._check_sid(parsed.stream_sid, "stop"):
                return "caller-hangup"
        return None

    async def _on_media(self, media: Media) -> None:
        if self._session is None:
            self._bad_message("media before start", "media")
            return
        if not self._check_sid(media.stream_sid, "media"):
            return
        payload = media.payload
        if media.timestamp_ms is not None:
            if self._next_ts is not None:
                gap = media.timestamp_ms - self._next_ts
                if 20 <= gap <= MAX_GAP_FILL_MS:
                    # Lost packets: keep the VAD's clock honest with silence — only as much
                    # as real time has made (timestamps jumping a second on every message
                    # must not make one stream feed the VAD at 50 times real time).
                    self._inbound.feed_silence(int(self._inbound.admit_silence(gap)), self._rate)
            self._next_ts = media.timestamp_ms + len(payload) // 8
        await self._inbound.feed(self._inbound.admit(payload))

    async def _on_start(self, start: Start) -> str | None:
        if self._start is not None:
            self._bad_message("second start on one stream", "start")
            return None
        self._log = logging.LoggerAdapter(log, {"call_id": start.call_sid})
        self._bad.log = self._log
        self._start = start
        self.stream_sid = start.stream_sid
        self.call_sid = start.call_sid
        session = await self._factory(start, self)
        if session is None:
            self._log.warning("stream refused at start")
            self._metrics.bad_messages_total.labels("twilio", "refused-start").inc()
            await self._close_socket(1008)
            return "refused"
        self._session = session
        self._inbound.attach(session, start.call_sid)
        await session.start(self.accepted_at)
        return None

    def _check_sid(self, stream_sid: str, event: str) -> bool:
        if self._start is None:
            self._bad_message(f"{event} before start", event)
            return False
        if stream_sid != self._start.stream_sid:
            self._bad_message(f"{event} for another streamSid", event)
            return False
        return True

    def _bad_message(self, reason: str, event: str) -> bool:
        return self._bad.record(reason, event)

    # --- sending ---------------------------------------------------------------------------
    async def _close_socket(self, code: int) -> None:
        self._closing = True
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
        return {"call_sid": self.call_sid, "stream_sid": self.stream_sid, "bad": self._bad.count}
