"""Deepgram live speech recognition over its streaming WebSocket (``/v1/listen``).

Why this shape:

- The official ``deepgram-sdk`` (7.x) builds the URL, the query and the ``Authorization``
  header, maps a refused upgrade to ``ApiError(status_code)``, sends the control messages
  (KeepAlive, Finalize, CloseStream) and parses server messages into its models. Its
  environment object takes any base URL, so tests point the real SDK at a local server.
  Its models are *unchecked* (wrong shapes parse into half-empty objects), so every field
  is validated here before it can touch a transcript.
- Phone audio goes out exactly as it came off the wire (mu-law 8 kHz): no decode, no resample.
- ``send`` never blocks: frames go to an ordered queue that one sender task drains, together
  with the control messages, so a Finalize always follows the audio it finalizes.
- Every frame not yet covered by a final result stays in a bounded buffer. When the socket
  drops, the transcriber reconnects and re-sends that buffer, so the words of the utterance in
  progress are recognised on the new socket and the turn is not lost.
- Deepgram's clock is the audio it received: a result's ``start + duration`` says which turn
  it belongs to, so a late result of a turn the batch STT already answered cannot leak into
  the next one.
- Opening does not wait for the handshake: the greeting starts at once and audio is
  buffered until the socket is up. A transcriber that cannot recognise a turn raises at once
  (refused key, Deepgram down) or at its deadline, and the session transcribes that turn
  with the batch engine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from websockets.exceptions import ConnectionClosed, WebSocketException

from pipeline.engines import AudioEncoding, Transcript, bytes_per_sample
from pipeline.metrics import PipelineMetrics

log = logging.getLogger("taina.stt.deepgram")

PROVIDER = "deepgram"
KIND = "stt"

# Control messages travel in the same queue as audio, so their order on the wire is the
# order in which they were asked for.
_Control = Literal["KeepAlive", "Finalize", "CloseStream"]
_WIRE_ENCODING: dict[str, str] = {"mulaw": "mulaw", "pcm16": "linear16"}
_REFUSED_STATUSES = frozenset({401, 402, 403})  # credentials or plan: retrying cannot help
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 5.0)
_EPSILON_S = 0.001
_STABLE_S = 2.0  # a socket that lived this long resets the backoff
_GARBAGE_WARNINGS = 3  # per connection; later ones go to debug (no per-frame log floods)


class DeepgramUnavailable(RuntimeError):
    """This transcriber cannot recognise the turn now; batch STT should."""


class DeepgramRefused(DeepgramUnavailable):
    """Deepgram refused the connection (key, plan): retrying this call would not help."""


@dataclass(frozen=True)
class _Result:
    transcript: str
    is_final: bool
    speech_final: bool
    from_finalize: bool
    end_s: float  # start + duration on this connection's audio clock


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _flag(value: object) -> bool:
    return value is True


def parse_results(msg: Any) -> _Result | None:
    """A Results message as the protocol documents it, or None when its shape is wrong."""
    start = _number(getattr(msg, "start", None))
    duration = _number(getattr(msg, "duration", None))
    channel = getattr(msg, "channel", None)
    alternatives = getattr(channel, "alternatives", None)
    if start is None or duration is None or not isinstance(alternatives, list):
        return None
    if not alternatives:
        transcript = ""
    else:
        transcript = getattr(alternatives[0], "transcript", None)
        if not isinstance(transcript, str):
            return None
    return _Result(
        transcript=transcript.strip(),
        is_final=_flag(getattr(msg, "is_final", None)),
        speech_final=_flag(getattr(msg, "speech_final", None)),
        from_finalize=_flag(getattr(msg, "from_finalize", None)),
        end_s=start + duration,
    )


def _environment(base_url: str | None) -> DeepgramClientEnvironment:
    """The SDK's environment for a base URL: http(s) for REST, ws(s) for the live socket."""
    if not base_url:
        return DeepgramClientEnvironment.PRODUCTION
    url = base_url.rstrip("/")
    if url.startswith("ws://"):
        http, ws = "http://" + url[5:], url
    elif url.startswith("wss://"):
        http, ws = "https://" + url[6:], url
    elif url.startswith("http://"):
        http, ws = url, "ws://" + url[7:]
    elif url.startswith("https://"):
        http, ws = url, "wss://" + url[8:]
    else:
        raise ValueError(f"Deepgram base URL needs a scheme: {base_url!r}")
    return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)


class DeepgramLiveSTT:
    """Opens one live Deepgram session per call (implements ``LiveSpeechToText``)."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        model: str = "nova-2",
        language: str = "es",
        *,
        base_url: str | None = None,
        endpointing_ms: int = 300,
        utterance_end_ms: int = 1000,
        keepalive_s: float = 5.0,
        connect_timeout_s: float = 3.0,
        open_wait_s: float = 0.0,
        settle_s: float = 0.2,
        max_buffer_s: float = 30.0,
        cooldown_s: float = 30.0,
        smart_format: bool = True,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        """``open_wait_s`` > 0 makes ``open`` wait that long for the handshake and raise when
        it fails, so the session uses batch STT (with speculation) for the whole call; the
        default 0 never delays the greeting. ``settle_s``: after a Finalize, how long to wait
        for Deepgram's ``from_finalize`` answer when the words are already final (Deepgram
        does not promise one when little audio was pending). ``cooldown_s``: after a refused
        or failed connection, new calls skip Deepgram for this long."""
        if not api_key:
            raise ValueError("Deepgram needs an API key")
        self.model = model
        self.language = language
        self.endpointing_ms = endpointing_ms
        self.utterance_end_ms = utterance_end_ms
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.open_wait_s = open_wait_s
        self.settle_s = settle_s
        self.max_buffer_s = max_buffer_s
        self.cooldown_s = cooldown_s
        self.smart_format = smart_format
        self.metrics = metrics  # public: the app binds its registry after construction
        self._client = AsyncDeepgramClient(api_key=api_key, environment=_environment(base_url))
        self._down_until = 0.0

    async def open(
        self, *, call_id: str, encoding: AudioEncoding, sample_rate: int
    ) -> DeepgramTranscriber:
        if encoding not in _WIRE_ENCODING:
            raise ValueError(f"Deepgram cannot take {encoding!r} audio")
        if time.monotonic() < self._down_until:
            raise DeepgramUnavailable("Deepgram failed recently; skipped during its cool-down")
        transcriber = DeepgramTranscriber(
            self, call_id=call_id, encoding=encoding, sample_rate=sample_rate
        )
        transcriber.start()
        if self.open_wait_s > 0:
            try:
                await transcriber.wait_connected(self.open_wait_s)
            except DeepgramUnavailable:
                await transcriber.aclose()
                raise
        return transcriber

    def connect(self, *, encoding: AudioEncoding, sample_rate: int) -> Any:
        """The SDK's live connection (an async context manager yielding its socket client)."""
        return self._client.listen.v1.connect(
            model=self.model,
            language=self.language,
            encoding=_WIRE_ENCODING[encoding],
            sample_rate=str(sample_rate),
            channels="1",
            punctuate="true",
            smart_format="true" if self.smart_format else "false",
            interim_results="true",
            endpointing=str(self.endpointing_ms) if self.endpointing_ms > 0 else "false",
            utterance_end_ms=str(self.utterance_end_ms),
            vad_events="true",
        )

    # --- shared bookkeeping ------------------------------------------------------------------
    def connection_failed(self) -> None:
        """New calls skip Deepgram for the cool-down (they get batch STT with speculation)."""
        self._down_until = time.monotonic() + self.cooldown_s

    def connection_ok(self) -> None:
        self._down_until = 0.0

    def failure(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.provider_failures_total.labels(KIND, PROVIDER, reason).inc()

    def observe(self, kind: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.provider_ttfb_seconds.labels(kind, PROVIDER).observe(seconds)


_State = Literal["connecting", "connected", "backoff", "refused", "closed"]


class DeepgramTranscriber:
    """One call's live Deepgram session (implements ``LiveTranscriber``)."""

    def __init__(
        self,
        owner: DeepgramLiveSTT,
        *,
        call_id: str,
        encoding: AudioEncoding,
        sample_rate: int,
    ) -> None:
        self._owner = owner
        self.call_id = call_id
        self._encoding: AudioEncoding = encoding
        self._sample_rate = sample_rate
        self._sample_bytes = bytes_per_sample(encoding)
        self._bps = sample_rate * self._sample_bytes  # bytes per second of audio
        self._max_pending = int(owner.max_buffer_s * self._bps)
        self._log = logging.LoggerAdapter(log, {"call_id": call_id})

        self.state: _State = "connecting"
        self.reconnects = 0
        self._ever_connected = False
        self._closing = False
        self._conn_gen = 0  # bumped on every connect and every drop
        self._changed = asyncio.Event()  # any result, drop or state change: waiters re-check
        self._outq: deque[bytes | _Control] = deque()
        self._out_ready = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._socket: AsyncV1SocketClient | None = None

        # Audio clock of the current connection, in bytes queued on it.
        self._conn_bytes = 0
        self._pending = bytearray()  # audio not yet covered by a final result
        self._pending_start = 0  # connection byte offset of _pending[0]
        self._boundary_s = 0.0  # results ending before this belong to an earlier turn
        self._last_out = time.monotonic()
        self._first_audio_at: float | None = None
        self._ttfb_seen = False

        # The utterance being recognised.
        self._finals: list[str] = []
        self._interim = ""
        self._utt_bytes = 0
        self._finalized = False
        self._endpoint: Callable[[], None] | None = None
        self._garbage = 0
        self._overflow_warned = False

    # --- LiveTranscriber ---------------------------------------------------------------------
    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._run(), name=f"deepgram-{self.call_id}")
        self._keepalive = asyncio.create_task(
            self._keepalive_loop(), name=f"deepgram-keepalive-{self.call_id}"
        )

    def send(self, audio: bytes) -> None:
        if self._closing or not audio or self.state == "refused":
            return
        self._pending += audio
        self._utt_bytes += len(audio)
        if len(self._pending) > self._max_pending:
            drop = len(self._pending) - self._max_pending
            drop -= drop % self._sample_bytes
            del self._pending[:drop]
            self._pending_start += drop
            if not self._overflow_warned:
                self._overflow_warned = True
                self._log.warning(
                    "Deepgram has not finalized %.0f s of audio; the oldest is no longer kept "
                    "for a reconnect",
                    self._owner.max_buffer_s,
                )
        if self.state == "connected":
            self._conn_bytes += len(audio)
            self._enqueue(audio)

    def on_endpoint(self, callback: Callable[[], None]) -> None:
        self._endpoint = callback

    async def final_text(self, timeout: float) -> Transcript:
        t0 = time.monotonic()
        deadline = t0 + timeout
        finalize_s = 0.0
        cancelled = False
        try:
            while True:
                await self._wait_usable(deadline)
                gen = self._conn_gen
                self._finalized = False
                sent_at = time.monotonic()
                self._enqueue("Finalize")
                outcome = await self._wait_finalized(gen, sent_at, deadline)
                if outcome == "done":
                    finalize_s = time.monotonic() - sent_at
                    break
                self._log.info("Deepgram dropped while finalizing; finalizing again")
            text = " ".join(self._finals)
            self._owner.observe("stt_finalize", finalize_s)
            return Transcript(
                text=text,
                audio_s=self._utt_bytes / self._bps,
                elapsed_s=time.monotonic() - t0,
                provider=PROVIDER,
                extra={"finalize_ms": finalize_s * 1000, "reconnects": self.reconnects},
            )
        except TimeoutError:
            self._owner.failure("timeout")
            self._log.warning("Deepgram gave no final transcript within %.2f s", timeout)
            raise TimeoutError(f"Deepgram: no final transcript within {timeout:.2f} s") from None
        except asyncio.CancelledError:
            # Barge-in during recognition: the caller goes on, so the words recognised so far
            # (and Deepgram's answer to this Finalize) stay for the continued utterance.
            cancelled = True
            raise
        finally:
            if not cancelled:
                self._reset_utterance()

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._changed.set()
        supervisor = self._supervisor
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        if supervisor is None:
            self.state = "closed"
            return
        if self.state == "connected":
            # CloseStream: Deepgram flushes, sends its Metadata and closes the socket itself.
            self._enqueue("CloseStream")
            await asyncio.wait({supervisor}, timeout=1.0)
        if not supervisor.done():
            supervisor.cancel()
            await asyncio.wait({supervisor}, timeout=1.0)
        if not supervisor.done():  # a close handshake nobody answers: drop the TCP connection
            self._abort_socket()
            await asyncio.gather(supervisor, return_exceptions=True)
        self.state = "closed"

    # --- for open() and tests ----------------------------------------------------------------
    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the socket; raise if the connection failed."""
        deadline = time.monotonic() + timeout
        while self.state != "connected":
            if self.state in ("refused", "closed", "backoff"):
                raise self._unavailable()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass
        return True

    # --- connection supervision --------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0  # consecutive failed or short-lived connections: the backoff step
        while not self._closing:
            self.state = "connecting"
            self._changed.set()
            connected_at: float | None = None
            reason: str | None = None
            try:
                async with AsyncExitStack() as stack:
                    socket = await asyncio.wait_for(
                        stack.enter_async_context(
                            self._owner.connect(
                                encoding=self._encoding, sample_rate=self._sample_rate
                            )
                        ),
                        self._owner.connect_timeout_s,
                    )
                    connected_at = time.monotonic()
                    self._owner.connection_ok()
                    self._on_connected(socket)
                    await self._pump(socket)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                status = exc.status_code or 0
                if status in _REFUSED_STATUSES:
                    self._on_disconnected()
                    self._refused(status)
                    return
                reason = "refused" if status == 429 else "error"
                self._log.warning("Deepgram refused the connection (HTTP %s)", status)
            except TimeoutError:
                reason = "timeout"
                self._log.warning(
                    "Deepgram did not accept the connection within %.1f s",
                    self._owner.connect_timeout_s,
                )
            except (OSError, WebSocketException) as exc:
                reason = "dropped" if connected_at is not None else "error"
                self._log.warning("Deepgram connection failed: %s", exc)
            except Exception:
                reason = "error"
                self._log.exception("Deepgram session failed")
            self._on_disconnected()
            if self._closing:
                break
            if connected_at is not None:
                self._owner.failure(reason or "dropped")
                if time.monotonic() - connected_at >= _STABLE_S:
                    failures = 0
                if failures == 0:
                    # The socket was up: reconnect at once and re-send the utterance.
                    failures = 1
                    self._log.warning("Deepgram connection dropped; reconnecting")
                    continue
            else:
                self._owner.failure(reason or "error")
                self._owner.connection_failed()
            delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
            failures += 1
            self.state = "backoff"
            self._changed.set()
            await asyncio.sleep(delay)
        self.state = "closed"
        self._changed.set()

    def _refused(self, status: int) -> None:
        self.state = "refused"
        self._pending.clear()
        self._outq.clear()
        self._owner.failure("refused")
        self._owner.connection_failed()
        self._log.error(
            "Deepgram refused the connection (HTTP %s: check DEEPGRAM_API_KEY); "
            "batch STT recognises this call",
            status,
        )
        self._changed.set()

    def _on_connected(self, socket: AsyncV1SocketClient) -> None:
        """Synchronous on purpose: between the handshake and the first new frame nothing else
        runs, so the replayed audio and the live audio join without a gap or a repeat."""
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._socket = socket
        self._conn_gen += 1
        self._outq.clear()
        self._pending_start = 0
        self._conn_bytes = len(self._pending)
        self._boundary_s = 0.0
        self._interim = ""
        self._first_audio_at = None
        self._ttfb_seen = False
        self._garbage = 0
        chunk = max(self._bps // 4, self._sample_bytes)  # replay in 250 ms messages
        for i in range(0, len(self._pending), chunk):
            self._outq.append(bytes(self._pending[i : i + chunk]))
        if self._pending:
            self._out_ready.set()
            if self.reconnects:
                self._log.info(
                    "re-sending %.2f s of audio on the new Deepgram socket",
                    len(self._pending) / self._bps,
                )
        self.state = "connected"
        self._changed.set()

    def _on_disconnected(self) -> None:
        if self._socket is not None:
            self._conn_gen += 1
        self._socket = None
        self._outq.clear()
        self._changed.set()

    async def _pump(self, socket: AsyncV1SocketClient) -> None:
        sender = asyncio.create_task(self._send_loop(socket), name=f"deepgram-tx-{self.call_id}")
        receiver = asyncio.create_task(self._recv_loop(socket), name=f"deepgram-rx-{self.call_id}")
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self.state == "connected":
                self.state = "connecting"  # no new frame goes to a socket that is closing
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc

    def _abort_socket(self) -> None:
        ws = getattr(self._socket, "_websocket", None)
        transport = getattr(ws, "transport", None)
        if transport is not None:
            transport.abort()

    # --- sending -----------------------------------------------------------------------------
    def _enqueue(self, item: bytes | _Control) -> None:
        self._outq.append(item)
        self._out_ready.set()

    async def _send_loop(self, socket: AsyncV1SocketClient) -> None:
        queue = self._outq
        while True:
            if not queue:
                self._out_ready.clear()
                await self._out_ready.wait()
                continue
            item = queue.popleft()
            if isinstance(item, bytes):
                if queue and isinstance(queue[0], bytes):
                    parts = [item]
                    while queue and isinstance(queue[0], bytes) and len(parts) < 50:
                        parts.append(queue.popleft())  # type: ignore[arg-type]
                    item = b"".join(parts)
                await socket.send_media(item)
                if self._first_audio_at is None:
                    self._first_audio_at = time.monotonic()
            elif item == "Finalize":
                await socket.send_finalize()
            elif item == "KeepAlive":
                await socket.send_keep_alive()
            else:
                await socket.send_close_stream()
            self._last_out = time.monotonic()

    async def _keepalive_loop(self) -> None:
        """Deepgram closes a socket that hears nothing for ~10 s: while no audio flows (a
        muted web caller), a KeepAlive every ``keepalive_s`` holds the session open."""
        period = self._owner.keepalive_s
        tick = max(min(period / 4, 1.0), 0.01)
        while True:
            await asyncio.sleep(tick)
            if self.state == "connected" and time.monotonic() - self._last_out >= period:
                self._last_out = time.monotonic()
                self._enqueue("KeepAlive")

    # --- receiving ---------------------------------------------------------------------------
    async def _recv_loop(self, socket: AsyncV1SocketClient) -> None:
        while True:
            try:
                msg = await socket.recv()
            except ConnectionClosed:
                return
            except ValueError:  # not JSON
                self._bad_message("a text frame that is not JSON")
                continue
            self._handle(msg)

    def _handle(self, msg: Any) -> None:
        kind = getattr(msg, "type", None)
        try:
            if kind == "Results":
                result = parse_results(msg)
                if result is None:
                    self._bad_message("a Results message of the wrong shape")
                else:
                    self._on_result(result)
            elif kind == "UtteranceEnd":
                if self._finals or self._interim:
                    self._fire_endpoint()
            elif kind in ("SpeechStarted", "Metadata"):
                pass
            elif kind == "Error":
                description = getattr(msg, "description", None)
                self._log.warning("Deepgram reported an error: %s", str(description)[:200])
            else:
                self._bad_message(f"an unexpected message ({type(msg).__name__})")
        except Exception:
            self._log.exception("handling a Deepgram message failed")

    def _on_result(self, result: _Result) -> None:
        now = time.monotonic()
        if not self._ttfb_seen and self._first_audio_at is not None:
            self._ttfb_seen = True
            self._owner.observe(KIND, now - self._first_audio_at)
        if result.end_s <= self._boundary_s + _EPSILON_S and self._boundary_s > 0:
            return  # a late result of a turn that is already answered
        if result.is_final:
            if result.transcript:
                self._finals.append(result.transcript)
            self._interim = ""
            self._trim_pending(result.end_s)
            if result.from_finalize:
                self._finalized = True
            if result.speech_final and self._finals:
                self._fire_endpoint()
        else:
            self._interim = result.transcript
        self._changed.set()

    def _trim_pending(self, end_s: float) -> None:
        """Audio up to ``end_s`` is final: a reconnect need not re-send it."""
        cut = int(end_s * self._bps + 0.5)
        cut -= cut % self._sample_bytes
        drop = min(max(cut - self._pending_start, 0), len(self._pending))
        if drop:
            del self._pending[:drop]
            self._pending_start += drop

    def _fire_endpoint(self) -> None:
        if self._endpoint is None:
            return
        try:
            self._endpoint()
        except Exception:
            self._log.exception("the endpoint callback failed")

    def _bad_message(self, what: str) -> None:
        self._garbage += 1
        self._owner.failure("bad_message")
        if self._garbage <= _GARBAGE_WARNINGS:
            self._log.warning("Deepgram sent %s; ignored", what)
        else:
            self._log.debug("Deepgram sent %s; ignored", what)

    # --- turn bookkeeping --------------------------------------------------------------------
    def _unavailable(self) -> DeepgramUnavailable:
        if self.state == "refused":
            return DeepgramRefused("Deepgram refused the connection")
        if self.state == "closed" or self._closing:
            return DeepgramUnavailable("the Deepgram session is closed")
        return DeepgramUnavailable("Deepgram is unreachable; reconnecting")

    async def _wait_usable(self, deadline: float) -> None:
        """Return once connected; raise at once when Deepgram is known to be down."""
        while self.state != "connected":
            if self.state in ("refused", "closed", "backoff") or self._closing:
                raise self._unavailable()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def _wait_finalized(
        self, gen: int, sent_at: float, deadline: float
    ) -> Literal["done", "dropped"]:
        """Done when Deepgram answers the Finalize, or when every word is final and the
        settle time passed without an answer (none is promised for a short tail)."""
        settle_at = sent_at + self._owner.settle_s
        while True:
            if self._finalized:
                return "done"
            if self._conn_gen != gen:
                if self._closing:
                    raise self._unavailable()
                return "dropped"
            now = time.monotonic()
            complete = bool(self._finals) and not self._interim
            if complete and now >= settle_at:
                return "done"
            if now >= deadline:
                raise TimeoutError
            wake = min(deadline, settle_at) if complete else deadline
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(wake - now, 0.0))
            except TimeoutError:
                pass

    def _reset_utterance(self) -> None:
        """Whatever happened, the next turn starts clean: results for audio sent so far
        belong to this turn, and that audio need not be re-sent after a drop."""
        self._finals = []
        self._interim = ""
        self._utt_bytes = 0
        self._finalized = False
        self._overflow_warned = False
        if self.state == "connected":
            self._boundary_s = self._conn_bytes / self._bps
            self._trim_pending(self._boundary_s)
        else:
            self._pending.clear()
