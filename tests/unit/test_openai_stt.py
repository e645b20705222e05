"""OpenAI transcription as batch STT, against a local ``/v1/audio/transcriptions`` server."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import numpy as np
import openai
import pytest

from pipeline.engines import SpeechToText
from pipeline.providers.openai_stt import OpenAISTT, pcm16_to_wav
from tests.fake_openai_audio import API_KEY, AudioBehaviour, FakeOpenAIAudio

PROMPT = "Sí. No. Cédula, pasaporte."


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIAudio]:
    async with FakeOpenAIAudio() as server:
        yield server


@pytest.fixture
async def stt(fake: FakeOpenAIAudio) -> AsyncIterator[OpenAISTT]:
    engine = OpenAISTT(api_key=API_KEY, base_url=fake.base_url, prompt=PROMPT, timeout_s=1.0)
    yield engine
    await engine.aclose()


def speech(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()


def test_wav_header_wraps_the_pcm_exactly() -> None:
    pcm = speech(0.5, 16000)
    with wave.open(io.BytesIO(pcm16_to_wav(pcm, 16000)), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.readframes(w.getnframes()) == pcm


async def test_transcribes_one_utterance(fake: FakeOpenAIAudio, stt: OpenAISTT) -> None:
    engine: SpeechToText = stt
    fake.script(AudioBehaviour(text="  Quiero renovar mi pasaporte.  "))
    result = await engine.transcribe(speech(1.5, 16000), 16000)
    assert result.text == "Quiero renovar mi pasaporte."
    assert result.provider == "openai"
    assert result.audio_s == pytest.approx(1.5)
    assert result.elapsed_s > 0
    [req] = fake.transcription_requests
    assert req.headers["Authorization"] == f"Bearer {API_KEY}"
    assert req.body["model"] == "gpt-4o-mini-transcribe"
    assert req.body["language"] == "es"
    assert req.body["prompt"] == PROMPT
    assert req.body["response_format"] == "json"
    assert req.body["file"]["filename"].endswith(".wav")
    assert req.wav == {"rate": 16000, "channels": 1, "sample_width": 2, "frames": 24000}


async def test_phone_rate_audio_is_sent_at_its_own_rate(
    fake: FakeOpenAIAudio, stt: OpenAISTT
) -> None:
    await stt.transcribe(speech(0.8, 8000), 8000)
    assert fake.transcription_requests[0].wav == {
        "rate": 8000,
        "channels": 1,
        "sample_width": 2,
        "frames": 6400,
    }


async def test_no_prompt_sends_none(fake: FakeOpenAIAudio) -> None:
    engine = OpenAISTT(api_key=API_KEY, base_url=fake.base_url, model="whisper-1")
    try:
        await engine.transcribe(speech(0.3, 16000), 16000)
    finally:
        await engine.aclose()
    body = fake.transcription_requests[0].body
    assert "prompt" not in body and body["model"] == "whisper-1"


@pytest.mark.parametrize("status", [401, 429, 500])
async def test_refusals_raise(fake: FakeOpenAIAudio, stt: OpenAISTT, status: int) -> None:
    fake.script(AudioBehaviour(status=status))
    with pytest.raises(openai.APIStatusError) as err:
        await stt.transcribe(speech(0.3, 16000), 16000)
    assert err.value.status_code == status
    assert len(fake.transcription_requests) == 1  # no retries: the STT chain is the retry


async def test_a_stalled_server_times_out(fake: FakeOpenAIAudio, stt: OpenAISTT) -> None:
    fake.script(AudioBehaviour(stall=True))
    with pytest.raises(openai.APITimeoutError):
        await stt.transcribe(speech(0.3, 16000), 16000)


async def test_a_dropped_connection_raises(fake: FakeOpenAIAudio, stt: OpenAISTT) -> None:
    fake.script(AudioBehaviour(drop_after_chunks=0))
    with pytest.raises(openai.APIConnectionError):
        await stt.transcribe(speech(0.3, 16000), 16000)


async def test_a_garbage_answer_raises(fake: FakeOpenAIAudio, stt: OpenAISTT) -> None:
    fake.script(AudioBehaviour(garbage=True))
    with pytest.raises((openai.APIError, ValueError)):
        await stt.transcribe(speech(0.3, 16000), 16000)
