"""The inbound half of every media transport (Twilio, browser): one receive loop, one audio path.

A caller's audio arrives at most as fast as they can speak it: real time. A client that sends
it faster is either broken or attacking, and left alone it makes the server run voice
detection (and, downstream, speech recognition) many times over real time for one call — a
flood from a handful of clients once froze the event loop for seconds. So, per call:

* :class:`RealTimePacer` — a token bucket of audio milliseconds refilled by the wall clock
  and holding at most ``jitter_ms``: audio beyond real time plus that allowance is dropped
  before it is decoded, resampled or heard, and counted
  (``taina_inbound_dropped_seconds_total{transport}``).
* :class:`FloodMeter` — dropped audio adds to a score that real time slowly forgives; a
  stream whose score passes ``flood_limit_ms`` keeps flooding and is closed (1008) with a
  logged reason naming the call (``taina_flood_disconnects_total{transport}``). A network
  hiccup (a second of audio delivered late, in one burst) loses a little audio and is
  forgiven; ten times real time is closed within a second.
* :class:`InboundAudio` — decoding, resampling and the session's voice detection run in
  slices of :data:`SLICE_MS` with a yield to the event loop between them, so no message
  holds the loop longer than one slice's work, however it was packed.
* :func:`receive_loop` — the loop both transports used to copy: receive, hand each message
  to the transport's protocol handler, stop on disconnect, flood, or the session's end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from starlette.websockets import WebSocket

from pipeline.engines import bind_call
from pipeline.metrics import PipelineMetrics
from telephony.audio_codec import StreamResampler, mulaw_to_pcm16

Transport = Literal["twilio", "web"]
WireEncoding = Literal["mulaw", "pcm16"]

DEFAULT_JITTER_MS = 500
DEFAULT_FLOOD_LIMIT_MS = 2000
DEFAULT_FORGIVE_RATIO = 0.1
SLICE_MS = 100  # audio decoded, resampled and run through VAD between two yields to the loop
FLOOD_REASON = "flood"


class FeedsAudio(Protocol):
    def feed_audio(self, pcm16: bytes, wire: bytes | None = None) -> None: ...

    @property
    def is_closed(self) -> bool: ...


class RealTimePacer:
    """A token bucket of audio milliseconds: one per millisecond of wall clock, at most
    ``allowance_ms`` banked. Starting full lets the first burst of a stream through."""

    __slots__ = ("_allowance", "_clock", "_last", "_tokens")

    def __init__(self, allowance_ms: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._allowance = max(0.0, float(allowance_ms))
        self._clock = clock
        self._tokens = self._allowance
        self._last = clock()

    def admit(self, ms: float) -> float:
        """How many of ``ms`` milliseconds of audio may go on now (the rest is dropped)."""
        now = self._clock()
        self._tokens = min(self._allowance, self._tokens + (now - self._last) * 1000.0)
        self._last = now
        taken = min(ms, self._tokens)
        self._tokens -= taken
        return taken


class FloodMeter:
    """Dropped audio, forgiven at ``forgive_ratio`` of real time; past ``limit_ms``: flooding."""

    __slots__ = ("_clock", "_last", "_limit", "_ratio", "score_ms")

    def __init__(
        self,
        limit_ms: float,
        forgive_ratio: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = float(limit_ms)
        self._ratio = max(0.0, float(forgive_ratio))
        self._clock = clock
        self._last = clock()
        self.score_ms = 0.0

    def dropped(self, ms: float) -> bool:
        """Add ``ms`` of dropped audio; True when the stream is flooding."""
        now = self._clock()
        self.score_ms = max(0.0, self.score_ms - (now - self._last) * 1000.0 * self._ratio)
        self._last = now
        self.score_ms += ms
        return self._limit > 0 and self.score_ms > self._limit


class InboundAudio:
    """One call's inbound audio: paced to real time, decoded and resampled, fed in slices."""

    def __init__(
        self,
        transport: Transport,
        *,
        wire_rate: int,
        wire_encoding: WireEncoding,
        pipeline_rate: int,
        metrics: PipelineMetrics,
        jitter_ms: float = DEFAULT_JITTER_MS,
        flood_limit_ms: float = DEFAULT_FLOOD_LIMIT_MS,
        forgive_ratio: float = DEFAULT_FORGIVE_RATIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self._bytes_per_ms = wire_rate * (1 if wire_encoding == "mulaw" else 2) / 1000.0
        self._align = 1 if wire_encoding == "mulaw" else 2
        self._mulaw = wire_encoding == "mulaw"
        self._resampler = StreamResampler(wire_rate, pipeline_rate)
        self._slice_bytes = max(self._align, int(SLICE_MS * self._bytes_per_ms))
        self._slice_bytes -= self._slice_bytes % self._align
        self._pacer = RealTimePacer(jitter_ms, clock)
        self._meter = FloodMeter(flood_limit_ms, forgive_ratio, clock)
        self._dropped = metrics.inbound_dropped_seconds_total.labels(transport)
        self._disconnects = metrics.flood_disconnects_total.labels(transport)
        self._session: FeedsAudio | None = None
        self.flooding = False
        self.dropped_ms = 0.0  # over the whole stream, for the log line and tests
        self.fed_ms = 0.0

    def attach(self, session: FeedsAudio, call_id: str) -> None:
        """The call has started: audio goes to ``session``; engine work spawned from here on
        is queued under ``call_id`` (fair shared engines, pipeline/engines.py)."""
        self._session = session
        bind_call(call_id)

    def ms_of(self, n_bytes: int) -> float:
        return n_bytes / self._bytes_per_ms

    def admit(self, payload: bytes) -> bytes:
        """The part of ``payload`` real time allows; the rest is dropped and counted."""
        want = self.ms_of(len(payload))
        allowed = self._pacer.admit(want)
        if allowed >= want:
            return payload
        keep = int(allowed * self._bytes_per_ms)
        keep -= keep % self._align
        dropped_ms = want - self.ms_of(keep)
        self.dropped_ms += dropped_ms
        self._dropped.inc(dropped_ms / 1000.0)
        if self._meter.dropped(dropped_ms) and not self.flooding:
            self.flooding = True
            self._disconnects.inc()
        return payload[:keep]

    def admit_silence(self, ms: float) -> float:
        """Silence for a hole in the wire's timestamps, within real time only (never counted
        as dropped: the client did not send it)."""
        return self._pacer.admit(ms)

    async def feed(self, wire: bytes) -> None:
        """Decode, resample and hand ``wire`` (already admitted) to the session, one slice at
        a time with a yield in between, so the loop serves other calls meanwhile."""
        step = self._slice_bytes
        for offset in range(0, len(wire), step):
            session = self._session
            if session is None or session.is_closed:
                return
            piece = wire[offset : offset + step]
            pcm = mulaw_to_pcm16(piece) if self._mulaw else piece
            self.fed_ms += self.ms_of(len(piece))
            session.feed_audio(self._resampler.process(pcm), wire=piece if self._mulaw else None)
            if offset + step < len(wire):
                await asyncio.sleep(0)

    def feed_silence(self, ms: int, pcm_rate: int) -> None:
        """``ms`` of digital silence (already admitted) straight to the session."""
        if self._session is None or ms <= 0:
            return
        self.fed_ms += ms
        wire = bytes([0xFF]) * int(ms * self._bytes_per_ms) if self._mulaw else None
        self._session.feed_audio(bytes(ms * 2 * pcm_rate // 1000), wire=wire)


Message = dict[str, Any]
# Handles one received message; returns an end reason to stop the loop, else None.
MessageHandler = Callable[[Message], Awaitable[str | None]]


async def receive_loop(
    ws: WebSocket,
    handle: MessageHandler,
    *,
    inbound: InboundAudio,
    started: Callable[[], bool],
    session: Callable[[], FeedsAudio | None],
    log: Callable[[], logging.LoggerAdapter[Any] | logging.Logger],
) -> str:
    """Receive until the call ends; return why (``caller-hangup``, ``disconnected``,
    ``bot-hangup``, ``flood`` or whatever ``handle`` decided). ``log`` gives the stream's
    logger as it is now (it learns the call id at ``start``)."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return "caller-hangup" if started() else "disconnected"
        outcome = await handle(message)
        if outcome is not None:
            return outcome
        if inbound.flooding:
            log().warning(
                "closing the %s stream: audio flood (%.1f s beyond real time dropped, "
                "%.1f s heard)",
                inbound.transport,
                inbound.dropped_ms / 1000,
                inbound.fed_ms / 1000,
            )
            return FLOOD_REASON
        current = session()
        if current is not None and current.is_closed:
            return "bot-hangup"
