"""The TTS failover chain with the real providers against local protocol servers:
ElevenLabs → OpenAI → eSpeak. Whatever breaks, the sentence is said completely by someone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pipeline.engines import synthesize_as
from pipeline.metrics import PipelineMetrics
from pipeline.providers.elevenlabs_tts import ElevenLabsTTS
from pipeline.providers.failover_tts import FailoverTTS, TtsUnavailable
from pipeline.providers.openai_tts import OpenAITTS
from pipeline.tts import EspeakTTS
from telephony.audio_codec import pcm16_to_mulaw
from tests.fake_elevenlabs import API_KEY as EL_KEY
from tests.fake_elevenlabs import Behaviour, FakeElevenLabs
from tests.fake_openai_audio import API_KEY as OA_KEY
from tests.fake_openai_audio import AudioBehaviour, FakeOpenAIAudio

TEXT = "Su cita quedó confirmada para el martes a las diez de la mañana."
BUDGET_S = 0.3
# A voice variant without pitch flutter, so eSpeak's output is bit-exact run to run.
ESPEAK = EspeakTTS(voice="es-419+miguel")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Chain:
    """The three real providers, the fakes behind them, and the chain's observations."""

    def __init__(
        self, el: FakeElevenLabs, oa: FakeOpenAIAudio, mode: str = "http", **kwargs: object
    ) -> None:
        self.el_fake, self.oa_fake = el, oa
        self.el = ElevenLabsTTS(EL_KEY, "voz", base_url=el.base_url, mode=mode, ws_prewarm=False)  # type: ignore[arg-type]
        self.oa = OpenAITTS(api_key=OA_KEY, base_url=oa.base_url)
        self.metrics = PipelineMetrics.create()
        self.clock = FakeClock()
        self.tts = FailoverTTS(
            [self.el, self.oa, ESPEAK],
            first_byte_budget_s=BUDGET_S,
            cooldown_s=30.0,
            metrics=self.metrics,
            clock=self.clock,
            **kwargs,  # type: ignore[arg-type]
        )
        self.served: list[str] = []

    async def say(self, text: str = TEXT, rate: int = 8000, encoding: str = "mulaw") -> bytes:
        chunks = [
            c
            async for c in self.tts.synthesize(
                text,
                rate,
                encoding=encoding,  # type: ignore[arg-type]
                on_first_audio=lambda p, _t: self.served.append(p),
            )
        ]
        return b"".join(chunks)

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, {"kind": "tts", **labels}) or 0.0

    def failures(self, provider: str, reason: str) -> float:
        return self.value("taina_provider_failures_total", provider=provider, reason=reason)

    def failovers(self, src: str, dst: str) -> float:
        return self.value("taina_provider_failovers_total", from_provider=src, to_provider=dst)

    async def aclose(self) -> None:
        await self.el.aclose()
        await self.oa.aclose()


@pytest.fixture
async def el() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs() as server:
        yield server


@pytest.fixture
async def oa() -> AsyncIterator[FakeOpenAIAudio]:
    async with FakeOpenAIAudio() as server:
        yield server


@pytest.fixture
async def chain(el: FakeElevenLabs, oa: FakeOpenAIAudio) -> AsyncIterator[Chain]:
    c = Chain(el, oa)
    yield c
    await c.aclose()


async def openai_phone_audio(oa: FakeOpenAIAudio, text: str = TEXT) -> bytes:
    """What OpenAI's voice sounds like on the phone: resampled to 8 kHz, mu-law."""
    engine = OpenAITTS(api_key=OA_KEY, base_url=oa.base_url)
    try:
        pcm = b"".join([c async for c in engine.synthesize(text, 8000)])
    finally:
        await engine.aclose()
    oa.requests.clear()
    return pcm16_to_mulaw(pcm)


async def espeak_phone_audio(text: str = TEXT) -> bytes:
    return pcm16_to_mulaw(await ESPEAK.synthesize_all(text, 8000))


def test_the_chain_is_mulaw_native_when_a_provider_is() -> None:
    assert FailoverTTS([ElevenLabsTTS("k", "v"), ESPEAK]).native_encodings == ("mulaw",)
    assert FailoverTTS([OpenAITTS(api_key="k"), ESPEAK]).native_encodings == ()


async def test_healthy_elevenlabs_serves_mulaw_untouched(chain: Chain) -> None:
    audio = await chain.say()
    assert audio == chain.el_fake.audio_for(TEXT, "ulaw_8000")
    assert chain.served == ["elevenlabs"]
    assert chain.value("taina_provider_ttfb_seconds_count", provider="elevenlabs") == 1
    assert chain.oa_fake.requests == []
    assert chain.tts.cooling_down() == {}


async def test_synthesize_as_gets_mulaw_from_the_chain(chain: Chain) -> None:
    audio = b"".join([c async for c in synthesize_as(chain.tts, TEXT, 8000, "mulaw")])
    assert audio == chain.el_fake.audio_for(TEXT, "ulaw_8000")


async def test_web_audio_is_pcm_from_the_same_chain(chain: Chain) -> None:
    audio = await chain.say(rate=16000, encoding="pcm16")
    assert audio == chain.el_fake.audio_for(TEXT, "pcm_16000")


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (Behaviour(status=401), "refused"),
        (Behaviour(status=429), "refused"),
        (Behaviour(status=500), "refused"),
        (Behaviour(stall=True), "timeout"),
        (Behaviour(headers_delay_s=30), "timeout"),
        (Behaviour(garbage="html"), "error"),
    ],
    ids=["401", "429", "500", "stall", "no-headers", "garbage"],
)
async def test_a_failing_elevenlabs_is_replaced_by_openai_for_the_same_sentence(
    chain: Chain, behaviour: Behaviour, reason: str
) -> None:
    expected = await openai_phone_audio(chain.oa_fake)
    chain.el_fake.script(behaviour)
    audio = await chain.say()
    assert audio == expected  # the whole sentence, in OpenAI's voice, as mu-law
    assert chain.served == ["openai"]
    assert chain.failures("elevenlabs", reason) == 1
    assert chain.failovers("elevenlabs", "openai") == 1
    assert chain.oa_fake.speech_requests[0].body["input"] == TEXT
    assert "elevenlabs" in chain.tts.cooling_down()


async def test_a_stalled_request_is_closed_when_abandoned(chain: Chain) -> None:
    chain.el_fake.script(Behaviour(stall=True))
    await chain.say()
    await asyncio.wait_for(chain.el_fake.client_gone.wait(), 5)
    assert not chain.el_fake.requests[0].completed


@pytest.mark.parametrize("garbage", ["json", "base64"])
async def test_websocket_garbage_fails_over(
    el: FakeElevenLabs, oa: FakeOpenAIAudio, garbage: str
) -> None:
    c = Chain(el, oa, mode="websocket")
    try:
        expected = await openai_phone_audio(oa)
        el.script(Behaviour(garbage=garbage))
        assert await c.say() == expected
    finally:
        await c.aclose()
    assert c.served == ["openai"]
    assert c.failures("elevenlabs", "error") == 1


async def test_a_drop_mid_stream_restarts_the_sentence_with_the_next_voice(chain: Chain) -> None:
    expected = await openai_phone_audio(chain.oa_fake)
    full_el = chain.el_fake.audio_for(TEXT, "ulaw_8000")
    chain.el_fake.script(Behaviour(drop_after_chunks=3))
    audio = await chain.say()
    # What the caller got: the start of ElevenLabs' sentence, then the whole sentence again.
    assert audio.endswith(expected)
    partial = audio[: len(audio) - len(expected)]
    assert 0 < len(partial) < len(full_el) and full_el.startswith(partial)
    assert chain.served == ["elevenlabs", "openai"]
    assert chain.failures("elevenlabs", "dropped") == 1
    assert chain.failovers("elevenlabs", "openai") == 1


async def test_a_stall_mid_stream_is_detected_once_the_buffered_audio_runs_out(
    chain: Chain,
) -> None:
    expected = await openai_phone_audio(chain.oa_fake)
    chain.el_fake.script(Behaviour(stall_after_chunks=2, chunk_ms=100))
    audio = await chain.say()
    assert audio.endswith(expected)
    assert len(audio) - len(expected) == 2 * 800  # two 100 ms mu-law chunks were heard
    assert chain.failures("elevenlabs", "stalled") == 1


async def test_a_slow_but_steady_stream_is_not_a_stall(chain: Chain) -> None:
    # 100 ms of audio every 150 ms: slower than real time, but no gap exceeds the budget.
    chain.el_fake.script(Behaviour(chunk_ms=100, chunk_delay_s=0.15))
    audio = await chain.say("Un momento, por favor.")
    assert audio == chain.el_fake.audio_for("Un momento, por favor.", "ulaw_8000")
    assert chain.served == ["elevenlabs"]


async def test_when_both_clouds_fail_espeak_says_it(chain: Chain) -> None:
    expected = await espeak_phone_audio()
    chain.el_fake.script(Behaviour(status=503))
    chain.oa_fake.script(AudioBehaviour(stall=True))
    audio = await chain.say()
    assert audio == expected
    assert chain.served == ["espeak"]
    assert chain.failures("openai", "timeout") == 1
    assert chain.failovers("elevenlabs", "openai") == 1
    assert chain.failovers("openai", "espeak") == 1


async def test_cool_down_skips_the_failed_provider_then_retries_it(chain: Chain) -> None:
    chain.el_fake.script(Behaviour(status=500))
    await chain.say()
    assert len(chain.el_fake.requests) == 1

    chain.clock.now += 10  # still cooling down: ElevenLabs is not even asked
    await chain.say("¿Algo más en que le pueda ayudar?")
    assert len(chain.el_fake.requests) == 1
    assert chain.served == ["openai", "openai"]
    assert chain.failovers("elevenlabs", "openai") == 1  # a skip is not a failover
    assert chain.failures("elevenlabs", "refused") == 1

    chain.clock.now += 25  # cool-down over: ElevenLabs is first again, and serves
    audio = await chain.say("Que tenga buen día.")
    assert len(chain.el_fake.requests) == 2
    assert audio == chain.el_fake.audio_for("Que tenga buen día.", "ulaw_8000")
    assert chain.served[-1] == "elevenlabs"
    assert chain.tts.cooling_down() == {}


async def test_cancelling_mid_stream_closes_the_serving_request(chain: Chain) -> None:
    chain.el_fake.script(Behaviour(chunk_ms=20, chunk_delay_s=0.05))
    got: list[bytes] = []
    two_chunks = asyncio.Event()

    async def consume() -> None:
        async for chunk in chain.tts.synthesize(TEXT, 8000, encoding="mulaw"):
            got.append(chunk)
            if len(got) == 2:
                two_chunks.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(two_chunks.wait(), 5)
    task.cancel()  # barge-in
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(chain.el_fake.client_gone.wait(), 5)
    assert not chain.el_fake.requests[0].completed
    # A barge-in is not a provider failure.
    assert chain.tts.cooling_down() == {}
    assert chain.oa_fake.requests == []


async def test_a_provider_that_says_nothing_is_replaced() -> None:
    class Mute:
        name = "mute"

        async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
            return
            yield b""

    metrics = PipelineMetrics.create()
    tts = FailoverTTS([Mute(), ESPEAK], metrics=metrics)
    audio = b"".join([c async for c in tts.synthesize("Hola.", 8000)])
    assert audio == await ESPEAK.synthesize_all("Hola.", 8000)
    labels = {"kind": "tts", "provider": "mute", "reason": "empty"}
    assert metrics.registry.get_sample_value("taina_provider_failures_total", labels) == 1


async def test_text_without_words_is_not_a_failure() -> None:
    class Mute:
        name = "mute"

        async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
            return
            yield b""

    tts = FailoverTTS([Mute(), ESPEAK])
    assert [c async for c in tts.synthesize("…", 8000)] == []
    assert tts.cooling_down() == {}


async def test_when_every_provider_fails_the_error_surfaces() -> None:
    class Broken:
        name = "broken"

        async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
            raise RuntimeError("no voice")
            yield b""

    tts = FailoverTTS([Broken(), Broken()])
    with pytest.raises(TtsUnavailable):
        async for _ in tts.synthesize("Hola.", 8000):
            pass
    # The last provider is the floor: it never cools down, it is always tried.
    assert tts.cooling_down() == {"broken": pytest.approx(30.0, abs=1)}


async def test_per_provider_budget_overrides_the_default(el: FakeElevenLabs) -> None:
    el.script(Behaviour(first_audio_delay_s=0.2))
    engine = ElevenLabsTTS(EL_KEY, "voz", base_url=el.base_url)
    tts = FailoverTTS([engine, ESPEAK], first_byte_budget_s=0.05, budgets={"elevenlabs": 2.0})
    try:
        audio = b"".join([c async for c in tts.synthesize(TEXT, 8000, encoding="mulaw")])
    finally:
        await engine.aclose()
    assert audio == el.audio_for(TEXT, "ulaw_8000")


def test_metrics_can_be_attached_after_construction() -> None:
    tts = FailoverTTS([ESPEAK])
    metrics = PipelineMetrics.create()
    tts.attach_metrics(metrics)
    assert tts.metrics is metrics
