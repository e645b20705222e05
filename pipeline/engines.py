"""The narrow interfaces every speech engine implements.

The CallSession only ever talks to these, so an embedded engine and a cloud provider are
interchangeable. Audio crossing these interfaces is PCM16 little-endian mono bytes.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from telephony.audio_codec import pcm16_to_mulaw

# How audio crosses an interface: 16-bit linear PCM, or G.711 mu-law (one byte per sample),
# which phone transports speak natively and some TTS providers can produce directly.
AudioEncoding = Literal["pcm16", "mulaw"]


def bytes_per_sample(encoding: AudioEncoding) -> int:
    return 1 if encoding == "mulaw" else 2


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_s: float  # duration of the audio that was transcribed
    elapsed_s: float  # wall time the engine took
    provider: str = "whisper"
    extra: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class VadStream(Protocol):
    """Per-call voice activity state (Silero keeps a recurrent state per stream)."""

    sample_rate: int
    window_samples: int

    def probability(self, window: np.ndarray) -> float:
        """Speech probability of exactly ``window_samples`` float32 samples in [-1, 1]."""
        ...

    def reset(self) -> None: ...


class VadModel(Protocol):
    """A loaded VAD model shared by all calls; hands out per-call streams."""

    def stream(self, sample_rate: int) -> VadStream: ...


class SpeechToText(Protocol):
    name: str

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        """Transcribe one finished utterance. Must not block the event loop."""
        ...


class LiveTranscriber(Protocol):
    """One call's streaming recognition session (e.g. Deepgram live): audio goes in as it
    arrives, so the transcript is ready the moment the turn ends."""

    def send(self, audio: bytes) -> None:
        """Queue audio in the format the transcriber was opened with. Never blocks."""
        ...

    def on_endpoint(self, callback: Callable[[], None]) -> None:
        """Register what to call when the provider detects the end of an utterance."""
        ...

    async def final_text(self, timeout: float) -> Transcript:
        """Finalize and return everything recognised since the previous call. Raises on
        failure or timeout, so the session can fall back to batch recognition."""
        ...

    async def aclose(self) -> None: ...


class LiveSpeechToText(Protocol):
    name: str

    async def open(
        self, *, call_id: str, encoding: AudioEncoding, sample_rate: int
    ) -> LiveTranscriber: ...


# Called by a TTS engine when the first audio of a sentence exists: (provider name, seconds
# from the request to that audio). A failover chain reports the provider that actually served.
FirstAudioReport = Callable[[str, float], None]


class TextToSpeech(Protocol):
    """``synthesize`` yields PCM16. A provider that can produce other encodings directly
    (ElevenLabs' ``ulaw_8000``) lists them in ``native_encodings`` and accepts an
    ``encoding=`` keyword; ``synthesize_as`` picks the cheapest path. An engine that sets
    ``reports_first_audio = True`` accepts an ``on_first_audio=`` keyword (FirstAudioReport).
    """

    name: str

    def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Yield PCM16 mono chunks at ``sample_rate`` as soon as they exist.

        Must not block the event loop; cancellation of the consumer must stop the work.
        """
        ...


async def synthesize_as(
    tts: TextToSpeech,
    text: str,
    sample_rate: int,
    encoding: AudioEncoding,
    on_first_audio: FirstAudioReport | None = None,
) -> AsyncIterator[bytes]:
    """Speech in the transport's own format: natively when the engine can, else converted
    chunk by chunk (mu-law encoding is stateless, so chunk boundaries do not matter)."""
    kwargs: dict[str, object] = {}
    if on_first_audio is not None and getattr(tts, "reports_first_audio", False):
        kwargs["on_first_audio"] = on_first_audio
    native = encoding == "pcm16" or encoding in getattr(tts, "native_encodings", ())
    if native and encoding != "pcm16":
        kwargs["encoding"] = encoding
    async for chunk in tts.synthesize(text, sample_rate, **kwargs):  # type: ignore[call-arg]
        yield chunk if native else pcm16_to_mulaw(chunk)


# --- fair shared engines ---------------------------------------------------------------------

T = TypeVar("T")

# The call whose work the current task does. Set once by the transport when the call starts
# (``bind_call``); every task the session spawns from there copies it, so engines learn which
# call asks without the interfaces carrying it.
_CURRENT_CALL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "taina_call_id", default=None
)


def bind_call(call_id: str) -> None:
    """Engine requests made from this task (and tasks it spawns) belong to ``call_id``."""
    _CURRENT_CALL.set(call_id)


def current_call() -> str | None:
    return _CURRENT_CALL.get()


class EngineBusy(RuntimeError):
    """A call asked for more queued work than its bound: refused, the other calls go on."""


@dataclass
class _Usage:
    busy_s: float = 0.0  # recent engine time, decaying with ``half_life_s``
    at: float = 0.0
    running: int = 0
    waiting: int = 0


class FairGate:
    """Admission to a shared engine of ``capacity`` workers, fair between calls.

    A single queue in arrival order lets one caller's backlog (a client feeding utterance
    after utterance) sit in front of every other caller's turn: measured, a healthy turn
    waited 15 s for Whisper behind a flood. Here a free worker goes to the waiting request
    whose call has used the engine least lately (busy time decaying with ``half_life_s``),
    arrival order breaking ties — a caller who speaks now and then is served next, whatever
    another call has queued. And each call may have at most ``max_waiting_per_call``
    requests waiting (more: :class:`EngineBusy`), so one call's backlog stays bounded.

    Requests without a call (warm-up, tests, tools) share one anonymous account, with no
    bound on how many wait.
    """

    def __init__(
        self,
        name: str,
        capacity: int = 1,
        *,
        max_waiting_per_call: int = 2,
        half_life_s: float = 20.0,
        metrics: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.capacity = max(1, int(capacity))
        self.max_waiting = max(1, int(max_waiting_per_call))
        self._decay = math.log(2) / max(half_life_s, 1e-3)
        self.metrics = metrics  # PipelineMetrics, attached when the app builds its services
        self._clock = clock
        self._running = 0
        self._usage: dict[str, _Usage] = {}
        self._waiters: list[tuple[float, int, str, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._waiters if not fut.done())

    def _recent(self, usage: _Usage, now: float) -> float:
        usage.busy_s *= math.exp(-self._decay * max(0.0, now - usage.at))
        usage.at = now
        return usage.busy_s

    async def _acquire(self, call_id: str | None) -> tuple[str, _Usage, float]:
        """Wait for a worker, fairly; returns what :meth:`_finish` needs."""
        bound = call_id or current_call()
        key = bound or "-"
        usage = self._usage.setdefault(key, _Usage(at=self._clock()))
        t0 = self._clock()
        if self._running >= self.capacity or self._waiters:
            if bound is not None and usage.waiting >= self.max_waiting:
                if self.metrics is not None:
                    self.metrics.engine_shed_total.labels(self.name).inc()
                raise EngineBusy(f"{self.name}: call {key} already has {usage.waiting} queued")
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            # Priority is fixed at arrival: recent use, plus what this call already runs.
            priority = self._recent(usage, t0) + usage.running * 1000.0
            heapq.heappush(self._waiters, (priority, next(self._seq), key, fut))
            usage.waiting += 1
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._release()  # granted and cancelled in the same instant: pass it on
                else:
                    fut.cancel()
                    self._waiters = [w for w in self._waiters if w[3] is not fut]
                    heapq.heapify(self._waiters)
                raise
            finally:
                usage.waiting -= 1
        else:
            self._running += 1
        usage.running += 1
        started = self._clock()
        if self.metrics is not None:
            self.metrics.engine_wait_seconds.labels(self.name).observe(started - t0)
        return key, usage, started

    def _finish(self, key: str, usage: _Usage, started: float) -> None:
        now = self._clock()
        self._recent(usage, now)
        usage.busy_s += now - started
        usage.running -= 1
        self._release()
        if usage.running == 0 and usage.waiting == 0 and usage.busy_s < 1e-3:
            self._usage.pop(key, None)
        self._forget_idle(now)

    @asynccontextmanager
    async def slot(self, call_id: str | None = None) -> AsyncIterator[None]:
        """Hold one worker for the body (work the awaiting task itself does)."""
        grant = await self._acquire(call_id)
        try:
            yield
        finally:
            self._finish(*grant)

    async def run(self, executor: Executor, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in ``executor`` once a worker is granted. A thread cannot be
        stopped: when the caller is cancelled mid-run the worker stays taken (and its time
        is billed to the call) until the thread is done, so a call whose requests are always
        abandoned cannot make its use look small. Not yet started, it is simply dropped."""
        loop = asyncio.get_running_loop()
        grant = await self._acquire(None)
        try:
            job = executor.submit(fn, *args)
        except BaseException:
            self._finish(*grant)
            raise

        def done(_: object) -> None:
            try:
                loop.call_soon_threadsafe(self._finish, *grant)
            except RuntimeError:  # the loop is gone (shutdown): nothing left to schedule
                pass

        job.add_done_callback(done)
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        """A worker is free: hand it to the best waiter still waiting, else count it free."""
        while self._waiters:
            *_, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the worker passes straight to it
                return
        self._running -= 1

    def _forget_idle(self, now: float) -> None:
        """Calls that no longer use the engine are forgotten once their use has decayed, so
        the table stays as small as the set of recent callers."""
        if len(self._usage) < 64:
            return
        for key, usage in list(self._usage.items()):
            if usage.running == 0 and usage.waiting == 0 and self._recent(usage, now) < 1e-3:
                del self._usage[key]


class FairBrain:
    """A brain whose every step — the work up to its next output — holds a worker of a
    :class:`FairGate`, so one call's turns cannot take all the brain's CPU (retrieval in the
    thread pool, intent matching on the loop) while another caller waits for a reply.

    For brains that compute locally (the offline dialogue engine); an LLM's steps wait on the
    network and must not hold a worker. Every other attribute is the inner brain's.
    """

    def __init__(self, inner: Any, gate: FairGate) -> None:
        self._inner = inner
        self.gate = gate

    @property
    def name(self) -> str:
        return str(getattr(self._inner, "name", type(self._inner).__name__))

    async def greeting(self, ctx: Any) -> str:
        return str(await self._inner.greeting(ctx))

    async def respond(self, ctx: Any, user: Any) -> AsyncIterator[Any]:
        steps = self._inner.respond(ctx, user)
        try:
            while True:
                async with self.gate.slot():
                    try:
                        item = await steps.__anext__()
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            close = getattr(steps, "aclose", None)
            if close is not None:
                await close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
