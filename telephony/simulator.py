"""``taina call``: a phone caller that speaks Twilio's protocol to any TAINA server.

It does what Twilio does for a real call (signed voice webhook, TwiML, signed WebSocket,
``connected``/``start``, 50 media frames a second, ``dtmf``, ``stop``) and what the phone does
(plays the bot's audio at real time, echoes ``mark`` when the audio before it has played,
flushes on ``clear``). So the latencies it reports are what a caller would experience, and the
same server code path is exercised as in production. The bench and the integration tests use
``run_call``; the CLI wraps it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import functools
import json
import os
import re
import secrets
import ssl
import sys
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from telephony.audio_codec import mulaw_to_pcm16
from telephony.simulator_audio import (
    FRAME_MS,
    FRAME_S,
    SAMPLE_RATE,
    CallerVoice,
    FrameClock,
    GapCounter,
    PlaybackBuffer,
    is_audible,
    load_wav_as_ulaw8k,
    pcm16_to_ulaw8k,
    trim_silence,
    write_stereo_wav,
)

DEFAULT_SERVER = "http://127.0.0.1:8000"
WEBHOOK_PATH = "/twilio/voice"
EXIT_OK = 0
EXIT_NO_ANSWER = 1  # the bot never answered (or hung up instead of answering)
EXIT_ERROR = 2  # could not place the call: HTTP error, bad TwiML, WebSocket refused
DTMF_GAP_S = 0.15
DTMF_REPLY_WAIT_S = 5.0  # a bot may legitimately ignore keypresses; don't wait 20 s for it
MAX_PLAYBACK_WAIT_S = 120.0  # a reply that is still playing after this is cut short
WS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
TWILIO_WS_USER_AGENT = "Twilio.TmeWs/1.0"
TWILIO_HTTP_USER_AGENT = "TwilioProxy/1.1"
# The caller's voice: a fixed eSpeak variant (plain es-419 varies its pitch from run to run,
# so tests would not hear the same audio twice) that Whisper recognises best over the phone
# band among the variants we measured; pitched a little lower than the bot's.
CALLER_VOICE = "es-419+Denis"
CALLER_PITCH = 40
CALLER_RATE_WPM = 140  # a caller speaking clearly; eSpeak's default pace garbles short answers
GREETING = -1  # tag of the bot's greeting; replies are tagged with the step index
_DTMF = re.compile(r"^[0-9*#A-Da-d]+$")

StepKind = Literal["say", "wav", "dtmf", "listen"]


# --- options and results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: StepKind
    value: str  # text to say, WAV path, or DTMF digits ("listen": seconds to keep listening)
    # Pre-rendered 8 kHz mu-law for a "say" step (a caller voice other than eSpeak's).
    audio: bytes | None = field(default=None, repr=False, compare=False)


@dataclass
class BotHeard:
    """What the caller's earpiece played of one bot turn, handed to a ``Responder``."""

    index: int  # GREETING or the index of the caller step this answers
    ulaw: bytes  # mu-law as played (what a caller heard), silence included
    answered: bool  # some audible bot audio came
    hung_up: bool  # the server has closed the call
    turn: int  # how many caller steps were taken so far


# Decides the caller's next step from what was heard; None hangs up. A ``listen`` step waits
# up to its value in seconds for more of the same bot turn, then asks again.
Responder = Callable[[BotHeard], Awaitable["Step | None"]]


@dataclass
class CallOptions:
    server: str = DEFAULT_SERVER
    says: list[str] = field(default_factory=list)
    wavs: list[str] = field(default_factory=list)
    dtmf: str | None = None
    steps: list[Step] | None = None  # explicit order (the CLI keeps argument order)
    out: str | None = None
    barge_in_ms: int | None = None
    auth_token: str | None = None
    account_sid: str | None = None
    from_number: str = "+18095550100"
    to_number: str = "+18095550199"
    public_url: str | None = None  # URL Twilio would have called, when the server has PUBLIC_URL
    timeout_s: float = 20.0
    greeting_timeout_s: float = 10.0
    transcribe: bool = True
    reply_quiet_ms: int = 700  # bot silence that ends its turn
    pause_ms: int = 600  # the caller's natural pause before talking again
    inject: list[str | bytes] = field(default_factory=list)  # raw frames sent after `start`
    # Utterance text -> rendered mu-law, shared between calls (the load bench renders each
    # sentence once for hundreds of callers); filled as a side effect when given.
    rendered: dict[str, bytes] | None = None
    progress: Callable[[str], None] | None = None
    # An interactive caller: after each bot turn it is asked for the next step (the ``steps``
    # script is ignored). Used by the spoken evaluation's simulated citizens.
    responder: Responder | None = None
    max_steps: int = 40  # an interactive caller hangs up after this many steps

    def script(self) -> list[Step]:
        if self.steps is not None:
            return list(self.steps)
        steps = [Step("say", s) for s in self.says] + [Step("wav", w) for w in self.wavs]
        if self.dtmf:
            steps.append(Step("dtmf", self.dtmf))
        return steps


@dataclass
class TurnResult:
    kind: str  # "greeting", "say", "wav", "dtmf"
    said: str | None  # what the caller said (None for the greeting)
    speech_start_ms: float | None = None  # times are ms since the `start` message
    speech_end_ms: float | None = None  # last speech frame (or last digit) sent
    bot_first_received_ms: float | None = None  # first audible bot audio on the wire
    bot_first_played_ms: float | None = None
    bot_end_ms: float | None = None  # end of the last audible bot frame played
    latency_ms: float | None = None  # speech end -> first bot audio received
    latency_played_ms: float | None = None  # speech end -> first bot audio heard
    bot_audio_ms: float = 0.0  # audible bot audio actually played
    bot_text: str | None = None  # transcript of what was played (None: not transcribed)
    interrupted: bool = False  # a `clear` flushed part of this reply
    answered: bool = False
    # 20 ms slots inside this reply when the earpiece had nothing to play although more of
    # the reply came later: the audio arrived late, and the caller heard a hole.
    gap_frames: int = 0


@dataclass
class CallResult:
    call_sid: str
    stream_sid: str
    account_sid: str = ""
    server: str = ""
    turns: list[TurnResult] = field(default_factory=list)
    greeting: TurnResult | None = None
    clears: int = 0
    marks_received: int = 0
    marks_echoed: int = 0
    hung_up_by_server: bool = False
    exit_code: int = EXIT_OK
    error: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    frames_sent: int = 0
    late_frames: int = 0  # frames sent more than 10 ms after their slot
    max_frame_lag_ms: float = 0.0
    protocol_errors: int = 0  # server messages that were not valid Twilio messages
    unplayed_ms_at_hangup: float = 0.0  # bot audio still buffered when the server hung up
    dial_to_greeting_ms: float | None = None  # webhook POST sent -> first greeting audio
    steps_skipped: int = 0
    out: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def latencies_ms(self) -> list[float]:
        return [t.latency_ms for t in self.turns if t.latency_ms is not None]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- TwiML and URLs ------------------------------------------------------------------------------


class TwimlError(ValueError):
    """The webhook answer is not a ``<Connect><Stream>`` we can follow."""

    def __init__(self, message: str, said: list[str] | None = None) -> None:
        super().__init__(message)
        self.said = said or []


@dataclass(frozen=True)
class StreamTwiml:
    url: str
    parameters: dict[str, str]
    status_callback: str | None = None
    status_callback_method: str = "POST"
    name: str | None = None


def parse_stream_twiml(xml_text: str) -> StreamTwiml:
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise TwimlError(f"la respuesta no es TwiML válido: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"TwiML sin <Response> (raíz <{root.tag}>)")
    stream = root.find("Connect/Stream")
    if stream is None:
        said = [(el.text or "").strip() for el in root.iter("Say")]
        if root.find("Start/Stream") is not None:
            raise TwimlError("el TwiML usa <Start><Stream> (solo escucha), no <Connect><Stream>")
        verbs = ", ".join(f"<{el.tag}>" for el in root) or "ninguno"
        raise TwimlError(f"el TwiML no tiene <Connect><Stream> (verbos: {verbs})", said)
    url = (stream.get("url") or "").strip()
    if not url:
        raise TwimlError("<Stream> sin atributo url")
    params: dict[str, str] = {}
    for p in stream.findall("Parameter"):
        name = p.get("name")
        if name:
            params[name] = p.get("value", "")
    return StreamTwiml(
        url=url,
        parameters=params,
        status_callback=stream.get("statusCallback"),
        status_callback_method=(stream.get("statusCallbackMethod") or "POST").upper(),
        name=stream.get("name"),
    )


def map_stream_url(stream_url: str, server: str, webhook_url: str) -> tuple[str, str]:
    """(URL to connect to, URL to sign).

    Twilio always opens ``wss://`` on the public host; a local server speaks plain HTTP, so the
    path goes to the ``--server`` host with ``ws://`` (``wss://`` for an https server). The
    signature covers the URL exactly as the TwiML wrote it.
    """
    absolute = urljoin(webhook_url, stream_url)
    parts = urlsplit(absolute)
    if parts.scheme.lower() in {"ws", "wss"} and stream_url == absolute:
        signed = stream_url
    else:  # relative URL: Twilio resolves it against the webhook and opens it with wss
        signed = urlunsplit(("wss", parts.netloc, parts.path, parts.query, ""))
    base = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(base.scheme.lower())
    if scheme is None or not base.netloc:
        raise ValueError(f"--server debe ser http(s)://host[:puerto], no {server!r}")
    target = urlunsplit((scheme, base.netloc, parts.path or "/", parts.query, ""))
    return target, signed


def map_http_url(url: str, server: str) -> str:
    """A callback URL from the TwiML, sent to the ``--server`` host instead of the public one."""
    parts = urlsplit(url)
    base = urlsplit(server)
    scheme = "https" if base.scheme.lower() in {"https", "wss"} else "http"
    return urlunsplit((scheme, base.netloc, parts.path or "/", parts.query, ""))


def webhook_params(
    call_sid: str, account_sid: str, from_number: str, to_number: str
) -> dict[str, str]:
    """The form Twilio posts for an inbound call that starts ringing."""
    return {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "To": to_number,
        "Caller": from_number,
        "Called": to_number,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


def sign(auth_token: str, url: str, params: dict[str, str] | None = None) -> str:
    return RequestValidator(auth_token).compute_signature(url, params or {})


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


# --- the call ------------------------------------------------------------------------------------


@dataclass
class _BotTrack:
    """What one bot turn sounded like on the wire and in the earpiece (monotonic times)."""

    first_received: float | None = None
    first_played: float | None = None
    last_audible_end: float | None = None
    audible_bytes: int = 0
    played: bytearray = field(default_factory=bytearray)  # mu-law as played
    interrupted: bool = False


@dataclass
class _StepState:
    step: Step
    audio: bytes = b""  # mu-law to speak (say/wav)
    speech_start: float | None = None
    speech_end: float | None = None


class _CallError(Exception):
    """Ends the call setup with EXIT_ERROR and a message for the user."""


class _Call:
    def __init__(self, options: CallOptions) -> None:
        self.o = options
        self.server = options.server.rstrip("/")
        self.call_sid = new_sid("CA")
        self.stream_sid = new_sid("MZ")
        self.account_sid = options.account_sid or new_sid("AC")
        self.result = CallResult(
            call_sid=self.call_sid,
            stream_sid=self.stream_sid,
            account_sid=self.account_sid,
            server=self.server,
        )
        self.steps = [_StepState(s) for s in options.script()]
        self.playback = PlaybackBuffer()
        self.gaps = GapCounter()
        self.voice = CallerVoice()
        self.clock: FrameClock | None = None
        self.tracks: dict[int, _BotTrack] = {}
        self.ws: ClientConnection | None = None
        self.t0 = 0.0
        self._seq = 0
        self._reply_tag = GREETING  # bot audio received now answers this step
        self._speaking_step: _StepState | None = None
        self._speaking_index = GREETING
        self._due_now: list[str] = []  # marks to echo as soon as the receiver can
        self._last_audible_end = 0.0
        self._closed = False  # the socket is gone (either side)
        self._stopping = False  # we are hanging up
        self._waiters: list[asyncio.Future[None]] = []
        self._rec_caller = bytearray()
        self._rec_bot = bytearray()
        self._loop = asyncio.get_running_loop()
        self._dialed_at: float | None = None

    # -- helpers ------------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if self.o.progress:
            self.o.progress(message)

    def _track(self, tag: int) -> _BotTrack:
        track = self.tracks.get(tag)
        if track is None:
            track = self.tracks[tag] = _BotTrack()
        return track

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def _ms(self, t: float | None) -> float | None:
        return None if t is None else round((t - self.t0) * 1000, 1)

    def _pulse(self) -> None:
        """Wake every ``_wait`` to re-check its condition (plain futures: a load bench runs
        hundreds of calls pulsing 50 times a second, and ``wait_for`` costs a task each)."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _send(self, message: dict[str, Any]) -> bool:
        return await self._send_raw(json.dumps(message, separators=(",", ":")))

    async def _send_raw(self, text: str) -> bool:
        if self.ws is None or self._closed:
            return False
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            self._on_closed()
            return False
        return True

    def _media_json(self, n: int, frame: bytes) -> str:
        """The same JSON as ``json.dumps`` of Twilio's media message, formatted directly:
        it is sent 50 times a second per call (every value is a digit string or base64)."""
        return (
            f'{{"event":"media","sequenceNumber":"{self._next_seq()}",'
            f'"streamSid":"{self.stream_sid}","media":{{"track":"inbound",'
            f'"chunk":"{n + 1}","timestamp":"{n * FRAME_MS}","payload":"{_b64(frame)}"}}}}'
        )

    async def _echo_mark(self, name: str) -> None:
        if await self._send(
            {
                "event": "mark",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        ):
            self.result.marks_echoed += 1

    def _on_closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._stopping:
            self.result.hung_up_by_server = True
            self.result.unplayed_ms_at_hangup = self.playback.buffered / 8
        self._pulse()

    async def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked every tick); False on timeout/hang-up."""
        deadline = self._loop.time() + timeout_s
        while not predicate():
            remaining = deadline - self._loop.time()
            if self._closed or remaining <= 0:
                return predicate()
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(fut)
            timer = self._loop.call_later(min(remaining, 0.1), _resolve, fut)
            try:
                await fut
            finally:
                timer.cancel()
        return True

    def _bot_done(self, tag: int) -> bool:
        """The bot has said something for ``tag`` and the earpiece has been quiet since."""
        track = self._track(tag)
        if track.first_received is None or self.playback.buffered:
            return False
        quiet_since = max(self._last_audible_end, track.first_received)
        return self._loop.time() - quiet_since >= self.o.reply_quiet_ms / 1000

    # -- preparation --------------------------------------------------------------------------
    async def prepare_audio(self) -> None:
        """Render every utterance before dialing: synthesis must not disturb the 20 ms clock."""
        await self._prepare(self.steps)

    async def _prepare(self, steps: list[_StepState]) -> None:
        tts = None
        for st in steps:
            if st.step.kind == "listen":
                continue
            if st.step.audio is not None:
                st.audio = st.step.audio
                if not st.audio:
                    raise _CallError(f"sin audio que decir para {st.step.value!r}")
                continue
            if st.step.kind == "dtmf":
                if not _DTMF.match(st.step.value):
                    raise _CallError(f"dígitos DTMF no válidos: {st.step.value!r}")
                continue
            if st.step.kind == "wav":
                try:
                    audio = await asyncio.to_thread(load_wav_as_ulaw8k, st.step.value)
                except Exception as exc:  # OSError, EOFError, wave.Error, audioop.error
                    raise _CallError(f"no se pudo leer {st.step.value}: {exc}") from exc
                st.audio = await asyncio.to_thread(trim_silence, audio)
            elif self.o.rendered is not None and st.step.value in self.o.rendered:
                st.audio = self.o.rendered[st.step.value]
            else:
                if tts is None:
                    tts = _make_tts()
                st.audio = await render_speech(tts, st.step.value)
                if self.o.rendered is not None:
                    self.o.rendered[st.step.value] = st.audio
            if not st.audio:
                raise _CallError(f"sin audio que decir para {st.step.value!r}")

    # -- dialing ------------------------------------------------------------------------------
    async def _webhook(self, http: httpx.AsyncClient) -> StreamTwiml:
        url = self.server + WEBHOOK_PATH
        signed_url = (self.o.public_url.rstrip("/") + WEBHOOK_PATH) if self.o.public_url else url
        params = webhook_params(
            self.call_sid, self.account_sid, self.o.from_number, self.o.to_number
        )
        headers = {"User-Agent": TWILIO_HTTP_USER_AGENT}
        if self.o.auth_token:
            headers["X-Twilio-Signature"] = sign(self.o.auth_token, signed_url, params)
        try:
            resp = await http.post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            raise _CallError(f"no se pudo conectar con {url}: {exc}") from exc
        if resp.status_code != 200:
            raise _CallError(f"{url} respondió HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return parse_stream_twiml(resp.text)
        except TwimlError as exc:
            said = f" (dice: «{' '.join(exc.said)}»)" if exc.said else ""
            raise _CallError(f"el servidor no conectó la llamada: {exc}{said}") from exc

    async def _open_stream(self, twiml: StreamTwiml) -> ClientConnection:
        target, signed = map_stream_url(twiml.url, self.server, self.server + WEBHOOK_PATH)
        headers = {}
        if self.o.auth_token:
            headers["x-twilio-signature"] = sign(self.o.auth_token, signed)
        try:
            return await connect(
                target,
                additional_headers=headers,
                user_agent_header=TWILIO_WS_USER_AGENT,
                max_size=WS_MAX_MESSAGE_BYTES,
                compression=None,
                ping_interval=None,
                open_timeout=self.o.timeout_s,
                close_timeout=2,
                proxy=None,
            )
        except InvalidStatus as exc:
            raise _CallError(
                f"el servidor rechazó el WebSocket {target} (HTTP {exc.response.status_code})"
            ) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise _CallError(f"no se pudo abrir el WebSocket {target}: {exc}") from exc

    async def _status_callback(
        self, http: httpx.AsyncClient, twiml: StreamTwiml, event: str
    ) -> None:
        """Twilio's stream status callback (stream-started / stream-stopped); best effort."""
        if not twiml.status_callback:
            return
        params = {
            "AccountSid": self.account_sid,
            "CallSid": self.call_sid,
            "StreamSid": self.stream_sid,
            "StreamName": twiml.name or self.stream_sid,
            "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        url = map_http_url(twiml.status_callback, self.server)
        headers = {"User-Agent": TWILIO_HTTP_USER_AGENT}
        if self.o.auth_token:
            headers["X-Twilio-Signature"] = sign(self.o.auth_token, twiml.status_callback, params)
        try:
            if twiml.status_callback_method == "GET":
                resp = await http.get(url, params=params, headers=headers)
            else:
                resp = await http.post(url, data=params, headers=headers)
            if resp.status_code >= 400:
                self.result.warnings.append(f"statusCallback {event}: HTTP {resp.status_code}")
        except httpx.HTTPError as exc:
            self.result.warnings.append(f"statusCallback {event}: {exc}")

    # -- the 20 ms clock: microphone out, earpiece in -----------------------------------------
    async def _on_tick(self, n: int, deadline: float) -> bool:
        if self._stopping or self._closed:
            return False
        frame, speech, last = self.voice.next_frame()
        if not await self._send_raw(self._media_json(n, frame)):
            return False
        now = self._loop.time()
        self.result.frames_sent += 1
        st = self._speaking_step
        if speech and st is not None:
            if st.speech_start is None:
                st.speech_start = now
            if last:
                st.speech_end = now
                self._reply_tag = self._speaking_index
                self._speaking_step = None

        played = self.playback.tick()
        for name in played.marks:
            await self._echo_mark(name)
        for tag, piece in played.pieces:
            track = self._track(tag)
            track.played += piece
            if is_audible(piece):
                if track.first_played is None:
                    track.first_played = now
                track.audible_bytes += len(piece)
                track.last_audible_end = self._last_audible_end = now + FRAME_S
        self.gaps.tick(n, played)
        if self.o.out:  # the stereo recording is only kept when it will be written
            self._rec_caller += frame
            self._rec_bot += played.frame
        self._pulse()
        return True

    async def _receive(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                self._handle(raw)
                # Marks due right away are echoed in order, without waiting for a tick.
                while self._due_now:
                    await self._echo_mark(self._due_now.pop(0))
        except ConnectionClosed:
            pass
        finally:
            self._on_closed()

    def _handle(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            self.result.protocol_errors += 1
            return
        try:
            msg = json.loads(raw)
            event = msg["event"]
        except (ValueError, KeyError, TypeError):
            self.result.protocol_errors += 1
            return
        try:
            if event == "media":
                ulaw = base64.b64decode(msg["media"]["payload"], validate=True)
                tag = self._reply_tag
                track = self._track(tag)
                if track.first_received is None and is_audible(ulaw):
                    track.first_received = self._loop.time()
                self.playback.feed(ulaw, tag)
                self._pulse()
            elif event == "mark":
                name = str(msg["mark"]["name"])
                self.result.marks_received += 1
                self._due_now.extend(self.playback.add_mark(name))
            elif event == "clear":
                self.result.clears += 1
                cleared = self.playback.clear()
                for tag, discarded in cleared.discarded.items():
                    if discarded:
                        self._track(tag).interrupted = True
                self._due_now.extend(cleared.marks)
                self._pulse()
            else:
                self.result.protocol_errors += 1
        except (KeyError, TypeError, binascii.Error, ValueError):
            self.result.protocol_errors += 1

    # -- the caller's script ------------------------------------------------------------------
    async def _speak(self, index: int) -> None:
        st = self.steps[index]
        if st.step.kind == "dtmf":
            for i, digit in enumerate(st.step.value):
                if i:
                    await asyncio.sleep(DTMF_GAP_S)
                ok = await self._send(
                    {
                        "event": "dtmf",
                        "streamSid": self.stream_sid,
                        "sequenceNumber": self._next_seq(),
                        "dtmf": {"track": "inbound_track", "digit": digit},
                    }
                )
                if not ok:
                    return
                now = self._loop.time()
                if st.speech_start is None:
                    st.speech_start = now
                st.speech_end = now
            self._reply_tag = index
            return
        self._speaking_step = st
        self._speaking_index = index
        self.voice.say(st.audio)
        await self._wait(lambda: st.speech_end is not None, len(st.audio) / 8000 + 5)

    async def _script(self) -> None:
        o = self.o
        greeting = self._track(GREETING)
        self._say("Esperando el saludo del bot…")
        if await self._wait(lambda: greeting.first_received is not None, o.greeting_timeout_s):
            await self._wait(lambda: self._bot_done(GREETING), MAX_PLAYBACK_WAIT_S)
            if self.steps:
                await asyncio.sleep(o.pause_ms / 1000)
        elif o.responder is not None:
            self.result.warnings.append(f"el bot no saludó en {o.greeting_timeout_s:g} s")
        elif not self.steps:
            self._fail(EXIT_NO_ANSWER, "el bot no dijo nada")
            return
        elif not self._closed:
            self.result.warnings.append(f"el bot no saludó en {o.greeting_timeout_s:g} s")
        if o.responder is not None:
            await self._interactive(o.responder)
            return

        for i, st in enumerate(self.steps):
            if self._closed:
                self.result.steps_skipped = len(self.steps) - i
                return
            self._say(f"Usted: {_said_label(st.step)}")
            await self._speak(i)
            if st.speech_end is None:  # hung up while we were talking
                self.result.steps_skipped = len(self.steps) - i
                return
            track = self._track(i)
            is_dtmf = st.step.kind == "dtmf"
            wait_s = min(o.timeout_s, DTMF_REPLY_WAIT_S) if is_dtmf else o.timeout_s
            if not await self._wait(lambda t=track: t.first_received is not None, wait_s):
                if is_dtmf:
                    continue
                reason = "el bot colgó sin responder" if self._closed else "el bot no respondió"
                self._fail(EXIT_NO_ANSWER, f"{reason} a «{st.step.value}» en {o.timeout_s:g} s")
                self.result.steps_skipped = len(self.steps) - i - 1
                return
            nxt = self.steps[i + 1].step if i + 1 < len(self.steps) else None
            if nxt is not None and o.barge_in_ms is not None and nxt.kind != "dtmf":
                # Talk over the bot: start N ms after its reply started playing.
                await self._wait(lambda t=track: t.first_played is not None, MAX_PLAYBACK_WAIT_S)
                if track.first_played is not None:
                    start_at = track.first_played + o.barge_in_ms / 1000
                    await asyncio.sleep(max(0.0, start_at - self._loop.time()))
                    continue
            await self._wait(lambda i=i: self._bot_done(i), MAX_PLAYBACK_WAIT_S)
            if nxt is not None:
                await asyncio.sleep(o.pause_ms / 1000)

    async def _interactive(self, responder: Responder) -> None:
        """An interactive caller: after each bot turn has finished playing, the responder hears
        it and chooses the next step (a phrase, keys, more listening, or hanging up)."""
        o = self.o
        tag = GREETING
        done_at = self._loop.time()
        while len(self.steps) < o.max_steps:
            track = self._track(tag)
            heard = BotHeard(
                index=tag,
                ulaw=bytes(track.played),
                answered=track.first_received is not None,
                hung_up=self._closed,
                turn=len(self.steps),
            )
            try:
                step = await responder(heard)
            except Exception as exc:  # a bug in the simulated caller ends its call
                self._fail(EXIT_ERROR, f"error del llamante simulado: {exc!r}")
                return
            if step is None or self._closed:
                return
            if step.kind == "listen":
                before = track.audible_bytes
                await self._wait(lambda t=track, b=before: t.audible_bytes > b, float(step.value))
                if track.audible_bytes > before:
                    await self._wait(lambda t=tag: self._bot_done(t), MAX_PLAYBACK_WAIT_S)
                done_at = self._loop.time()
                continue
            st = _StepState(step)
            try:
                await self._prepare([st])
            except _CallError as exc:
                self._fail(EXIT_ERROR, str(exc))
                return
            # A person pauses before answering; time spent deciding counts towards that pause.
            await asyncio.sleep(max(0.0, o.pause_ms / 1000 - (self._loop.time() - done_at)))
            self.steps.append(st)
            i = len(self.steps) - 1
            self._say(f"Usted: {_said_label(step)}")
            await self._speak(i)
            if st.speech_end is None:  # hung up while we were talking
                return
            reply = self._track(i)
            # Keys the bot waits for (a cédula ended with #) get an answer like words do.
            if await self._wait(lambda t=reply: t.first_received is not None, o.timeout_s):
                await self._wait(lambda i=i: self._bot_done(i), MAX_PLAYBACK_WAIT_S)
            done_at = self._loop.time()
            tag = i

    def _fail(self, code: int, message: str) -> None:
        if self.result.exit_code == EXIT_OK:
            self.result.exit_code = code
            self.result.error = message

    # -- orchestration ------------------------------------------------------------------------
    async def run(self) -> CallResult:
        for label, url in (("--server", self.server), ("--public-url", self.o.public_url)):
            parts = urlsplit(url or "http://ok")
            if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
                self._fail(EXIT_ERROR, f"{label} debe ser http(s)://host[:puerto], no {url!r}")
                return self.result
        try:
            await self.prepare_audio()
        except _CallError as exc:
            self._fail(EXIT_ERROR, str(exc))
            return self.result
        async with httpx.AsyncClient(
            timeout=self.o.timeout_s, trust_env=False, verify=_tls_context()
        ) as http:
            try:
                self._say(f"Llamando a {self.server}{WEBHOOK_PATH} ({self.call_sid})…")
                self._dialed_at = self._loop.time()
                twiml = await self._webhook(http)
                self.result.custom_parameters = dict(twiml.parameters)
                self.ws = await self._open_stream(twiml)
            except _CallError as exc:
                self._fail(EXIT_ERROR, str(exc))
                return self.result
            await self._converse(twiml, http)
        await self._finish_result()
        return self.result

    async def _converse(self, twiml: StreamTwiml, http: httpx.AsyncClient) -> None:
        assert self.ws is not None
        ws = self.ws
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        self.t0 = self._loop.time()
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": SAMPLE_RATE,
                        "channels": 1,
                    },
                    "customParameters": dict(twiml.parameters),
                },
            }
        )
        for raw in self.o.inject:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(raw)
        started_cb = asyncio.create_task(self._status_callback(http, twiml, "stream-started"))

        self.clock = FrameClock(now=self._loop.time)
        clock_task = asyncio.create_task(self.clock.run(self._on_tick, start=self.t0))
        clock_task.add_done_callback(self._clock_done)
        recv_task = asyncio.create_task(self._receive())
        try:
            await self._script()
        finally:
            self._stopping = True
            with contextlib.suppress(Exception):
                await clock_task
            if not self._closed:
                await self._send(
                    {
                        "event": "stop",
                        "sequenceNumber": self._next_seq(),
                        "streamSid": self.stream_sid,
                        "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                    }
                )
                with contextlib.suppress(Exception):
                    await ws.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recv_task, 5)
            self.result.duration_s = round(self._loop.time() - self.t0, 3)
            await started_cb
            await self._status_callback(http, twiml, "stream-stopped")

    def _clock_done(self, task: asyncio.Task[None]) -> None:
        """A clock that dies mid-call (a bug) must end the call, not leave it hanging."""
        if not task.cancelled() and task.exception() is not None:
            self._fail(EXIT_ERROR, f"error interno del reloj de audio: {task.exception()!r}")
            self._closed = True  # ends every wait
        self._pulse()

    async def _finish_result(self) -> None:
        r = self.result
        if self.clock is not None:
            r.late_frames = self.clock.late_ticks
            r.max_frame_lag_ms = round(self.clock.max_lag_s * 1000, 1)
        greeting = self.tracks.get(GREETING)
        if greeting is not None and greeting.first_received is not None:
            r.greeting = self._turn("greeting", None, None, None, GREETING)
            if self._dialed_at is not None:
                r.dial_to_greeting_ms = round((greeting.first_received - self._dialed_at) * 1000, 1)
        for i, st in enumerate(self.steps):
            if st.speech_end is None:
                continue
            turn = self._turn(
                st.step.kind,
                _said_label(st.step),
                st.speech_start,
                st.speech_end,
                i,
            )
            r.turns.append(turn)
        if self.o.out:
            try:
                await asyncio.to_thread(
                    write_stereo_wav, self.o.out, bytes(self._rec_caller), bytes(self._rec_bot)
                )
                r.out = self.o.out
            except OSError as exc:
                r.warnings.append(f"no se pudo escribir {self.o.out}: {exc}")
        if self.o.transcribe:
            await self._transcribe()

    def _turn(
        self,
        kind: str,
        said: str | None,
        start: float | None,
        end: float | None,
        tag: int,
    ) -> TurnResult:
        track = self.tracks.get(tag)
        turn = TurnResult(
            kind=kind, said=said, speech_start_ms=self._ms(start), speech_end_ms=self._ms(end)
        )
        if track is None:
            return turn
        turn.gap_frames = self.gaps.frames.get(tag, 0)
        turn.bot_first_received_ms = self._ms(track.first_received)
        turn.bot_first_played_ms = self._ms(track.first_played)
        turn.bot_end_ms = self._ms(track.last_audible_end)
        turn.bot_audio_ms = track.audible_bytes / 8
        turn.interrupted = track.interrupted
        turn.answered = track.first_received is not None
        reference = end if end is not None else self.t0
        if track.first_received is not None:
            turn.latency_ms = round((track.first_received - reference) * 1000, 1)
        if track.first_played is not None:
            turn.latency_played_ms = round((track.first_played - reference) * 1000, 1)
        return turn

    async def _transcribe(self) -> None:
        """Transcribe what the caller *heard* of each bot turn (and the --wav utterances)."""
        jobs: list[tuple[TurnResult, bytes, bool]] = []  # (turn, mu-law, is the bot side)
        if self.result.greeting is not None:
            jobs.append((self.result.greeting, bytes(self.tracks[GREETING].played), True))
        spoken = [(i, st) for i, st in enumerate(self.steps) if st.speech_end is not None]
        for turn, (i, st) in zip(self.result.turns, spoken, strict=True):
            if st.step.kind == "wav":
                jobs.append((turn, st.audio, False))
            track = self.tracks.get(i)
            if track is not None and track.audible_bytes:
                jobs.append((turn, bytes(track.played), True))
        if not jobs:
            return
        self._say("Transcribiendo el audio del bot…")
        try:
            stt = await asyncio.to_thread(_make_stt)
        except Exception as exc:
            self.result.warnings.append(f"sin transcripción: {exc}")
            return
        try:
            for turn, ulaw, bot_side in jobs:
                pcm = await asyncio.to_thread(mulaw_to_pcm16, ulaw)
                text = (await stt.transcribe(pcm, SAMPLE_RATE)).text
                if bot_side:
                    turn.bot_text = text
                else:
                    turn.said = f"{turn.said} {text}".strip()
        except Exception as exc:
            self.result.warnings.append(f"error de transcripción: {exc}")
        finally:
            close = getattr(stt, "close", None)
            if close is not None:
                await asyncio.to_thread(close)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every call: building one loads the CA store (tens of ms of CPU on
    the event loop), which would stall every other simulated call of a load bench."""
    return ssl.create_default_context()


_B64_CACHE: dict[bytes, str] = {}


def _b64(frame: bytes) -> str:
    """base64 of a 160-byte frame, memoised: a load bench's callers repeat the same few
    utterances and silence, so most frames have been encoded before."""
    text = _B64_CACHE.get(frame)
    if text is None:
        if len(_B64_CACHE) > 100_000:
            _B64_CACHE.clear()
        text = _B64_CACHE[frame] = base64.b64encode(frame).decode("ascii")
    return text


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _said_label(step: Step) -> str:
    if step.kind == "wav":
        return f"[{Path(step.value).name}]"
    if step.kind == "dtmf":
        return f"[DTMF {step.value}]"
    return step.value


async def render_speech(tts: Any, text: str) -> bytes:
    """The caller's voice saying ``text``: 8 kHz mu-law, silence trimmed at both ends."""
    pcm = await tts.synthesize_all(text, SAMPLE_RATE)
    audio = await asyncio.to_thread(pcm16_to_ulaw8k, pcm, SAMPLE_RATE)
    return await asyncio.to_thread(trim_silence, audio)


async def render_utterances(texts: list[str]) -> dict[str, bytes]:
    """Render each text once (for ``CallOptions.rendered``, shared by many callers)."""
    tts = _make_tts()
    return {text: await render_speech(tts, text) for text in dict.fromkeys(texts)}


def _make_tts() -> Any:
    from pipeline.tts import EspeakTTS

    return EspeakTTS(voice=CALLER_VOICE, rate_wpm=CALLER_RATE_WPM, pitch=CALLER_PITCH)


def _make_stt() -> Any:
    """Loads Whisper (about a second: called in a thread)."""
    from app.settings import Settings
    from pipeline.stt import WhisperSTT

    s = Settings()
    if not Path(s.whisper_dir).is_dir():
        raise FileNotFoundError(f"no hay modelo Whisper en {s.whisper_dir}")
    # The transcript is a measurement made after the call, not on a caller's time: favour
    # accuracy (beam search, temperature fallback) over the server's greedy single pass.
    return WhisperSTT(
        s.whisper_dir,
        language=s.stt_language,
        prompt=s.stt_prompt,
        beam_size=5,
        cpu_threads=s.stt_cpu_threads,
        temperatures=(0.0, 0.2, 0.4, 0.6),
    )


async def run_call(options: CallOptions) -> CallResult:
    """Place one simulated call and report what the caller experienced."""
    return await _Call(options).run()


# --- output --------------------------------------------------------------------------------------


def _bot_line(turn: TurnResult) -> str:
    if turn.bot_text is not None:
        return turn.bot_text or "(inaudible)"
    return f"({turn.bot_audio_ms / 1000:.1f} s de audio)"


def format_transcript(result: CallResult) -> str:
    lines: list[str] = []
    if result.greeting is not None:
        cut = " [interrumpido]" if result.greeting.interrupted else ""
        lines.append(f"Bot (saludo){cut}: {_bot_line(result.greeting)}")
    for turn in result.turns:
        lines.append(f"Usted: {turn.said}")
        if turn.answered and turn.latency_ms is not None:
            cut = " [interrumpido]" if turn.interrupted else ""
            lines.append(f"Bot [{turn.latency_ms:.0f} ms]{cut}: {_bot_line(turn)}")
        elif turn.kind != "dtmf":
            lines.append("Bot: (sin respuesta)")
    lines.append(format_summary(result))
    return "\n".join(lines)


def format_summary(result: CallResult) -> str:
    parts = [f"{len(result.turns)} turno{'s' if len(result.turns) != 1 else ''}"]
    lat = result.latencies_ms
    if lat:
        mean = sum(lat) / len(lat)
        parts.append(f"latencia media {mean:.0f} ms (mín {min(lat):.0f}, máx {max(lat):.0f})")
    if result.clears:
        parts.append(f"{result.clears} interrupci{'ones' if result.clears != 1 else 'ón'}")
    parts.append(f"{result.marks_echoed} de {result.marks_received} marcas devueltas")
    if result.hung_up_by_server:
        parts.append("colgó el bot")
    if result.steps_skipped:
        parts.append(f"{result.steps_skipped} paso(s) sin hacer")
    parts.append(f"{result.duration_s:.1f} s")
    parts.append(f"código de salida {result.exit_code}")
    return "Resumen: " + "; ".join(parts) + "."


# --- CLI -----------------------------------------------------------------------------------------


def _step_action(kind: StepKind) -> type[argparse.Action]:
    """--say/--wav/--dtmf append to one ordered list, so argument order is the call's order."""

    class _Append(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: Any,
            option_string: str | None = None,
        ) -> None:
            if kind == "dtmf" and not _DTMF.match(str(values)):
                parser.error(f"--dtmf: solo 0-9, *, # y A-D (no {values!r})")
            steps = list(getattr(namespace, self.dest, None) or [])
            steps.append(Step(kind, str(values)))
            setattr(namespace, self.dest, steps)

    return _Append


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=DEFAULT_SERVER, help="URL del servidor TAINA")
    parser.add_argument(
        "--say", dest="steps", metavar="TEXTO", action=_step_action("say"),
        help="frase que dice el llamante (repetible; se sintetiza con eSpeak)",
    )  # fmt: skip
    parser.add_argument(
        "--wav", dest="steps", metavar="ARCHIVO", action=_step_action("wav"),
        help="audio WAV que dice el llamante (repetible; cualquier frecuencia)",
    )  # fmt: skip
    parser.add_argument(
        "--dtmf", dest="steps", metavar="DÍGITOS", action=_step_action("dtmf"),
        help="teclas marcadas (p. ej. 12#), en su posición entre --say/--wav",
    )  # fmt: skip
    parser.add_argument(
        "--voice", metavar="VOZ", default=None,
        help="voz del llamante para --say (p. ej. pico-es, kokoro-jm-kumo, espeak-419-denis; "
        "por omisión la voz eSpeak del simulador)",
    )  # fmt: skip
    parser.add_argument("--out", metavar="ARCHIVO.wav", help="grabación estéreo de la llamada")
    parser.add_argument(
        "--barge-in-ms", type=int, metavar="MS",
        help="a partir de la segunda frase, hablar MS ms después de que el bot empiece a responder",
    )  # fmt: skip
    parser.add_argument("--auth-token", help="token de Twilio para firmar (o TWILIO_AUTH_TOKEN)")
    parser.add_argument("--account-sid", help="AccountSid (o TWILIO_ACCOUNT_SID; si no, al azar)")
    parser.add_argument(
        "--from", dest="from_number", default="+18095550100", help="número llamante"
    )
    parser.add_argument("--to", dest="to_number", default="+18095550199", help="número llamado")
    parser.add_argument(
        "--public-url", help="URL pública que Twilio llamaría (si el servidor tiene PUBLIC_URL)"
    )
    parser.add_argument(
        "--timeout", type=float, default=20.0, metavar="S",
        help="segundos máximos de espera por cada respuesta del bot",
    )  # fmt: skip
    parser.add_argument(
        "--greeting-timeout", type=float, default=10.0, metavar="S",
        help="segundos máximos de espera por el saludo",
    )  # fmt: skip
    parser.add_argument(
        "--no-transcribe", dest="transcribe", action="store_false",
        help="no transcribir con Whisper lo que dijo el bot",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="resultado en JSON")


def voiced_steps(steps: list[Step], voice: str | None) -> list[Step]:
    """``--say`` steps pre-rendered with a caller voice of ``telephony.caller_voices``
    (the simulator's own eSpeak voice when ``voice`` is None)."""
    if not voice:
        return steps
    from telephony.caller_voices import get_voice, render

    try:
        get_voice(voice)
    except KeyError as exc:
        raise SystemExit(f"--voice: {exc.args[0]}") from None
    out = []
    for step in steps:
        if step.kind == "say" and step.audio is None:
            ulaw = trim_silence(
                pcm16_to_ulaw8k(render(voice, step.value, SAMPLE_RATE), SAMPLE_RATE)
            )
            step = dataclasses.replace(step, audio=ulaw)
        out.append(step)
    return out


def options_from_args(args: argparse.Namespace) -> CallOptions:
    quiet = bool(getattr(args, "json", False))
    return CallOptions(
        server=args.server,
        steps=voiced_steps(list(getattr(args, "steps", None) or []), getattr(args, "voice", None)),
        out=args.out,
        barge_in_ms=args.barge_in_ms,
        auth_token=args.auth_token or os.environ.get("TWILIO_AUTH_TOKEN") or None,
        account_sid=args.account_sid or os.environ.get("TWILIO_ACCOUNT_SID") or None,
        from_number=args.from_number,
        to_number=args.to_number,
        public_url=args.public_url,
        timeout_s=args.timeout,
        greeting_timeout_s=args.greeting_timeout,
        transcribe=args.transcribe,
        progress=None if quiet else (lambda m: print(m, file=sys.stderr, flush=True)),
    )


def run_from_args(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    try:
        result = asyncio.run(run_call(options))
    except KeyboardInterrupt:
        print("Llamada cancelada.", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        if result.turns or result.greeting:
            print(format_transcript(result))
        for warning in result.warnings:
            print(f"Aviso: {warning}", file=sys.stderr)
        if result.error:
            print(f"Error: {result.error}", file=sys.stderr)
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m telephony.simulator``) until the CLI wires it."""
    parser = argparse.ArgumentParser(prog="taina call", description="Llamada telefónica simulada")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
