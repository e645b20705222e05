"""One conversation, whatever wire it arrives on.

A transport feeds the session audio frames (PCM16 at the pipeline rate), DTMF digits and
mark echoes, and gives it an ``AudioSink`` to talk back through. The session owns
turn-taking: VAD → end of turn → STT → brain → TTS, barge-in, what the caller heard, and the
timing of every stage. It never touches a socket.

Concurrency model: the transport calls ``feed_*`` from its receive loop (cheap, synchronous);
everything slow runs in at most one *reply task* at a time, which barge-in cancels. Inference
runs in the engines' own threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from pipeline.brain.base import (
    Brain,
    BrainOutput,
    CallContext,
    EndCall,
    Message,
    TextChunk,
    ToolEvent,
    Transfer,
    UserInput,
)
from pipeline.engines import (
    AudioEncoding,
    LiveSpeechToText,
    LiveTranscriber,
    SpeechToText,
    TextToSpeech,
    Transcript,
    VadModel,
    bind_call,
    bytes_per_sample,
    synthesize_as,
)
from pipeline.metrics import PipelineMetrics
from pipeline.playout import PlayoutTracker
from pipeline.records import CallInfo, CallObserver, TurnRecord
from pipeline.sentences import SentenceSplitter
from pipeline.smart_turn import SmartTurnRunner, TurnShadow
from pipeline.turn_taking import TurnConfig, TurnDetector, TurnEvent, UtteranceBuffer

log = logging.getLogger("taina.session")

DTMF_KEYS = frozenset("0123456789*#ABCD")
# One keypad entry (a cédula is 11 digits); more keys before # or the pause are dropped, so a
# flood cannot become one huge turn (stored, and sent to the brain).
MAX_DTMF_DIGITS = 32

SORRY_NOT_UNDERSTOOD = "Disculpe, no le entendí bien. ¿Me lo puede repetir, por favor?"
SORRY_PROBLEM = "Disculpe, tuve un inconveniente. ¿Me puede repetir su consulta, por favor?"
# Limits of one call (issue 13): the caller hears why, in a few words, before the line drops.
CALL_TOO_LONG = (
    "Disculpe, hemos llegado al tiempo máximo de esta llamada. "
    "Si necesita algo más, por favor vuelva a llamarnos. Hasta luego."
)
TOO_MANY_TURNS = (
    "Disculpe, esta llamada ha llegado a su límite. "
    "Si necesita algo más, por favor vuelva a llamarnos. Hasta luego."
)
SORRY_NO_TRANSFER = (
    "En este momento no puedo comunicarle con un agente. "
    "Puede llamarnos de nuevo en horario de oficina. ¿Le ayudo con algo más?"
)


class AudioSink(Protocol):
    """What a transport offers the session. ``send_audio`` and ``clear`` only enqueue.

    ``output_rate`` and ``output_encoding`` are the format the transport wants audio in: TTS
    synthesizes straight to it, so a phone call's voice is resampled once per sentence (or
    never, when the provider speaks mu-law 8 kHz) instead of frame by frame.
    """

    output_rate: int
    output_encoding: AudioEncoding

    def send_audio(
        self, pcm16: bytes, mark: str, on_sent: Callable[[float], None] | None = None
    ) -> None:
        """Send audio in the output format, followed by ``mark``; call ``on_sent`` with the
        monotonic time the audio went out on the wire."""
        ...

    def clear(self) -> None:
        """Drop everything queued or buffered at the far end (barge-in)."""
        ...

    async def hangup(self) -> None: ...

    async def transfer(self, target: str | None) -> bool:
        """Hand the caller to a human; False when this transport or deployment cannot."""
        ...


@dataclass(frozen=True)
class SessionConfig:
    sample_rate: int = 16000
    turn: TurnConfig = field(default_factory=TurnConfig)
    barge_in_min_ms: int = 350
    speech_pad_ms: int = 250
    chunk_ms: int = 100
    goodbye_grace_s: float = 1.5
    dtmf_timeout_s: float = 2.0
    playback_grace_s: float = 2.0  # extra wait for mark echoes beyond the audio's own length
    live_final_timeout_s: float = 1.0  # live STT's final transcript, else batch STT takes over
    live_endpoint_min_silence_ms: int = 200  # a provider endpoint never cuts a caller mid-word
    # Speech the recogniser found no words in: at least this long (without the padding; a
    # lone "Sí." is about 250 ms) and at most this many in a row reach the brain as an empty
    # turn ("Disculpe, no le escuché").
    unheard_min_speech_ms: int = 200
    unheard_max_in_row: int = 2
    # Bounds of one call (0 = none; the server sets them from its settings): its length,
    # its caller turns, and caller turns per second (a token bucket of turn_burst), so a
    # keypad flood can neither flood the call records nor grow the call's memory.
    max_call_s: float = 0.0
    max_turns: int = 0
    turns_per_s: float = 0.0
    turn_burst: int = 4
    # Smart Turn v3 in shadow mode (pipeline/smart_turn.py): logged beside the silence rule,
    # never deciding; None = off. One runner (model + thread) shared by every call.
    turn_model: SmartTurnRunner | None = None


@dataclass
class Engines:
    vad: VadModel
    stt: SpeechToText  # batch recognition: the default, and the fallback for live STT
    tts: TextToSpeech
    brain: Brain
    live_stt: LiveSpeechToText | None = None  # streaming recognition (Deepgram), optional


@dataclass
class _BotTurn:
    seq: int
    started_at: datetime
    t0: float  # monotonic reference for this turn's timings (end of caller speech)
    timings: dict[str, float]
    tools: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "reply"  # greeting | reply | notice
    audio_sent: bool = False
    first_byte_at: float | None = None


class CallSession:
    def __init__(
        self,
        *,
        ctx: CallContext,
        sink: AudioSink,
        engines: Engines,
        config: SessionConfig,
        observer: CallObserver,
        metrics: PipelineMetrics,
        called_number: str | None = None,
        stream_id: str | None = None,
        accepted_at: float | None = None,
    ) -> None:
        self.ctx = ctx
        self._sink = sink
        self._engines = engines
        self._cfg = config
        self._observer = observer
        self._metrics = metrics
        self._log = logging.LoggerAdapter(log, {"call_id": ctx.call_id})
        self._called_number = called_number
        self._stream_id = stream_id

        self._vad = engines.vad.stream(config.sample_rate)
        self._window_bytes = self._vad.window_samples * 2
        self._window_ms = self._vad.window_samples * 1000.0 / config.sample_rate
        self._detector = TurnDetector(config.turn, self._window_ms)
        self._shadow = (
            TurnShadow(config.turn_model, metrics, config.sample_rate, self._log)
            if config.turn_model is not None
            else None
        )
        preroll_ms = config.speech_pad_ms + config.turn.min_speech_ms
        self._utterance = UtteranceBuffer(math.ceil(preroll_ms / self._window_ms))
        self._inbuf = bytearray()
        # Caller audio received so far (bytes at the pipeline rate): the call's own timeline, the
        # one a recording is laid on, so turns carry where they sit in it (``stream_at_ms``).
        self._in_bytes = 0
        self._live: LiveTranscriber | None = None
        self._live_wire = False  # the live transcriber takes the transport's own audio format
        self._out_rate = int(getattr(sink, "output_rate", config.sample_rate))
        self._out_encoding: AudioEncoding = getattr(sink, "output_encoding", "pcm16")
        self._out_bps = self._out_rate * bytes_per_sample(self._out_encoding)  # bytes/second
        self._chunk_bytes = int(self._out_bps * config.chunk_ms / 1000)

        self._playout = PlayoutTracker()
        self._reply_task: asyncio.Task[None] | None = None
        self._reply_stage = "idle"  # idle | stt | brain | speaking
        self._unheard_in_row = 0  # consecutive turns of speech without recognisable words
        self._reply_audio = b""  # the utterance the current reply answers (for carry-over)
        self._bot_turn: _BotTurn | None = None
        self._spec_task: asyncio.Task[Transcript] | None = None
        self._utterance_over_reply = False
        self._barged_this_utterance = False
        self._carry = b""
        self._dtmf = ""
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._ending = False  # a final notice is playing: the caller's input is ignored
        self.end_reason: str | None = None
        # Set just before the bot hangs up or transfers, so the transport's own close (the
        # socket going away as a consequence) cannot be mistaken for the caller hanging up.
        self._final_reason: str | None = None
        self.outcome: str | None = None
        self.closed = asyncio.Event()
        self._started_mono = time.monotonic()
        self._greeting_t0: float | None = accepted_at
        self._chunk_n = 0
        self._caller_turns = 0
        self._turn_tokens = float(config.turn_burst)
        self._turn_tokens_at = time.monotonic()
        self._turns_refused = 0
        self._length_timer: asyncio.TimerHandle | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, greeting_t0: float | None = None) -> None:
        """Announce the call and speak the greeting. ``greeting_t0`` is the monotonic time the
        call was accepted, for the greeting latency figure; an ``accepted_at`` given at
        construction (the webhook's time) takes precedence."""
        if self._greeting_t0 is None:
            self._greeting_t0 = greeting_t0 if greeting_t0 is not None else time.monotonic()
        # Engine work from here on (every task this call spawns) is queued under this call:
        # shared engines take turns fairly between calls (pipeline/engines.py FairGate).
        bind_call(self.ctx.call_id)
        self._metrics.calls_total.labels(self.ctx.ingress).inc()
        self._metrics.calls_active.labels(self.ctx.ingress).inc()
        self._observer.call_started(
            CallInfo(
                call_id=self.ctx.call_id,
                ingress=self.ctx.ingress,
                caller_number=self.ctx.caller_number,
                called_number=self._called_number,
                stream_id=self._stream_id,
                started_at=self.ctx.started_at or _now(),
            )
        )
        if self._cfg.max_call_s > 0:
            self._length_timer = asyncio.get_running_loop().call_later(
                self._cfg.max_call_s, self._end_for_limit, CALL_TOO_LONG, "max-duration"
            )
        await self._open_live_stt()
        self._start_reply(self._greeting())

    async def _open_live_stt(self) -> None:
        """Open the streaming recognizer in the wire's own format when the transport offers
        it (phone audio goes to Deepgram as mu-law 8 kHz, no resampling)."""
        live = self._engines.live_stt
        if live is None:
            return
        encoding = getattr(self._sink, "input_encoding", None)
        rate = getattr(self._sink, "input_rate", None)
        self._live_wire = encoding is not None and rate is not None
        try:
            self._live = await live.open(
                call_id=self.ctx.call_id,
                encoding=encoding if self._live_wire else "pcm16",
                sample_rate=rate if self._live_wire else self._cfg.sample_rate,
            )
        except Exception:
            self._metrics.engine_errors_total.labels("live_stt").inc()
            self._log.exception("live STT unavailable; using batch recognition for this call")
            self._live = None
            return
        self._live.on_endpoint(self._on_live_endpoint)

    async def close(self, reason: str) -> None:
        """End the call: stop every task, record what was heard. Safe to call many times and
        from inside the session's own tasks."""
        if self._closed:
            return
        self._closed = True
        reason = self._final_reason or reason
        self.end_reason = reason
        if self._dtmf_timer:
            self._dtmf_timer.cancel()
        if self._length_timer:
            self._length_timer.cancel()
        current = asyncio.current_task()
        if self._bot_turn is not None:
            # A reply still being produced was cut short even when every chunk sent so far
            # has played (the caller hung up between two chunks of a sentence).
            reply = self._reply_task
            cut_short = reply is not None and reply is not current and not reply.done()
            self._finish_bot_turn(interrupted=self._playout.speaking or cut_short)
        others = [t for t in self._tasks if t is not current and not t.done()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        if self._live is not None:
            live, self._live = self._live, None
            try:
                await live.aclose()
            except Exception:
                self._log.exception("closing live STT failed")
        self._metrics.calls_active.labels(self.ctx.ingress).dec()
        self._metrics.call_end_total.labels(reason).inc()
        self._observer.call_ended(self.ctx.call_id, _now(), reason, self.outcome)
        self._log.info("call ended: %s", reason)
        self.closed.set()

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def end_with_notice(self, text: str, reason: str, timeout_s: float = 15.0) -> None:
        """Stop whatever the bot is doing, say ``text``, hang up and close with ``reason``.

        For endings the caller did not choose (the server shutting down): they hear why
        instead of a dead line. The caller's input is ignored from now on, so the notice
        cannot be barged into; after ``timeout_s`` (a phone that never echoes marks) the
        call is hung up regardless."""
        if self._closed or self._ending:
            return
        self._ending = True
        self._final_reason = reason
        task, self._reply_task = self._reply_task, None
        if task is not None and not task.done():
            if self._playout.speaking:
                self._sink.clear()
            self._playout_flush_and_finish()
            task.cancel()

        async def notice() -> None:
            await self._speak(_single(TextChunk(text)), time.monotonic(), {}, kind="notice")
            await asyncio.sleep(0.2)  # the last syllable leaves the phone's jitter buffer
            await self._sink.hangup()
            await self.close(reason)

        self._reply_task = self._spawn(notice(), "notice")
        try:
            await asyncio.wait_for(self.closed.wait(), timeout_s)
        except TimeoutError:
            self._log.warning("final notice not heard within %.0f s; hanging up", timeout_s)
            await self._sink.hangup()
            await self.close(reason)

    # --- input from the transport ------------------------------------------------------------
    def feed_audio(self, pcm16: bytes, wire: bytes | None = None) -> None:
        """``pcm16`` at the pipeline rate for VAD; ``wire`` is the same audio as it came off
        the wire, passed on untouched to a live transcriber that accepts that format."""
        if self._closed or self._ending:
            return
        if self._live is not None:
            self._live.send(wire if self._live_wire and wire is not None else pcm16)
        buf = self._inbuf
        buf += pcm16
        self._in_bytes += len(pcm16)
        wb = self._window_bytes
        while len(buf) >= wb:
            window = bytes(buf[:wb])
            del buf[:wb]
            samples = np.frombuffer(window, dtype=np.int16).astype(np.float32)
            samples *= 1.0 / 32768.0
            prob = self._vad.probability(samples)
            self._utterance.add(window)
            event = self._detector.update(prob)
            if self._shadow is not None:
                self._shadow.on_window(self._detector, event, self._utterance)
            if event is not None:
                self._on_turn_event(event)
            elif (
                self._detector.speaking
                and self._utterance_over_reply
                and not self._barged_this_utterance
                and self._detector.speech_ms >= self._cfg.barge_in_min_ms
            ):
                self._barge_in()

    def feed_dtmf(self, digit: str) -> None:
        if self._closed or self._ending or digit not in DTMF_KEYS:
            return
        if self._over_turn_rate():
            return  # a keypad flood: keys are ignored (no barge-in) until a turn is allowed
        if self._reply_task is not None and not self._reply_task.done():
            self._barge_in()
        if digit == "#":
            self._fire_dtmf()
            return
        if len(self._dtmf) >= MAX_DTMF_DIGITS:  # a flood: the entry ends at # or the pause
            return
        self._dtmf += digit
        if self._dtmf_timer:
            self._dtmf_timer.cancel()
        loop = asyncio.get_running_loop()
        self._dtmf_timer = loop.call_later(self._cfg.dtmf_timeout_s, self._fire_dtmf)

    def mark_played(self, name: str) -> None:
        self._playout.played(name)

    # --- turn-taking -------------------------------------------------------------------------
    def _on_turn_event(self, event: TurnEvent) -> None:
        if event is TurnEvent.SPEECH_STARTED:
            self._utterance.begin(self._carry)
            self._carry = b""
            self._utterance_over_reply = (
                self._reply_task is not None and not self._reply_task.done()
            )
            self._barged_this_utterance = False
            if self._utterance_over_reply and self._cfg.barge_in_min_ms <= 0:
                self._barge_in()
        elif event is TurnEvent.PAUSED:
            self._cancel_speculation()
            if self._live is None and (
                not self._utterance_over_reply or self._barged_this_utterance
            ):
                audio = self._utterance.snapshot()
                self._spec_task = self._spawn(self._transcribe(audio), "stt-speculative")
        elif event is TurnEvent.RESUMED:
            self._cancel_speculation()
        elif event is TurnEvent.TURN_ENDED:
            # Each utterance starts from a fresh VAD state. Silero's recurrent state after a
            # long utterance does not decay over the silence that follows (digital or line
            # noise): a quiet "Sí." ten seconds later scored ~0 and was never heard, while a
            # fresh state scores it 0.6.
            self._vad.reset()
            silence_s = self._detector.silence_ms / 1000.0
            end_of_speech = time.monotonic() - silence_s
            reply_active = self._reply_task is not None and not self._reply_task.done()
            if self._utterance_over_reply and not self._barged_this_utterance and reply_active:
                if self._playout.speaking:
                    # "ajá", a cough, a short word while the bot talks: not a turn.
                    self._cancel_speculation()
                    self._utterance.discard()
                    if self._live is not None:
                        self._spawn(self._drop_live_text(), "live-drop")
                    self._log.debug(
                        "ignored %.0f ms of speech over the bot", self._detector.speech_ms
                    )
                    return
                # The bot had not started talking (or just finished): a real turn that
                # replaces (or, while transcribing, extends) the one being answered.
                self._barge_in()
            if not self._admit_turn():
                self._cancel_speculation()
                self._utterance.discard()
                if self._live is not None:
                    self._spawn(self._drop_live_text(), "live-drop")
                return
            audio = self._utterance.finish()
            spec, self._spec_task = self._spec_task, None
            at_ms = max(self._stream_ms() - len(audio) * 1000.0 / (2 * self._cfg.sample_rate), 0.0)
            self._start_reply(self._answer(audio, spec, end_of_speech, at_ms=at_ms))

    def _on_live_endpoint(self) -> None:
        """The STT provider thinks the utterance ended. Whichever of it and the VAD decides
        first ends the turn — but only if the VAD hears silence right now."""
        if self._closed or not self._detector.speaking:
            return
        if self._detector.silence_ms < self._cfg.live_endpoint_min_silence_ms:
            return
        event = self._detector.end_now()
        if event is not None:
            self._on_turn_event(event)

    async def _drop_live_text(self) -> None:
        if self._live is not None:
            try:
                await self._live.final_text(self._cfg.live_final_timeout_s)
            except Exception:
                pass

    def _barge_in(self) -> None:
        """The caller talks over the bot: stop talking now, remember only what was heard."""
        self._barged_this_utterance = True
        task = self._reply_task
        if task is None or task.done():
            return
        if self._reply_stage == "stt":
            # The caller had not finished: their next words continue the same utterance.
            self._utterance.prepend(self._reply_audio)
        was_speaking = self._playout.speaking
        if was_speaking:
            self._sink.clear()
            self._metrics.barge_ins_total.inc()
        self._playout_flush_and_finish()
        task.cancel()
        self._reply_task = None
        self._reply_stage = "idle"
        self._log.info("barge-in (bot was %s)", "speaking" if was_speaking else "thinking")

    def _playout_flush_and_finish(self) -> None:
        if self._bot_turn is not None:
            self._finish_bot_turn(interrupted=True)
        self._playout.flush()

    def _fire_dtmf(self) -> None:
        if self._dtmf_timer:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        digits, self._dtmf = self._dtmf, ""
        if self._closed or not digits or not self._admit_turn():
            return
        self._start_reply(self._answer(b"", None, time.monotonic(), dtmf=digits))

    def _admit_turn(self) -> bool:
        """Whether one more caller turn may be answered (and stored). Past the per-call cap
        the call ends with a notice; beyond the rate the turn is ignored and counted."""
        if self._ending or self._closed:
            return False
        cfg = self._cfg
        if cfg.max_turns and self._caller_turns >= cfg.max_turns:
            self._end_for_limit(TOO_MANY_TURNS, "max-turns")
            return False
        if self._over_turn_rate():
            return False
        if cfg.turns_per_s > 0:
            self._turn_tokens -= 1.0
        self._caller_turns += 1
        return True

    def _over_turn_rate(self) -> bool:
        """True (and counted) when the caller has used up its turns per second."""
        cfg = self._cfg
        if cfg.turns_per_s <= 0:
            return False
        now = time.monotonic()
        elapsed = now - self._turn_tokens_at
        self._turn_tokens = min(cfg.turn_burst, self._turn_tokens + elapsed * cfg.turns_per_s)
        self._turn_tokens_at = now
        if self._turn_tokens >= 1.0:
            return False
        self._turns_refused += 1
        self._metrics.turns_refused_total.labels("rate").inc()
        if self._turns_refused in (1, 10) or self._turns_refused % 1000 == 0:
            self._log.warning(
                "caller input beyond %.1f turns per second ignored (%d so far)",
                cfg.turns_per_s,
                self._turns_refused,
            )
        return True

    def _end_for_limit(self, notice: str, reason: str) -> None:
        """A bound of the call was reached: say why, hang up, close with ``reason``."""
        if self._ending or self._closed:
            return
        self._metrics.turns_refused_total.labels(reason).inc()
        self._log.warning("ending the call: %s", reason)
        self._spawn(self.end_with_notice(notice, reason), reason)

    def _cancel_speculation(self) -> None:
        if self._spec_task is not None:
            self._spec_task.cancel()
            self._spec_task = None

    # --- replies -----------------------------------------------------------------------------
    def _start_reply(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            coro.close()
            return
        if self._reply_task is not None and not self._reply_task.done():
            self._barge_in()
        self._reply_task = self._spawn(coro, "reply")

    async def _greeting(self) -> None:
        t0 = self._greeting_t0 or time.monotonic()
        text = await self._engines.brain.greeting(self.ctx)
        await self._speak(_single(TextChunk(text)), t0, {}, kind="greeting")

    async def _transcribe(self, audio: bytes) -> Transcript:
        return await self._engines.stt.transcribe(audio, self._cfg.sample_rate)

    async def _recognise(self, audio: bytes) -> Transcript:
        """Live transcript when there is one; batch recognition of the buffered utterance
        when the live provider fails or is late, so the turn is never lost."""
        if self._live is not None:
            try:
                return await self._live.final_text(self._cfg.live_final_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.engine_errors_total.labels("live_stt").inc()
                self._log.warning("live STT failed (%s); transcribing this turn locally", exc)
                transcript = await self._transcribe(audio)
                live_name = getattr(self._engines.live_stt, "name", "live")
                self._metrics.provider_failovers_total.labels(
                    "stt", live_name, transcript.provider
                ).inc()
                return transcript
        return await self._transcribe(audio)

    async def _answer(
        self,
        audio: bytes,
        spec: asyncio.Task[Transcript] | None,
        end_of_speech: float,
        dtmf: str = "",
        at_ms: float | None = None,
    ) -> None:
        turn_end = time.monotonic()
        timings: dict[str, float] = {"endpoint_ms": (turn_end - end_of_speech) * 1000}
        text = ""
        if audio:
            self._reply_stage = "stt"
            self._reply_audio = audio
            try:
                transcript = await (spec if spec is not None else self._recognise(audio))
            except asyncio.CancelledError:
                raise
            except Exception:
                self._metrics.engine_errors_total.labels("stt").inc()
                self._log.exception("speech recognition failed")
                await self._speak(_single(TextChunk(SORRY_NOT_UNDERSTOOD)), end_of_speech, timings)
                return
            timings["stt_ms"] = transcript.elapsed_s * 1000
            timings[f"stt_ms.{transcript.provider}"] = transcript.elapsed_s * 1000
            timings["stt_wait_ms"] = (time.monotonic() - turn_end) * 1000
            timings["speculative"] = 1.0 if spec is not None else 0.0
            self._metrics.stage_seconds.labels("stt").observe(transcript.elapsed_s)
            text = transcript.text.strip()
            if not text:
                self._log.info("no words recognised in %.1f s of audio", transcript.audio_s)
                if not self._may_answer_unheard(audio):
                    self._reply_stage = "idle"
                    return
            else:
                self._unheard_in_row = 0
        self._reply_stage = "brain"
        self._reply_audio = b""
        wall_end = _now()
        shadow = (
            self._shadow.turn_text(text, timings.get("endpoint_ms"), self.ctx.history)
            if self._shadow is not None and audio
            else {}
        )
        # When the caller started speaking (the utterance's audio, back from its end), so a
        # recording can be lined up with the transcript; ended_at stays "turn recorded".
        audio_s = len(audio) / 2 / self._cfg.sample_rate
        spoke_at = wall_end - timedelta(seconds=time.monotonic() - end_of_speech + audio_s)
        self._record(
            TurnRecord(
                seq=self._next_seq(),
                speaker="caller",
                text=text,
                heard_text=text,
                interrupted=False,
                started_at=spoke_at,
                ended_at=wall_end,
                timings={
                    "audio_ms": len(audio) / 2 / self._cfg.sample_rate * 1000,
                    **({"stream_at_ms": at_ms} if at_ms is not None else {}),
                    **({"unheard": 1.0} if not text and not dtmf else {}),
                    **shadow,
                },
                dtmf=dtmf,
            )
        )
        self._metrics.turns_total.labels("caller").inc()
        self.ctx.history.append(Message("user", text if not dtmf else f"{text} [DTMF: {dtmf}]"))
        self._log.info("caller: %s%s", text, f" [DTMF {dtmf}]" if dtmf else "")
        try:
            outputs = self._engines.brain.respond(self.ctx, UserInput(text=text, dtmf=dtmf))
            await self._speak(outputs, end_of_speech, timings)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._metrics.engine_errors_total.labels("brain").inc()
            self._log.exception("the brain failed")
            if self._bot_turn is None and not self._closed:
                await self._speak(_single(TextChunk(SORRY_PROBLEM)), end_of_speech, timings)

    def _may_answer_unheard(self, audio: bytes) -> bool:
        """Whether a turn of speech without recognisable words goes to the brain.

        A caller whose "Sí" is lost on a bad line must not be met with silence: a brain that
        opts in (``answers_unheard``) says it did not hear and asks again, shorter. A short
        blip (a click) is ignored, and after ``unheard_max_in_row`` such turns in a
        row the session stays quiet, so line noise cannot make the bot talk in a loop.
        """
        if not getattr(self._engines.brain, "answers_unheard", False):
            return False
        speech_ms = len(audio) / 2 / self._cfg.sample_rate * 1000 - 2 * self._cfg.speech_pad_ms
        if speech_ms < self._cfg.unheard_min_speech_ms:
            return False
        if self._unheard_in_row >= self._cfg.unheard_max_in_row:
            return False
        self._unheard_in_row += 1
        return True

    async def _speak(
        self,
        outputs: AsyncIterator[BrainOutput],
        t0: float,
        timings: dict[str, float],
        *,
        kind: str = "reply",
    ) -> None:
        """Stream a reply: sentences go to TTS as soon as they are complete, audio goes out as
        soon as it exists; then wait until the caller has heard it all."""
        turn = _BotTurn(seq=self._next_seq(), started_at=_now(), t0=t0, timings=timings, kind=kind)
        self._bot_turn = turn
        self._playout.start_reply()
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        actions: list[EndCall | Transfer] = []
        brain_t0 = time.monotonic()

        def queue_sentence(sentence: str) -> None:
            if "brain_first_sentence_ms" not in turn.timings:
                turn.timings["brain_first_sentence_ms"] = (time.monotonic() - brain_t0) * 1000
            sentences.put_nowait(sentence)

        async def produce() -> None:
            splitter = SentenceSplitter()
            first = True
            try:
                async for out in outputs:
                    if isinstance(out, TextChunk):
                        if first and out.text.strip():
                            first = False
                            dt = time.monotonic() - brain_t0
                            turn.timings["brain_first_text_ms"] = dt * 1000
                            self._metrics.stage_seconds.labels("brain_first_text").observe(dt)
                        for sentence in splitter.push(out.text):
                            queue_sentence(sentence)
                    elif isinstance(out, ToolEvent):
                        turn.tools.append(
                            {"name": out.name, "arguments": out.arguments, "result": out.result}
                        )
                    elif isinstance(out, EndCall | Transfer):
                        actions.append(out)
                for sentence in splitter.flush():
                    queue_sentence(sentence)
            finally:
                sentences.put_nowait(None)

        self._reply_stage = "speaking"
        producer = asyncio.create_task(produce(), name=f"brain-{self.ctx.call_id}")
        try:
            while (sentence := await sentences.get()) is not None:
                await self._speak_sentence(sentence, turn)
            await producer
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)

        heard_all = await self._playout.wait_idle(
            self._playout.unplayed_s + self._cfg.playback_grace_s
        )
        if not heard_all:
            self._log.warning("no mark echo for the end of the reply; assuming it was heard")
        if self._bot_turn is turn:
            self._finish_bot_turn(interrupted=False)
        self._reply_stage = "idle"
        for action in actions:
            await self._act(action)

    async def _speak_sentence(self, sentence: str, turn: _BotTurn) -> None:
        start, end = self._playout.add_text(sentence)
        est_s = max(len(sentence) / 14.0, 0.3)  # eSpeak es-419 at 165 wpm ≈ 14 chars/s
        rate = self._out_rate
        tts_t0 = time.monotonic()
        pending = bytearray()
        sent_s = 0.0
        first_audio = "tts_first_audio_ms" not in turn.timings

        def emit(piece: bytes, last: bool) -> None:
            nonlocal sent_s
            dur = len(piece) / self._out_bps
            sent_s += dur
            text_end = end if last else start + int((end - start) * min(sent_s / est_s, 0.95))
            mark = f"{turn.seq}.{self._chunk_counter()}"
            self._playout.add_chunk(mark, text_end, dur)
            on_sent = None
            if not turn.audio_sent:
                turn.audio_sent = True
                turn.timings["stream_at_ms"] = self._stream_ms()
                on_sent = self._first_byte_callback(turn)
            self._sink.send_audio(piece, mark, on_sent)

        try:
            async for pcm in synthesize_as(
                self._engines.tts,
                sentence,
                rate,
                self._out_encoding,
                on_first_audio=lambda provider, ttfb: self._tts_served(turn, provider, ttfb),
            ):
                if first_audio:
                    first_audio = False
                    dt = time.monotonic() - tts_t0
                    turn.timings["tts_first_audio_ms"] = dt * 1000
                    self._metrics.stage_seconds.labels("tts_first_audio").observe(dt)
                pending += pcm
                while len(pending) > self._chunk_bytes:
                    emit(bytes(pending[: self._chunk_bytes]), last=False)
                    del pending[: self._chunk_bytes]
        except asyncio.CancelledError:
            raise
        except Exception:
            self._metrics.engine_errors_total.labels("tts").inc()
            self._log.exception("speech synthesis failed for %r", sentence[:80])
            return
        if pending:
            emit(bytes(pending), last=True)

    def _tts_served(self, turn: _BotTurn, provider: str, ttfb_s: float) -> None:
        """A provider chain says who spoke this sentence and how fast: per-turn record."""
        key = f"tts_ttfb_ms.{provider}"
        turn.timings.setdefault(key, ttfb_s * 1000)

    def _first_byte_callback(self, turn: _BotTurn) -> Callable[[float], None]:
        def on_sent(t: float) -> None:
            turn.first_byte_at = t
            latency = t - turn.t0
            turn.timings["first_byte_ms"] = latency * 1000
            if turn.kind == "greeting":
                self._metrics.greeting_seconds.observe(latency)
            elif turn.kind == "reply":
                self._metrics.turn_latency_seconds.observe(latency)
                overhead_ms = pipeline_overhead_ms(turn.timings)
                if overhead_ms is not None:
                    turn.timings["overhead_ms"] = overhead_ms
                    self._metrics.stage_seconds.labels("overhead").observe(overhead_ms / 1000)

        return on_sent

    def _stream_ms(self) -> float:
        """Milliseconds of caller audio received so far."""
        return self._in_bytes * 1000.0 / (2 * self._cfg.sample_rate)

    def _chunk_counter(self) -> int:
        self._chunk_n += 1
        return self._chunk_n

    def _finish_bot_turn(self, *, interrupted: bool) -> None:
        turn, self._bot_turn = self._bot_turn, None
        if turn is None:
            return
        text = self._playout.text
        if not text:
            return
        heard = self._playout.heard_text() if interrupted else text
        self._record(
            TurnRecord(
                seq=turn.seq,
                speaker="bot",
                text=text,
                heard_text=heard,
                interrupted=interrupted,
                started_at=turn.started_at,
                ended_at=_now(),
                timings=dict(turn.timings),
                tools=list(turn.tools),
            )
        )
        self._metrics.turns_total.labels("bot").inc()
        if heard:
            self.ctx.history.append(Message("assistant", heard, interrupted=interrupted))
        self._log.info(
            "bot%s: %s | %s",
            " (interrupted)" if interrupted else "",
            heard or "…",
            " ".join(f"{k}={v:.0f}" for k, v in turn.timings.items()),
        )

    async def _act(self, action: EndCall | Transfer) -> None:
        if isinstance(action, EndCall):
            self.outcome = self.outcome or action.reason
            await asyncio.sleep(0.2)  # let the last syllable leave the phone's jitter buffer
            self._final_reason = "bot-hangup"
            await self._sink.hangup()
            await self.close("bot-hangup")
            return
        self._final_reason = "transfer"
        self.outcome = "transferred"
        if await self._sink.transfer(action.target):
            await self.close("transfer")
            return
        self._final_reason = None
        self.outcome = None
        await self._speak(
            _single(TextChunk(SORRY_NO_TRANSFER)), time.monotonic(), {}, kind="notice"
        )

    # --- helpers -----------------------------------------------------------------------------
    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _record(self, turn: TurnRecord) -> None:
        self._observer.turn_ended(self.ctx.call_id, turn)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{name}-{self.ctx.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and task is not self._spec_task:
            self._log.error("task %s failed", task.get_name(), exc_info=exc)


async def _single(item: BrainOutput) -> AsyncIterator[BrainOutput]:
    yield item


def pipeline_overhead_ms(timings: dict[str, float]) -> float | None:
    """End of turn → first byte on the wire, minus the time spent waiting for engines
    (STT after the turn ended, the brain's first sentence, TTS's first audio): what TAINA's
    own plumbing costs a turn. None when a stage is missing (e.g. an interrupted reply)."""
    try:
        total = timings["first_byte_ms"] - timings["endpoint_ms"]
        engines = timings["brain_first_sentence_ms"] + timings["tts_first_audio_ms"]
    except KeyError:
        return None
    return max(total - engines - timings.get("stt_wait_ms", 0.0), 0.0)


def _now() -> datetime:
    return datetime.now(UTC)
