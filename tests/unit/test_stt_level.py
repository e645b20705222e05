"""Quiet phone lines: the utterance is levelled before Whisper (spoken evaluation finding F8).

A line 10 dB down made Whisper base return one syllable for short answers ("Sí, correcto" ->
"c", "La primera" -> "la") while the same audio at normal level was heard right.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.settings import Settings
from pipeline.stt import LEVEL_MAX_GAIN_DB, LEVEL_TARGET_DBFS, WhisperSTT, level_speech
from pipeline.stt import normalize_text as norm
from telephony.caller_voices import render
from telephony.phone_band import PhoneBand, apply_phone_band

ANSWERS = ["Sí, correcto.", "La primera.", "Sí, a este número.", "Para el jueves, si se puede."]


def _dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x * x))))


def test_quiet_speech_is_raised_to_the_target_level() -> None:
    t = np.arange(16000) / 16000
    speech = (0.01 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # about -43 dBFS
    out = level_speech(speech)
    assert _dbfs(out) == pytest.approx(LEVEL_TARGET_DBFS, abs=0.5)


def test_gain_is_capped_and_silence_untouched() -> None:
    t = np.arange(16000) / 16000
    whisper_quiet = (0.0008 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    raised = _dbfs(level_speech(whisper_quiet)) - _dbfs(whisper_quiet)
    assert raised == pytest.approx(LEVEL_MAX_GAIN_DB, abs=0.5)
    silence = np.zeros(16000, dtype=np.float32)
    assert not level_speech(silence).any()


def test_loud_speech_is_not_clipped() -> None:
    rng = np.random.default_rng(1)
    loud = np.clip(rng.normal(0, 0.5, 16000), -1, 1).astype(np.float32)
    assert np.max(np.abs(level_speech(loud))) <= 0.97 + 1e-6


@pytest.fixture(scope="module")
def stt(whisper_model_dir: Path) -> Iterator[WhisperSTT]:
    s = Settings()
    engine = WhisperSTT(
        whisper_model_dir, prompt=s.stt_prompt, beam_size=s.stt_beam_size, temperatures=(0.0,)
    )
    yield engine
    engine.close()


def _line(text: str, gain_db: float) -> bytes:
    pcm = render("pico-es", text, 16000, seed=1)
    quiet = np.frombuffer(pcm, "<i2").astype(np.float32) * 10 ** (gain_db / 20)
    quiet_pcm = np.clip(quiet, -32768, 32767).astype("<i2").tobytes()
    return apply_phone_band(quiet_pcm, 16000, seed=3, band=PhoneBand(gain_db=None))


@pytest.mark.slow
async def test_a_quiet_line_is_heard_like_a_normal_one(stt: WhisperSTT) -> None:
    for text in ANSWERS:
        normal = norm((await stt.transcribe(_line(text, 0.0), 8000)).text)
        quiet = norm((await stt.transcribe(_line(text, -12.0), 8000)).text)
        assert len(quiet.split()) >= len(normal.split()) - 1, (text, normal, quiet)
        assert len(quiet.split()) >= 2, (text, quiet)
