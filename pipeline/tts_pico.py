"""SVOX Pico text-to-speech (es-ES) through the ``py_nanotts`` wheel.

Why Pico: through the 8 kHz mu-law phone band it is far more intelligible than eSpeak NG
(see bench/tts_voices_bench.py), it renders about 250x real time on one core and its first
audio of a sentence exists after a few milliseconds. Its only Spanish voice is Castilian
(es-ES); there is no es-419 Pico voice.

Threading: ``py_nanotts.speak`` builds a fresh Pico system per call (no shared C state, so it
is re-entrant) but it holds the GIL for the whole synthesis (about 4 ms per second of speech
plus 3 ms set-up; far longer under CPU contention). In the server it therefore runs in one
spawned worker process (pipeline/tts_pico_worker.py), fed by one thread that serializes the
requests; text is cut into short pieces so cancellation takes effect quickly.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import soxr

from pipeline import tts_pico_worker
from pipeline.process_engine import ProcessEngine
from pipeline.speech_format import SpeechSegment, plan_speech
from pipeline.tts import in_chunks, split_for_synthesis
from pipeline.voice_shaping import shape_for_phone

log = logging.getLogger(__name__)

PICO_RATE = 16_000
EDGE_SILENCE_MS = 30
# Pico pads speech with digital silence and a quiet hiss; at least this quiet is trimmed.
_SILENCE_LEVEL = 64
# Short pieces: each ``speak`` holds the GIL for its whole duration (~40 ms per 100 chars).
_MAX_PIECE_CHARS = 120
# Pico's own markup ("<speed level=...>", "<break .../>") is read from the text itself, so
# anything tag-like coming from an LLM must never reach it.
_MARKUP = re.compile(r"[<>\\]")
DEFAULT_VOICE = "es-ES"


def _clean(text: str) -> str:
    return " ".join(_MARKUP.sub(" ", text).split())


def _trim(samples: np.ndarray, pad: int, lead: bool = True, tail: bool = True) -> np.ndarray:
    """Cut edge silence. Pico ends a sentence with up to half a second of low hiss (peaks
    around 100), so "silent" is relative to the loudest sample, not only digital zero."""
    if samples.size == 0:
        return samples
    level = max(_SILENCE_LEVEL, int(np.abs(samples).max()) // 100)
    loud = np.flatnonzero(np.abs(samples) > level)
    if loud.size == 0:
        return samples[:0]
    start = max(0, int(loud[0]) - pad) if lead else 0
    end = min(samples.size, int(loud[-1]) + 1 + pad) if tail else samples.size
    return samples[start:end]


def resample_pcm(samples: np.ndarray, from_rate: int, to_rate: int) -> bytes:
    """int16 samples → PCM16 bytes at ``to_rate`` (soxr HQ)."""
    if from_rate == to_rate or samples.size == 0:
        return samples.astype("<i2", copy=False).tobytes()
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()


class _PicoEngine:
    """Pico in its own worker process, driven by one thread of this process.

    The thread serializes requests and does the cheap numpy work (trim, resample); the
    synthesis itself runs in a spawned process because ``py_nanotts`` holds the GIL for the
    whole call. The process starts on first use (PicoTTS.warm_up does that at start-up)
    and is replaced if it dies.
    """

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pico")
        self._pool: ProcessPoolExecutor | None = None

    def _process(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    def speak(
        self,
        text: str,
        voice: str,
        speed: float,
        pitch: float,
        volume: float,
        in_process: bool = False,
    ) -> np.ndarray:
        """One Pico call on text already free of foreign markup: int16 samples at 16 kHz.
        ``in_process`` skips the worker process (for sync callers outside the server)."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        if in_process:
            pcm = tts_pico_worker.speak(text, voice, speed, pitch, volume)
        else:
            try:
                future = self._process().submit(
                    tts_pico_worker.speak, text, voice, speed, pitch, volume
                )
                pcm = future.result()
            except BrokenProcessPool:
                self._pool = None  # the next request starts a fresh worker
                raise
        return np.frombuffer(pcm, dtype="<i2").astype(np.int16)


_engine: ProcessEngine[_PicoEngine] = ProcessEngine()


def _get_engine() -> _PicoEngine:
    return _engine.get(_PicoEngine)


def pico_render(
    text: str,
    speed: float = 1.0,
    pitch: float = 1.0,
    voice: str = DEFAULT_VOICE,
    volume: float = 1.0,
) -> np.ndarray:
    """Render a whole phrase synchronously: int16 samples at 16 kHz, edge silence trimmed.

    Plain text in, no number/date rewriting (that is :class:`PicoTTS`'s job): used by the
    spoken evaluation to give simulated callers a Pico voice, and by benches.
    """
    engine = _get_engine()
    pad = PICO_RATE * EDGE_SILENCE_MS // 1000
    parts = [
        engine.speak(piece, voice, speed, pitch, volume, in_process=True)
        for piece in split_for_synthesis(_clean(text), _MAX_PIECE_CHARS)
    ]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return _trim(np.concatenate(parts), pad)


def pico_markup(segments: list[SpeechSegment], slow_speed: float, pause_ms: int) -> str:
    """Pico's inline markup for one piece: slow stretches inside ``<speed>`` with a
    ``<break>`` after each comma-separated group, so "cero cero uno, dos tres cuatro" is
    read as groups a caller can write down. One Pico call per piece keeps the intonation."""
    parts: list[str] = []
    for seg in segments:
        text = _clean(seg.text)
        if not text:
            continue
        if seg.slow:
            groups = [g.strip() for g in text.split(",") if g.strip()]
            pause = f', <break time="{pause_ms}ms"/> ' if pause_ms > 0 else ", "
            level = max(20, round(slow_speed * 100))
            parts.append(f'<speed level="{level}">{pause.join(groups)}</speed>')
        else:
            parts.append(text)
    return " ".join(parts)


Planner = Callable[[str], list[list[SpeechSegment]]]


def plain_plan(text: str) -> list[list[SpeechSegment]]:
    """No formatting: the text cut into short pieces, read at normal speed."""
    return [[SpeechSegment(p)] for p in split_for_synthesis(text, _MAX_PIECE_CHARS)]


class PicoTTS:
    """TextToSpeech backed by SVOX Pico (es-ES): clear on the phone, ~250x real time.

    Defaults from bench/tts_voices_bench.py: speed 0.9 (a little slower than Pico's own
    pace reads better over the phone band), volume 0.6 (at full volume Pico clips about 1 %
    of its samples, which μ-law makes worse), slow parts at 0.85 with 60 ms between digit
    groups (longer pauses made Whisper drop or split digit groups more often).

    ``planner`` turns text into pieces of normal and slow segments; the default is
    :func:`pipeline.speech_format.plan_speech`, which writes numbers as words and marks digit
    groups, codes, dates and times slow (read at ``slow_speed`` with ``group_pause_ms``
    between groups).
    """

    name = "pico"

    def __init__(
        self,
        voice: str = DEFAULT_VOICE,
        speed: float = 0.9,
        pitch: float = 1.0,
        volume: float = 0.6,
        slow_speed: float = 0.85,
        group_pause_ms: int = 60,
        planner: Planner | None = None,
        phone_shaping: bool = True,
    ) -> None:
        self.voice = voice
        self.speed = speed
        self.pitch = pitch
        self.volume = volume
        self.slow_speed = slow_speed
        self.group_pause_ms = group_pause_ms
        self.planner: Planner = planner or (lambda t: plan_speech(t, _MAX_PIECE_CHARS))
        # Presence boost + compression (pipeline/voice_shaping.py): consonants survive a
        # noisy line.
        self.phone_shaping = phone_shaping

    def _render_piece(
        self, segments: list[SpeechSegment], out_rate: int, lead: bool, tail: bool
    ) -> bytes:
        """Runs on the Pico thread: synthesize one piece, trim its edges, resample."""
        # Pico's inner <speed> level is absolute (it overrides the voice's outer level).
        markup = pico_markup(segments, self.speed * self.slow_speed, self.group_pause_ms)
        raw = _get_engine().speak(markup, self.voice, self.speed, self.pitch, self.volume)
        raw = _trim(raw, PICO_RATE * EDGE_SILENCE_MS // 1000, lead=lead, tail=tail)
        if self.phone_shaping:
            raw = shape_for_phone(raw, PICO_RATE)
        return resample_pcm(raw, PICO_RATE, out_rate)

    async def warm_up(self) -> None:
        """Start the worker process before the first caller (about half a second)."""
        await self.synthesize_all("Listo.", 16000)

    async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Yield PCM16 chunks of ``CHUNK_MS`` at ``sample_rate``; cancellation stops the work
        between pieces (a piece takes a few tens of milliseconds)."""
        pieces = [p for p in self.planner(text) if any(_clean(seg.text) for seg in p)]
        if not pieces:
            return
        loop = asyncio.get_running_loop()
        executor = _get_engine().executor
        last = len(pieces) - 1

        async def rendered() -> AsyncIterator[bytes]:
            for i, piece in enumerate(pieces):
                yield await loop.run_in_executor(
                    executor, self._render_piece, piece, sample_rate, i == 0, i == last
                )

        async for chunk in in_chunks(rendered(), sample_rate):
            yield chunk

    async def synthesize_all(self, text: str, sample_rate: int) -> bytes:
        return b"".join([chunk async for chunk in self.synthesize(text, sample_rate)])
