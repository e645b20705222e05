"""Call recordings: off by default, and only ever with a consent notice first.

The original design keeps no conversation audio. With ``TAINA_RECORD_CALLS=true`` every call
opens with :data:`CONSENT_NOTICE` (prepended to the greeting by :func:`with_consent_notice`, so
the notice is also in the transcript as proof it was played) and both directions are saved as
one stereo WAV per call: caller on the left, assistant on the right, 16-bit PCM at 8 kHz (the
phone's own bandwidth; browsers play it natively). It goes to a Supabase Storage bucket when
``TAINA_RECORDINGS_BUCKET`` is set, otherwise to ``{data_dir}/recordings/``; if the upload
fails the file is kept in the data dir instead, so audio is never silently lost.

Recording taps the call at its edges without touching the session's code:
:func:`with_recording` wraps a transport's session factory, giving the session a sink that
copies what is sent to the caller and returning a session proxy that copies what the caller
sends. Bot audio is laid on the caller's timeline (the inbound stream is real-time paced) and
cut at a barge-in ``clear``, so the file sounds like what the caller heard.

Nothing here runs on the caller's time: the WAV is assembled in a worker thread and stored
after the call has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import wave
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.brain.base import Brain, CallContext, UserInput
from telephony.audio_codec import StreamResampler, mulaw_to_pcm16

log = logging.getLogger("taina.recordings")

# What the caller hears first when recording is on (Dominican Spanish, "usted").
CONSENT_NOTICE = (
    "Le informamos que esta llamada será grabada para fines de calidad y seguridad. "
    "Si no está de acuerdo, puede colgar en cualquier momento."
)

RECORDING_RATE = 8000
MAX_RECORDING_S = 2 * 3600  # a runaway call stops being recorded, not the server's memory
CONTENT_TYPE = "audio/wav"

SessionFactory = Callable[..., Awaitable[Any]]
OnSaved = Callable[[str, dict[str, Any]], Awaitable[None]]


# --- consent ----------------------------------------------------------------------------------


class ConsentBrain:
    """A brain whose greeting starts with the recording notice; everything else is the inner
    brain's."""

    def __init__(self, inner: Brain, notice: str = CONSENT_NOTICE) -> None:
        self._inner = inner
        self.notice = notice

    @property
    def name(self) -> str:
        return self._inner.name

    async def greeting(self, ctx: CallContext) -> str:
        return f"{self.notice} {await self._inner.greeting(ctx)}"

    def respond(self, ctx: CallContext, user: UserInput) -> Any:
        return self._inner.respond(ctx, user)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def with_consent_notice(brain: Brain, notice: str = CONSENT_NOTICE) -> Brain:
    """The brain to use when calls are recorded. Idempotent."""
    if isinstance(brain, ConsentBrain):
        return brain
    return ConsentBrain(brain, notice)  # type: ignore[return-value]


# --- the audio of one call --------------------------------------------------------------------


class CallAudio:
    """Both directions of one call as PCM16 mono tracks at ``rate``, kept in memory (≈ 32 kB
    per second of call at 8 kHz) until the call ends."""

    def __init__(self, rate: int = RECORDING_RATE, max_s: float = MAX_RECORDING_S) -> None:
        self.rate = rate
        self.call_sid: str | None = None
        self._max_bytes = int(max_s * rate) * 2
        self._in = bytearray()
        self._out = bytearray()
        self._resamplers: dict[tuple[str, int], StreamResampler] = {}
        self.truncated = False
        # Wall-clock time of the file's first sample: the call review lines turns up with the
        # audio by their own timestamps minus this.
        self.started_at: datetime | None = None

    def _pcm(self, direction: str, data: bytes, rate: int, encoding: str) -> bytes:
        if self.started_at is None:
            self.started_at = datetime.now(UTC)
        pcm = mulaw_to_pcm16(data) if encoding == "mulaw" else data
        if rate == self.rate:
            return pcm
        key = (direction, rate)
        resampler = self._resamplers.get(key)
        if resampler is None:
            resampler = self._resamplers[key] = StreamResampler(rate, self.rate)
        return resampler.process(pcm)

    def _full(self) -> bool:
        if len(self._in) >= self._max_bytes or len(self._out) >= self._max_bytes:
            self.truncated = True
        return self.truncated

    def add_inbound(self, data: bytes, rate: int, encoding: str = "pcm16") -> None:
        if not data or self._full():
            return
        self._in += self._pcm("in", data, rate, encoding)

    def add_outbound(self, data: bytes, rate: int, encoding: str = "pcm16") -> None:
        """Bot audio starts where the caller's timeline is now, or after the bot audio still
        queued before it, whichever is later."""
        if not data or self._full():
            return
        pcm = self._pcm("out", data, rate, encoding)
        gap = len(self._in) - len(self._out)
        if gap > 0:
            self._out += bytes(gap - gap % 2)
        self._out += pcm

    def clear(self) -> None:
        """Barge-in: bot audio not yet played at this point was never heard."""
        if len(self._out) > len(self._in):
            del self._out[len(self._in) - len(self._in) % 2 :]
        for (direction, _rate), resampler in self._resamplers.items():
            if direction == "out":
                resampler.reset()

    @property
    def seconds(self) -> float:
        return max(len(self._in), len(self._out)) / 2 / self.rate

    def to_wav(self) -> bytes:
        """Stereo WAV, caller left and bot right. CPU work: call it in a worker thread."""
        left = np.frombuffer(bytes(self._in), dtype=np.int16)
        right = np.frombuffer(bytes(self._out), dtype=np.int16)
        n = max(len(left), len(right))
        frames = np.zeros((n, 2), dtype=np.int16)
        frames[: len(left), 0] = left
        frames[: len(right), 1] = right
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(frames.tobytes())
        return buf.getvalue()


# --- taps on the call's edges -----------------------------------------------------------------


class RecordingSink:
    """The session's ``AudioSink``, with a copy of everything sent to the caller."""

    def __init__(self, inner: Any, audio: CallAudio, default_rate: int = 16000) -> None:
        self._inner = inner
        self._audio = audio
        self._rate = int(getattr(inner, "output_rate", default_rate))
        self._encoding = str(getattr(inner, "output_encoding", "pcm16"))

    def send_audio(self, pcm16: bytes, mark: str, on_sent: Any = None) -> None:
        self._audio.add_outbound(pcm16, self._rate, self._encoding)
        self._inner.send_audio(pcm16, mark, on_sent)

    def clear(self) -> None:
        self._audio.clear()
        self._inner.clear()

    async def hangup(self) -> None:
        await self._inner.hangup()

    async def transfer(self, target: str | None) -> bool:
        return await self._inner.transfer(target)

    def __getattr__(self, name: str) -> Any:  # output_rate, input_encoding, describe(), …
        return getattr(self._inner, name)


class RecordingSession:
    """The session as the transport sees it, with a copy of what the caller says. Stores the
    recording once the session has closed, however it closed."""

    def __init__(
        self,
        session: Any,
        audio: CallAudio,
        recordings: Recordings,
        *,
        pipeline_rate: int,
        wire_rate: int | None = None,
        wire_encoding: str | None = None,
    ) -> None:
        self._session = session
        self._audio = audio
        self._pipeline_rate = pipeline_rate
        self._wire_rate = wire_rate
        self._wire_encoding = wire_encoding
        recordings._watch(session, audio)

    def feed_audio(self, pcm16: bytes, wire: bytes | None = None) -> None:
        if wire is not None and self._wire_rate and self._wire_encoding:
            self._audio.add_inbound(wire, self._wire_rate, self._wire_encoding)
        else:
            self._audio.add_inbound(pcm16, self._pipeline_rate)
        self._session.feed_audio(pcm16, wire)

    def __getattr__(self, name: str) -> Any:  # start, close, feed_dtmf, is_closed, ctx, …
        return getattr(self._session, name)


def with_recording(make: SessionFactory, recordings: Recordings) -> SessionFactory:
    """Wrap a transport's session factory ``make(x, sink) -> CallSession | None`` so every
    session it builds is recorded."""

    async def make_recorded(first: Any, sink: Any, *args: Any, **kwargs: Any) -> Any:
        audio = recordings.begin()
        session = await make(first, RecordingSink(sink, audio, recordings.pipeline_rate))
        if session is None:
            return None
        audio.call_sid = session.ctx.call_id
        return RecordingSession(
            session,
            audio,
            recordings,
            pipeline_rate=recordings.pipeline_rate,
            wire_rate=getattr(sink, "input_rate", None),
            wire_encoding=getattr(sink, "input_encoding", None),
        )

    return make_recorded


# --- where recordings go ----------------------------------------------------------------------


class RecordingStore(Protocol):
    name: str

    async def save(self, name: str, data: bytes) -> dict[str, Any]: ...

    async def load(self, name: str) -> bytes | None: ...

    async def aclose(self) -> None: ...


class FileRecordingStore:
    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def save(self, name: str, data: bytes) -> dict[str, Any]:
        path = self.directory / name
        await asyncio.to_thread(_write_atomic, path, data)
        return {"store": self.name, "path": str(path)}

    async def load(self, name: str) -> bytes | None:
        path = self.directory / name
        return await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)

    async def aclose(self) -> None:
        pass


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.chmod(0o600)  # conversation audio: readable by the service only
    tmp.replace(path)


class SupabaseRecordingStore:
    """A Supabase Storage bucket, through the ``storage3`` client that ``supabase`` uses for
    ``client.storage`` (``from_(bucket).upload``). Needs the service-role key: the bucket
    should be private, and the dashboard gets audio through the API, never straight from the
    bucket."""

    name = "supabase"

    def __init__(
        self,
        supabase_url: str,
        key: str,
        bucket: str,
        *,
        client: Any = None,
        http_client: Any = None,
    ) -> None:
        self.bucket = bucket
        self._client = client
        if client is None:
            from storage3 import AsyncStorageClient

            self._client = AsyncStorageClient(
                f"{supabase_url.rstrip('/')}/storage/v1/",
                {"apiKey": key, "Authorization": f"Bearer {key}"},
                http_client=http_client,
            )
        # A supabase AsyncClient works too: its storage client is the one we need.
        self._storage = getattr(self._client, "storage", self._client)

    async def save(self, name: str, data: bytes) -> dict[str, Any]:
        await self._storage.from_(self.bucket).upload(
            name, data, {"content-type": CONTENT_TYPE, "upsert": "true"}
        )
        return {"store": self.name, "bucket": self.bucket, "path": name}

    async def load(self, name: str) -> bytes | None:
        from storage3.exceptions import StorageApiError

        try:
            return await self._storage.from_(self.bucket).download(name)
        except StorageApiError as exc:
            # Supabase answers a missing object with statusCode "404" (over HTTP 400 or 404).
            if str(getattr(exc, "status", "")) == "404":
                return None
            raise

    async def aclose(self) -> None:
        session = getattr(self._storage, "session", None)
        if session is not None:
            await session.aclose()


# --- the service ------------------------------------------------------------------------------


def recording_name(call_sid: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", call_sid)[:120] or "call"
    return f"{safe}.wav"


class Recordings:
    def __init__(
        self,
        store: RecordingStore,
        *,
        fallback: RecordingStore | None = None,
        pipeline_rate: int = 16000,
        rate: int = RECORDING_RATE,
        max_s: float = MAX_RECORDING_S,
        on_saved: OnSaved | None = None,
        attempts: int = 3,
        retry_s: float = 1.0,
    ) -> None:
        self.store = store
        self.fallback = fallback
        self.pipeline_rate = pipeline_rate
        self.rate = rate
        self.max_s = max_s
        self.on_saved = on_saved
        self.attempts = attempts
        self.retry_s = retry_s
        self.saved = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def begin(self) -> CallAudio:
        return CallAudio(self.rate, self.max_s)

    def _watch(self, session: Any, audio: CallAudio) -> None:
        closed: asyncio.Event | None = getattr(session, "closed", None)
        if closed is None:
            log.error("session has no 'closed' event; call %s not recorded", audio.call_sid)
            return

        async def when_closed() -> None:
            await closed.wait()
            await self.save(audio)

        self._spawn(when_closed())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def save(self, audio: CallAudio) -> dict[str, Any] | None:
        """Store one call's recording; returns where it went. Never raises."""
        sid = audio.call_sid
        if sid is None or audio.seconds <= 0:
            return None
        try:
            data = await asyncio.to_thread(audio.to_wav)
        except Exception:
            log.exception("recording of %s could not be encoded", sid)
            self.failed += 1
            return None
        name = recording_name(sid)
        info = await self._store(name, data)
        if info is None:
            self.failed += 1
            log.error("recording of %s lost: no store accepted it", sid)
            return None
        info.update(
            seconds=round(audio.seconds, 2),
            bytes=len(data),
            content_type=CONTENT_TYPE,
            truncated=audio.truncated,
            started_at=audio.started_at.isoformat() if audio.started_at else None,
        )
        self.saved += 1
        log.info("recording of %s saved (%s, %.1f s)", sid, info["store"], audio.seconds)
        if self.on_saved is not None:
            try:
                await self.on_saved(sid, info)
            except Exception:
                log.exception("recording of %s saved but not linked to the call", sid)
        return info

    async def _store(self, name: str, data: bytes) -> dict[str, Any] | None:
        for attempt in range(self.attempts):
            try:
                return await self.store.save(name, data)
            except Exception as exc:
                log.warning("saving recording %s to %s failed: %s", name, self.store.name, exc)
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(self.retry_s * 2**attempt)
        if self.fallback is not None:
            try:
                return await self.fallback.save(name, data)
            except Exception:
                log.exception("fallback store failed too for %s", name)
        return None

    async def fetch(self, call_sid: str) -> bytes | None:
        """The WAV of a call, for the dashboard's player (primary store, then fallback)."""
        name = recording_name(call_sid)
        data = await self.store.load(name)
        if data is None and self.fallback is not None:
            data = await self.fallback.load(name)
        return data

    async def flushed(self) -> None:
        """Wait for recordings being saved right now (tests, shutdown)."""
        while self._tasks:
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            await asyncio.wait(pending)

    async def aclose(self, timeout: float = 30.0) -> None:
        """Let calls already ended finish saving; recordings of calls still open are lost."""
        saving = [t for t in self._tasks if not t.done()]
        if saving:
            _, pending = await asyncio.wait(saving, timeout=timeout)
            for task in pending:
                task.cancel()
        await self.store.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()


def call_meta_writer(calls: Any, recorder: Any = None, *, attempts: int = 6) -> OnSaved:
    """``on_saved`` that links the recording to its call (``calls.meta["recording"]``).

    Waits for the call recorder to flush first (the call row may still be queued), then
    retries with backoff while the row is missing or the database is away.
    """

    async def write(call_sid: str, info: dict[str, Any]) -> None:
        if recorder is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorder.flushed(), 30.0)
        delay = 0.5
        for attempt in range(attempts):
            try:
                await calls.update_meta(call_sid, recording=info)
                return
            except Exception as exc:
                if attempt + 1 == attempts:
                    raise
                log.debug("linking recording of %s failed (%s); retrying", call_sid, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    return write


def recordings_from_settings(settings: Any, on_saved: OnSaved | None = None) -> Recordings | None:
    """None unless ``record_calls`` is on. Supabase Storage when a bucket, ``SUPABASE_URL`` and
    the service-role key are set; the data dir otherwise (and always as the fallback)."""
    if not getattr(settings, "record_calls", False):
        return None
    local = FileRecordingStore(settings.data_dir / "recordings")
    bucket = getattr(settings, "recordings_bucket", None)
    store: RecordingStore = local
    fallback: RecordingStore | None = None
    if bucket:
        key = getattr(settings, "supabase_service_role_key", None)
        if not (settings.supabase_url and key):
            raise ValueError(
                "TAINA_RECORDINGS_BUCKET needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
            )
        store, fallback = SupabaseRecordingStore(settings.supabase_url, key, bucket), local
    return Recordings(
        store,
        fallback=fallback,
        pipeline_rate=settings.pipeline_sample_rate,
        on_saved=on_saved,
    )
