"""Browser turn latency: end of the visitor's speech → first bot audio played in the page.

Runs N calls from headless Chromium against the app with the real embedded engines (Silero,
Whisper, eSpeak, offline brain). The microphone is Chromium's fake capture device fed from a
Spanish question synthesized with eSpeak; the figure is measured by the page itself
(``window.tainaStats``): from the last loud 20 ms frame sent over ``WS /web/stream`` to the
first non-silent sample the playback worklet renders. It excludes the sound card's own
output latency (reported separately as ``outputLatency``), which headless Chromium fakes.

Usage: ``.venv/bin/python bench/browser_latency.py [--calls 5]``
The browser tests (tests/browser/test_visitor_page.py) reuse the helpers below.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUESTION = "¿A qué hora abren las oficinas?"
QUESTION_VOICE = "es-419+Denis"
QUESTION_WPM = 140
WAV_RATE = 48000
LEAD_S = 1.5
# Chromium loops the file: the silence after the question must outlast the whole answer.
TAIL_S = 40.0
ANSWER_WORDS = ("ocho de la mañana", "lunes a viernes", "horario", "oficina")
CHROMIUM = Path("/usr/bin/chromium")


def question_wav(path: Path, text: str = QUESTION) -> Path:
    """The visitor's question as Chromium's fake microphone wants it: 48 kHz mono 16-bit."""
    from pipeline.tts import EspeakTTS

    tts = EspeakTTS(voice=QUESTION_VOICE, rate_wpm=QUESTION_WPM)
    speech = asyncio.run(tts.synthesize_all(text, WAV_RATE))
    pcm = np.frombuffer(speech, dtype=np.int16).astype(np.float32)
    pcm *= 0.5 * 32767 / max(float(np.abs(pcm).max()), 1.0)  # a normal speaking level
    audio = np.concatenate(
        [np.zeros(int(LEAD_S * WAV_RATE)), pcm, np.zeros(int(TAIL_S * WAV_RATE))]
    ).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(WAV_RATE)
        w.writeframes(audio.tobytes())
    return path


def fake_mic_args(wav: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required",
    ]


def stats(page: Any) -> dict[str, Any]:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.tainaStats))")


def visitor_call(page: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    """Press «Llamar», let the fake microphone ask, wait for the answer to be heard; returns
    the page's counters plus the answer's caption. Raises TimeoutError when no answer."""
    page.goto("/")
    page.get_by_role("button", name="Llamar").click()
    page.wait_for_function("() => window.tainaStats.callId !== null", timeout=20_000)
    caller = page.locator("#captions li.caller").first
    caller.wait_for(timeout=timeout_s * 1000)
    question_heard = caller.inner_text()
    answer = page.locator("#captions li.caller ~ li.bot").first
    answer.wait_for(timeout=timeout_s * 1000)
    # The answer has been played: its first marks echoed and a turn latency measured.
    page.wait_for_function(
        "() => window.tainaStats.latenciesMs.length > 0 && window.tainaStats.marksEchoed > 5",
        timeout=timeout_s * 1000,
    )
    result = stats(page)
    result["question_caption"] = question_heard
    result["answer_caption"] = answer.inner_text()
    return result


def run(calls: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    from app import routes_web
    from app.main import create_app
    from tests.browser.conftest import CHROMIUM_ARGS
    from tests.integration.conftest import LiveServer, settings_for

    tmp = Path(tempfile.mkdtemp(prefix="taina-browser-bench-"))
    wav = question_wav(tmp / "question.wav")
    app = create_app(settings_for(tmp / "data"))
    if not any(getattr(r, "path", None) == "/web/stream" for r in app.routes):
        app.include_router(routes_web.router)
    server = LiveServer(app).start()
    latencies: list[float] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + fake_mic_args(wav)
            )
            for i in range(calls):
                context = browser.new_context(base_url=server.url, locale="es-DO")
                page = context.new_page()
                t0 = time.monotonic()
                try:
                    result = visitor_call(page)
                except Exception as exc:
                    print(f"call {i + 1}: failed ({exc})")
                    context.close()
                    continue
                lat = result["latenciesMs"][0]
                latencies.append(lat)
                print(
                    f"call {i + 1}: {lat:.0f} ms  (heard {result['question_caption']!r}; "
                    f"call took {time.monotonic() - t0:.1f} s)"
                )
                page.get_by_role("button", name="Colgar").click()
                context.close()
            browser.close()
    finally:
        server.stop()
    return latencies


def report(latencies: list[float]) -> str:
    if not latencies:
        return "no successful calls"
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"browser turn latency over {len(ordered)} calls: median {statistics.median(ordered):.0f}"
        f" ms, p90 {p90:.0f} ms, min {ordered[0]:.0f} ms, max {ordered[-1]:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    print(report(run(args.calls)))


if __name__ == "__main__":
    main()
