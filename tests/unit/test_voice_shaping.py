"""The phone shaping keeps loudness and pauses, and lifts what is weak relative to the peaks."""

from __future__ import annotations

import numpy as np

from pipeline.voice_shaping import shape_for_phone

RATE = 16000


def _tone(freq: float, seconds: float, amp: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return amp * np.sin(2 * np.pi * freq * t)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_loudness_is_kept_and_weak_sounds_come_closer_to_loud_ones() -> None:
    vowel = _tone(300, 0.2, 12000)
    consonant = _tone(2500, 0.06, 600)  # a weak, high consonant after a loud vowel
    x = np.concatenate([vowel, consonant, vowel]).astype(np.int16)
    y = shape_for_phone(x, RATE)
    assert y.dtype == np.int16 and y.size == x.size
    assert abs(_rms(y) - _rms(x)) / _rms(x) < 0.02
    a, b = int(RATE * 0.21), int(RATE * 0.25)  # inside the consonant
    before = _rms(x[a:b]) / _rms(x[: int(RATE * 0.2)])
    after = _rms(y[a:b]) / _rms(y[: int(RATE * 0.2)])
    assert after > 4 * before  # +12 dB at least relative to the vowel
    assert np.abs(y).max() <= 30000


def test_pauses_stay_quiet_and_tiny_pieces_pass_through() -> None:
    speech = _tone(500, 0.3, 8000)
    pause = np.zeros(RATE // 5)
    hiss = np.random.default_rng(0).standard_normal(RATE // 5) * 20  # -52 dB under speech
    x = np.concatenate([speech, pause + hiss, speech]).astype(np.int16)
    y = shape_for_phone(x, RATE)
    gap = slice(int(RATE * 0.32), int(RATE * 0.48))
    assert _rms(y[gap]) < 3 * _rms(x[gap]) + 1  # the hiss is not lifted by the compressor
    short = np.array([1, 2, 3], dtype=np.int16)
    assert shape_for_phone(short, RATE) is short
    silent = np.zeros(RATE, dtype=np.int16)
    assert not shape_for_phone(silent, RATE).any()
