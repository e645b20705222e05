"""A whole phone call spoken by the production voices: the app under uvicorn, Twilio's media
stream on a real socket, and the TTS chain ElevenLabs → OpenAI → eSpeak with the real SDKs
pointed at local servers that speak their protocols."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from pipeline.instant_engines import EnergyVad, FixedSTT
from pipeline.providers.elevenlabs_tts import ElevenLabsTTS
from pipeline.providers.failover_tts import FailoverTTS
from pipeline.providers.openai_tts import OpenAITTS
from pipeline.session import Engines
from pipeline.tts import EspeakTTS
from tests.fake_elevenlabs import API_KEY as EL_KEY
from tests.fake_elevenlabs import Behaviour, FakeElevenLabs
from tests.fake_openai_audio import API_KEY as OA_KEY
from tests.fake_openai_audio import FakeOpenAIAudio
from tests.integration.conftest import LiveServer
from tests.integration.test_twilio_stream import RawStream, _until, frames_of

BUDGET_S = 0.5
SLACK_S = 1.5  # end-of-turn silence, STT, brain, scheduling on a busy 2-core machine


@pytest.fixture
async def el() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(ms_per_char=15) as server:
        yield server


@pytest.fixture
async def oa() -> AsyncIterator[FakeOpenAIAudio]:
    async with FakeOpenAIAudio(ms_per_char=15) as server:
        yield server


def provider_server(
    live_server_factory, el: FakeElevenLabs, oa: FakeOpenAIAudio
) -> tuple[LiveServer, FailoverTTS]:
    tts = FailoverTTS(
        [
            ElevenLabsTTS(EL_KEY, "voz-dominicana", base_url=el.base_url),
            OpenAITTS(api_key=OA_KEY, base_url=oa.base_url),
            EspeakTTS(),
        ],
        first_byte_budget_s=BUDGET_S,
        cooldown_s=60.0,
    )
    engines = Engines(
        vad=EnergyVad(), stt=FixedSTT("¿A qué hora abren las oficinas?"), tts=tts, brain=None
    )
    server = live_server_factory(engines=engines)
    tts.attach_metrics(server.services.metrics)  # what app/services.py does for its chain
    return server, tts


async def close_providers(server: LiveServer, tts: FailoverTTS) -> None:
    for provider in tts.providers:
        closer = getattr(provider, "aclose", None)
        if closer is not None:
            server.run(closer())  # their HTTP clients live on the server's loop


def media_bytes(msgs: list[dict]) -> bytes:
    return b"".join(base64.b64decode(m["media"]["payload"]) for m in msgs if m["event"] == "media")


async def talk(call: RawStream) -> tuple[list[dict], list[dict]]:
    await call.connect()
    await call.start(await call.webhook())
    greeting = await call.collect(2.0)
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    answer = await call.collect(3.0)
    await call.stop()
    return greeting, answer


async def test_a_call_spoken_by_elevenlabs_in_native_mulaw(
    live_server_factory, el: FakeElevenLabs, oa: FakeOpenAIAudio
) -> None:
    server, tts = provider_server(live_server_factory, el, oa)
    call = RawStream(server)
    greeting, answer = await talk(call)
    view = server.call_view(call.call_sid)
    await _until(lambda: view.end_reason is not None)
    await close_providers(server, tts)

    # Every sentence was one ElevenLabs request for ulaw_8000, and the caller got exactly
    # those bytes, in order: no decoding, resampling or re-encoding on the way.
    spoken = [r for r in el.requests if r.completed]
    assert spoken and all(r.output_format == "ulaw_8000" for r in spoken)
    expected = b"".join(el.audio_for(r.body["text"], "ulaw_8000") for r in spoken)  # type: ignore[index]
    assert media_bytes(greeting) + media_bytes(answer) == expected
    assert oa.requests == []

    bots = [t for t in view.turns if t.speaker == "bot"]
    assert len(bots) == 2 and bots[1].text
    assert all("tts_ttfb_ms.elevenlabs" in t.timings for t in bots)
    stored = await _stored(server, call.call_sid)
    assert "tts_ttfb_ms.elevenlabs" in stored.turns[-1].timings


async def test_with_elevenlabs_stalling_openai_answers_within_the_budget(
    live_server_factory, el: FakeElevenLabs, oa: FakeOpenAIAudio
) -> None:
    server, tts = provider_server(live_server_factory, el, oa)
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    greeting = await call.collect(2.0)
    assert media_bytes(greeting)

    el.default = Behaviour(stall=True)  # ElevenLabs hangs from now on
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    answer = await call.collect(4.0)
    await call.stop()
    view = server.call_view(call.call_sid)
    await _until(lambda: view.end_reason is not None)
    await close_providers(server, tts)

    reply = [t for t in view.turns if t.speaker == "bot"][-1]
    assert reply.text and not reply.interrupted
    # The caller heard the whole answer, every sentence in OpenAI's voice (24 kHz PCM made
    # 8 kHz mu-law: a third of the samples, one byte each).
    said = [r.body["input"] for r in oa.speech_requests if r.completed]
    assert " ".join(said).replace(" ", "") == reply.text.replace(" ", "")
    expected_len = sum(len(oa.audio_for(text)) // 6 for text in said)
    assert abs(len(media_bytes(answer)) - expected_len) <= 4 * len(said)
    # Only the first sentence waited for ElevenLabs; the rest skipped it (cool-down).
    assert len([r for r in el.requests if not r.completed]) == 1

    timings = reply.timings
    assert "tts_ttfb_ms.openai" in timings and "tts_ttfb_ms.elevenlabs" not in timings
    assert timings["first_byte_ms"] <= timings["endpoint_ms"] + (BUDGET_S + SLACK_S) * 1000
    assert timings["tts_first_audio_ms"] >= BUDGET_S * 1000  # it did wait for ElevenLabs

    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{server.url}/metrics")).text
    assert (
        'taina_provider_failures_total{kind="tts",provider="elevenlabs",reason="timeout"} 1.0'
        in metrics
    )
    assert (
        'taina_provider_failovers_total{from_provider="elevenlabs",kind="tts",'
        'to_provider="openai"} 1.0' in metrics
    )
    assert 'taina_provider_ttfb_seconds_count{kind="tts",provider="openai"}' in metrics
    stored = await _stored(server, call.call_sid)
    assert "tts_ttfb_ms.openai" in stored.turns[-1].timings


async def _stored(server: LiveServer, call_sid: str):
    stored = await asyncio.to_thread(server.stored_call, call_sid)
    assert stored is not None
    return stored
