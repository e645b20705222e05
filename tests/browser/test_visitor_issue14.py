"""The visitor page as issue 14 found it: on a phone, with LiveKit off, with the server down.

Chromium's fake microphone (the same as test_visitor_page) and instant engines: the call is real
(WebSocket, worklets, playback) but the server answers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.browser.conftest import Browser
from tests.browser.test_visitor_page import (  # noqa: F401  (module fixtures: fake microphone)
    chromium,
    question,
    with_web_routes,
)
from tests.integration.conftest import LiveServer, instant_engines

PHONE = {"width": 375, "height": 812}


def page_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_phone_call_has_no_sideways_scroll_no_404_and_a_calm_goodbye(
    live_server_factory: Callable[..., LiveServer],
    browser: Browser,
    screenshots: Callable[[Any, str], Path],
) -> None:
    from playwright.sync_api import expect

    server = with_web_routes(live_server_factory(engines=instant_engines()))
    page = browser.page(server, **PHONE)
    failed: list[str] = []
    asked_livekit: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.on("request", lambda r: asked_livekit.append(r.url) if "/api/livekit/" in r.url else None)
    page.goto("/")
    expect(page.get_by_role("button", name="Llamar")).to_be_visible()
    assert page_width(page) <= PHONE["width"]
    box = page.locator("main.card").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]

    page.get_by_role("button", name="Llamar").click()
    expect(page.get_by_role("button", name="Colgar")).to_be_enabled()
    # Who is speaking is said, not guessed.
    expect(page.locator("#status")).to_have_text("El asistente está hablando…")
    page.wait_for_function("() => window.tainaStats.marksEchoed > 0")
    expect(page.locator("#captions li.bot").first).to_be_visible()
    assert page_width(page) <= PHONE["width"]
    screenshots(page, "visitor-375-en-llamada")

    page.get_by_role("button", name="Colgar").click()
    notice = page.locator("#notice")
    expect(notice).to_contain_text("La llamada terminó")
    expect(page.get_by_role("alert")).to_be_hidden()
    color = notice.evaluate("el => getComputedStyle(el).color")
    assert color != page.locator("#message").evaluate("el => getComputedStyle(el).color")
    screenshots(page, "visitor-375-fin")
    assert asked_livekit == [], asked_livekit  # LiveKit is off: no token asked for
    assert failed == [], failed  # no favicon 404, no token 404


def test_server_down_is_not_blamed_on_the_browser(
    live_server_factory: Callable[..., LiveServer],
    browser: Browser,
    screenshots: Callable[[Any, str], Path],
) -> None:
    from playwright.sync_api import expect

    server = with_web_routes(live_server_factory(engines=instant_engines()))
    page = browser.page(server, **PHONE)
    page.goto("/")
    expect(page.get_by_role("button", name="Llamar")).to_be_visible()
    server.stop()
    page.get_by_role("button", name="Llamar").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("el servidor no responde", timeout=20_000)
    expect(alert).not_to_contain_text("navegador")
    expect(page.get_by_role("button", name="Llamar")).to_be_enabled()
    screenshots(page, "visitor-servidor-caido")
