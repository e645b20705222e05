"""The SVOX Pico voice: real synthesis, chunking, resampling to the phone rate, slow parts,
and an event loop that keeps running while it renders."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pipeline.speech_format import SpeechSegment
from pipeline.tts import CHUNK_MS
from pipeline.tts_pico import PICO_RATE, PicoTTS, pico_markup, pico_render

GREETING = "Buenos días, gracias por llamar. ¿En qué le puedo ayudar?"


def _dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_pico_render_returns_trimmed_speech_at_16k() -> None:
    audio = pico_render(GREETING)
    assert audio.dtype == np.int16
    seconds = audio.size / PICO_RATE
    assert 2.0 < seconds < 6.0
    assert np.abs(audio).max() > 5000  # speech, not silence
    # Edge silence trimmed to a few tens of milliseconds.
    loud = np.flatnonzero(np.abs(audio) > 64)
    assert loud[0] < PICO_RATE * 0.05 and audio.size - loud[-1] < PICO_RATE * 0.05


def test_pico_render_speed_changes_duration() -> None:
    normal = pico_render("uno dos tres cuatro cinco seis siete ocho")
    slow = pico_render("uno dos tres cuatro cinco seis siete ocho", speed=0.7)
    assert slow.size > normal.size * 1.2


async def test_synthesize_yields_chunks_at_the_phone_rate() -> None:
    tts = PicoTTS(speed=1.0, volume=1.0)
    chunks = [c async for c in tts.synthesize(GREETING, 8000)]
    chunk_bytes = 8000 * CHUNK_MS // 1000 * 2
    assert len(chunks) > 5
    assert all(len(c) == chunk_bytes for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= chunk_bytes
    audio = b"".join(chunks)
    seconds = len(audio) / 2 / 8000
    reference = pico_render(GREETING).size / PICO_RATE
    assert abs(seconds - reference) < 0.15  # same speech, resampled 16 kHz → 8 kHz
    assert _dominant_hz(audio, 8000) < 4000


async def test_resampled_audio_matches_at_16k_and_8k() -> None:
    tts = PicoTTS()
    at_16k = await tts.synthesize_all("Hola.", 16000)
    at_8k = await tts.synthesize_all("Hola.", 8000)
    assert abs(len(at_16k) / 2 - 2 * len(at_8k) / 2) < 80


async def test_digits_are_read_slower_than_as_given() -> None:
    fast = PicoTTS(slow_speed=1.0)
    slow = PicoTTS(slow_speed=0.8)
    text = "Su cédula es 00112345678."
    a = await fast.synthesize_all(text, 8000)
    b = await slow.synthesize_all(text, 8000)
    assert len(b) > len(a) * 1.1
    # Digits are read as words in groups, never as one big number: about 11 digit words.
    assert len(a) / 2 / 8000 > 3.0


def test_markup_wraps_only_slow_segments_and_pauses_between_groups() -> None:
    markup = pico_markup(
        [SpeechSegment("Su cédula es"), SpeechSegment("cero cero uno, dos tres", slow=True)],
        slow_speed=0.85,
        pause_ms=150,
    )
    assert markup == (
        'Su cédula es <speed level="85">cero cero uno, <break time="150ms"/> dos tres</speed>'
    )


def test_foreign_markup_is_removed_before_pico_sees_it() -> None:
    markup = pico_markup([SpeechSegment('hola <speed level="500">rápido</speed>')], 0.85, 150)
    assert "<" not in markup and "500" in markup


async def test_empty_text_yields_nothing() -> None:
    assert [c async for c in PicoTTS().synthesize("  ", 8000)] == []


async def test_event_loop_keeps_ticking_while_pico_renders() -> None:
    """Synthesis runs on Pico's worker thread in short pieces: the loop is never held long."""
    long_text = " ".join([GREETING, "Las citas son de lunes a viernes."] * 16)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    audio = await PicoTTS().synthesize_all(long_text, 8000)
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    assert len(audio) / 2 / 8000 > 40  # a long reply
    assert len(gaps) > 5
    # Pico holds the GIL while it renders one piece (tens of ms); the loop must still run
    # between pieces, far more often than once for the whole text.
    assert max(gaps) < 0.15, f"loop blocked {max(gaps) * 1000:.0f} ms (render {elapsed:.2f} s)"


async def test_closing_the_stream_stops_between_pieces() -> None:
    """After the consumer leaves, no further piece is rendered: the Pico thread is free."""
    from contextlib import aclosing

    from pipeline.tts_pico import _get_engine

    tts = PicoTTS()
    long_text = " ".join([GREETING] * 40)
    got = 0
    async with aclosing(tts.synthesize(long_text, 8000)) as stream:
        async for _ in stream:
            got += 1
            if got == 2:
                break
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    await loop.run_in_executor(_get_engine().executor, lambda: None)
    assert time.perf_counter() - t0 < 0.1  # nothing queued behind us


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_any_pipeline_rate(rate: int) -> None:
    audio = await PicoTTS().synthesize_all("Muy bien.", rate)
    assert 0.3 < len(audio) / 2 / rate < 2.0
