"""Personal data and CSV exports in the dashboard, in headless Chromium against the real app.

Issue 14's privacy point as a person sees it: the agent's booking list masked the cédula while
the same agent read it in full in the call's transcript (keyed digits). Here an agent opens that
call and finds the number masked in every place the page shows it, downloads the calls and the
bookings with «Descargar CSV» (the filters on screen applied, numbers masked), and an admin
opening the same call reads the number in clear.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.storage import TurnRecord
from tests.browser.conftest import Browser, add_user
from tests.browser.test_admin_dashboard import ADMIN, AGENT, book, expect, open_dashboard
from tests.integration.conftest import LiveServer, instant_engines

CEDULA = "00112345678"
SID = "CA-teclado"
# The full cédula or the caller's full phone number, however it is written or spaced.
LEAK = re.compile(
    r"0\D{0,3}0\D{0,3}1\D{0,3}1\D{0,3}2\D{0,3}3\D{0,3}4"
    r"|8\D{0,3}0\D{0,3}9\D{0,3}5\D{0,3}5\D{0,3}5\D{0,3}0\D{0,3}1\D{0,3}2\D{0,3}3"
    r"|cero\W+cero\W+uno\W+uno",
    re.IGNORECASE,
)


def seed(server: LiveServer) -> None:
    calls = server.services.calls
    started = datetime.now(UTC) - timedelta(minutes=10)
    turns = [
        TurnRecord(seq=0, speaker="bot", text="Bienvenido. ¿En qué le ayudo?"),
        TurnRecord(seq=1, speaker="caller", text="Quiero una cita, mi cédula es 001-1234567-8"),
        TurnRecord(seq=2, speaker="bot", text="Puede marcar su cédula en el teclado."),
        TurnRecord(seq=3, speaker="caller", text="", dtmf=CEDULA),
        TurnRecord(
            seq=4,
            speaker="bot",
            text="Su cédula es cero cero uno, uno dos tres cuatro cinco seis siete, ocho.",
            tools=[{"name": "book_appointment", "arguments": {"cedula": CEDULA}, "result": "ok"}],
        ),
    ]

    async def write() -> None:
        for sid, ingress, caller, offset in [
            (SID, "twilio", "+18095550123", 0),
            ("web-sin-numero", "web", None, 1),
        ]:
            at = started - timedelta(minutes=offset)
            await calls.start_call(sid, ingress, caller_number=caller, started_at=at)
            for turn in turns if sid == SID else turns[:1]:
                await calls.add_turn(sid, turn)
            await calls.end_call(
                sid, ended_at=at + timedelta(seconds=60), end_reason="caller-hangup"
            )

    server.run(write())
    book(server, SID)


def download(page: Any, button: str) -> tuple[list[dict[str, str]], str]:
    with page.expect_download() as info:
        page.get_by_role("button", name=button).click()
    text = Path(info.value.path()).read_text(encoding="utf-8-sig")
    expect(page.locator(".export-status")).to_have_text("Archivo descargado.")
    return list(csv.DictReader(io.StringIO(text))), text


def test_agent_sees_numbers_masked_and_downloads_masked_csv(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, AGENT, "agent")
    add_user(server, ADMIN, "admin")
    seed(server)

    page = browser.page(server)
    open_dashboard(page, AGENT)
    page.goto(f"/admin/#/llamadas/{SID}")
    expect(page.locator(".turn-dtmf")).to_have_text("Marcó en el teclado: *******5678")
    transcript = page.get_by_role("list", name="Transcripción")
    expect(transcript).to_contain_text("mi cédula es *******5678")
    expect(transcript).to_contain_text("Su cédula es *******5678.")
    page.get_by_text("Herramientas usadas (1)").click()
    expect(page.locator(".tool pre").first).to_contain_text('"cedula": "*******5678"')
    expect(page.get_by_role("table", name="Citas de la llamada")).to_contain_text("*******5678")
    expect(page.locator("dl.summary")).to_contain_text("+*******0123")
    everything = page.locator("main").text_content() or ""
    assert LEAK.findall(everything) == [], LEAK.findall(everything)
    screenshots(page, "privacidad-llamada-agente")

    # Searching by part of the number would spell it out: refused, in words a person reads.
    page.goto("/admin/#/llamadas")
    page.get_by_label("Buscar en transcripciones").fill("45678")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text(re.compile("escriba el número completo"))).to_be_visible()

    # «Descargar CSV» on Llamadas, with a filter on screen: only those rows, numbers masked.
    page.goto("/admin/#/llamadas")
    page.get_by_label("Canal").select_option("twilio")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("1 llamada", exact=True)).to_be_visible()
    rows, text = download(page, "Descargar CSV de las llamadas (con los filtros aplicados)")
    assert [r["llamada"] for r in rows] == [SID]
    assert rows[0]["numero_que_llamo"] == "'+*******0123"
    assert not LEAK.search(text)

    page.get_by_role("link", name="Reservas").click()
    expect(page.get_by_role("heading", name="Reservas")).to_be_visible()
    rows, text = download(page, "Descargar CSV de las reservas (con los filtros aplicados)")
    assert [(r["llamada"], r["cedula"], r["telefono"]) for r in rows] == [
        (SID, "*******5678", "'+*******0100")
    ]
    assert not LEAK.search(text) and "8095550100" not in text

    # The admin reads the same call in clear.
    admin = browser.page(server)
    open_dashboard(admin, ADMIN)
    admin.goto(f"/admin/#/llamadas/{SID}")
    expect(admin.locator(".turn-dtmf")).to_have_text(f"Marcó en el teclado: {CEDULA}")
    expect(admin.locator("dl.summary")).to_contain_text("+18095550123")
