"""The visitor call page in headless Chromium with a fake microphone, against the real app.

The microphone is Chromium's fake capture device playing a Spanish question synthesized with
eSpeak (``bench/browser_latency.py`` builds the WAV); the server runs the real embedded
engines (Silero, Whisper, eSpeak, offline brain). The page itself counts what it played
(``window.tainaStats``), so "the visitor heard the answer" is an assertion, not a hope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app import routes_web
from bench.browser_latency import ANSWER_WORDS, fake_mic_args, question_wav, stats, visitor_call
from tests.browser.conftest import Browser, launch_chromium
from tests.integration.conftest import LiveServer, instant_engines

MSG_MIC = "No pudimos usar su micrófono"
MSG_LOST = "Se perdió la conexión"


def with_web_routes(server: LiveServer) -> LiveServer:
    """Serve the visitor routes unless app/main.py already does (it will once wired in)."""
    if not any(getattr(r, "path", None) == "/web/stream" for r in server.app.routes):
        server.app.include_router(routes_web.router)
    return server


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return question_wav(tmp_path_factory.mktemp("mic") / "question.wav")


@pytest.fixture(scope="module")
def chromium(question: Path) -> Iterator[Any]:
    """The system Chromium with a fake microphone playing ``question`` (overrides conftest's)."""
    with launch_chromium(fake_mic_args(question), timeout_ms=20_000) as browser:
        yield browser


def test_visitor_asks_and_hears_the_answer(
    live_server_factory: Callable[..., LiveServer],
    browser: Browser,
    screenshots: Callable[[Any, str], Path],
) -> None:
    from playwright.sync_api import expect

    server = with_web_routes(live_server_factory(engines=None))  # real embedded engines
    page = browser.page(server, width=900, height=900)
    result = visitor_call(page, timeout_s=60)

    answer = result["answer_caption"].lower()
    assert any(w in answer for w in ANSWER_WORDS), answer
    assert "hora" in result["question_caption"].lower()  # Whisper on eSpeak: words vary
    # The page played the answer: marks echoed and well over a second of non-silent speech.
    assert result["marksEchoed"] > 5
    assert result["nonSilentSamples"] > 16000
    assert result["framesSent"] > 100 and result["loudFramesSent"] > 20
    latency = result["latenciesMs"][0]
    print(f"\nbrowser turn latency (end of visitor speech → first bot audio played): {latency} ms")
    assert 0 < latency < 20_000
    expect(page.locator("#status")).to_have_attribute("data-state", "hablando")
    screenshots(page, "visitor-call-answer")

    page.get_by_role("button", name="Colgar").click()
    expect(page.get_by_role("button", name="Llamar")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("La llamada terminó")
    expect(page.get_by_role("alert")).to_be_hidden()  # a goodbye is not an error
    view = server.call_view(result["callId"])
    assert view is not None and view.info.ingress == "web"
    assert [t.speaker for t in view.turns][:2] == ["bot", "caller"]


def test_microphone_refused_shows_its_message(
    live_server_factory: Callable[..., LiveServer],
    browser: Browser,
    screenshots: Callable[[Any, str], Path],
) -> None:
    from playwright.sync_api import expect

    server = with_web_routes(live_server_factory(engines=instant_engines()))
    page = browser.page(server, width=900, height=700)
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => Promise.reject("
        "new DOMException('Permission denied', 'NotAllowedError'));"
    )
    page.goto("/")
    page.get_by_role("button", name="Llamar").click()
    expect(page.get_by_role("alert")).to_contain_text(MSG_MIC)
    expect(page.get_by_role("button", name="Llamar")).to_be_enabled()
    assert stats(page)["callId"] is None
    screenshots(page, "visitor-mic-refused")


def test_connection_lost_shows_its_message(
    live_server_factory: Callable[..., LiveServer],
    browser: Browser,
    screenshots: Callable[[Any, str], Path],
) -> None:
    from playwright.sync_api import expect

    server = with_web_routes(live_server_factory(engines=instant_engines()))
    page = browser.page(server, width=900, height=700)
    page.goto("/")
    page.get_by_role("button", name="Llamar").click()
    expect(page.get_by_role("button", name="Colgar")).to_be_enabled()
    page.wait_for_function("() => window.tainaStats.marksEchoed > 0")  # the greeting plays
    server.stop()  # the server goes away mid-call
    expect(page.get_by_role("alert")).to_contain_text(MSG_LOST, timeout=30_000)
    expect(page.get_by_role("button", name="Llamar")).to_be_visible()
    screenshots(page, "visitor-connection-lost")
