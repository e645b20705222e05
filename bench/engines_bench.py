"""Micro-benchmark of the embedded engines: ``python bench/engines_bench.py``.

Prints the numbers docs/PERFORMANCE.md quotes: Silero VAD cost per window, Whisper real-time
factor on a ~3 s Spanish utterance, eSpeak real-time factor and time to first chunk. Uses the
Whisper model under ``$TAINA_DATA_DIR/models/whisper-base`` (assembling it if needed).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import DEFAULT_STT_PROMPT
from pipeline.model_files import ensure_whisper_model
from pipeline.stt import WhisperSTT
from pipeline.tts import EspeakTTS
from pipeline.vad import SileroVadModel

UTTERANCE = "Quiero renovar mi pasaporte, por favor."
REPLY = "Con gusto. La oficina abre de lunes a viernes, de ocho de la mañana a cuatro de la tarde."


def bench_vad(audio_by_rate: dict[int, np.ndarray]) -> None:
    model = SileroVadModel()
    for rate, audio in audio_by_rate.items():
        stream = model.stream(rate)
        n = stream.window_samples
        windows = [audio[i : i + n] for i in range(0, audio.size - n + 1, n)]
        for w in windows[:50]:  # warm-up
            stream.probability(w)
        rounds = max(1, 3000 // len(windows))
        start = time.perf_counter()
        for _ in range(rounds):
            stream.reset()
            for w in windows:
                stream.probability(w)
        per_window = (time.perf_counter() - start) / (rounds * len(windows))
        window_s = n / rate
        print(
            f"VAD {rate // 1000:>2} kHz: {per_window * 1e6:7.1f} µs/window "
            f"({window_s * 1000:.0f} ms windows, {window_s / per_window:,.0f}x real time)"
        )
        batch = 8
        streams = [model.stream(rate) for _ in range(batch)]
        start = time.perf_counter()
        steps = min(len(windows), 200)
        for w in windows[:steps]:
            model.probabilities_batch(streams, [w] * batch)
        per_stream = (time.perf_counter() - start) / (steps * batch)
        print(f"VAD {rate // 1000:>2} kHz: {per_stream * 1e6:7.1f} µs/window batched x{batch}")


async def bench_whisper(model_dir: Path, tts: EspeakTTS) -> None:
    for label, min_encoder_s in (("trimmed encoder (default)", 10.0), ("stock 30 s encoder", None)):
        stt = WhisperSTT(model_dir, prompt=DEFAULT_STT_PROMPT, min_encoder_s=min_encoder_s)
        await stt.warm_up()
        for rate in (16000, 8000):
            pad = bytes(rate // 4 * 2)
            pcm = pad + await tts.synthesize_all(UTTERANCE, rate) + pad
            audio_s = len(pcm) / 2 / rate
            runs = [await stt.transcribe(pcm, rate) for _ in range(5)]
            elapsed = statistics.median(r.elapsed_s for r in runs)
            print(
                f"Whisper base int8, {label}, {rate // 1000} kHz input: {audio_s:.2f} s audio in "
                f"{elapsed * 1000:.0f} ms -> RTF {elapsed / audio_s:.3f}  «{runs[0].text}»"
            )
        stt.close()


async def bench_espeak(tts: EspeakTTS) -> None:
    await tts.synthesize_all("Hola.", 16000)  # load the library and the voice
    for rate in (8000, 16000):
        firsts, totals, audio_s = [], [], 0.0
        for _ in range(20):
            start = time.perf_counter()
            first = None
            size = 0
            async for chunk in tts.synthesize(REPLY, rate):
                if first is None:
                    first = time.perf_counter() - start
                size += len(chunk)
            totals.append(time.perf_counter() - start)
            firsts.append(first or 0.0)
            audio_s = size / 2 / rate
        total = statistics.median(totals)
        print(
            f"eSpeak {rate // 1000:>2} kHz: {audio_s:.2f} s audio in {total * 1000:.1f} ms "
            f"(RTF {total / audio_s:.4f}, {audio_s / total:,.0f}x real time), "
            f"first chunk after {statistics.median(firsts) * 1000:.1f} ms"
        )


async def main() -> None:
    data_dir = Path(os.environ.get("TAINA_DATA_DIR", "./data"))
    model_dir = ensure_whisper_model(
        data_dir / "models" / "whisper-base", lambda m: print(m, file=sys.stderr)
    )
    tts = EspeakTTS()
    print(f"CPU cores: {os.cpu_count()}")
    await bench_espeak(tts)
    audio = {}
    for rate in (8000, 16000):
        pcm = await tts.synthesize_all(" ".join([REPLY] * 3), rate)
        audio[rate] = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    bench_vad(audio)
    await bench_whisper(model_dir, tts)


if __name__ == "__main__":
    asyncio.run(main())
