"""Caller voices and the phone-band chain: audible, deterministic, band-limited."""

from __future__ import annotations

import numpy as np
import pytest

from telephony import caller_voices as cv
from telephony.phone_band import CLEAN, DEFAULT, apply_phone_band


def _spectrum_share(pcm: bytes, rate: int, lo: float, hi: float) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / rate)
    return float(p[(f >= lo) & (f <= hi)].sum() / p.sum())


@pytest.mark.parametrize("name", ["espeak-419-denis", "espeak-es-andrea", "pico-es"])
def test_synthetic_voices_render_deterministic_speech(name: str) -> None:
    a = cv.render(name, "Quiero una cita para el martes.", 16000)
    b = cv.render(name, "Quiero una cita para el martes.", 16000)
    if name.startswith("pico"):
        # Pico keeps a little state between utterances in its worker process, so a render
        # after other speech may differ in a few samples: the same speech, not the same bits.
        x, y = (np.frombuffer(v, dtype="<i2").astype(np.float64) for v in (a, b))
        assert abs(x.size - y.size) <= x.size // 100
        n = min(x.size, y.size)
        assert np.corrcoef(x[:n], y[:n])[0, 1] > 0.95
    else:
        assert a == b
    assert 1.0 < len(a) / 32000 < 6.0  # seconds of speech
    assert np.abs(np.frombuffer(a, dtype="<i2")).max() > 2000


def test_human_voice_says_digits_with_seeded_pauses() -> None:
    one = cv.render("human-mx", "cero cero uno 2 3 4", 8000, seed=1)
    again = cv.render("human-mx", "cero cero uno 2 3 4", 8000, seed=1)
    other = cv.render("human-mx", "cero cero uno 2 3 4", 8000, seed=2)
    assert one == again and one != other
    assert len(one) / 16000 > 6 * 0.25  # six recorded digits
    assert cv.human_tokens("Lunes, 4 5") == ["lunes", "4", "5"]
    with pytest.raises(cv.CannotSay):
        cv.human_tokens("quiero una cita")


def test_phone_band_cuts_outside_the_telephone_channel() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000) * 3000).astype("<i2").tobytes()
    line = apply_phone_band(noise, 16000, seed=3)
    assert len(line) == 16000  # 1 s at 8 kHz
    assert _spectrum_share(line, 8000, 300, 3400) > 0.95
    assert apply_phone_band(noise, 16000, seed=3) == line
    assert apply_phone_band(noise, 16000, seed=4) != line
    clean = apply_phone_band(noise, 16000, band=CLEAN)
    assert _spectrum_share(clean, 8000, 0, 250) > 0.03
    assert DEFAULT.mulaw
