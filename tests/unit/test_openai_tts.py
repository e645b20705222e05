"""OpenAI TTS against a local server speaking ``/v1/audio/speech``, with the real SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import numpy as np
import pytest
from openai import APIStatusError, AsyncOpenAI

from pipeline.providers.openai_tts import OpenAITTS, OpenAITTSError
from tests.fake_openai_audio import API_KEY, AudioBehaviour, FakeOpenAIAudio

TEXT = "Con gusto le ayudo. ¿Me indica su número de cédula, por favor?"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIAudio]:
    async with FakeOpenAIAudio() as server:
        yield server


@pytest.fixture
async def tts(fake: FakeOpenAIAudio) -> AsyncIterator[OpenAITTS]:
    engine = OpenAITTS(api_key=API_KEY, base_url=fake.base_url)
    yield engine
    await engine.aclose()


async def collect(tts: OpenAITTS, text: str, rate: int, **kwargs: object) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize(text, rate, **kwargs)]  # type: ignore[arg-type]


async def test_streams_24khz_pcm_untouched_at_24khz(fake: FakeOpenAIAudio, tts: OpenAITTS) -> None:
    reports: list[tuple[str, float]] = []
    chunks = await collect(tts, TEXT, 24000, on_first_audio=lambda p, t: reports.append((p, t)))
    assert len(chunks) > 1
    assert b"".join(chunks) == fake.audio_for(TEXT)
    assert [p for p, _ in reports] == ["openai"]


async def test_request_asks_for_raw_pcm_with_spanish_instructions(
    fake: FakeOpenAIAudio, tts: OpenAITTS
) -> None:
    await collect(tts, TEXT, 8000)
    [req] = fake.speech_requests
    assert req.headers["Authorization"] == f"Bearer {API_KEY}"
    assert req.body["model"] == "gpt-4o-mini-tts"
    assert req.body["voice"] == "coral"
    assert req.body["input"] == TEXT
    assert req.body["response_format"] == "pcm"
    instructions = req.body["instructions"]
    assert "usted" in instructions and "dominicano" in instructions


async def test_tts_1_gets_no_instructions(fake: FakeOpenAIAudio) -> None:
    engine = OpenAITTS(api_key=API_KEY, base_url=fake.base_url, model="tts-1", voice="nova")
    try:
        await collect(engine, TEXT, 8000)
    finally:
        await engine.aclose()
    assert "instructions" not in fake.speech_requests[0].body


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
async def test_resampled_streaming_keeps_length_and_pitch(
    fake: FakeOpenAIAudio, tts: OpenAITTS, rate: int
) -> None:
    fake.default = AudioBehaviour(chunk_ms=37)  # chunks that split samples oddly in time
    chunks = await collect(tts, TEXT, rate)
    audio = b"".join(chunks)
    source = fake.audio_for(TEXT)
    assert all(len(c) % 2 == 0 for c in chunks)
    assert abs(len(audio) // 2 - len(source) // 2 * rate // 24000) <= 2
    assert _dominant_hz(audio, rate) == pytest.approx(_dominant_hz(source, 24000), abs=2)


async def test_uses_a_given_client(fake: FakeOpenAIAudio) -> None:
    client = AsyncOpenAI(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
    engine = OpenAITTS(client, voice="sage")
    try:
        assert b"".join(await collect(engine, TEXT, 24000)) == fake.audio_for(TEXT)
        await engine.aclose()  # not ours: left open
        assert not client.is_closed()
    finally:
        await client.close()
    assert fake.speech_requests[0].body["voice"] == "sage"


@pytest.mark.parametrize("status", [401, 429, 500])
async def test_refusals_raise_once_without_retries(
    fake: FakeOpenAIAudio, tts: OpenAITTS, status: int
) -> None:
    fake.script(AudioBehaviour(status=status))
    with pytest.raises(APIStatusError) as err:
        await collect(tts, TEXT, 8000)
    assert err.value.status_code == status
    assert len(fake.speech_requests) == 1


async def test_a_non_audio_body_is_an_error(fake: FakeOpenAIAudio, tts: OpenAITTS) -> None:
    fake.script(AudioBehaviour(garbage=True))
    with pytest.raises(OpenAITTSError):
        await collect(tts, TEXT, 8000)


async def test_a_drop_mid_stream_raises(fake: FakeOpenAIAudio, tts: OpenAITTS) -> None:
    fake.script(AudioBehaviour(drop_after_chunks=2))
    got: list[bytes] = []
    with pytest.raises(httpx2.RemoteProtocolError):  # the SDK's HTTP client, unwrapped
        async for chunk in tts.synthesize(TEXT, 24000):
            got.append(chunk)
    assert got and len(b"".join(got)) < len(fake.audio_for(TEXT))


async def test_cancelling_mid_stream_closes_the_request(
    fake: FakeOpenAIAudio, tts: OpenAITTS
) -> None:
    fake.script(AudioBehaviour(chunk_delay_s=0.05, chunk_ms=20))
    got: list[bytes] = []
    two_chunks = asyncio.Event()

    async def consume() -> None:
        async for chunk in tts.synthesize(TEXT * 3, 8000):
            got.append(chunk)
            if len(got) == 2:
                two_chunks.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(two_chunks.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.client_gone.wait(), 5)
    req = fake.speech_requests[0]
    assert req.client_gone and not req.completed


def _dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))
