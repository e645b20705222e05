"""Issue 14, items 2–4, in headless Chromium against the real app: the call review (a recorded
phone call whose transcript follows the recording), the office calendar with its booking
actions, the quality report and «Probar una pregunta». Assertions are on what a person sees.

With ``TAINA_DOCS_SCREENSHOTS=1`` the desktop screenshots also go to ``docs/img/`` (the
README's pictures): ``scripts/docs_screenshots.sh`` regenerates them.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.storage import TurnRecord
from pipeline.brain import phrases
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines
from tests.browser.a11y import axe_violations, overflow_offenders, scroll_width
from tests.browser.conftest import ROOT, BackgroundLoop, Browser, add_user
from tests.browser.test_admin_dashboard import open_dashboard
from tests.integration.conftest import LiveServer
from tests.integration.staff_fixtures import past_booking
from tests.integration.test_call_recording import recorded_call

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips
    expect = None

ADMIN = "admin@example.org"
AGENT = "agente@example.org"
DOCS_IMG = ROOT / "docs" / "img"
DESKTOP = {"width": 1366, "height": 900}


def doc_shot(page: Any, shots: Any, name: str) -> Path:
    """Screenshot under test-artifacts/, and under docs/img/ when regenerating the docs."""
    path = shots(page, name)
    if os.environ.get("TAINA_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / f"{name}.png"), full_page=False, animations="disabled")
    return path


def wait_audio(page: Any, timeout_s: float = 15.0) -> None:
    """Until the player knows the recording's length (polled from here: the page's CSP
    forbids the string evaluation ``wait_for_function`` polls with)."""
    audio = page.locator("audio.recording")
    expect(audio).to_be_attached()
    deadline = time.monotonic() + timeout_s
    while audio.evaluate("a => a.readyState") < 1:
        assert time.monotonic() < deadline, "the recording never loaded"
        page.wait_for_timeout(50)


def app_engines() -> Engines:
    """Instant ears and voice; the brain the app builds for calls (tools, knowledge base)."""
    return Engines(
        vad=EnergyVad(),
        stt=FixedSTT(text="¿A qué hora abren las oficinas?"),
        tts=ToneTTS(ms_per_char=5),
        brain=None,
    )


def test_call_review_plays_the_recording_in_sync_with_the_transcript(
    dashboard_server: Any, browser: Browser, bg: BackgroundLoop, screenshots: Any
) -> None:
    server = dashboard_server(app_engines(), record_calls=True, slow_turn_ms=300.0)
    add_user(server, AGENT, "agent")
    sid = bg.run(recorded_call(server))
    review = server.run(server.services.calls.get_call(sid))
    assert review is not None

    page = browser.page(server, **DESKTOP)
    open_dashboard(page, AGENT)
    page.goto(f"/admin/#/llamadas/{sid}")
    transcript = page.get_by_role("list", name="Transcripción")
    reply = transcript.locator('li[data-seq="2"]')
    caller = transcript.locator('li[data-seq="1"]')

    # Where each reply's time went, the slow one marked (300 ms: the end-of-turn silence alone
    # is longer, so the reply is slow on any machine; the greeting never counts).
    timeline = page.get_by_role("region", name="Tiempos por turno")
    expect(page.get_by_role("heading", name="Tiempos por turno")).to_be_visible()
    row = timeline.locator('tr[data-seq="2"]')
    expect(row.get_by_role("rowheader")).to_contain_text("Turno 2")
    expect(row.locator(".badge-slow")).to_have_text("Lenta")
    for stage in ("Fin de turno", "Transcripción", "Asistente", "Voz", "Primer audio"):
        expect(timeline.get_by_role("columnheader", name=stage)).to_be_visible()
    expect(page.get_by_text(re.compile(r"1 respuesta lenta \(más de 300 ms"))).to_be_visible()

    # The answer names the knowledge passage it came from; the slow reply is marked in the
    # transcript too.
    expect(reply.locator(".turn-source")).to_contain_text(re.compile(r"Respondió con: .+\.md"))
    expect(reply.locator(".badge-slow")).to_have_text("Lenta")

    # The recording plays with the transcript: clicking a line jumps there and highlights it.
    audio = page.locator("audio.recording")
    expect(audio).to_be_attached()
    wait_audio(page)
    expect(page.get_by_text("Haga clic en una línea de la transcripción")).to_be_visible()
    caller.locator(".turn-text").click()
    expect(caller).to_have_attribute("aria-current", "true")
    expect(caller).to_have_class(re.compile(r"\bturn-current\b"))
    position = float(audio.evaluate("a => a.currentTime"))
    caller_at = float(
        caller.locator("button.seek").get_attribute("aria-label").split()[-1].split(":")[1]
    )
    assert abs(position - caller_at) < 1.0, (position, caller_at)

    jump = reply.get_by_role("button", name=re.compile(r"^Escuchar desde 0:0\d$"))
    jump.click()
    expect(reply).to_have_attribute("aria-current", "true")
    expect(caller).not_to_have_attribute("aria-current", "true")
    # Playing on its own, the highlight follows the audio: back to the start, the greeting.
    audio.evaluate("a => { a.pause(); a.currentTime = 0.05; }")
    expect(transcript.locator('li[data-seq="0"]')).to_have_attribute("aria-current", "true")

    # Tags and notes, kept across a reload.
    page.get_by_label("Nueva etiqueta").fill("Respuesta incorrecta")
    page.get_by_role("button", name="Añadir etiqueta").click()
    tags = page.get_by_role("list", name="Etiquetas de la llamada")
    expect(tags.get_by_role("listitem")).to_have_text(re.compile(r"^respuesta incorrecta"))
    page.get_by_label("Nueva nota").fill("Respondió bien, pero tardó.")
    page.get_by_role("button", name="Guardar nota").click()
    expect(page.get_by_text("Se guardó la nota.")).to_be_visible()
    page.reload()
    notes = page.get_by_role("list", name="Notas de la llamada")
    expect(notes).to_contain_text("Respondió bien, pero tardó.")
    expect(notes).to_contain_text(AGENT)
    expect(page.get_by_role("list", name="Etiquetas de la llamada")).to_contain_text(
        "respuesta incorrecta"
    )
    # The calls list shows the tag on the call's row.
    page.get_by_role("link", name="← Volver a Llamadas").click()
    row = page.locator(f'tr[data-call-sid="{sid}"]')
    expect(row.get_by_role("list", name="Etiquetas")).to_have_text("respuesta incorrecta")
    page.go_back()
    expect(page.get_by_role("heading", name="Tiempos por turno")).to_be_visible()
    wait_audio(page)
    caller.locator(".turn-text").click()
    expect(caller).to_have_attribute("aria-current", "true")
    audio.evaluate("a => a.pause()")
    page.evaluate("document.getElementById('rec-title').closest('section').scrollIntoView()")
    doc_shot(page, screenshots, "revision-de-llamada")
    page.get_by_role("button", name="Quitar la etiqueta «respuesta incorrecta»").click()
    expect(page.get_by_text("Sin etiquetas.")).to_be_visible()

    # The passage opens in the knowledge page's reader.
    source = reply.locator(".turn-source a.passage").inner_text().split(" › ")[0]
    reply.locator(".turn-source a.passage").click()
    expect(page.get_by_role("heading", name=source, exact=True)).to_be_visible()
    expect(page.get_by_label(f"Texto de {source}")).to_contain_text("#")


# --- calendar ---------------------------------------------------------------------------------


def _book(server: LiveServer, name: str, cedula: str) -> Any:
    async def go() -> Any:
        svc = server.services.booking_service
        free = await svc.available("cedula", "SDC", limit=1)
        return await svc.book(free[0].id, "cedula", name, cedula, "8095550100")

    return server.run(go())


def test_calendar_shows_capacity_and_staff_act_on_bookings(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(app_engines())
    add_user(server, AGENT, "agent")
    ana = _book(server, "Ana Pérez", "00112345678")
    _book(server, "Luis Gómez", "00112345679")
    past_booking(server, "TA-PAST9", name="Pedro Martínez", ago=timedelta(minutes=30), capacity=1)
    day = ana.starts_at.date().isoformat()

    page = browser.page(server, **DESKTOP)
    open_dashboard(page, AGENT)
    page.get_by_role("link", name="Calendario").click()
    expect(page.get_by_role("heading", name="Calendario de citas")).to_be_visible()

    # Today: the appointment that already happened, marked attended.
    pedro = page.locator('li[data-code="TA-PAST9"]')
    expect(pedro).to_contain_text("Pedro Martínez")
    pedro.get_by_role("button", name=re.compile("Acciones para la cita de Pedro")).click()
    dialog = page.get_by_role("dialog", name="Cita TA-PAST9")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancelar cita")).to_have_count(0)  # it is past
    dialog.get_by_role("button", name="Marcar «Asistió»").click()
    expect(page.get_by_text("Cita TA-PAST9: asistió.")).to_be_visible()
    expect(page.locator('li[data-code="TA-PAST9"] .badge')).to_have_text("Asistió")

    # The booking's day: capacity per slot, the cédula masked for an agent.
    page.get_by_label("Fecha").fill(day)
    page.get_by_label("Fecha").dispatch_event("change")
    booking = page.locator(f'li[data-code="{ana.code}"]')
    expect(booking).to_contain_text("Ana Pérez")
    slot = page.locator(f'li.cal-slot:has(li[data-code="{ana.code}"])')
    expect(slot.locator(".cal-capacity")).to_contain_text(re.compile(r"2/\d+ ocupados|Completo"))
    expect(page.get_by_text(re.compile(r"2 de \d+ cupos ocupados")).first).to_be_visible()

    # Move Ana to another time: the dialog offers only free future slots of that day.
    booking.get_by_role("button", name=re.compile("Acciones para la cita de Ana")).click()
    dialog = page.get_by_role("dialog", name=f"Cita {ana.code}")
    expect(dialog).to_contain_text("***")  # masked cédula
    expect(dialog).not_to_contain_text("0011234")
    choice = dialog.get_by_label("Nuevo horario")
    expect(choice.locator("option").first).to_have_text(re.compile(r"^\d\d:\d\d \(\d+ libres\)$"))
    target = choice.locator("option").nth(1)
    target_time = target.inner_text()[:5]
    choice.select_option(index=1)
    dialog.get_by_role("button", name="Mover la cita").click()
    expect(
        page.get_by_text(re.compile(rf"La cita {ana.code} se movió al {day} a las {target_time}"))
    ).to_be_visible()
    moved = page.locator(f'li.cal-slot:has(li[data-code="{ana.code}"]) .cal-slot-time')
    expect(moved).to_have_text(target_time)

    # The week, then cancel (after confirming).
    page.get_by_label("Vista").select_option("semana")
    expect(page.locator(".cal-week section.cal-day")).to_have_count(7)
    doc_shot(page, screenshots, "calendario")
    page.once("dialog", lambda d: d.accept())
    page.locator(f'li[data-code="{ana.code}"]').get_by_role("button").click()
    page.get_by_role("dialog", name=f"Cita {ana.code}").get_by_role(
        "button", name="Cancelar cita"
    ).click()
    expect(page.get_by_text(f"Se canceló la cita {ana.code}.")).to_be_visible()
    expect(page.locator(f'li[data-code="{ana.code}"]')).to_have_count(0)
    still = server.run(server.services.booking_service.get(ana.code))
    assert still is not None and still.status == "cancelled"


# --- quality ------------------------------------------------------------------------------------


def _seed_quality(server: LiveServer) -> None:
    now = datetime.now(UTC) - timedelta(minutes=20)
    out_of_scope = f"{phrases.CANNOT_HELP_WITH_THAT} {phrases.CAPABILITIES}"

    def turn(seq: int, speaker: str, text: str) -> TurnRecord:
        at = now + timedelta(seconds=5 * seq)
        return TurnRecord(
            seq=seq,
            speaker=speaker,  # type: ignore[arg-type]
            text=text,
            heard_text=text,
            interrupted=False,
            started_at=at,
            ended_at=at + timedelta(seconds=2),
            timings={"first_byte_ms": 700.0} if speaker == "bot" else {},
        )

    async def write() -> None:
        calls = server.services.calls
        for i, said in enumerate(["¿Puedo pagar la luz aquí?", "puedo pagar la luz aqui"]):
            sid = f"CA-luz-{i}"
            await calls.start_call(sid, "twilio", started_at=now + timedelta(minutes=i))
            await calls.add_turn(sid, turn(0, "bot", "Buenas tardes. ¿En qué le puedo ayudar?"))
            await calls.add_turn(sid, turn(1, "caller", said))
            await calls.add_turn(sid, turn(2, "bot", out_of_scope))
            await calls.end_call(sid, end_reason="caller-hangup")

    server.run(write())


def test_quality_report_and_trying_a_question(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(app_engines())
    add_user(server, AGENT, "agent")
    _seed_quality(server)

    page = browser.page(server, **DESKTOP)
    open_dashboard(page, AGENT)
    page.get_by_role("link", name="Calidad").click()
    expect(page.get_by_role("heading", name="Calidad de las respuestas")).to_be_visible()
    table = page.get_by_role("region", name="Preguntas no entendidas o sin respuesta", exact=True)
    row = table.get_by_role("row", name=re.compile("pagar la luz"))
    expect(row).to_have_count(1)  # two spellings, one question
    expect(row).to_contain_text("Sin respuesta")
    expect(row.get_by_role("cell").nth(1)).to_have_text("2")
    expect(page.locator(".quality-kpis")).to_contain_text("Sin respuesta2")
    doc_shot(page, screenshots, "calidad")
    row.get_by_role("link", name=re.compile(r"^Llamada 1, del ")).click()
    expect(page.get_by_role("heading", name=re.compile("Llamada CA-luz-1"))).to_be_visible()

    # «Probar una pregunta»: the answer and the passage it comes from.
    page.get_by_role("link", name="Base de conocimiento").click()
    page.get_by_label("Pregunta, como la diría quien llama").fill("¿A qué hora abren las oficinas?")
    page.get_by_role("button", name="Probar").click()
    answer = page.locator(".try-answer")
    expect(answer).to_contain_text("lunes a viernes")
    used = page.locator(".try-passage-used")
    expect(used).to_contain_text("Pasaje usado:")
    expect(used.locator("code")).to_have_text(re.compile(r"\.md$"))
    page.evaluate("document.getElementById('probar').scrollIntoView()")
    doc_shot(page, screenshots, "probar-una-pregunta")

    page.get_by_label("Pregunta, como la diría quien llama").fill("¿Puedo pagar la luz aquí?")
    page.get_by_role("button", name="Probar").click()
    expect(answer).to_contain_text("Disculpe, con eso no le puedo ayudar")
    expect(
        page.get_by_text("No respondió con ningún pasaje de la base de conocimiento.")
    ).to_be_visible()

    page.get_by_role("link", name="Estadísticas").click()
    expect(page.get_by_role("heading", name="Estadísticas")).to_be_visible()
    page.wait_for_timeout(300)  # charts draw on the next frame
    doc_shot(page, screenshots, "estadisticas")


# --- phone size and accessibility ---------------------------------------------------------------

PHONE = {"width": 375, "height": 812}


def _phone_check(page: Any, what: str) -> None:
    width = scroll_width(page)
    assert width <= PHONE["width"], f"{what}: {width} px wide: {overflow_offenders(page)}"
    violations = axe_violations(page)
    assert violations == [], f"{what}: {violations}"


def test_review_calendar_and_quality_at_375_without_sideways_scroll_or_axe_violations(
    dashboard_server: Any, browser: Browser, bg: BackgroundLoop, screenshots: Any
) -> None:
    server = dashboard_server(app_engines(), record_calls=True, slow_turn_ms=300.0)
    add_user(server, AGENT, "agent")
    sid = bg.run(recorded_call(server))
    _seed_quality(server)
    past_booking(server, "TA-PAST7", name="Pedro Martínez", ago=timedelta(minutes=30), capacity=1)
    page = browser.page(server, **PHONE)
    open_dashboard(page, AGENT)

    page.goto(f"/admin/#/llamadas/{sid}")
    expect(page.get_by_role("heading", name="Tiempos por turno")).to_be_visible()
    expect(page.get_by_role("heading", name="Etiquetas y notas")).to_be_visible()
    wait_audio(page)
    _phone_check(page, "revisión de llamada")
    screenshots(page, "375-revision")

    for view in ("dia", "semana"):
        page.goto(f"/admin/#/calendario?vista={view}")
        expect(page.get_by_role("heading", name="Calendario de citas")).to_be_visible()
        expect(page.locator("main .loading")).to_have_count(0)
        _phone_check(page, f"calendario ({view})")
    page.goto("/admin/#/calendario")
    page.locator('li[data-code="TA-PAST7"]').get_by_role("button").click()
    expect(page.get_by_role("dialog", name="Cita TA-PAST7")).to_be_visible()
    _phone_check(page, "acciones de una cita")
    screenshots(page, "375-calendario")
    page.keyboard.press("Escape")

    page.goto("/admin/#/calidad")
    expect(
        page.get_by_role("region", name="Preguntas no entendidas o sin respuesta", exact=True)
    ).to_be_visible()
    _phone_check(page, "calidad")
    page.goto("/admin/#/conocimiento")
    page.get_by_label("Pregunta, como la diría quien llama").fill(
        "¿Dónde queda la oficina principal?"
    )
    page.get_by_role("button", name="Probar").click()
    expect(page.locator(".try-answer")).not_to_be_empty()
    expect(page.locator("#try-result .loading")).to_have_count(0)
    _phone_check(page, "probar una pregunta")
