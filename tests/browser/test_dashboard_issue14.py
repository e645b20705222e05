"""Issue 14 in headless Chromium against the real app: what a staff member sees.

Each test reproduces a point of the issue as a person meets it (sign-in, clicks, a phone-sized
window) and asserts on the page, so it failed before the fix.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from app.storage import TurnRecord
from tests.browser.conftest import Browser, add_user
from tests.browser.test_admin_dashboard import ADMIN, AGENT, book, open_dashboard, sign_in
from tests.integration.conftest import instant_engines

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:
    expect = None

DRAFT = "Usted es TAINA. Borrador escrito durante más de cuarenta segundos."


# --- item 6: sessions renew while used, end when idle -----------------------------------------


def test_a_40_s_token_renews_under_the_live_view_and_a_prompt_draft(
    dashboard_server: Any, browser: Browser
) -> None:
    """The issue's scenario: with a 40 s token, an agent on the live view was signed out at
    the next click and an admin's prompt draft was lost on «Guardar»."""
    server = dashboard_server(instant_engines(), live_stream=True, admin_jwt_ttl_s=40)
    add_user(server, ADMIN, "admin")
    add_user(server, AGENT, "agent")
    renewals: list[int] = []

    agent = browser.page(server)
    admin = browser.page(server)
    for page in (agent, admin):
        page.on(
            "response",
            lambda r: renewals.append(r.status) if r.url.endswith("/api/auth/refresh") else None,
        )
    open_dashboard(agent, AGENT)
    agent.get_by_role("link", name="En curso").click()
    expect(agent.locator("#live-status")).to_contain_text("Conectado")
    open_dashboard(admin, ADMIN)
    admin.get_by_role("link", name="Instrucciones del asistente").click()
    editor = admin.get_by_label("Texto de las instrucciones")
    editor.fill(DRAFT)
    signed_in = time.monotonic()

    time.sleep(max(0.0, 42 - (time.monotonic() - signed_in)))  # the token is past its end
    agent.get_by_role("link", name="Llamadas", exact=True).click()
    expect(agent.get_by_role("heading", name="Llamadas", exact=True)).to_be_visible()
    admin.get_by_role("button", name="Guardar nueva versión").click()
    expect(admin.locator("#prompt-status")).to_contain_text("Se guardó la versión 1")
    assert server.run(server.services.prompts.active()) == DRAFT
    expect(agent.get_by_role("heading", name="Iniciar sesión")).to_have_count(0)
    expect(admin.get_by_role("heading", name="Iniciar sesión")).to_have_count(0)
    assert renewals and all(s == 200 for s in renewals), renewals


def test_an_idle_session_ends_with_its_reason(dashboard_server: Any, browser: Browser) -> None:
    server = dashboard_server(instant_engines(), admin_jwt_ttl_s=2, admin_idle_timeout_s=4)
    add_user(server, ADMIN, "admin")
    page = browser.page(server)
    open_dashboard(page, ADMIN)
    time.sleep(6)  # no click, no request: idle beyond the limit
    page.get_by_role("link", name="Reservas").click()
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    expect(page.locator(".login")).to_contain_text("La sesión se cerró por inactividad.")
    sign_in(page, ADMIN)
    expect(page.get_by_role("heading", name="Reservas")).to_be_visible()


def test_sign_out_revokes_the_renewal_cookie(dashboard_server: Any, browser: Browser) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    page = browser.page(server)
    open_dashboard(page, ADMIN)
    cookies = page.context.cookies()
    kept = next(c for c in cookies if c["name"] == "taina_refresh")
    assert kept["httpOnly"] and kept["path"] == "/api/auth" and kept["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # page scripts cannot read it
    page.get_by_role("button", name="Cerrar sesión").click()
    expect(page.get_by_text("Cerró la sesión.")).to_be_visible()
    r = httpx.post(
        f"{server.url}/api/auth/refresh", cookies={"taina_refresh": kept["value"]}, timeout=10
    )
    assert r.status_code == 401


# --- item 1: outcomes that tell the truth, search that finds -----------------------------------


def _call(
    server: Any,
    sid: str,
    texts: list[tuple[str, str]],
    *,
    minutes_ago: float = 5,
    end_reason: str | None = "bot-hangup",
) -> None:
    calls = server.services.calls
    started = datetime.now(UTC) - timedelta(minutes=minutes_ago)

    async def write() -> None:
        await calls.start_call(sid, "twilio", caller_number="+18095550123", started_at=started)
        for seq, (speaker, text) in enumerate(texts):
            await calls.add_turn(sid, TurnRecord(seq=seq, speaker=speaker, text=text))
        if end_reason is not None:
            await calls.end_call(
                sid, ended_at=started + timedelta(seconds=60), end_reason=end_reason
            )

    server.run(write())


def test_outcomes_tell_the_truth_and_search_ignores_accents(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    booked, hung_up, crashed = ("CA" + secrets.token_hex(8) for _ in range(3))
    _call(
        server,
        booked,
        [("bot", "Buenos días."), ("caller", "Quiero una cita para la cédula el lunes.")],
        minutes_ago=10,
    )
    book(server, booked)
    _call(server, hung_up, [("bot", "Buenos días.")], minutes_ago=8, end_reason="caller-hangup")
    # A call whose process died two hours ago: never ended in the database.
    _call(server, crashed, [("caller", "Hola")], minutes_ago=120, end_reason=None)

    page = browser.page(server)
    open_dashboard(page, ADMIN)
    row = page.locator(f'tr[data-call-sid="{booked}"]')
    expect(row).to_contain_text("Cita reservada")
    expect(page.locator(f'tr[data-call-sid="{hung_up}"]')).to_contain_text(
        "Colgó antes de terminar"
    )
    dead = page.locator(f'tr[data-call-sid="{crashed}"]')
    expect(dead).to_contain_text("Interrumpida")
    expect(dead).not_to_contain_text("En curso")

    page.get_by_label("Resultado").select_option("booked")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("1 llamada", exact=True)).to_be_visible()
    expect(row).to_be_visible()

    page.get_by_role("button", name="Limpiar").click()
    page.get_by_label("Buscar en transcripciones").fill("cedula")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("1 llamada", exact=True)).to_be_visible()
    snippet = page.locator(f'tr[data-match-for="{booked}"]')
    expect(snippet).to_contain_text("Quiero una cita para la cédula el lunes.")
    expect(snippet.locator("mark")).to_have_text("cédula")
    screenshots(page, "20-busqueda-sin-acentos")

    row.get_by_role("link").click()
    expect(page.locator("dl.summary")).to_contain_text("Cita reservada")
    page.goto(f"/admin/#/llamadas/{crashed}")
    expect(page.locator("dl.summary")).to_contain_text("Se cortó (el servidor se detuvo)")
    expect(page.get_by_text("Esta llamada está en curso.")).to_have_count(0)


# --- item 1: the prompt editor tells the truth -------------------------------------------------

LONG_START = (
    "Usted es TAINA, la asistente de la oficina de servicios al ciudadano. Responda con "
    "cortesía y en frases cortas.\n"
)


def test_prompt_editor_without_llm_diff_rollback_and_built_in(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(instant_engines())  # the offline brain: no language model
    add_user(server, ADMIN, "admin")
    page = browser.page(server)
    conflicts: list[str] = []
    page.on("response", lambda r: conflicts.append(r.url) if r.status == 409 else None)
    open_dashboard(page, ADMIN)
    page.get_by_role("link", name="Instrucciones del asistente").click()
    expect(page.get_by_text("no hay un modelo de lenguaje configurado")).to_be_visible()

    editor = page.get_by_label("Texto de las instrucciones")
    editor.fill(LONG_START + "Salude siempre por la mañana.")
    page.get_by_role("button", name="Guardar nueva versión").click()
    expect(page.locator("#prompt-status")).to_contain_text("no tendrá efecto")
    expect(page.locator("#prompt-active")).to_have_text(
        "Versión seleccionada: v1 (sin efecto sin modelo de lenguaje)"
    )
    expect(page.locator('tr[data-version="1"]')).not_to_contain_text("Activa")
    # Only one version: nothing to roll back to, so the button is not offered (no 409).
    expect(page.locator("#prompt-rollback")).to_be_disabled()

    editor.fill(LONG_START + "Despídase con el nombre de la oficina.")
    page.get_by_role("button", name="Guardar nueva versión").click()
    expect(page.locator("#prompt-status")).to_contain_text("Se guardó la versión 2")
    v1 = page.locator('tr[data-version="1"] .preview')
    v2 = page.locator('tr[data-version="2"] .preview')
    expect(v2).to_have_text("Despídase con el nombre de la oficina.")
    assert v1.inner_text() != v2.inner_text()

    page.locator('tr[data-version="2"]').get_by_role("button", name="Comparar").click()
    diff = page.locator("#prompt-diff")
    expect(diff).to_contain_text("Versión 2 frente a la versión 1")
    expect(diff.locator("li.diff-add")).to_have_text(
        re.compile("Despídase con el nombre de la oficina.")
    )
    expect(diff.locator("li.diff-del")).to_have_text(re.compile("Salude siempre por la mañana."))
    screenshots(page, "21-instrucciones-diferencias")

    page.get_by_role("button", name="Volver a la versión anterior").click()
    expect(page.locator("#prompt-status")).to_have_text("Se volvió a la versión 1.")
    expect(page.locator("#prompt-rollback")).to_be_disabled()
    page.get_by_role("button", name="Usar el texto incorporado").click()
    expect(page.locator("#prompt-active")).to_have_text(
        "Se usa el texto incorporado (ninguna versión activa)."
    )
    assert server.run(server.services.prompts.active()) == server.services.prompts.default
    assert conflicts == []


# --- item 1: knowledge documents can be read, downloaded and deleted ---------------------------

ACCENTED = "licencia_conducción.md"
ACCENTED_TEXT = "# Licencia de conducir\n\nPara renovar la licencia lleve la cédula vigente.\n"


def test_knowledge_documents_view_download_delete_and_dates(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    page = browser.page(server)
    open_dashboard(page, ADMIN)
    page.get_by_role("link", name="Base de conocimiento").click()
    documents = page.get_by_role("region", name="Documentos")
    expect(documents.locator("tbody tr").first).to_be_visible()
    before = {
        row.get_attribute("data-doc"): row.locator("td").nth(3).inner_text()
        for row in documents.locator("tbody tr").all()
    }
    assert len(before) >= 2

    page.get_by_label("Archivo Markdown (.md, hasta 200 KB)").set_input_files(
        files=[{"name": ACCENTED, "mimeType": "text/markdown", "buffer": ACCENTED_TEXT.encode()}]
    )
    page.get_by_role("button", name="Subir documento").click()
    expect(page.locator("#knowledge-status")).to_contain_text(f"Se subió «{ACCENTED}».")
    new_row = documents.locator(f'tr[data-doc="{ACCENTED}"]')
    expect(new_row).to_be_visible()
    # The first upload did not re-date the other documents.
    after = {
        row.get_attribute("data-doc"): row.locator("td").nth(3).inner_text()
        for row in documents.locator("tbody tr").all()
    }
    assert {k: after[k] for k in before} == before

    page.get_by_role("button", name=f"Ver {ACCENTED}").click()
    expect(page.locator("#kb-viewer pre")).to_have_text(ACCENTED_TEXT.strip() + "\n")
    with page.expect_download() as info:
        page.get_by_role("button", name=f"Descargar {ACCENTED}").click()
    download = info.value
    assert download.suggested_filename == ACCENTED
    assert Path(download.path()).read_text(encoding="utf-8") == ACCENTED_TEXT
    screenshots(page, "22-conocimiento-ver")

    page.get_by_role("button", name=f"Borrar {ACCENTED}").click()
    page.get_by_role("button", name="Sí, borrar").click()
    expect(page.locator("#knowledge-status")).to_contain_text(f"Se borró «{ACCENTED}».")
    expect(new_row).to_have_count(0)
    folder = server.services.knowledge.source_dir
    assert not (folder / ACCENTED).exists()


# --- item 1: statistics group the same question and count what was not understood -------------

SPELLINGS = [
    "¿A qué hora abren?",
    "Hola, buenos días, ¿a qué hora abren?",
    "a que hora abren por favor",
    "Buenas, quisiera saber a qué hora abren.",
    "Disculpe, ¿abren a qué hora?",
]


def test_statistics_group_spellings_and_show_a_not_understood_rate(
    dashboard_server: Any, browser: Browser
) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    for i, text in enumerate(SPELLINGS):
        reply = "Disculpe, no le entendí." if i < 2 else "Abrimos a las ocho."
        _call(server, f"CA{i:032d}", [("bot", "Buenos días."), ("caller", text), ("bot", reply)])
    page = browser.page(server)
    open_dashboard(page, ADMIN)
    page.get_by_role("link", name="Estadísticas").click()
    rows = page.locator(".top-questions li")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("5 veces")
    expect(page.locator("#kpi-unclear .kpi-value")).to_have_text("40,0 %")
