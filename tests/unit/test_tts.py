"""eSpeak NG through ctypes: Spanish audio at the pipeline rates, chunking, concurrency."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from pipeline.engines import TextToSpeech
from pipeline.tts import CHUNK_MS, EspeakTTS, split_for_synthesis

SENTENCE = "Buenas tardes, la oficina abre de lunes a viernes de ocho a cuatro."
# eSpeak adds pitch "flutter" driven by a C static that no API resets, so with a fluttering
# voice (the plain es-419 one) two syntheses of the same text differ slightly. Variants with
# ``flutter 0`` are bit-exact, which the tests that compare audio need.
STEADY = EspeakTTS(voice="es-419+miguel")
STEADY_SLOW = EspeakTTS(voice="es-419+michel", rate_wpm=120, pitch=30)


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def test_is_a_text_to_speech(tts: EspeakTTS) -> None:
    engine: TextToSpeech = tts  # checked by the type checker; the Protocol is not runtime
    assert engine.name == "espeak"


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_spanish_sentence_has_plausible_audio(tts: EspeakTTS, rate: int) -> None:
    chunks = [c async for c in tts.synthesize(SENTENCE, rate)]
    audio = _samples(b"".join(chunks))
    seconds = audio.size / rate
    # 13 words at ~165 words per minute.
    assert 2.5 < seconds < 8.0
    assert np.abs(audio).max() > 3000  # actually audible, not near-silence
    chunk_bytes = rate * CHUNK_MS // 1000 * 2
    assert all(len(c) == chunk_bytes for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= chunk_bytes


async def test_same_duration_at_every_rate() -> None:
    durations = [
        len(await STEADY.synthesize_all(SENTENCE, rate)) / 2 / rate for rate in (8000, 16000, 24000)
    ]
    assert max(durations) - min(durations) < 0.001


async def test_steady_voice_is_reproducible() -> None:
    first = await STEADY.synthesize_all(SENTENCE, 16000)
    await EspeakTTS().synthesize_all("Otra frase cualquiera en medio.", 16000)
    assert await STEADY.synthesize_all(SENTENCE, 16000) == first


async def test_edges_are_trimmed(tts: EspeakTTS) -> None:
    rate = 16000
    audio = np.abs(_samples(await tts.synthesize_all("Hola.", rate)).astype(np.int32))
    loud = np.flatnonzero(audio > 200)
    assert loud[0] < 0.06 * rate
    assert audio.size - loud[-1] < 0.06 * rate


@pytest.mark.parametrize("text", ["", "   ", "\n"])
async def test_empty_text_yields_nothing(tts: EspeakTTS, text: str) -> None:
    assert [c async for c in tts.synthesize(text, 16000)] == []


async def test_numbers_are_spoken_as_spanish_words(tts: EspeakTTS) -> None:
    phonemes = await tts.phonemes("Son 25 pesos.")
    assert "inko" in phonemes  # veinticinco
    digits = await tts.synthesize_all("Su número es 4 8 15 16 23 42.", 16000)
    words = await tts.synthesize_all("Su número es", 16000)
    assert len(digits) > 2 * len(words)


async def test_inverted_marks_are_not_read_aloud(tts: EspeakTTS) -> None:
    assert await tts.phonemes("¿Cómo está usted?") == await tts.phonemes("Cómo está usted?")
    assert await tts.phonemes("¡Bienvenido!") == await tts.phonemes("Bienvenido!")


async def test_long_text_is_streamed_in_pieces(tts: EspeakTTS) -> None:
    text = " ".join(f"Este es el párrafo número {i}, que explica un trámite." for i in range(40))
    assert len(split_for_synthesis(text)) > 5
    seconds = 0.0
    chunks = 0
    async for chunk in tts.synthesize(text, 8000):
        seconds += len(chunk) / 2 / 8000
        chunks += 1
    assert seconds > 60
    assert chunks > 300


def test_split_keeps_every_word_and_respects_limit() -> None:
    text = "Primera oración. " * 30 + "una palabra muy larga " * 20
    pieces = split_for_synthesis(text, max_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert pieces[0].endswith(".")


async def test_concurrent_synthesis_does_not_mix_audio() -> None:
    texts = [
        "¿En qué le puedo ayudar?",
        "Para sacar la cédula necesita su acta de nacimiento.",
        "Su cita quedó para el martes a las diez de la mañana.",
        "Gracias por llamar, que tenga un buen día.",
    ]
    voices = [STEADY, STEADY_SLOW, STEADY, STEADY_SLOW]
    solo = [await v.synthesize_all(t, 16000) for v, t in zip(voices, texts, strict=True)]

    async def consume(v: EspeakTTS, t: str) -> bytes:
        out = b""
        async for chunk in v.synthesize(t, 16000):
            out += chunk
            await asyncio.sleep(0)  # interleave with the other consumers
        return out

    together = await asyncio.gather(
        *(consume(v, t) for v, t in zip(voices * 3, texts * 3, strict=True))
    )
    assert list(together) == solo * 3
    assert len(set(together)) == len(texts)


async def test_cancelled_consumer_leaves_engine_usable(tts: EspeakTTS) -> None:
    long_text = "Le explico todos los requisitos uno por uno. " * 60

    async def listen_briefly() -> None:
        async for _ in tts.synthesize(long_text, 16000):
            await asyncio.sleep(10)

    task = asyncio.create_task(listen_briefly())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(await tts.synthesize_all("Hola.", 16000)) > 0


async def test_unknown_voice_falls_back_to_spanish(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.tts"):
        audio = await EspeakTTS(voice="xx-nonexistent").synthesize_all("Hola, buenos días.", 16000)
    assert len(audio) > 16000
    assert "falling back" in caplog.text
