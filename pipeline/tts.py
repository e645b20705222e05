"""eSpeak NG text-to-speech through ctypes (library and voices from the espeakng-loader wheel).

eSpeak NG keeps all of its state in C globals: one voice, one set of parameters, one synthesis
at a time, and it is not thread-safe. A second "engine" object in the same process would share
those globals anyway, so this module owns exactly one ``_EspeakEngine``, created lazily, and
funnels every C call through its single worker thread. ``EspeakTTS`` instances are cheap
views carrying a voice/rate/pitch that the engine applies before each synthesis.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from pipeline.process_engine import ProcessEngine

log = logging.getLogger(__name__)

# espeak_AUDIO_OUTPUT: SYNCHRONOUS makes espeak_Synth return only when the text is done,
# delivering audio through the callback on the calling (worker) thread.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeakINITIALIZE_DONT_EXIT: return an error instead of calling exit() if data is missing.
_INITIALIZE_DONT_EXIT = 0x8000
_EE_OK = 0
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_BUFLENGTH_MS = 100
_RAND_SEED = 1

CHUNK_MS = 200
EDGE_SILENCE_MS = 30
# eSpeak surrounds speech with near-digital silence; anything quieter than this is trimmed.
_SILENCE_LEVEL = 64
# Longer texts are synthesized piece by piece so the first audio leaves early and a cancelled
# consumer stops the work between pieces.
_MAX_PIECE_CHARS = 240

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class TtsError(RuntimeError):
    """eSpeak NG could not be loaded or refused a request."""


class _EspeakEngine:
    """The process-wide eSpeak NG instance and the one thread allowed to touch it."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")
        self.sample_rate = 0
        self.data_path: Path | None = None
        self._lib: ctypes.CDLL | None = None
        self._init_error: BaseException | None = None
        self._chunks: list[bytes] = []
        self._cancel: threading.Event | None = None
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: C holds it
        self._current: tuple[str, int, int] | None = None
        self._resolved_voices: dict[str, str] = {}

    # -- everything below runs on the worker thread ------------------------------------------
    def _ensure_loaded(self) -> ctypes.CDLL:
        if self._lib is not None:
            return self._lib
        if self._init_error is not None:
            raise TtsError(str(self._init_error)) from self._init_error
        try:
            import espeakng_loader

            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_Initialize.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
            ]
            lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
            lib.espeak_SetSynthCallback.restype = None
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_SetParameter.restype = ctypes.c_int
            lib.espeak_Synth.argtypes = [
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.c_uint,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.POINTER(ctypes.c_uint),
                ctypes.c_void_p,
            ]
            lib.espeak_Synth.restype = ctypes.c_int
            lib.espeak_TextToPhonemes.argtypes = [
                ctypes.POINTER(ctypes.c_void_p),
                ctypes.c_int,
                ctypes.c_int,
            ]
            lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed.restype = None
            if _library_initialized:
                # A previous engine (in the parent of a fork) set the library up already.
                lib.espeak_Terminate()
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS,
                _BUFLENGTH_MS,
                data_path.encode(),
                _INITIALIZE_DONT_EXIT,
            )
            if rate <= 0:
                raise TtsError(f"espeak_Initialize failed ({rate}) with data at {data_path}")
            lib.espeak_SetSynthCallback(self._callback)
        except BaseException as exc:
            self._init_error = exc
            raise
        _mark_library_initialized()
        self.sample_rate = rate
        self.data_path = Path(data_path)
        self._lib = lib
        return lib

    def _resolve_voice(self, voice: str) -> str:
        if voice in self._resolved_voices:
            return self._resolved_voices[voice]
        lib = self._ensure_loaded()
        chosen = voice
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            log.warning(
                "eSpeak voice %r not found in %s; falling back to 'es'", voice, self.data_path
            )
            chosen = "es"
            if lib.espeak_SetVoiceByName(b"es") != _EE_OK:
                raise TtsError(f"neither eSpeak voice {voice!r} nor 'es' is available")
        self._resolved_voices[voice] = chosen
        self._current = None  # the voice change reset rate/pitch
        return chosen

    def _configure(self, voice: str, rate_wpm: int, pitch: int) -> None:
        lib = self._ensure_loaded()
        wanted = (voice, rate_wpm, pitch)
        if self._current == wanted:
            return
        name = self._resolve_voice(voice)
        if lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise TtsError(f"eSpeak refused voice {name!r}")
        lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        self._current = wanted

    def _on_audio(self, wav: ctypes._Pointer, numsamples: int, _events: int | None) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        # Returning 1 tells eSpeak to abort this synthesis.
        return 1 if self._cancel is not None and self._cancel.is_set() else 0

    def synth(
        self, text: str, voice: str, rate_wpm: int, pitch: int, cancel: threading.Event
    ) -> np.ndarray:
        """Synthesize ``text`` and return int16 samples at the native rate."""
        lib = self._ensure_loaded()
        self._configure(voice, rate_wpm, pitch)
        data = text.encode("utf-8")
        self._chunks = []
        self._cancel = cancel
        # eSpeak jitters its waveform with rand(); a fixed seed per utterance makes the same
        # text sound (and test, and cache) identically every time.
        lib.espeak_ng_SetRandSeed(_RAND_SEED)
        try:
            err = lib.espeak_Synth(
                data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            audio = b"".join(self._chunks)
        finally:
            self._chunks = []
            self._cancel = None
        if err != _EE_OK and not cancel.is_set():
            raise TtsError(f"espeak_Synth failed with code {err}")
        return np.frombuffer(audio, dtype=np.int16)

    def render(
        self,
        text: str,
        voice: str,
        rate_wpm: int,
        pitch: int,
        cancel: threading.Event,
        out_rate: int,
        lead: bool,
        tail: bool,
    ) -> bytes:
        """One executor job: synthesize, trim the edges, resample to PCM16 at ``out_rate``."""
        raw = self.synth(text, voice, rate_wpm, pitch, cancel)
        raw = _trim(raw, self.sample_rate * EDGE_SILENCE_MS // 1000, lead=lead, tail=tail)
        return _resample(raw, self.sample_rate, out_rate) if raw.size else b""

    def phonemes(self, text: str, voice: str, rate_wpm: int, pitch: int) -> str:
        """eSpeak's phoneme transcription (mnemonics), to check what it will say."""
        lib = self._ensure_loaded()
        self._configure(voice, rate_wpm, pitch)
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        parts: list[str] = []
        while ptr.value:
            out = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, 0)
            if out:
                parts.append(out.decode("utf-8", "replace"))
        return " ".join(parts)

    def native_rate(self) -> int:
        self._ensure_loaded()
        return self.sample_rate


_engine: ProcessEngine[_EspeakEngine] = ProcessEngine()
_library_initialized = False


def _mark_library_initialized() -> None:
    global _library_initialized
    _library_initialized = True


def _get_engine() -> _EspeakEngine:
    return _engine.get(_EspeakEngine)


def split_for_synthesis(text: str, max_chars: int = _MAX_PIECE_CHARS) -> list[str]:
    """Cut long text at sentence (then clause, then word) boundaries into pieces."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    rest = text
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = -1
        for marks in (".!?…", ";:", ","):
            cut = max(window.rfind(m + " ") for m in marks)
            if cut > max_chars // 3:
                cut += 1  # keep the punctuation with its sentence
                break
        else:
            cut = window.rfind(" ")
            if cut <= 0:
                cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


async def in_chunks(blocks: AsyncIterator[bytes], sample_rate: int) -> AsyncIterator[bytes]:
    """PCM16 blocks of any size (one per synthesized piece) re-cut into ``CHUNK_MS`` chunks at
    ``sample_rate``; only the very last chunk may be shorter. Shared by the embedded voices."""
    chunk_bytes = sample_rate * CHUNK_MS // 1000 * 2
    pending = b""
    async for block in blocks:
        audio = pending + block
        whole = len(audio) - len(audio) % chunk_bytes
        for start in range(0, whole, chunk_bytes):
            yield audio[start : start + chunk_bytes]
        pending = audio[whole:]
    if pending:
        yield pending


def _trim(samples: np.ndarray, pad: int, lead: bool, tail: bool) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > _SILENCE_LEVEL)
    if loud.size == 0:
        return samples[:0]
    start = max(0, int(loud[0]) - pad) if lead else 0
    end = min(samples.size, int(loud[-1]) + 1 + pad) if tail else samples.size
    return samples[start:end]


class EspeakTTS:
    """TextToSpeech backed by eSpeak NG (robotic but instant, offline, ~300x real time)."""

    name = "espeak"

    def __init__(
        self, voice: str = "es-419", rate_wpm: int = 165, pitch: int = 45, spoken: bool = True
    ) -> None:
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.pitch = pitch
        # Rewrite digits, amounts, codes and abbreviations as words first (speech_format), so
        # "00112345678" is read in groups and not as one huge number.
        self.spoken = spoken

    @staticmethod
    async def _run(method: str, *args: object) -> Any:
        engine = _get_engine()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(engine.executor, getattr(engine, method), *args)

    async def native_sample_rate(self) -> int:
        return int(await self._run("native_rate"))

    async def phonemes(self, text: str) -> str:
        """eSpeak's phoneme mnemonics for ``text`` (what it will actually pronounce)."""
        return str(await self._run("phonemes", text, self.voice, self.rate_wpm, self.pitch))

    async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """Yield PCM16 chunks of ``CHUNK_MS`` (the last one may be shorter).

        Leading/trailing silence beyond ``EDGE_SILENCE_MS`` is trimmed so the caller hears the
        answer as soon as it is sent. Cancelling the consumer aborts eSpeak mid-piece.
        """
        if self.spoken:
            from pipeline.speech_format import spoken_text

            text = spoken_text(text)
        pieces = split_for_synthesis(text)
        if not pieces:
            return
        last = len(pieces) - 1
        cancel = threading.Event()

        async def rendered() -> AsyncIterator[bytes]:
            for i, piece in enumerate(pieces):
                yield await self._run(
                    "render",
                    piece,
                    self.voice,
                    self.rate_wpm,
                    self.pitch,
                    cancel,
                    sample_rate,
                    i == 0,
                    i == last,
                )

        try:
            async for chunk in in_chunks(rendered(), sample_rate):
                yield chunk
        finally:
            cancel.set()  # stops eSpeak if we are torn down while a piece is synthesizing

    async def synthesize_all(self, text: str, sample_rate: int) -> bytes:
        return b"".join([chunk async for chunk in self.synthesize(text, sample_rate)])


def _resample(samples: np.ndarray, from_rate: int, to_rate: int) -> bytes:
    if from_rate == to_rate:
        return samples.astype("<i2", copy=False).tobytes()
    out = soxr.resample(samples, from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()
