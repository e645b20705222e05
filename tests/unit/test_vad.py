"""Silero VAD on onnxruntime: real speech from the embedded voice, state handling, batching."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engines import VadStream
from pipeline.tts import EspeakTTS
from pipeline.vad import SileroVadModel, SileroVadStream

SENTENCE = "Buenos días, quisiera saber a qué hora abren las oficinas de pasaportes."


@pytest.fixture(scope="module")
def model() -> SileroVadModel:
    return SileroVadModel()


async def _speech(tts: EspeakTTS, rate: int) -> np.ndarray:
    """Half a second of silence, the sentence, one second of silence; float32 in [-1, 1]."""
    pcm = await tts.synthesize_all(SENTENCE, rate)
    voice = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return np.concatenate([np.zeros(rate // 2, np.float32), voice, np.zeros(rate, np.float32)])


def _windows(audio: np.ndarray, size: int) -> list[np.ndarray]:
    return [audio[i : i + size] for i in range(0, audio.size - size + 1, size)]


def _reference_probabilities(
    model: SileroVadModel, windows: list[np.ndarray], rate: int
) -> list[float]:
    """Straight port of silero_vad.utils_vad.OnnxWrapper.__call__ (which needs torch)."""
    context_size = 64 if rate == 16000 else 32
    context = np.zeros((1, context_size), np.float32)
    state = np.zeros((2, 1, 128), np.float32)
    out = []
    for w in windows:
        x = np.concatenate([context, w[None, :]], axis=1)
        prob, state = model.session.run(
            None, {"input": x, "state": state, "sr": np.array(rate, dtype=np.int64)}
        )
        context = x[..., -context_size:]
        out.append(float(prob[0, 0]))
    return out


def test_stream_implements_protocol(model: SileroVadModel) -> None:
    stream = model.stream(8000)
    assert isinstance(stream, VadStream)
    assert (stream.sample_rate, stream.window_samples) == (8000, 256)
    assert model.stream(16000).window_samples == 512


def test_rejects_unsupported_rate_and_wrong_window(model: SileroVadModel) -> None:
    with pytest.raises(ValueError):
        model.stream(44100)
    with pytest.raises(ValueError):
        model.stream(16000).probability(np.zeros(256, np.float32))


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silence_is_not_speech(model: SileroVadModel, rate: int) -> None:
    stream = model.stream(rate)
    rng = np.random.default_rng(1)
    for _ in range(30):
        quiet = (rng.standard_normal(stream.window_samples) * 1e-4).astype(np.float32)
        assert stream.probability(quiet) < 0.1


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_speech_is_detected(model: SileroVadModel, tts: EspeakTTS, rate: int) -> None:
    stream = model.stream(rate)
    windows = _windows(await _speech(tts, rate), stream.window_samples)
    probs = np.array([stream.probability(w) for w in windows])
    loud = np.array([np.sqrt(np.mean(w**2)) > 0.02 for w in windows])

    assert loud.sum() > 20
    assert np.mean(probs[loud] > 0.5) > 0.9
    lead_in = (rate // 2) // stream.window_samples
    assert np.all(probs[: lead_in - 2] < 0.1)
    assert probs[-1] < 0.1  # a second after the sentence


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_matches_reference_wrapper(model: SileroVadModel, tts: EspeakTTS, rate: int) -> None:
    stream = model.stream(rate)
    windows = _windows(await _speech(tts, rate), stream.window_samples)
    ours = [stream.probability(w) for w in windows]
    np.testing.assert_allclose(ours, _reference_probabilities(model, windows, rate), atol=1e-6)


async def test_reset_restores_initial_state(model: SileroVadModel, tts: EspeakTTS) -> None:
    stream = model.stream(16000)
    windows = _windows(await _speech(tts, 16000), 512)
    first = [stream.probability(w) for w in windows[:40]]
    # State now reflects speech; without reset the same audio scores differently.
    assert [stream.probability(w) for w in windows[:40]] != first
    stream.reset()
    assert [stream.probability(w) for w in windows[:40]] == first


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_batch_equals_sequential(model: SileroVadModel, tts: EspeakTTS, rate: int) -> None:
    audio = await _speech(tts, rate)
    size = model.stream(rate).window_samples
    # Three "calls" hearing different parts of the audio (and one hearing silence).
    offsets = [0, audio.size // 3, audio.size // 2]
    feeds = [_windows(audio[o:], size)[:60] for o in offsets] + [[np.zeros(size, np.float32)] * 60]
    solo = []
    for feed in feeds:
        s = model.stream(rate)
        solo.append([s.probability(w) for w in feed])

    streams: list[SileroVadStream] = [model.stream(rate) for _ in feeds]
    batched: list[list[float]] = [[] for _ in feeds]
    for step in range(60):
        probs = model.probabilities_batch(streams, [feed[step] for feed in feeds])
        for i, p in enumerate(probs):
            batched[i].append(p)

    np.testing.assert_allclose(np.array(batched), np.array(solo), atol=1e-5)
    assert max(max(b) for b in batched[:3]) > 0.5  # the comparison covered speech too


def test_batch_rejects_mixed_rates(model: SileroVadModel) -> None:
    streams = [model.stream(8000), model.stream(16000)]
    windows = [np.zeros(256, np.float32), np.zeros(512, np.float32)]
    with pytest.raises(ValueError):
        model.probabilities_batch(streams, windows)
