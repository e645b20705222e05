"""Deepgram live STT: the real SDK against a local server speaking Deepgram's live protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from pipeline.metrics import PipelineMetrics
from pipeline.providers.deepgram_stt import (
    DeepgramLiveSTT,
    DeepgramRefused,
    DeepgramTranscriber,
    DeepgramUnavailable,
)
from telephony.audio_codec import pcm16_to_mulaw
from tests.fake_deepgram import FakeDeepgram

KEY = "test-key"
FRAME = 160  # 20 ms of mu-law at 8 kHz
_rng = np.random.default_rng(7)


def mulaw_frames(loud: bool, ms: int) -> list[bytes]:
    """20 ms mu-law frames: noise the fake hears as speech, or digital silence."""
    out = []
    for _ in range(ms // 20):
        pcm = (_rng.standard_normal(160) * (6000 if loud else 0)).astype(np.int16)
        out.append(pcm16_to_mulaw(pcm.tobytes()))
    return out


async def feed(t: DeepgramTranscriber, frames: list[bytes], sent: bytearray | None = None) -> None:
    for frame in frames:
        t.send(frame)
        if sent is not None:
            sent += frame
        await asyncio.sleep(0.001)


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def failures(metrics: PipelineMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "taina_provider_failures_total",
        {"kind": "stt", "provider": "deepgram", "reason": reason},
    )
    return value or 0.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeDeepgram]:
    async with FakeDeepgram(KEY, texts=["¿A qué hora abren?", "Muchas gracias."]) as server:
        yield server


def make_stt(server: FakeDeepgram, **kwargs: object) -> tuple[DeepgramLiveSTT, PipelineMetrics]:
    metrics = PipelineMetrics.create()
    kwargs.setdefault("api_key", KEY)
    stt = DeepgramLiveSTT(base_url=server.url, metrics=metrics, **kwargs)  # type: ignore[arg-type]
    return stt, metrics


async def open_phone(stt: DeepgramLiveSTT) -> DeepgramTranscriber:
    return await stt.open(call_id="CAtest", encoding="mulaw", sample_rate=8000)


async def test_phone_audio_goes_untouched_with_the_documented_query(fake: FakeDeepgram) -> None:
    stt, metrics = make_stt(fake, model="nova-3", endpointing_ms=250, utterance_end_ms=1200)
    t = await open_phone(stt)
    sent = bytearray()
    await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 400), sent)
    await until(lambda: fake.connections and fake.connections[0].audio_bytes == len(sent))
    conn = fake.connections[0]
    assert conn.authorization == f"Token {KEY}"
    assert conn.query == {
        "model": "nova-3",
        "language": "es",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "channels": "1",
        "punctuate": "true",
        "smart_format": "true",
        "interim_results": "true",
        "endpointing": "250",
        "utterance_end_ms": "1200",
        "vad_events": "true",
    }
    assert bytes(conn.audio) == bytes(sent)  # mu-law 8 kHz as it came off the wire
    transcript = await t.final_text(1.0)
    assert transcript.text == "¿A qué hora abren?"
    assert transcript.provider == "deepgram"
    assert transcript.audio_s == pytest.approx(0.8)
    await t.aclose()
    assert conn.controls[-1] == "CloseStream" and conn.closed == "closestream"
    ttfb = metrics.registry.get_sample_value(
        "taina_provider_ttfb_seconds_count", {"kind": "stt", "provider": "deepgram"}
    )
    assert ttfb == 1


async def test_pcm_audio_is_declared_as_linear16(fake: FakeDeepgram) -> None:
    stt, _ = make_stt(fake)
    t = await stt.open(call_id="CAweb", encoding="pcm16", sample_rate=16000)
    assert await t.wait_connected(5)
    t.send(bytes(640))
    await until(lambda: fake.connections[0].audio_bytes == 640)
    assert fake.connections[0].query["encoding"] == "linear16"
    assert fake.connections[0].query["sample_rate"] == "16000"
    await t.aclose()


async def test_speech_final_calls_the_endpoint_and_each_turn_gets_only_its_words(
    fake: FakeDeepgram,
) -> None:
    stt, _ = make_stt(fake)
    t = await open_phone(stt)
    endpoints: list[int] = []
    t.on_endpoint(lambda: endpoints.append(1))
    await feed(t, mulaw_frames(True, 600))
    assert endpoints == []  # interim results only while the caller talks
    await feed(t, mulaw_frames(False, 400))
    await until(lambda: endpoints == [1])
    conn = fake.connections[0]
    assert conn.results(is_final=False), "interim results were sent"
    assert conn.results(speech_final=True)
    assert (await t.final_text(1.0)).text == "¿A qué hora abren?"

    await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 400))
    assert (await t.final_text(1.0)).text == "Muchas gracias."
    assert endpoints == [1, 1]
    await t.aclose()


async def test_utterance_end_calls_the_endpoint_when_endpointing_is_off(
    fake: FakeDeepgram,
) -> None:
    stt, _ = make_stt(fake, endpointing_ms=0, utterance_end_ms=1000)
    t = await open_phone(stt)
    endpoints: list[int] = []
    t.on_endpoint(lambda: endpoints.append(1))
    await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 800))
    await asyncio.sleep(0.05)
    assert endpoints == []
    await feed(t, mulaw_frames(False, 300))
    await until(lambda: endpoints == [1])
    conn = fake.connections[0]
    assert conn.query["endpointing"] == "false"
    assert not conn.results(speech_final=True)
    assert [m["type"] for m in conn.sent].count("UtteranceEnd") == 1
    assert (await t.final_text(1.0)).text == "¿A qué hora abren?"
    await t.aclose()


async def test_finalize_flushes_words_still_interim(fake: FakeDeepgram) -> None:
    stt, _ = make_stt(fake)
    t = await open_phone(stt)
    await feed(t, mulaw_frames(True, 500))  # the turn ends before Deepgram's endpoint
    await until(lambda: bool(fake.connections[0].results(is_final=False)))
    transcript = await t.final_text(1.0)
    assert transcript.text == "¿A qué hora abren?"
    conn = fake.connections[0]
    assert conn.controls == ["Finalize"]
    assert conn.results(from_finalize=True)[0]["channel"]["alternatives"][0]["transcript"]
    await t.aclose()


async def test_final_words_without_a_finalize_answer_return_after_settling() -> None:
    async with FakeDeepgram(KEY, texts=["Sí, correcto."], finalize_reply=False) as server:
        stt, _ = make_stt(server, settle_s=0.05)
        t = await open_phone(stt)
        await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 400))
        await until(lambda: bool(server.connections[0].results(speech_final=True)))
        transcript = await t.final_text(2.0)
        assert transcript.text == "Sí, correcto."
        assert not server.connections[0].results(from_finalize=True)
        await t.aclose()


async def test_wrong_key_is_refused_once_and_every_turn_raises_at_once() -> None:
    async with FakeDeepgram(KEY) as server:
        stt, metrics = make_stt(server, api_key="wrong-key")
        t = await open_phone(stt)
        await until(lambda: t.state == "refused")
        assert server.refused[0]["status"] == 401
        assert server.refused[0]["authorization"] == "Token wrong-key"
        await feed(t, mulaw_frames(True, 200))
        with pytest.raises(DeepgramRefused):
            await t.final_text(5.0)
        with pytest.raises(DeepgramRefused):
            await t.final_text(5.0)
        assert failures(metrics, "refused") == 1
        assert server.connections == []
        await t.aclose()
        # New calls skip Deepgram during the cool-down: no handshake at all.
        with pytest.raises(DeepgramUnavailable):
            await open_phone(stt)
        assert len(server.refused) == 1


async def test_open_can_wait_for_the_handshake_and_raise_on_refusal() -> None:
    async with FakeDeepgram(KEY, fault="refuse", refuse_status=403) as server:
        stt, metrics = make_stt(server, open_wait_s=5.0, cooldown_s=0)
        with pytest.raises(DeepgramRefused):
            await open_phone(stt)
        assert failures(metrics, "refused") == 1


async def test_server_error_at_the_upgrade_backs_off_and_turns_fall_back() -> None:
    async with FakeDeepgram(KEY, fault="refuse", refuse_status=500) as server:
        stt, metrics = make_stt(server)
        t = await open_phone(stt)
        await until(lambda: t.state == "backoff")
        with pytest.raises(DeepgramUnavailable):
            await t.final_text(5.0)
        assert failures(metrics, "error") >= 1
        await until(lambda: len(server.refused) >= 2)  # it keeps trying, with backoff
        await t.aclose()
        assert t.state == "closed"


async def test_a_hanging_upgrade_times_out() -> None:
    async with FakeDeepgram(KEY, fault="hang_upgrade") as server:
        stt, metrics = make_stt(server, connect_timeout_s=0.2)
        t = await open_phone(stt)
        with pytest.raises((TimeoutError, DeepgramUnavailable)):
            await t.final_text(0.1)
        await until(lambda: failures(metrics, "timeout") >= 1)
        await t.aclose()


async def test_a_stalled_server_times_out_and_the_next_turn_starts_clean() -> None:
    async with FakeDeepgram(KEY, fault="stall") as server:
        stt, metrics = make_stt(server)
        t = await open_phone(stt)
        await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 300))
        with pytest.raises(TimeoutError):
            await t.final_text(0.2)
        assert failures(metrics, "timeout") == 1
        assert server.connections[0].controls == ["Finalize"]
        assert server.connections[0].audio_bytes == 700 // 20 * FRAME
        with pytest.raises(TimeoutError):
            await t.final_text(0.1)
        await t.aclose()


async def test_a_late_answer_to_a_timed_out_turn_never_leaks_into_the_next() -> None:
    texts = ["Quiero una cita.", "Para el lunes."]
    async with FakeDeepgram(KEY, texts=texts, finalize_delay_s=0.3) as server:
        stt, _ = make_stt(server)
        t = await open_phone(stt)
        await feed(t, mulaw_frames(True, 400))  # no endpoint: only a Finalize can finish it
        with pytest.raises(TimeoutError):
            await t.final_text(0.1)
        await until(lambda: bool(server.connections[0].results(from_finalize=True)))
        await asyncio.sleep(0.02)
        await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 400))
        transcript = await t.final_text(2.0)
        assert transcript.text == "Para el lunes."
        await t.aclose()


async def test_a_dropped_socket_reconnects_and_resends_the_utterance_in_progress() -> None:
    async with FakeDeepgram(
        KEY, texts=["Necesito renovar mi pasaporte."], fault="drop", drop_after_bytes=20 * FRAME
    ) as server:
        stt, metrics = make_stt(server)
        t = await open_phone(stt)
        assert await t.wait_connected(5)
        sent = bytearray()
        await feed(t, mulaw_frames(True, 700) + mulaw_frames(False, 400), sent)
        await until(lambda: len(server.connections) == 2)
        first, second = server.connections
        assert first.closed == "dropped"
        await until(lambda: second.audio_bytes == len(sent))
        # The new socket heard the whole utterance from its first byte, without a gap.
        assert bytes(second.audio) == bytes(sent)
        transcript = await t.final_text(1.0)
        assert transcript.text == "Necesito renovar mi pasaporte."
        assert transcript.extra["reconnects"] == 1
        assert failures(metrics, "dropped") == 1
        await t.aclose()


async def test_after_a_drop_only_audio_not_yet_final_is_resent() -> None:
    async with FakeDeepgram(
        KEY,
        texts=["Uno dos tres cuatro cinco seis siete ocho."],
        fault="drop",
        drop_after_bytes=40 * FRAME,
        final_every_ms=400,
    ) as server:
        stt, _ = make_stt(server)
        t = await open_phone(stt)
        assert await t.wait_connected(5)
        sent = bytearray()
        await feed(t, mulaw_frames(True, 1000) + mulaw_frames(False, 400), sent)
        await until(lambda: len(server.connections) == 2)
        first, second = server.connections
        finals = first.results(is_final=True)
        assert finals, "a piece of the utterance was final before the drop"
        final_end = finals[-1]["start"] + finals[-1]["duration"]
        offset = round(final_end * 8000)
        await until(lambda: second.audio_bytes == len(sent) - offset)
        assert bytes(second.audio) == bytes(sent[offset:])
        transcript = await t.final_text(1.0)
        assert transcript.text == "Uno dos tres cuatro cinco seis siete ocho."
        await t.aclose()


async def test_the_resend_buffer_is_bounded() -> None:
    async with FakeDeepgram(KEY, fault="drop", drop_after_bytes=45 * FRAME) as server:
        stt, _ = make_stt(server, max_buffer_s=0.5)
        t = await open_phone(stt)
        assert await t.wait_connected(5)
        sent = bytearray()
        await feed(t, mulaw_frames(True, 1000) + mulaw_frames(False, 400), sent)
        await until(lambda: len(server.connections) == 2)
        second = server.connections[1]
        await until(lambda: second.audio_bytes > 0 and bytes(sent).endswith(bytes(second.audio)))
        assert second.audio_bytes < len(sent)
        await t.aclose()


async def test_garbage_frames_are_ignored_and_counted() -> None:
    async with FakeDeepgram(KEY, texts=["Buenas tardes."], fault="garbage") as server:
        stt, metrics = make_stt(server)
        t = await open_phone(stt)
        await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 400))
        transcript = await t.final_text(1.0)
        assert transcript.text == "Buenas tardes."
        assert failures(metrics, "bad_message") >= 7
        assert len(server.connections) == 1  # garbage is no reason to reconnect
        await t.aclose()


async def test_keepalive_while_no_audio_flows(fake: FakeDeepgram) -> None:
    stt, _ = make_stt(fake, keepalive_s=0.05)
    t = await open_phone(stt)
    assert await t.wait_connected(5)
    await until(lambda: fake.connections[0].controls.count("KeepAlive") >= 2)
    await t.aclose()


async def test_audio_sent_before_the_socket_is_up_is_not_lost(fake: FakeDeepgram) -> None:
    stt, _ = make_stt(fake)
    t = await open_phone(stt)
    sent = bytearray()
    for frame in mulaw_frames(True, 200):  # no await: the handshake cannot have finished
        t.send(frame)
        sent += frame
    assert t.state == "connecting"
    await until(lambda: fake.connections and fake.connections[0].audio_bytes == len(sent))
    assert bytes(fake.connections[0].audio) == bytes(sent)
    await t.aclose()


async def test_an_endpoint_callback_that_raises_does_not_kill_the_session(
    fake: FakeDeepgram,
) -> None:
    stt, _ = make_stt(fake)
    t = await open_phone(stt)

    def boom() -> None:
        raise RuntimeError("session bug")

    t.on_endpoint(boom)
    await feed(t, mulaw_frames(True, 400) + mulaw_frames(False, 400))
    assert (await t.final_text(1.0)).text == "¿A qué hora abren?"
    await t.aclose()


async def test_closed_transcriber_refuses_turns(fake: FakeDeepgram) -> None:
    stt, _ = make_stt(fake)
    t = await open_phone(stt)
    await t.aclose()
    t.send(b"\xff" * FRAME)  # ignored, no error
    with pytest.raises(DeepgramUnavailable):
        await t.final_text(1.0)


def test_base_url_schemes() -> None:
    from pipeline.providers.deepgram_stt import _environment

    env = _environment("http://127.0.0.1:9/")
    assert (env.base, env.production) == ("http://127.0.0.1:9", "ws://127.0.0.1:9")
    env = _environment("wss://dg.example")
    assert (env.base, env.production) == ("https://dg.example", "wss://dg.example")
    assert _environment(None).production == "wss://api.deepgram.com"
    with pytest.raises(ValueError):
        _environment("127.0.0.1:9")
