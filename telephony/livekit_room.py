"""The agent's side of one LiveKit room, behind a small ``RoomLike`` interface.

A LiveKit room delivers the caller as a WebRTC audio track (browser visitor or LiveKit SIP
phone caller alike): no mu-law, no marks from the far end. So this transport keeps its own
playout clock: outbound audio goes to an ``AudioSource`` in 20 ms frames, paced by the SDK,
and a chunk's mark is reported played once the source's queue ahead of it has drained.

Everything here talks to ``RoomLike`` only, so the room logic is tested with a fake room; the
real ``rtc.Room`` adapter lives in ``telephony.livekit_agent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pipeline.brain.base import CallContext
from pipeline.engines import AudioEncoding, TextToSpeech
from pipeline.metrics import PipelineMetrics
from pipeline.records import CallInfo, CallObserver, FanOutObserver, TurnRecord
from pipeline.session import CallSession, Engines, SessionConfig
from telephony.audio_codec import StreamResampler

log = logging.getLogger("taina.livekit")

FRAME_MS = 20
CANCEL_SHUTDOWN_S = 5.0  # a cancelled call's session close and room leave, at most
DATA_TOPIC = "taina"
INGRESS_WEB = "livekit"
INGRESS_SIP = "livekit-sip"
SIP_NUMBER_ATTR = "sip.phoneNumber"
SIP_TRUNK_NUMBER_ATTR = "sip.trunkPhoneNumber"

# States shown to the visitor (the page prints them as they are).
STATE_CONNECTING = "conectando"
STATE_LISTENING = "escuchando"
STATE_THINKING = "pensando"
STATE_SPEAKING = "hablando"


# --- the room interface ----------------------------------------------------------------------
@dataclass(frozen=True)
class Participant:
    identity: str
    kind: str  # "standard" | "sip" | "agent" | "ingress" | "egress" | …
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def is_sip(self) -> bool:
        return self.kind == "sip"


@dataclass(frozen=True)
class AudioChunk:
    """PCM16 mono as the room delivered it."""

    pcm16: bytes
    sample_rate: int


class RoomListener(Protocol):
    def on_participant_joined(self, participant: Participant) -> None: ...

    def on_participant_left(self, identity: str) -> None: ...

    def on_dtmf(self, identity: str | None, digit: str) -> None: ...

    def on_disconnected(self) -> None: ...


class RoomLike(Protocol):
    """What the agent needs from a LiveKit room (``rtc.Room`` or a test fake)."""

    name: str

    def set_listener(self, listener: RoomListener) -> None: ...

    def remote_participants(self) -> list[Participant]: ...

    def audio_frames(self, identity: str) -> AsyncIterator[AudioChunk]:
        """The participant's microphone (first audio track), as it arrives; ends when the
        track goes away."""
        ...

    async def publish_audio(self, sample_rate: int) -> None: ...

    async def capture_audio(self, pcm16: bytes) -> None:
        """Queue one frame on the published track; returns when the source accepted it (the
        SDK blocks while its queue is full, which paces the writer)."""
        ...

    def queued_audio_s(self) -> float:
        """Audio accepted but not yet played out by the source."""
        ...

    def clear_audio(self) -> None: ...

    async def send_data(self, payload: bytes, topic: str) -> None: ...

    async def disconnect(self) -> None: ...


class RoomControl(Protocol):
    """Server-side actions (LiveKit's Twirp API): end a room, transfer a SIP participant."""

    async def delete_room(self, room: str) -> None: ...

    async def transfer_sip(self, room: str, identity: str, transfer_to: str) -> bool: ...


@dataclass(frozen=True)
class Caller:
    call_id: str
    room: str
    identity: str
    ingress: str
    caller_number: str | None = None
    called_number: str | None = None


def caller_from(room: str, p: Participant) -> Caller:
    """A SIP participant is a phone caller (number from ``sip.phoneNumber``); anyone else is a
    web visitor. The call id is the room name, unique per session."""
    if p.is_sip:
        return Caller(
            call_id=room,
            room=room,
            identity=p.identity,
            ingress=INGRESS_SIP,
            caller_number=p.attributes.get(SIP_NUMBER_ATTR) or None,
            called_number=p.attributes.get(SIP_TRUNK_NUMBER_ATTR) or None,
        )
    return Caller(call_id=room, room=room, identity=p.identity, ingress=INGRESS_WEB)


# --- the transport ---------------------------------------------------------------------------
_SendItem = tuple[int, bytes, str, Callable[[float], None] | None]


class LiveKitCallTransport:
    """One caller in one room. Implements the session's ``AudioSink``."""

    output_encoding: AudioEncoding = "pcm16"

    def __init__(
        self,
        room: RoomLike,
        *,
        pipeline_rate: int = 16000,
        output_rate: int = 48000,
        control: RoomControl | None = None,
        transfer_to: str | None = None,
        max_duration_s: float = 1800.0,
    ) -> None:
        self.room = room
        self.output_rate = output_rate
        self._pipeline_rate = pipeline_rate
        self._control = control
        self._transfer_to = transfer_to
        self._max_duration_s = max_duration_s
        self._frame_bytes = output_rate * 2 * FRAME_MS // 1000
        self._queue: asyncio.Queue[_SendItem] = asyncio.Queue()
        self._generation = 0
        self._mark_timers: set[asyncio.TimerHandle] = set()
        self._unplayed = 0  # chunks accepted whose mark has not fired yet
        self._session: CallSession | None = None
        self._caller: Caller | None = None
        self._joined: asyncio.Queue[Participant] = asyncio.Queue()
        self._ended = asyncio.Event()
        self._end_reason = "caller-hangup"
        self._state = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(
            log, {"call_id": room.name}
        )
        room.set_listener(self)

    @property
    def caller(self) -> Caller | None:
        return self._caller

    @property
    def session(self) -> CallSession | None:
        return self._session

    # --- running one call ----------------------------------------------------------------
    async def run(
        self,
        make_session: Callable[[Caller, LiveKitCallTransport], Awaitable[CallSession]],
        *,
        wait_caller_s: float = 60.0,
    ) -> str:
        """Wait for the caller, talk until someone hangs up; returns the end reason.

        Cancelled (the worker stops, or lost its claim on the room): the session is closed
        and the room left before the cancellation goes on, so no reader, writer or session
        outlives the call's task."""
        try:
            return await self._run(make_session, wait_caller_s)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._shutdown("server-shutdown"), CANCEL_SHUTDOWN_S)
            raise

    async def _run(
        self,
        make_session: Callable[[Caller, LiveKitCallTransport], Awaitable[CallSession]],
        wait_caller_s: float,
    ) -> str:
        for p in self.room.remote_participants():
            self.on_participant_joined(p)
        try:
            participant = await asyncio.wait_for(self._next_caller(), wait_caller_s)
        except TimeoutError:
            self._log.info("nobody joined room %s", self.room.name)
            await self.room.disconnect()
            return "no-caller"
        caller = caller_from(self.room.name, participant)
        self._caller = caller
        self._log.info("%s caller %s in %s", caller.ingress, caller.identity, caller.room)
        await self.room.publish_audio(self.output_rate)
        session = await make_session(caller, self)
        self._session = session
        self._spawn(self._write_loop(), "lk-writer")
        self._spawn(self._read_loop(caller.identity), "lk-reader")
        self._set_state(STATE_CONNECTING)
        await session.start()
        ended = asyncio.create_task(self._ended.wait())
        closed = asyncio.create_task(session.closed.wait())
        done, pending = await asyncio.wait(
            {ended, closed}, timeout=self._max_duration_s, return_when=asyncio.FIRST_COMPLETED
        )
        for t in pending:
            t.cancel()
        reason = self._end_reason if ended in done else "max-duration"
        if closed in done:
            reason = session.end_reason or reason
        await self._shutdown(reason)
        return reason

    async def _next_caller(self) -> Participant:
        while True:
            p = await self._joined.get()
            if p.kind != "agent":
                return p

    async def _shutdown(self, reason: str) -> None:
        session = self._session
        if session is not None and not session.is_closed:
            await session.close(reason)
            if reason == "max-duration":
                await self.hangup()
        for handle in self._mark_timers:
            handle.cancel()
        self._mark_timers.clear()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.room.disconnect()
        except Exception:
            self._log.exception("leaving the room failed")

    # --- RoomListener ----------------------------------------------------------------------
    def on_participant_joined(self, participant: Participant) -> None:
        if self._caller is None:
            self._joined.put_nowait(participant)

    def on_participant_left(self, identity: str) -> None:
        if self._caller is not None and identity == self._caller.identity:
            self._end_reason = "caller-hangup"
            self._ended.set()

    def on_dtmf(self, identity: str | None, digit: str) -> None:
        if self._session is None or not digit:
            return
        if identity is not None and self._caller and identity != self._caller.identity:
            return
        self._session.feed_dtmf(digit)

    def on_disconnected(self) -> None:
        self._end_reason = "disconnected"
        self._ended.set()

    # --- inbound ---------------------------------------------------------------------------
    async def _read_loop(self, identity: str) -> None:
        resampler: StreamResampler | None = None
        rate = 0
        async for chunk in self.room.audio_frames(identity):
            session = self._session
            if session is None or session.is_closed:
                return
            if chunk.sample_rate != rate:
                rate = chunk.sample_rate
                resampler = StreamResampler(rate, self._pipeline_rate)
            assert resampler is not None
            pcm = resampler.process(chunk.pcm16)
            if pcm:
                session.feed_audio(pcm)

    # --- AudioSink -------------------------------------------------------------------------
    def send_audio(
        self, pcm16: bytes, mark: str, on_sent: Callable[[float], None] | None = None
    ) -> None:
        self._queue.put_nowait((self._generation, pcm16, mark, on_sent))

    def clear(self) -> None:
        """Barge-in: forget queued chunks, drop what the source holds, cancel pending marks
        (the session flushes its own playout record)."""
        self._generation += 1
        while not self._queue.empty():
            self._queue.get_nowait()
        for handle in self._mark_timers:
            handle.cancel()
        self._mark_timers.clear()
        self._unplayed = 0
        self.room.clear_audio()
        self._set_state(STATE_LISTENING)

    async def hangup(self) -> None:
        """End the call for everyone: deleting the room drops a SIP caller's leg too."""
        self._end_reason = "bot-hangup"
        if self._control is not None:
            try:
                await self._control.delete_room(self.room.name)
            except Exception:
                self._log.exception("deleting room %s failed", self.room.name)
        self._ended.set()

    async def transfer(self, target: str | None) -> bool:
        """SIP callers only: a SIP REFER to the configured number. Web visitors have no phone
        leg to hand over."""
        caller = self._caller
        to = _sip_uri(target or self._transfer_to)
        if caller is None or caller.ingress != INGRESS_SIP or self._control is None or not to:
            return False
        try:
            ok = await self._control.transfer_sip(caller.room, caller.identity, to)
        except Exception:
            self._log.exception("SIP transfer to %s failed", to)
            return False
        if ok:
            self._end_reason = "transfer"
        return ok

    # --- outbound --------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        fb = self._frame_bytes
        pending = b""  # a partial frame carried to the next chunk (same generation)
        pending_gen = -1
        while True:
            gen, pcm, mark, on_sent = await self._queue.get()
            if gen != self._generation:
                continue
            if pending_gen != gen:
                pending = b""
            data = pending + pcm
            pending_gen = gen
            usable = len(data) - len(data) % fb
            first = True
            for off in range(0, usable, fb):
                if gen != self._generation:
                    break
                await self.room.capture_audio(data[off : off + fb])
                if first:
                    first = False
                    if on_sent is not None:
                        on_sent(time.monotonic())
                    self._set_state(STATE_SPEAKING)
            if gen != self._generation:
                continue
            pending = data[usable:]
            if self._queue.empty() and pending:
                # End of what the session has sent so far: pad the tail to a whole frame.
                await self.room.capture_audio(pending + b"\0" * (fb - len(pending)))
                pending = b""
            if first and on_sent is not None:
                on_sent(time.monotonic())
            self._unplayed += 1
            delay = self.room.queued_audio_s()
            handle = loop.call_later(delay, self._mark_played, gen, mark)
            self._mark_timers.add(handle)

    def _mark_played(self, gen: int, mark: str) -> None:
        self._mark_timers = {h for h in self._mark_timers if not h.cancelled()}
        if gen != self._generation:
            return
        self._unplayed = max(self._unplayed - 1, 0)
        if self._session is not None:
            self._session.mark_played(mark)
        if self._unplayed == 0 and self._queue.empty():
            self._set_state(STATE_LISTENING)

    # --- data channel ----------------------------------------------------------------------
    def send_event(self, message: dict[str, Any]) -> None:
        """Captions and states go out as JSON on the data channel, fire and forget."""
        payload = json.dumps(message, ensure_ascii=False).encode()
        self._spawn(self._send(payload), "lk-data")

    async def _send(self, payload: bytes) -> None:
        try:
            await self.room.send_data(payload, DATA_TOPIC)
        except Exception:
            self._log.warning("data message not sent", exc_info=True)

    def caption(self, role: str, text: str, *, final: bool) -> None:
        if text:
            self.send_event({"type": "caption", "role": role, "text": text, "final": final})

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.send_event({"type": "state", "state": state})

    def caller_turn_done(self) -> None:
        self._set_state(STATE_THINKING)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{name}-{self.room.name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("task %s failed", task.get_name(), exc_info=task.exception())


def _sip_uri(target: str | None) -> str | None:
    """LiveKit's transfer_to wants a URI: "tel:+1809…" or "sip:…"; a bare number gets tel:."""
    if not target:
        return None
    target = target.strip()
    if target.startswith(("tel:", "sip:", "sips:")):
        return target
    return f"tel:{target}"


# --- captions --------------------------------------------------------------------------------
class CaptionObserver:
    """Final captions from the call record: what the caller said, what they heard of the bot."""

    def __init__(self, transport: LiveKitCallTransport) -> None:
        self._t = transport

    def call_started(self, info: CallInfo) -> None:
        pass

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        if turn.speaker == "caller":
            self._t.caption("user", turn.text or _dtmf_caption(turn.dtmf), final=True)
            self._t.caller_turn_done()
        else:
            self._t.caption("assistant", turn.heard_text or "", final=True)

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        self._t.send_event({"type": "state", "state": "finalizada", "reason": reason})


def _dtmf_caption(dtmf: str) -> str:
    return f"[teclas {dtmf}]" if dtmf else ""


class CaptioningTTS:
    """Wraps the TTS so each sentence is captioned as it starts to be spoken, not only when
    the whole reply is over."""

    def __init__(self, inner: TextToSpeech, on_sentence: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_sentence = on_sentence
        self.name = inner.name

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    async def synthesize(self, text: str, sample_rate: int, **kwargs: Any) -> AsyncIterator[bytes]:
        self._on_sentence(text)
        async for chunk in self._inner.synthesize(text, sample_rate, **kwargs):
            yield chunk


def livekit_session(
    caller: Caller,
    transport: LiveKitCallTransport,
    *,
    engines: Engines,
    config: SessionConfig,
    observer: CallObserver,
    metrics: PipelineMetrics,
) -> CallSession:
    """The CallSession for one room, with captions wired to the data channel."""
    ctx = CallContext(
        call_id=caller.call_id,
        ingress=caller.ingress,
        caller_number=caller.caller_number,
        started_at=datetime.now(UTC),
    )
    tts = CaptioningTTS(engines.tts, lambda s: transport.caption("assistant", s, final=False))
    return CallSession(
        ctx=ctx,
        sink=transport,
        engines=replace(engines, tts=tts),
        config=config,
        observer=FanOutObserver(observer, CaptionObserver(transport)),
        metrics=metrics,
        called_number=caller.called_number,
        stream_id=caller.identity,
        accepted_at=time.monotonic(),
    )


def new_session_id() -> str:
    return uuid.uuid4().hex[:16]
