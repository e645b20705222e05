"""Voices for simulated callers: several speech synthesisers and real human recordings.

A spoken evaluation that only ever hears one synthetic voice measures how well the product
recognises *that* voice. Callers here speak with one of several families, each with its own
variants (accent, pace, pitch):

- ``espeak``: eSpeak NG, es and es-419 with different variants, rates and pitches;
- ``pico``: SVOX Pico (es-ES) through ``py-nanotts``, with different speeds and pitches;
- ``kokoro``: Kokoro-82M (slow: ~0.65 core per second of speech, so renders are cached on
  disk);
- ``human``: real human Spanish recordings from Debian's ``asterisk-core-sounds-es-wav``
  (es-MX, female) and ``asterisk-prompt-es-co`` (Colombian): digits, weekday names and a few
  words. A human voice can only say what was recorded, so it is used for spliced turns: a
  cédula or phone number said digit by digit by a person, with a person's uneven pauses.

Every render returns mono PCM16 at the requested rate and is deterministic for a given voice,
text and seed, so a failing scenario can be replayed exactly.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
import re
import shutil
import subprocess
import unicodedata
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from telephony.audio_codec import audioop, resample_once

ASTERISK_MX = Path("/usr/share/asterisk/sounds/es_MX_f_Allison")
ASTERISK_CO = Path("/usr/share/asterisk/sounds/es")
DIGIT_WORDS = {
    "cero": "0", "uno": "1", "dos": "2", "tres": "3", "cuatro": "4",
    "cinco": "5", "seis": "6", "siete": "7", "ocho": "8", "nueve": "9",
}  # fmt: skip


class VoiceUnavailable(RuntimeError):
    """The engine or the recordings behind a voice are not installed here."""


class CannotSay(ValueError):
    """A human voice was asked for words nobody recorded."""


@dataclass(frozen=True)
class Voice:
    """One caller voice: a family and the engine settings that make it distinct."""

    name: str
    family: str  # "espeak", "pico", "kokoro", "human"
    engine_voice: str = ""
    rate: float = 1.0  # eSpeak: words per minute; Pico/Kokoro: speed factor
    pitch: float = 1.0  # eSpeak: 0-99; Pico: pitch factor
    extra: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


def _voices() -> dict[str, Voice]:
    v = [
        Voice("espeak-419-denis", "espeak", "es-419+Denis", 140, 40),
        Voice("espeak-419-f3", "espeak", "es-419+f3", 150, 60),
        Voice("espeak-419-m3-fast", "espeak", "es-419+m3", 170, 45),
        Voice("espeak-es-andrea", "espeak", "es+Andrea", 145, 55),
        Voice("espeak-es-m7-slow", "espeak", "es+m7", 125, 35),
        Voice("espeak-419-pablo", "espeak", "es-419+Pablo", 155, 50),
        Voice("pico-es", "pico", "es-ES", 1.0, 1.0),
        Voice("pico-es-fast-low", "pico", "es-ES", 1.15, 0.9),
        Voice("pico-es-slow-high", "pico", "es-ES", 0.9, 1.15),
        Voice("kokoro-jf-alpha", "kokoro", "jf_alpha", 1.0),
        Voice("kokoro-jm-kumo", "kokoro", "jm_kumo", 1.05),
        Voice("kokoro-jf-nezumi", "kokoro", "jf_nezumi", 0.95),
        Voice("human-mx", "human", "mx"),
        Voice("human-co", "human", "co"),
    ]
    return {x.name: x for x in v}


VOICES: dict[str, Voice] = _voices()
FAMILIES = ("espeak", "pico", "kokoro", "human")


def voices_of(family: str) -> list[Voice]:
    return [v for v in VOICES.values() if v.family == family]


def get_voice(name: str) -> Voice:
    try:
        return VOICES[name]
    except KeyError:
        raise KeyError(f"unknown caller voice {name!r}; known: {', '.join(VOICES)}") from None


# --- rendering -----------------------------------------------------------------------------


def render(voice: Voice | str, text: str, rate: int = 8000, seed: int = 0,
           cache_dir: Path | None = None) -> bytes:  # fmt: skip
    """``text`` said by ``voice``: mono PCM16 at ``rate`` Hz.

    ``cache_dir`` keeps slow renders (Kokoro) on disk between runs. ``seed`` only matters
    for human voices (the pauses between recorded words).
    """
    v = get_voice(voice) if isinstance(voice, str) else voice
    if v.family == "human":
        return render_human(v, text, rate, seed)
    renderer = _RENDERERS[v.family]
    if cache_dir is not None and v.family == "kokoro":
        key = hashlib.sha256(f"{v}|{text}".encode()).hexdigest()[:24]
        path = Path(cache_dir) / v.family / f"{key}.pcm16k"
        if path.is_file():
            return resample_once(path.read_bytes(), 16000, rate)
        pcm, native = renderer(v, text)
        pcm16k = resample_once(pcm, native, 16000)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pcm16k)
        tmp.replace(path)
        return resample_once(pcm16k, 16000, rate)
    pcm, native = renderer(v, text)
    return resample_once(pcm, native, rate)


def _espeak(v: Voice, text: str) -> tuple[bytes, int]:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise VoiceUnavailable("eSpeak NG is not installed")
    out = subprocess.run(
        [exe, "-v", v.engine_voice, "-s", str(int(v.rate)), "-p", str(int(v.pitch)), "--stdout"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return _wav_bytes_to_pcm(out)


@functools.cache
def _nanotts() -> object:
    try:
        import py_nanotts
    except ImportError as exc:
        raise VoiceUnavailable("py-nanotts (SVOX Pico) is not installed") from exc
    return py_nanotts.NanoTTS()


def _pico(v: Voice, text: str) -> tuple[bytes, int]:
    try:  # helper module of the product's own Pico voice, when present
        from pipeline.tts_pico import pico_render  # type: ignore[import-not-found]
    except ImportError:
        pico_render = None
    if pico_render is not None:
        try:
            out = pico_render(text, speed=v.rate, pitch=v.pitch)
            return _as_pcm(out, 16000)
        except TypeError:
            pass
    tts = _nanotts()
    return bytes(tts.speak(text, voice=v.engine_voice, speed=v.rate, pitch=v.pitch)), 16000  # type: ignore[attr-defined]


def _kokoro(v: Voice, text: str) -> tuple[bytes, int]:
    try:
        from pipeline.tts_kokoro import kokoro_render  # type: ignore[import-not-found]
    except ImportError as exc:
        raise VoiceUnavailable("pipeline.tts_kokoro is not available") from exc
    try:
        out = kokoro_render(text, voice=v.engine_voice, speed=v.rate)
    except TypeError:
        out = kokoro_render(text)
    return _as_pcm(out, 24000)


def _as_pcm(out: object, default_rate: int) -> tuple[bytes, int]:
    """Accept the shapes a render function may return: bytes, (audio, rate), float arrays."""
    rate = default_rate
    if isinstance(out, tuple):
        out, rate = out
    if isinstance(out, np.ndarray):
        if out.dtype.kind == "f":
            out = (np.clip(out, -1.0, 1.0) * 32767).astype("<i2")
        return out.astype("<i2").tobytes(), int(rate)
    return bytes(out), int(rate)  # type: ignore[arg-type]


_RENDERERS: dict[str, Callable[[Voice, str], tuple[bytes, int]]] = {
    "espeak": _espeak,
    "pico": _pico,
    "kokoro": _kokoro,
}


def available(voice: Voice | str) -> bool:
    """Whether this voice can render here (engine installed, recordings present)."""
    v = get_voice(voice) if isinstance(voice, str) else voice
    try:
        if v.family == "human":
            return _human_dir(v).is_dir()
        render(v, "uno", 8000)
    except (VoiceUnavailable, OSError, subprocess.SubprocessError):
        return False
    return True


# --- human recordings ----------------------------------------------------------------------

# Words a human voice can say -> recording name (without extension) in the sounds folder.
_HUMAN_WORDS = {
    **{str(d): f"digits/{d}" for d in range(10)},
    "domingo": "digits/day-0",
    "lunes": "digits/day-1",
    "martes": "digits/day-2",
    "miercoles": "digits/day-3",
    "jueves": "digits/day-4",
    "viernes": "digits/day-5",
    "sabado": "digits/day-6",
    "manana": "digits/tomorrow",
    "hoy": "digits/today",
    "no": "vm-no",
}


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def human_tokens(text: str) -> list[str]:
    """The recorded words that say ``text``: digits one by one, known words as they are.

    Raises :class:`CannotSay` when a word has no recording.
    """
    tokens: list[str] = []
    for word in re.findall(r"[0-9]|[a-zñ]+", _fold(text)):
        word = DIGIT_WORDS.get(word, word)
        if word not in _HUMAN_WORDS:
            raise CannotSay(f"no human recording of {word!r}")
        tokens.append(word)
    if not tokens:
        raise CannotSay(f"nothing a human voice can say in {text!r}")
    return tokens


def can_say_human(text: str) -> bool:
    try:
        human_tokens(text)
    except CannotSay:
        return False
    return True


def _human_dir(v: Voice) -> Path:
    return ASTERISK_MX if v.engine_voice == "mx" else ASTERISK_CO


@functools.cache
def _recording(folder: str, name: str, rate: int) -> bytes:
    base = Path(folder) / name
    wav = base.with_suffix(".wav")
    if wav.is_file():
        data = wav.read_bytes()
    else:
        gsm = base.with_suffix(".gsm")
        if not gsm.is_file():
            raise VoiceUnavailable(f"recording {base} is not installed")
        data = subprocess.run(
            ["sox", str(gsm), "-t", "wav", "-b", "16", "-"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    pcm, native = _wav_bytes_to_pcm(data)
    return _trim(resample_once(pcm, native, rate), rate)


def render_human(v: Voice, text: str, rate: int = 8000, seed: int = 0) -> bytes:
    """Recorded words spliced with a person's uneven pauses (grouping digits by three or
    four, as people do with a cédula or phone number)."""
    rng = random.Random(f"{v.name}|{text}|{seed}")
    folder = str(_human_dir(v))
    parts: list[bytes] = []
    tokens = human_tokens(text)
    group = rng.choice((3, 4))
    for i, token in enumerate(tokens):
        if i:
            if token.isdigit() and i % group == 0:
                gap = rng.uniform(0.30, 0.60)  # between groups
            else:
                gap = rng.uniform(0.06, 0.22)
            parts.append(b"\x00\x00" * int(gap * rate))
        parts.append(_recording(folder, _HUMAN_WORDS[token], rate))
    return b"".join(parts)


# --- helpers -------------------------------------------------------------------------------


def _wav_bytes_to_pcm(data: bytes) -> tuple[bytes, int]:
    """A WAV file's bytes -> (mono PCM16, rate). eSpeak's --stdout WAV has a bogus length, so
    the header sizes are not trusted: the samples are read to the end of the data."""
    with wave.open(io.BytesIO(data), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = w.readframes(w.getnframes() or 1 << 30)
    if width == 1:
        frames = audioop.bias(frames, 1, -128)
    if width != 2:
        frames = audioop.lin2lin(frames, width, 2)
    if channels == 2:
        frames = audioop.tomono(frames, 2, 0.5, 0.5)
    return frames, rate


def _trim(pcm: bytes, rate: int, threshold: int = 300) -> bytes:
    """Cut leading/trailing silence of a recording (each file has some)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if samples.size == 0:
        return pcm
    win = max(1, rate // 100)
    n = samples.size // win
    if n == 0:
        return pcm
    energy = np.abs(samples[: n * win].astype(np.int32)).reshape(n, win).max(axis=1)
    loud = np.nonzero(energy > threshold)[0]
    if loud.size == 0:
        return pcm
    start = max(0, loud[0] - 2) * win
    end = min(n, loud[-1] + 3) * win
    return samples[start:end].tobytes()
