"""What an ordinary phone line does to speech, as a seeded, repeatable chain.

Band-pass 300–3400 Hz (the telephone channel), a level change (handsets and lines are louder
or quieter by several dB, and drift a little during an utterance), light background noise
(SNR about 25–30 dB) and, optionally, the 8 kHz μ-law round trip of the PSTN. Used on both
directions of a simulated call: the caller's voice before the server hears it, and the bot's
voice before the simulated caller transcribes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from telephony.audio_codec import mulaw_to_pcm16, pcm16_to_mulaw, resample_once

LINE_RATE = 8000
NOMINAL_DBFS = -24.0


@dataclass(frozen=True)
class PhoneBand:
    """Settings of the chain; ``None`` leaves a stage out."""

    low_hz: float | None = 300.0
    high_hz: float | None = 3400.0
    gain_db: tuple[float, float] | None = (6.0, 10.0)  # |change|, sign drawn at random
    drift_db: float = 2.0  # slow level drift across the utterance (peak to peak)
    snr_db: tuple[float, float] | None = (25.0, 30.0)
    mulaw: bool = True

    def apply(self, pcm16: bytes, rate: int = LINE_RATE, seed: int | str = 0) -> bytes:
        """PCM16 at ``rate`` -> PCM16 at 8 kHz as heard at the other end of the line."""
        return apply_phone_band(pcm16, rate, seed, self)


CLEAN = PhoneBand(low_hz=None, high_hz=None, gain_db=None, drift_db=0.0, snr_db=None)
DEFAULT = PhoneBand()


def band_pass(samples: np.ndarray, rate: int, low_hz: float | None, high_hz: float | None,
              edge_hz: float = 80.0) -> np.ndarray:  # fmt: skip
    """Zero-phase FFT band-pass with raised-cosine edges (no ringing of a brick wall)."""
    n = samples.size
    if n == 0:
        return samples
    size = 1 << int(np.ceil(np.log2(n + 2 * int(rate * 0.05))))
    spec = np.fft.rfft(samples, size)
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    mask = np.ones_like(freqs)
    if low_hz is not None:
        mask *= _ramp(freqs, low_hz - edge_hz, low_hz + edge_hz)
    if high_hz is not None:
        mask *= 1.0 - _ramp(freqs, high_hz - edge_hz, high_hz + edge_hz)
    return np.fft.irfft(spec * mask, size)[:n]


def _ramp(f: np.ndarray, a: float, b: float) -> np.ndarray:
    x = np.clip((f - a) / (b - a), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def apply_phone_band(pcm16: bytes, rate: int = LINE_RATE, seed: int | str = 0,
                     band: PhoneBand = DEFAULT) -> bytes:  # fmt: skip
    """Run ``pcm16`` through the line: result is PCM16 at 8 kHz."""
    if rate != LINE_RATE:
        pcm16 = resample_once(pcm16, rate, LINE_RATE)
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    if x.size == 0:
        return b""
    rng = random.Random(str(seed))
    np_rng = np.random.default_rng(rng.getrandbits(32))
    if band.low_hz is not None or band.high_hz is not None:
        x = band_pass(x, LINE_RATE, band.low_hz, band.high_hz)
    if band.gain_db is not None:
        # From a nominal line level (-24 dBFS RMS of the speech), louder or quieter.
        active = x[np.abs(x) > 0.05 * (np.abs(x).max() or 1)]
        level = float(np.sqrt(np.mean(active**2))) if active.size else 0.0
        if level > 0:
            x = x * (32768 * 10 ** (NOMINAL_DBFS / 20) / level)
        lo, hi = band.gain_db
        gain = rng.uniform(lo, hi) * rng.choice((-1.0, 1.0))
        drift = np.linspace(-band.drift_db / 2, band.drift_db / 2, x.size) * rng.choice((-1, 1))
        x = x * 10 ** ((gain + drift) / 20)
    if band.snr_db is not None:
        speech = x[np.abs(x) > 0.05 * (np.abs(x).max() or 1)]
        power = float(np.mean(speech**2)) if speech.size else 0.0
        if power > 0:
            snr = rng.uniform(*band.snr_db)
            noise = np_rng.standard_normal(x.size)
            noise = band_pass(noise, LINE_RATE, 100.0, 3800.0)
            noise *= np.sqrt(power / 10 ** (snr / 10) / (np.mean(noise**2) or 1.0))
            x = x + noise
    out = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
    if band.mulaw:
        out = mulaw_to_pcm16(pcm16_to_mulaw(out))
    return out


def line_ulaw(pcm16: bytes, rate: int, seed: int | str = 0, band: PhoneBand = DEFAULT) -> bytes:
    """The caller's speech as it goes onto the Twilio stream: 8 kHz μ-law after the line."""
    return pcm16_to_mulaw(apply_phone_band(pcm16, rate, seed, band))


def heard_from_ulaw(ulaw: bytes, seed: int | str = 0, band: PhoneBand = DEFAULT) -> bytes:
    """The bot's μ-law audio as the caller's ear gets it (band, level, noise): PCM16 8 kHz.

    The bot's audio is already μ-law; the round trip is not repeated."""
    pcm = mulaw_to_pcm16(ulaw)
    no_codec = PhoneBand(band.low_hz, band.high_hz, band.gain_db, band.drift_db, band.snr_db, False)
    return apply_phone_band(pcm, LINE_RATE, seed, no_codec)
