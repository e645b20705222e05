"""Phone calls recognised by Deepgram live: the app under uvicorn, the real ``deepgram-sdk``
pointed at a local server that speaks Deepgram's live protocol, a hand-driven Twilio.

The batch STT (a fixed transcript) stands in for local Whisper: when a turn's text is the
fallback text, the live provider failed and the call went on without it.
"""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.providers.deepgram_stt import DeepgramLiveSTT
from pipeline.session import Engines
from tests.fake_deepgram import FakeDeepgram
from tests.integration.conftest import LiveServer
from tests.integration.test_twilio_stream import RawStream, _until, frames_of

KEY = "dg-test-key"
DEEPGRAM_TEXT = "¿A qué hora abren las oficinas?"
SECOND_TEXT = "¿Dónde queda la oficina principal?"
FALLBACK_TEXT = "Quisiera saber el horario, por favor."


def start_server(
    live_server_factory, fake: FakeDeepgram, api_key: str = KEY
) -> tuple[LiveServer, FixedSTT, DeepgramLiveSTT]:
    batch = FixedSTT(text=FALLBACK_TEXT)
    live = DeepgramLiveSTT(api_key, model="nova-2", language="es", base_url=fake.url)
    engines = Engines(vad=EnergyVad(), stt=batch, tts=ToneTTS(ms_per_char=10), brain=None,
                      live_stt=live)  # fmt: skip
    server = live_server_factory(engines=engines)
    live.metrics = server.services.metrics  # what services.py does when it builds the engine
    return server, batch, live


async def utterance(call: RawStream, sent: bytearray, speech_ms: int = 600) -> None:
    payloads = frames_of(True, speech_ms) + frames_of(False, 800)
    for payload in payloads:
        sent += base64.b64decode(payload)
    await call.media(payloads)


async def begin(server: LiveServer) -> RawStream:
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    await call.collect(1.0)  # the greeting
    return call


async def hang_up(call: RawStream, server: LiveServer):
    await call.stop()
    view = server.call_view(call.call_sid)
    await _until(lambda: view.end_reason is not None)
    return view


def caller_texts(view) -> list[str]:
    return [t.text for t in view.turns if t.speaker == "caller"]


def bot_turns(view) -> list:
    return [t for t in view.turns if t.speaker == "bot"]


async def metric_lines(server: LiveServer, prefix: str) -> list[str]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.url}/metrics")).text
    return [line for line in text.splitlines() if line.startswith(prefix)]


def counter(lines: list[str], *labels: str) -> float:
    for line in lines:
        if all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_deepgram_recognises_the_callers_turns(live_server_factory) -> None:
    async with FakeDeepgram(KEY, texts=[DEEPGRAM_TEXT, SECOND_TEXT]) as fake:
        server, batch, _ = start_server(live_server_factory, fake)
        call = await begin(server)
        sent = bytearray()
        await utterance(call, sent)
        await call.collect(1.5)
        await utterance(call, sent)
        await call.collect(1.5)
        view = await hang_up(call, server)

        assert caller_texts(view) == [DEEPGRAM_TEXT, SECOND_TEXT]
        assert len(bot_turns(view)) == 3  # greeting + one answer per turn
        assert batch.calls == []  # Whisper was never needed
        assert len(fake.connections) == 1
        conn = fake.connections[0]
        assert conn.authorization == f"Token {KEY}"
        assert conn.query["language"] == "es" and conn.query["model"] == "nova-2"
        assert conn.query["encoding"] == "mulaw" and conn.query["sample_rate"] == "8000"
        assert conn.query["interim_results"] == "true" and conn.query["endpointing"] == "300"
        # The caller's audio reached Deepgram byte for byte as Twilio sent it.
        assert bytes(conn.audio) == bytes(sent)
        assert conn.controls.count("Finalize") == 2
        assert conn.closed == "closestream"

        stored = await asyncio.to_thread(server.stored_call, call.call_sid)
        reply = [t for t in stored.turns if t.speaker == "bot"][1]
        assert "stt_ms.deepgram" in reply.timings
        ttfb = await metric_lines(server, "taina_provider_ttfb_seconds_count")
        assert counter(ttfb, 'kind="stt"', 'provider="deepgram"') == 1


@pytest.mark.parametrize(
    ("fault", "api_key", "reason"),
    [(None, "wrong-key", "refused"), ("refuse", KEY, "error")],
    ids=["401", "500"],
)
async def test_refused_at_open_batch_stt_answers_every_turn(
    live_server_factory, fault, api_key, reason
) -> None:
    async with FakeDeepgram(KEY, texts=[DEEPGRAM_TEXT], fault=fault, refuse_status=500) as fake:
        server, batch, _ = start_server(live_server_factory, fake, api_key=api_key)
        call = await begin(server)
        sent = bytearray()
        await utterance(call, sent)
        await call.collect(1.5)
        await utterance(call, sent)
        await call.collect(1.5)
        view = await hang_up(call, server)

        assert caller_texts(view) == [FALLBACK_TEXT, FALLBACK_TEXT]
        assert len(bot_turns(view)) == 3
        assert len(batch.calls) == 2
        assert fake.connections == [] and fake.refused
        failures = await metric_lines(server, "taina_provider_failures_total")
        assert counter(failures, 'provider="deepgram"', f'reason="{reason}"') >= 1


async def test_a_drop_mid_utterance_reconnects_and_the_turn_completes(
    live_server_factory,
) -> None:
    async with FakeDeepgram(
        KEY, texts=[DEEPGRAM_TEXT, SECOND_TEXT], fault="drop", drop_after_bytes=15 * 160
    ) as fake:
        server, batch, _ = start_server(live_server_factory, fake)
        call = await begin(server)
        sent = bytearray()
        await utterance(call, sent)  # the socket drops 300 ms into the caller's words
        await call.collect(1.5)
        await utterance(call, sent)
        await call.collect(1.5)
        view = await hang_up(call, server)

        assert caller_texts(view) == [DEEPGRAM_TEXT, SECOND_TEXT]
        assert batch.calls == []
        assert len(fake.connections) == 2
        first, second = fake.connections
        assert first.closed == "dropped" and first.audio_bytes == 15 * 160
        # The new socket heard the interrupted utterance again from its first byte.
        assert bytes(second.audio) == bytes(sent)
        failures = await metric_lines(server, "taina_provider_failures_total")
        assert counter(failures, 'provider="deepgram"', 'reason="dropped"') == 1


async def test_a_stalled_deepgram_costs_its_budget_then_batch_stt_answers(
    live_server_factory,
) -> None:
    async with FakeDeepgram(KEY, texts=[DEEPGRAM_TEXT], fault="stall") as fake:
        server, batch, _ = start_server(live_server_factory, fake)
        call = await begin(server)
        sent = bytearray()
        await utterance(call, sent)
        await call.collect(2.5)
        await utterance(call, sent)
        await call.collect(2.5)
        view = await hang_up(call, server)

        assert caller_texts(view) == [FALLBACK_TEXT, FALLBACK_TEXT]
        replies = bot_turns(view)[1:]
        assert len(replies) == 2
        for reply in replies:
            assert "stt_ms.fixed" in reply.timings
            assert reply.timings["stt_wait_ms"] >= 1000  # live_final_timeout_s, then batch
        assert fake.connections[0].audio_bytes == len(sent)
        failures = await metric_lines(server, "taina_provider_failures_total")
        assert counter(failures, 'provider="deepgram"', 'reason="timeout"') == 2


async def test_garbage_frames_are_ignored_and_the_call_goes_on(live_server_factory) -> None:
    async with FakeDeepgram(KEY, texts=[DEEPGRAM_TEXT, SECOND_TEXT], fault="garbage") as fake:
        server, batch, _ = start_server(live_server_factory, fake)
        call = await begin(server)
        sent = bytearray()
        await utterance(call, sent)
        await call.collect(1.5)
        await utterance(call, sent)
        await call.collect(1.5)
        view = await hang_up(call, server)

        assert caller_texts(view) == [DEEPGRAM_TEXT, SECOND_TEXT]
        assert batch.calls == []
        assert len(fake.connections) == 1
        failures = await metric_lines(server, "taina_provider_failures_total")
        assert counter(failures, 'provider="deepgram"', 'reason="bad_message"') > 5
