"""Issue 14, item 7: both pages at 375×812 with no sideways scroll, readable chart labels,
keyboard navigation, and no serious or critical axe-core violation.

Measured as the issue did: ``document.documentElement.scrollWidth`` against the viewport
width, on every dashboard page with real data (a call with a transcript, a booking, documents,
statistics), signed in as an administrator (the widest pages: editing controls shown).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from tests.browser.a11y import axe_violations, overflow_offenders, scroll_width
from tests.browser.conftest import Browser, add_user
from tests.browser.test_admin_dashboard import ADMIN, book, insert_call, open_dashboard
from tests.integration.conftest import LiveServer, instant_engines

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:
    expect = None

PHONE = {"width": 375, "height": 812}
PAGES = [
    ("llamadas", "Llamadas"),
    ("en-curso", "En curso"),
    ("reservas", "Reservas"),
    ("calendario", "Calendario de citas"),
    ("calidad", "Calidad de las respuestas"),
    ("instrucciones", "Instrucciones del asistente"),
    ("conocimiento", "Base de conocimiento"),
    ("estadisticas", "Estadísticas"),
]


def seeded(dashboard_server: Callable[..., LiveServer]) -> tuple[LiveServer, str]:
    from app.storage import TurnRecord

    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    sid = "CA" + secrets.token_hex(16)
    insert_call(
        server,
        sid,
        [
            TurnRecord(
                seq=0,
                speaker="bot",
                text="Buenos días, le atiende TAINA.",
                timings={"first_byte_ms": 420.0},
            ),
            TurnRecord(seq=1, speaker="caller", text="Quiero sacar una cita para la cédula"),
            TurnRecord(
                seq=2,
                speaker="bot",
                text="Disculpe, no le entendí. ¿Para qué trámite?",
                timings={"first_byte_ms": 850.0, "stt_ms": 120.0},
            ),
        ],
    )
    book(server, sid)
    return server, sid


def check(page: Any, what: str) -> None:
    width = scroll_width(page)
    assert width <= PHONE["width"], f"{what}: {width} px wide: {overflow_offenders(page)}"
    violations = axe_violations(page)
    assert violations == [], f"{what}: {violations}"


def test_dashboard_at_375_has_no_sideways_scroll_and_no_serious_axe_violation(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server, sid = seeded(dashboard_server)
    page = browser.page(server, **PHONE)
    # Console noise (issue 14): no 404 (favicon), no 409 (prompt page), nothing failing.
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    check(page, "iniciar sesión")
    open_dashboard(page, ADMIN)
    for route, heading in PAGES:
        page.goto(f"/admin/#/{route}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        expect(page.locator("main .loading")).to_have_count(0)
        check(page, route)
        screenshots(page, f"375-{route}")
    page.goto(f"/admin/#/llamadas/{sid}")
    expect(page.get_by_role("list", name="Transcripción")).to_be_visible()
    check(page, "detalle de llamada")
    screenshots(page, "375-llamada")

    # Chart labels stay readable (the issue measured 4 px).
    page.goto("/admin/#/estadisticas")
    expect(page.get_by_role("img", name="Llamadas por día")).to_be_visible()
    heights = page.eval_on_selector_all(
        "svg.chart text.axis", "els => els.map(e => e.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 9, heights
    expect(page.locator("#kpi-unclear .kpi-value")).to_have_text("100,0 %")
    assert failed == [], failed


def test_dashboard_works_from_the_keyboard(dashboard_server: Any, browser: Browser) -> None:
    server, _ = seeded(dashboard_server)
    page = browser.page(server, **PHONE)
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    # Sign in with the keyboard only: the page focuses its heading, Tab reaches the fields in
    # order and Enter submits.
    # The page moves the focus once it has booted: wait for it rather than race it.
    page.wait_for_function("document.activeElement && document.activeElement.tagName === 'H1'")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "login-email"
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "login-password"
    page.keyboard.type("clave-segura-123")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Llamadas", exact=True)).to_be_visible()
    # The new page's heading takes the focus (screen readers announce where they are).
    page.wait_for_function("document.activeElement && document.activeElement.tagName === 'H1'")
    page.get_by_role("link", name="Reservas").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Reservas", exact=True)).to_be_visible()
    # Filters by name, not by internal code (issue 14), usable from the keyboard.
    service = page.locator('#b-tramite option[value="cedula"]')
    name = service.inner_text()
    assert name and name != "cedula"
    page.get_by_label("Trámite").select_option(label=name)
    page.get_by_role("button", name="Filtrar").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"tramite=cedula"))
    expect(page.get_by_role("region", name="Reservas")).to_contain_text("Ana Pérez")
    focusable = page.evaluate(
        """() => [...document.querySelectorAll('main a, main button, main input, main select,'
                + ' main textarea, main [tabindex]')].filter(e => !e.disabled)
              .every(e => e.tabIndex >= -1)"""
    )
    assert focusable


def test_visitor_page_has_no_serious_axe_violation(
    live_server_factory: Callable[..., LiveServer], browser: Browser
) -> None:
    from tests.browser.test_visitor_page import with_web_routes

    server = with_web_routes(live_server_factory(engines=instant_engines()))
    page = browser.page(server, **PHONE)
    page.goto("/")
    expect(page.get_by_role("button", name="Llamar")).to_be_visible()
    check(page, "visitante")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "call"
