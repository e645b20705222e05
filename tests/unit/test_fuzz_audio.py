"""Audio decoding under arbitrary input: mu-law decoding and the streaming resampler.

Whatever bytes a peer sends (any length, odd byte counts, empty chunks, any chunking), the
codec never raises, output length tracks input (nothing lost, nothing invented) and the
resampler holds back only a bounded amount, however long the stream runs.

Hypothesis runs derandomized and without an example database, so CI runs are reproducible.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.audio_codec import (
    StreamResampler,
    mulaw_to_pcm16,
    pcm16_to_mulaw,
    resample_once,
    rms,
)

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150)
RATES = st.sampled_from([8000, 16000, 24000, 48000])
# Chunk sizes as a network would deliver them: empty, a single byte, odd, typical, large.
CHUNK = st.one_of(
    st.just(0), st.just(1), st.integers(0, 7), st.integers(0, 400), st.integers(0, 20_000)
)


@FUZZ
@given(st.binary(max_size=4096))
def test_mulaw_decoding_accepts_any_bytes(data: bytes) -> None:
    pcm = mulaw_to_pcm16(data)
    assert len(pcm) == 2 * len(data)
    samples = np.frombuffer(pcm, np.int16)
    assert np.all(np.abs(samples.astype(np.int32)) <= 32124)  # G.711's largest magnitude
    # Decoding is stable: what we decode, re-encode and decode again does not drift.
    assert mulaw_to_pcm16(pcm16_to_mulaw(pcm)) == pcm
    assert rms(pcm) >= 0


@FUZZ
@given(st.binary(max_size=999))
def test_rms_and_one_shot_resampling_accept_odd_byte_counts(data: bytes) -> None:
    assert rms(data) >= 0
    out = resample_once(data, 8000, 16000)
    assert len(out) % 2 == 0
    assert abs(len(out) // 2 - 2 * (len(data) // 2)) <= 2


@FUZZ
@given(RATES, RATES, st.lists(CHUNK, max_size=60), st.integers(0, 2**32 - 1))
def test_stream_resampler_tracks_its_input_for_any_chunking(
    in_rate: int, out_rate: int, sizes: list[int], seed: int
) -> None:
    """After every chunk: output stays within a fixed distance of input × ratio (no growth
    over time, no invented audio), every output is whole samples, nothing raises."""
    rng = np.random.default_rng(seed)
    stream = StreamResampler(in_rate, out_rate)
    ratio = out_rate / in_rate
    bytes_in = 0
    samples_out = 0
    # Filter delay (MQ, worst case at the lowest rate) plus soxr's internal block of input.
    held_allowed = 0.12 * out_rate + 2
    for size in sizes:
        chunk = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        out = stream.process(chunk)
        assert len(out) % 2 == 0
        bytes_in += size
        samples_out += len(out) // 2
        expected = (bytes_in // 2) * ratio
        assert samples_out <= expected + 2, "more audio out than went in"
        assert expected - samples_out <= held_allowed, "the resampler holds back more and more"


def test_a_long_stream_of_odd_chunks_loses_nothing() -> None:
    """An hour-long habit of 161-byte chunks (odd) keeps every byte: 8 kHz in, 16 kHz out."""
    stream = StreamResampler(8000, 16000)
    tone = (np.sin(np.arange(8000 * 60) / 8000 * 2 * np.pi * 440) * 8000).astype(np.int16)
    data = tone.tobytes()
    out = b"".join(stream.process(data[i : i + 161]) for i in range(0, len(data), 161))
    assert 0 <= 2 * len(tone) - len(out) // 2 <= 0.03 * 16000
    passthrough = StreamResampler(16000, 16000)
    pieces = [passthrough.process(data[i : i + 161]) for i in range(0, len(data), 161)]
    assert all(len(p) % 2 == 0 for p in pieces) and b"".join(pieces) == data


def test_reset_drops_a_pending_half_sample() -> None:
    stream = StreamResampler(8000, 16000)
    stream.process(b"\x01")
    stream.reset()
    assert stream.process(b"\x00\x00" * 80) == StreamResampler(8000, 16000).process(
        b"\x00\x00" * 80
    )
