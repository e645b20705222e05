"""The sentence cache in front of the embedded voice: identical audio on a hit, bounded memory,
cancellation, and pre-rendered sentences keyed exactly as the session asks for them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pipeline.metrics import PipelineMetrics
from pipeline.sentences import SentenceSplitter
from pipeline.tts import EspeakTTS
from pipeline.tts_cache import CachedTTS, session_sentences


class CountingVoice:
    """A deterministic voice: 0.5 s of bytes per sentence, counting its calls."""

    name = "counting"

    def __init__(self, chunk_delay_s: float = 0.0) -> None:
        self.calls: list[tuple[str, int]] = []
        self.finished = 0
        self.closed = 0
        self.chunk_delay_s = chunk_delay_s

    async def synthesize(self, text: str, sample_rate: int) -> AsyncIterator[bytes]:
        self.calls.append((text, sample_rate))
        seed = sum(text.encode()) % 251
        step = sample_rate * 2 // 10
        try:
            for i in range(5):
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                yield bytes([(seed + i) % 256]) * step
            self.finished += 1
        finally:
            self.closed += 1


async def collect(tts: CachedTTS, text: str, rate: int = 8000) -> bytes:
    return b"".join([c async for c in tts.synthesize(text, rate)])


async def test_second_request_is_served_from_cache_with_identical_audio() -> None:
    voice = CountingVoice()
    tts = CachedTTS(voice)
    first = await collect(tts, "¿Cuál es su nombre?")
    second = await collect(tts, "¿Cuál es su nombre?")
    assert first == second and len(first) == 8000  # 0.5 s at 8 kHz
    assert voice.calls == [("¿Cuál es su nombre?", 8000)]
    assert (tts.hits, tts.misses) == (1, 1)


async def test_key_is_exact_text_and_rate() -> None:
    voice = CountingVoice()
    tts = CachedTTS(voice)
    await collect(tts, "Hola.", 8000)
    await collect(tts, "Hola.", 16000)
    await collect(tts, "Hola", 8000)
    assert len(voice.calls) == 3


async def test_real_voice_hit_equals_fresh_render() -> None:
    tts = CachedTTS(EspeakTTS())
    fresh = await collect(tts, "Su cédula es 00112345678.")
    cached = await collect(tts, "Su cédula es 00112345678.")
    assert cached == fresh and tts.hits == 1


async def test_memory_is_bounded_and_least_recent_go_first() -> None:
    voice = CountingVoice()
    tts = CachedTTS(voice, max_bytes=3 * 8000)  # room for three 0.5 s sentences at 8 kHz
    for i in range(5):
        await collect(tts, f"frase {i}")
    assert tts.size_bytes <= 3 * 8000
    await collect(tts, "frase 4")  # still cached
    await collect(tts, "frase 0")  # evicted: synthesized again
    assert voice.calls.count(("frase 4", 8000)) == 1
    assert voice.calls.count(("frase 0", 8000)) == 2


async def test_cancelled_render_is_not_cached_and_stops_the_voice() -> None:
    voice = CountingVoice(chunk_delay_s=0.05)
    tts = CachedTTS(voice)

    async def consume() -> None:
        async for _ in tts.synthesize("Una frase que se interrumpe.", 8000):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert voice.finished == 0 and voice.closed == 1  # the voice's generator was closed
    assert tts.cached("Una frase que se interrumpe.", 8000) is None
    await collect(tts, "Una frase que se interrumpe.")
    assert len(voice.calls) == 2


async def test_consumer_stopping_early_does_not_cache_partial_audio() -> None:
    voice = CountingVoice()
    tts = CachedTTS(voice)
    stream = tts.synthesize("Corte temprano.", 8000)
    await anext(stream)
    await stream.aclose()
    assert tts.cached("Corte temprano.", 8000) is None
    assert voice.closed == 1 and voice.finished == 0  # the voice was stopped, not left open


async def test_prerender_pins_the_sentences_the_session_will_ask_for() -> None:
    voice = CountingVoice()
    tts = CachedTTS(voice, max_bytes=1)  # the LRU holds nothing: only pinned audio remains
    reply = "De acuerdo. ¿Para qué día y a qué hora le gustaría? Llegue unos diez minutos antes."
    done = await tts.prerender([reply], [8000, 16000])
    splitter = SentenceSplitter()
    asked = [*splitter.push(reply), *splitter.flush()]
    assert asked == session_sentences(reply)
    assert done == len(asked) * 2
    calls_before = len(voice.calls)
    for sentence in asked:
        await collect(tts, sentence, 8000)
        await collect(tts, sentence, 16000)
    assert len(voice.calls) == calls_before  # every sentence came from the cache
    assert tts.pinned_bytes > 0 and tts.size_bytes == 0


async def test_hits_and_misses_are_counted_in_metrics() -> None:
    metrics = PipelineMetrics.create()
    tts = CachedTTS(CountingVoice(), metrics=metrics)
    await collect(tts, "Hola, buenos días.")
    await collect(tts, "Hola, buenos días.")
    registry = metrics.registry
    assert registry.get_sample_value("taina_tts_cache_total", {"result": "hit"}) == 1
    assert registry.get_sample_value("taina_tts_cache_total", {"result": "miss"}) == 1


class _Offline:
    def fixed_phrases(self) -> list[str]:
        return ["¿Para qué día y a qué hora le gustaría?", "Con gusto le ayudo con la cita."]

    async def respond(self, *_a: object) -> None: ...


class _Fallback:
    """Shaped like FallbackBrain: the offline brain is its ``fallback``."""

    def __init__(self) -> None:
        self.primary = object()
        self.fallback = _Offline()

    async def respond(self, *_a: object) -> None: ...


async def test_start_prerender_finds_the_wrapped_brains_phrases_and_pins_them() -> None:
    from app.providers import fixed_phrases_of, start_prerender
    from pipeline.providers.failover_tts import FailoverTTS

    brain = _Fallback()
    assert fixed_phrases_of(brain) == _Offline().fixed_phrases()
    voice = CountingVoice()
    cached = CachedTTS(voice)
    chain = FailoverTTS([cached, EspeakTTS()])
    task = start_prerender(chain, brain, [8000])
    assert task is not None
    assert await task == 2
    calls = len(voice.calls)
    got = b"".join([c async for c in chain.synthesize("Con gusto le ayudo con la cita.", 8000)])
    assert got and len(voice.calls) == calls and cached.hits == 1
    assert start_prerender(EspeakTTS(), brain, [8000]) is None  # nothing cached to fill
