"""ElevenLabs streaming TTS against a local server speaking its documented protocols, with the
real SDK (HTTP) and a real WebSocket client pointed at it by base URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from elevenlabs.core.api_error import ApiError
from websockets.exceptions import ConnectionClosedError

from pipeline.engines import TextToSpeech, synthesize_as
from pipeline.providers.elevenlabs_tts import ElevenLabsError, ElevenLabsTTS
from tests.fake_elevenlabs import API_KEY, Behaviour, FakeElevenLabs

TEXT = "Buenos días, gracias por llamar a Punto Ciudadano."
VOICE = "dominicana-01"


@pytest.fixture
async def fake() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs() as server:
        yield server


def engine(fake: FakeElevenLabs, mode: str = "http", **kwargs: object) -> ElevenLabsTTS:
    return ElevenLabsTTS(API_KEY, VOICE, base_url=fake.base_url, mode=mode, **kwargs)  # type: ignore[arg-type]


async def collect(tts: ElevenLabsTTS, text: str, rate: int, **kwargs: object) -> list[bytes]:
    return [chunk async for chunk in tts.synthesize(text, rate, **kwargs)]  # type: ignore[arg-type]


def test_declares_mulaw_and_first_audio_reports() -> None:
    tts: TextToSpeech = ElevenLabsTTS("k", "v")
    assert "mulaw" in tts.native_encodings  # type: ignore[attr-defined]
    assert tts.reports_first_audio  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["http", "websocket"])
async def test_phone_audio_is_ulaw_8000_passed_through_untouched(
    fake: FakeElevenLabs, mode: str
) -> None:
    tts = engine(fake, mode)
    reports: list[tuple[str, float]] = []
    try:
        chunks = await collect(
            tts, TEXT, 8000, encoding="mulaw", on_first_audio=lambda p, t: reports.append((p, t))
        )
    finally:
        await tts.aclose()
    assert len(chunks) > 1  # streamed in pieces, not one blob at the end
    assert b"".join(chunks) == fake.audio_for(TEXT, "ulaw_8000")
    assert [p for p, _ in reports] == ["elevenlabs"]
    assert reports[0][1] > 0
    rec = fake.requests[0]
    assert rec.output_format == "ulaw_8000"
    assert rec.voice_id == VOICE
    assert rec.headers["xi-api-key"] == API_KEY


async def test_http_request_is_the_sdk_stream_call(fake: FakeElevenLabs) -> None:
    tts = engine(fake, "http", voice_settings={"stability": 0.4, "similarity_boost": 0.8})
    try:
        await collect(tts, "  Hola,   ¿en qué le puedo ayudar? ", 8000, encoding="mulaw")
    finally:
        await tts.aclose()
    rec = fake.requests[0]
    assert rec.kind == "http" and rec.path == f"/v1/text-to-speech/{VOICE}/stream"
    assert rec.body is not None
    assert rec.body["text"] == "Hola, ¿en qué le puedo ayudar?"
    assert rec.body["model_id"] == "eleven_multilingual_v2"
    assert rec.body["voice_settings"]["stability"] == 0.4


async def test_websocket_speaks_the_input_streaming_protocol(fake: FakeElevenLabs) -> None:
    tts = engine(fake, "websocket", ws_prewarm=False, voice_settings={"stability": 0.5})
    try:
        await collect(tts, TEXT, 8000, encoding="mulaw")
    finally:
        await tts.aclose()
    [rec] = fake.requests
    assert rec.kind == "ws" and rec.path == f"/v1/text-to-speech/{VOICE}/stream-input"
    assert rec.query == {
        "model_id": "eleven_multilingual_v2",
        "output_format": "ulaw_8000",
        "auto_mode": "true",
    }
    first, sentence, close = rec.messages
    assert first["text"] == " " and first["voice_settings"] == {"stability": 0.5}
    assert sentence == {"text": TEXT + " ", "flush": True}
    assert close == {"text": ""}
    assert rec.completed


@pytest.mark.parametrize("mode", ["http", "websocket"])
async def test_web_audio_is_pcm_at_the_requested_rate(fake: FakeElevenLabs, mode: str) -> None:
    tts = engine(fake, mode)
    try:
        direct = b"".join(await collect(tts, TEXT, 16000))
        resampled = b"".join(await collect(tts, TEXT, 48000))
    finally:
        await tts.aclose()
    assert direct == fake.audio_for(TEXT, "pcm_16000")
    # No 48 kHz format is asked for: 24 kHz is fetched and resampled, with the tail flushed.
    source = fake.audio_for(TEXT, "pcm_24000")
    assert [r.output_format for r in fake.requests if r.body or r.messages][-1] == "pcm_24000"
    assert abs(len(resampled) - 2 * len(source)) <= 4
    assert _dominant_hz(resampled, 48000) == pytest.approx(_dominant_hz(source, 24000), abs=2)


async def test_pcm_for_a_phone_transport_that_wants_pcm(fake: FakeElevenLabs) -> None:
    tts = engine(fake)
    try:
        pcm = b"".join(await collect(tts, TEXT, 8000))
    finally:
        await tts.aclose()
    assert fake.requests[0].output_format == "pcm_8000"
    assert pcm == fake.audio_for(TEXT, "pcm_8000")


async def test_synthesize_as_uses_the_native_mulaw(fake: FakeElevenLabs) -> None:
    tts = engine(fake)
    try:
        audio = b"".join([c async for c in synthesize_as(tts, TEXT, 8000, "mulaw")])
    finally:
        await tts.aclose()
    assert audio == fake.audio_for(TEXT, "ulaw_8000")
    assert fake.requests[0].output_format == "ulaw_8000"


async def test_http_warm_up_leaves_a_connection_for_the_first_sentence(
    fake: FakeElevenLabs,
) -> None:
    tts = engine(fake)
    try:
        await tts.warm_up()
        await collect(tts, "Primera frase.", 8000, encoding="mulaw")
        await collect(tts, "Segunda frase.", 8000, encoding="mulaw")
    finally:
        await tts.aclose()
    assert len(fake.model_listings) == 1
    # Both sentences went over the connection the warm-up opened.
    assert [r.peer for r in fake.requests] == fake.model_listings * 2


async def test_websocket_spare_socket_is_opened_ahead_and_used(fake: FakeElevenLabs) -> None:
    tts = engine(fake, "websocket")
    try:
        await tts.warm_up()
        assert len(fake.requests) == 1 and not fake.requests[0].messages[1:]
        await collect(tts, "Primera frase.", 8000, encoding="mulaw")
        await collect(tts, "Segunda frase.", 8000, encoding="mulaw")
    finally:
        await tts.aclose()
    sockets = [r for r in fake.requests if r.kind == "ws"]
    spoken = [r for r in sockets if len(r.messages) > 1]
    # Each sentence went out on a socket that was already open and initialised.
    assert [r.messages[1]["text"] for r in spoken] == ["Primera frase. ", "Segunda frase. "]
    assert spoken[1] is sockets[1]  # opened by the pre-warm after the first sentence


async def test_a_spare_that_died_idle_is_replaced_without_an_error(fake: FakeElevenLabs) -> None:
    # The pre-opened socket is closed by the server (as its inactivity timeout would do).
    fake.script(Behaviour(ws_error="input_timeout_exceeded"))
    tts = engine(fake, "websocket")
    try:
        await tts.warm_up()
        await asyncio.sleep(0.1)
        audio = b"".join(await collect(tts, TEXT, 8000, encoding="mulaw"))
    finally:
        await tts.aclose()
    assert audio == fake.audio_for(TEXT, "ulaw_8000")


@pytest.mark.parametrize("status", [401, 429, 500])
async def test_http_refusals_raise_with_the_status(fake: FakeElevenLabs, status: int) -> None:
    fake.script(Behaviour(status=status))
    tts = engine(fake)
    try:
        with pytest.raises(ApiError) as err:
            await collect(tts, TEXT, 8000, encoding="mulaw")
    finally:
        await tts.aclose()
    assert err.value.status_code == status
    assert len(fake.requests) == 1  # no SDK retries: the failover chain is the retry


async def test_wrong_api_key_is_refused(fake: FakeElevenLabs) -> None:
    for mode in ("http", "websocket"):
        tts = ElevenLabsTTS("wrong", VOICE, base_url=fake.base_url, mode=mode, ws_prewarm=False)  # type: ignore[arg-type]
        try:
            with pytest.raises((ApiError, ElevenLabsError)) as err:
                await collect(tts, TEXT, 8000, encoding="mulaw")
        finally:
            await tts.aclose()
        assert err.value.status_code == 401


async def test_websocket_handshake_refusal_raises_with_the_status(fake: FakeElevenLabs) -> None:
    fake.script(Behaviour(status=429))
    tts = engine(fake, "websocket", ws_prewarm=False)
    try:
        with pytest.raises(ElevenLabsError) as err:
            await collect(tts, TEXT, 8000, encoding="mulaw")
    finally:
        await tts.aclose()
    assert err.value.status_code == 429


@pytest.mark.parametrize("garbage", ["json", "base64"])
async def test_websocket_garbage_is_an_error(fake: FakeElevenLabs, garbage: str) -> None:
    fake.script(Behaviour(garbage=garbage))
    tts = engine(fake, "websocket", ws_prewarm=False)
    try:
        with pytest.raises(ElevenLabsError):
            await collect(tts, TEXT, 8000, encoding="mulaw")
    finally:
        await tts.aclose()


async def test_http_garbage_body_is_an_error(fake: FakeElevenLabs) -> None:
    fake.script(Behaviour(garbage="html"))
    tts = engine(fake)
    try:
        with pytest.raises(ElevenLabsError, match="expected audio"):
            await collect(tts, TEXT, 8000, encoding="mulaw")
    finally:
        await tts.aclose()


@pytest.mark.parametrize("mode", ["http", "websocket"])
async def test_a_drop_mid_stream_raises_after_the_audio_so_far(
    fake: FakeElevenLabs, mode: str
) -> None:
    fake.script(Behaviour(drop_after_chunks=2))
    tts = engine(fake, mode, ws_prewarm=False)
    got: list[bytes] = []
    try:
        with pytest.raises((httpx.RemoteProtocolError, ConnectionClosedError)):
            async for chunk in tts.synthesize(TEXT, 8000, encoding="mulaw"):
                got.append(chunk)
    finally:
        await tts.aclose()
    full = fake.audio_for(TEXT, "ulaw_8000")
    assert got and b"".join(got) == full[: len(b"".join(got))]
    assert len(b"".join(got)) < len(full)


@pytest.mark.parametrize("mode", ["http", "websocket"])
async def test_cancelling_mid_stream_closes_the_request(fake: FakeElevenLabs, mode: str) -> None:
    fake.script(Behaviour(chunk_delay_s=0.05, chunk_ms=20))
    tts = engine(fake, mode, ws_prewarm=False)
    got: list[bytes] = []
    two_chunks = asyncio.Event()

    async def consume() -> None:
        async for chunk in tts.synthesize(TEXT * 3, 8000, encoding="mulaw"):
            got.append(chunk)
            if len(got) == 2:
                two_chunks.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(two_chunks.wait(), 5)
        task.cancel()  # barge-in
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(fake.client_gone.wait(), 5)
    finally:
        await tts.aclose()
    rec = fake.requests[0]
    assert rec.client_gone and not rec.completed
    chunks_at_cancel = rec.chunks_sent
    await asyncio.sleep(0.2)
    assert rec.chunks_sent == chunks_at_cancel  # generation stopped with the request


async def test_closing_the_generator_closes_the_request(fake: FakeElevenLabs) -> None:
    fake.script(Behaviour(chunk_delay_s=0.05, chunk_ms=20))
    tts = engine(fake)
    try:
        stream = tts.synthesize(TEXT * 3, 8000, encoding="mulaw")
        await anext(stream)
        await stream.aclose()
        await asyncio.wait_for(fake.client_gone.wait(), 5)
    finally:
        await tts.aclose()
    assert not fake.requests[0].completed


async def test_blank_text_makes_no_request(fake: FakeElevenLabs) -> None:
    tts = engine(fake)
    try:
        assert await collect(tts, "   ", 8000, encoding="mulaw") == []
    finally:
        await tts.aclose()
    assert fake.requests == []


def _dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))
