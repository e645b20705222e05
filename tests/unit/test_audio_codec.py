"""G.711 mu-law and the streaming resampler against known values."""

from __future__ import annotations

import math

import numpy as np

from telephony.audio_codec import (
    StreamResampler,
    mulaw_silence,
    mulaw_to_pcm16,
    pcm16_to_mulaw,
    resample_once,
)


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * 32767 * np.sin(2 * math.pi * freq * t)).astype(np.int16)


def test_mulaw_known_values() -> None:
    # ITU-T G.711: 0xFF and 0x7F are the two zeros, 0x80 / 0x00 the extremes.
    assert pcm16_to_mulaw(np.zeros(4, np.int16).tobytes()) == b"\xff" * 4
    assert mulaw_silence(3) == b"\xff\xff\xff"
    decoded = np.frombuffer(mulaw_to_pcm16(bytes([0xFF, 0x7F, 0x80, 0x00])), np.int16)
    assert decoded[0] == 0 and decoded[1] == 0
    assert decoded[2] == 32124 and decoded[3] == -32124


def test_mulaw_round_trip_error_is_small() -> None:
    pcm = tone(440, 8000, 0.1)
    back = np.frombuffer(mulaw_to_pcm16(pcm16_to_mulaw(pcm.tobytes())), np.int16)
    err = np.abs(back.astype(np.int32) - pcm.astype(np.int32))
    assert err.max() <= 1024  # log companding: error grows with amplitude, ~3 % at peak
    snr = 10 * np.log10(np.mean(pcm.astype(float) ** 2) / np.mean(err.astype(float) ** 2))
    assert snr > 30


def test_streaming_resampler_matches_one_shot_and_has_no_seams() -> None:
    pcm = tone(1000, 8000, 1.0).tobytes()
    stream = StreamResampler(8000, 16000)
    pieces = b"".join(stream.process(pcm[i : i + 320]) for i in range(0, len(pcm), 320))
    # The stream holds back only its filter delay (MQ: ~26 ms at 16 kHz), never more.
    held = 16000 - len(pieces) // 2
    assert 0 <= held <= 16000 * 0.03
    a = np.frombuffer(pieces, np.int16).astype(float)
    # A 1 kHz tone stays a 1 kHz tone: the dominant FFT bin is at 1 kHz.
    spectrum = np.abs(np.fft.rfft(a))
    assert abs(np.argmax(spectrum) * 16000 / len(a) - 1000) <= 3
    # No clicks at frame boundaries: the signal's steps never exceed a pure tone's.
    assert np.max(np.abs(np.diff(a))) < 0.5 * 32767 * 2 * math.pi * 1000 / 16000 * 1.2


def test_downsampling_keeps_the_tone_and_reset_forgets_state() -> None:
    pcm = tone(440, 16000, 0.5).tobytes()
    stream = StreamResampler(16000, 8000)
    first = stream.process(pcm)
    out = np.frombuffer(first, np.int16).astype(float)
    assert 4000 - 8000 * 0.1 <= len(out) <= 4000
    n = len(out)
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) * 8000 / n - 440) <= 8000 / n
    # After reset, the stream behaves exactly as a new one.
    stream.reset()
    assert stream.process(pcm) == first
    whole = np.frombuffer(resample_once(pcm, 16000, 8000), np.int16)
    assert len(whole) == 4000


def test_passthrough_when_rates_match() -> None:
    data = b"\x01\x02" * 10
    assert StreamResampler(8000, 8000).process(data) is data
