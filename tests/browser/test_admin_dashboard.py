"""The admin dashboard in headless Chromium against the real app on loopback.

Calls are real: placed with the ``taina call`` simulator or a hand-driven Twilio stream
(:class:`tests.integration.test_twilio_stream.RawStream`), with instant engines (energy VAD,
fixed transcript, tone voice) so the tests do not wait on Whisper. A screenshot of each page
is kept under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest

from app.auth import Principal, issue_token
from app.routes_admin import resolve_asset
from app.storage import TurnRecord
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines
from telephony.simulator import EXIT_OK, CallOptions, CallResult, run_call
from tests.browser.conftest import PASSWORD, BackgroundLoop, Browser, add_user, ensure_supabase
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import LiveServer, instant_engines
from tests.integration.test_twilio_stream import RawStream, frames_of

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the browser tests skip (see conftest); the static-file tests still run
    expect = None

ADMIN = "admin@example.org"
AGENT = "agente@example.org"
CITIZEN = "ciudadana@example.org"
CALLER_TEXT = "Quisiera saber el horario de la oficina de pasaportes"
NEW_PROMPT = "Usted es TAINA, versión de prueba uno. Responda siempre en una sola oración."
SECOND_PROMPT = "Usted es TAINA, versión de prueba dos. Salude con el nombre de la oficina."


# --- helpers ----------------------------------------------------------------------------------


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    """Fill the sign-in form (the page must be on it) and submit."""
    page.get_by_label("Correo electrónico").fill(email)
    page.get_by_label("Contraseña").fill(password)
    page.get_by_role("button", name="Iniciar sesión").click()


def open_dashboard(page: Any, email: str) -> None:
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    sign_in(page, email)
    expect(page.get_by_role("heading", name="Llamadas", exact=True)).to_be_visible()


def place_call(server: LiveServer, says: list[str]) -> CallResult:
    """A ``taina call`` against ``server``, in its own thread and loop (Playwright's sync API
    owns this thread)."""
    options = CallOptions(server=server.url, says=says, transcribe=False, timeout_s=30.0)
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(asyncio.run, run_call(options)).result(120)
    assert result.exit_code == EXIT_OK, result.error
    return result


def office_today(server: LiveServer) -> str:
    return datetime.now(ZoneInfo(server.services.settings.timezone)).date().isoformat()


def book(server: LiveServer, call_sid: str | None) -> Any:
    async def run() -> Any:
        svc = server.services.booking_service
        slot = (await svc.available("cedula", limit=1))[0]
        return await svc.book(
            slot.id, "cedula", "Ana Pérez", "001-1234567-8", "+18095550100", call_sid
        )

    return server.run(run())


def insert_call(server: LiveServer, sid: str, turns: list[TurnRecord]) -> None:
    calls = server.services.calls
    started = datetime.now(UTC) - timedelta(minutes=5)

    async def write() -> None:
        await calls.start_call(
            sid,
            "twilio",
            caller_number="+18095550123",
            called_number="+18095550199",
            started_at=started,
        )
        for turn in turns:
            await calls.add_turn(sid, turn)
        await calls.end_call(sid, ended_at=started + timedelta(seconds=95), end_reason="bot-hangup")

    server.run(write())


def tiny_wav() -> bytes:
    buf = BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 2 * 800)
    return buf.getvalue()


# --- serving the dashboard (no browser needed) ------------------------------------------------


def test_dashboard_files_are_served_with_their_types_and_nothing_else(
    dashboard_server: Any,
) -> None:
    server = dashboard_server(instant_engines())
    with httpx.Client(base_url=server.url) as http:
        for path in ("/admin", "/admin/"):
            r = http.get(path)
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert "Iniciar sesión" in r.text or "TAINA" in r.text
        expected = {
            "/admin/js/app.js": "text/javascript; charset=utf-8",
            "/admin/js/views/live.js": "text/javascript; charset=utf-8",
            "/admin/styles.css": "text/css; charset=utf-8",
            "/admin/vendor/supabase.js": "text/javascript; charset=utf-8",
        }
        for path, content_type in expected.items():
            r = http.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"] == content_type
            assert r.headers["x-content-type-options"] == "nosniff"
        etag = http.get("/admin/styles.css").headers["etag"]
        assert http.get("/admin/styles.css", headers={"If-None-Match": etag}).status_code == 304

        for raw in (
            "/admin/%2e%2e/app/settings.py",
            "/admin/js/..%2f..%2f..%2fapp%2fsettings.py",
            "/admin/%2e%2e%2f%2e%2e%2fpyproject.toml",
            "/admin/..%5c..%5cpyproject.toml",
            "/admin/.hidden",
            "/admin/js",
            "/admin/nope.js",
        ):
            r = http.get(raw)
            assert r.status_code == 404, raw
            assert "dependencies" not in r.text

        config = http.get("/admin/config.json").json()
        assert config["supabase_url"] is None and config["supabase_anon_key"] is None
        assert config["timezone"] == server.services.settings.timezone


def test_config_names_the_supabase_project_when_configured(dashboard_server: Any) -> None:
    server = dashboard_server(
        instant_engines(),
        supabase_url="https://proyecto.supabase.co",
        supabase_anon_key="anon-key-publica",
        supabase_jwt_secret="un-secreto-que-no-debe-salir-de-aqui-nunca",
    )
    with httpx.Client(base_url=server.url) as http:
        r = http.get("/admin/config.json")
        page = http.get("/admin/")
    assert r.json()["supabase_url"] == "https://proyecto.supabase.co"
    assert r.json()["supabase_anon_key"] == "anon-key-publica"
    assert "un-secreto" not in r.text
    assert (
        "connect-src 'self' https://proyecto.supabase.co" in page.headers["content-security-policy"]
    )


def test_resolve_asset_stays_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "admin"
    (root / "js").mkdir(parents=True)
    (root / "js" / "a.js").write_text("x")
    (tmp_path / "secret.js").write_text("secret")
    (root / "js" / "link.js").symlink_to(tmp_path / "secret.js")
    (root / "notes.py").write_text("x")
    assert resolve_asset(root, "js/a.js") == (root / "js" / "a.js").resolve()
    for bad in (
        "../secret.js",
        "js/../../secret.js",
        "js/link.js",
        "notes.py",
        "js",
        "",
        "/etc/x.js",
    ):
        assert resolve_asset(root, bad) is None, bad


# --- in the browser ---------------------------------------------------------------------------


def test_sign_in_and_read_a_call_made_with_taina_call(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(instant_engines(CALLER_TEXT))
    add_user(server, ADMIN, "admin")
    result = place_call(server, ["Buenos días, quisiera saber el horario."])
    stored = server.stored_call(result.call_sid)
    assert stored is not None
    greeting = stored.turns[0].text
    assert stored.turns[0].speaker == "bot" and greeting
    assert any(t.speaker == "caller" and t.text == CALLER_TEXT for t in stored.turns)

    page = browser.page(server)
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"#/iniciar-sesion"))
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    screenshots(page, "01-iniciar-sesion")

    sign_in(page, ADMIN, "contraseña-equivocada")
    expect(page.locator("#login-error")).to_have_text("Correo o contraseña incorrectos.")
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    screenshots(page, "01b-contrasena-incorrecta")

    sign_in(page, ADMIN)
    expect(page.get_by_role("heading", name="Llamadas", exact=True)).to_be_visible()
    expect(page.locator("#user-email")).to_have_text(ADMIN)
    row = page.locator(f'tr[data-call-sid="{result.call_sid}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("Teléfono")
    expect(row).to_contain_text("+18095550100")
    screenshots(page, "02-llamadas")

    # Search in transcripts, then every other filter.
    search = page.get_by_label("Buscar en transcripciones")
    search.fill("pasaportes")
    page.get_by_role("button", name="Filtrar").click()
    expect(page).to_have_url(re.compile(r"q=pasaportes"))
    expect(row).to_be_visible()
    page.get_by_label("Buscar en transcripciones").fill("jirafa & ¿dónde?")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("Ninguna llamada coincide con los filtros.")).to_be_visible()
    # The filters live in the URL and come back intact (reload, back button, bookmarks).
    page.reload()
    expect(page.get_by_label("Buscar en transcripciones")).to_have_value("jirafa & ¿dónde?")

    page.get_by_role("button", name="Limpiar").click()
    today = office_today(server)
    page.get_by_label("Desde").fill(today)
    page.get_by_label("Hasta").fill(today)
    page.get_by_label("Canal").select_option("twilio")
    page.get_by_label("Teléfono", exact=True).fill("+18095550100")
    page.get_by_role("button", name="Filtrar").click()
    expect(page).to_have_url(re.compile(r"canal=twilio"))
    expect(row).to_be_visible()
    page.get_by_label("Canal").select_option("web")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("Ninguna llamada coincide con los filtros.")).to_be_visible()
    page.get_by_label("Canal").select_option("")
    yesterday = (datetime.fromisoformat(today) - timedelta(days=1)).date().isoformat()
    page.get_by_label("Desde").fill(yesterday)
    page.get_by_label("Hasta").fill(yesterday)
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("Ninguna llamada coincide con los filtros.")).to_be_visible()

    page.get_by_role("button", name="Limpiar").click()
    row.get_by_role("link").click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(result.call_sid)
    transcript = page.get_by_role("list", name="Transcripción")
    expect(transcript.locator("li.turn-bot").first).to_contain_text(greeting)
    expect(transcript.locator("li.turn-caller").first).to_contain_text(CALLER_TEXT)
    expect(transcript.locator("li.turn-bot .badge-latency").first).to_contain_text("Latencia")
    expect(page.get_by_text("Esta llamada no se grabó.")).to_be_visible()
    expect(page.get_by_text("No se reservaron citas en esta llamada.")).to_be_visible()
    screenshots(page, "03-llamada")


def test_a_new_prompt_version_is_used_by_the_next_call(
    dashboard_server: Any, browser: Browser, bg: BackgroundLoop, screenshots: Any
) -> None:
    async def start_fake() -> FakeOpenAI:
        return await FakeOpenAI().start()

    fake = bg.run(start_fake())
    try:
        engines = Engines(
            vad=EnergyVad(),
            stt=FixedSTT(text=CALLER_TEXT),
            tts=ToneTTS(ms_per_char=10),
            brain=None,  # from the settings: the LLM (the fake) with the offline fallback
        )
        server = dashboard_server(engines, openai_api_key="sk-test", openai_base_url=fake.base_url)
        add_user(server, ADMIN, "admin")
        page = browser.page(server)
        open_dashboard(page, ADMIN)

        page.get_by_role("link", name="Instrucciones del asistente").click()
        expect(page.get_by_role("heading", name="Instrucciones del asistente")).to_be_visible()
        expect(page.locator("#prompt-active")).to_contain_text("Se usa el texto incorporado")
        editor = page.get_by_label("Texto de las instrucciones")
        expect(editor).to_have_value(server.services.prompts.default)
        editor.fill(NEW_PROMPT)
        page.get_by_role("button", name="Guardar nueva versión").click()
        expect(page.locator("#prompt-status")).to_have_text(
            "Se guardó la versión 1 y ya está activa."
        )
        expect(page.locator("#prompt-active")).to_have_text("Versión activa: v1")
        expect(page.locator('tr[data-version="1"]')).to_contain_text("Activa")
        screenshots(page, "04-instrucciones")
        assert server.run(server.services.prompts.active()) == NEW_PROMPT

        # The next call's brain gets the new text as its system prompt.
        before = len(fake.chat_requests)
        place_call(server, ["Buenos días, quisiera saber el horario."])
        requests = fake.chat_requests[before:]
        assert requests, "the call never reached the LLM"
        system = requests[0]["messages"][0]
        assert system["role"] == "system"
        assert system["content"].startswith(NEW_PROMPT)

        # A second version, a rollback to the first, and activating the second from history.
        editor.fill(SECOND_PROMPT)
        page.get_by_role("button", name="Guardar nueva versión").click()
        expect(page.locator("#prompt-status")).to_have_text(
            "Se guardó la versión 2 y ya está activa."
        )
        assert server.run(server.services.prompts.active()) == SECOND_PROMPT
        page.get_by_role("button", name="Volver a la versión anterior").click()
        expect(page.locator("#prompt-status")).to_have_text("Se volvió a la versión 1.")
        expect(page.locator("#prompt-active")).to_have_text("Versión activa: v1")
        assert server.run(server.services.prompts.active()) == NEW_PROMPT
        page.get_by_role("button", name="Activar v2").click()
        expect(page.locator("#prompt-status")).to_have_text("Se activó la versión 2.")
        assert server.run(server.services.prompts.active()) == SECOND_PROMPT
    finally:
        bg.run(fake.close())


@pytest.mark.parametrize("source", ["stream", "polling"])
def test_live_view_shows_lines_while_the_call_is_in_progress(
    source: str,
    dashboard_server: Any,
    browser: Browser,
    bg: BackgroundLoop,
    screenshots: Any,
) -> None:
    """``stream``: the server has ``GET /api/live``; ``polling``: it answers 404 there (as
    before the live stream is wired in) and the page reads the REST API every 2 s."""
    server = dashboard_server(
        instant_engines(CALLER_TEXT), live_stream=source == "stream", max_bad_messages=20
    )
    add_user(server, AGENT, "agent")  # agents may watch calls too
    page = browser.page(server)
    if source == "polling":
        page.route("**/api/live*", lambda route: route.fulfill(status=404, json={"detail": "-"}))
    open_dashboard(page, AGENT)
    page.get_by_role("link", name="En curso").click()
    expect(page.get_by_role("heading", name="En curso")).to_be_visible()
    status = {
        "stream": "Conectado: las frases aparecen en cuanto se dicen.",
        "polling": "Actualización automática cada 2 segundos.",
    }[source]
    expect(page.locator("#live-status")).to_have_text(status)
    expect(page.get_by_text("No hay llamadas en curso.")).to_be_visible()

    call = RawStream(server)
    bg.run(call.connect())
    bg.run(call.start(bg.run(call.webhook())))
    phone = bg.submit(call.collect(60))  # plays and acknowledges everything the bot says
    try:
        card = page.locator(f'section.live-call[data-call-sid="{call.call_sid}"]')
        expect(card).to_be_visible()
        badge = card.locator(".live-head .badge")
        expect(badge).to_have_text("En curso")
        expect(card.locator("li.turn-bot").first).to_be_visible()  # the greeting, once heard
        expect(page.get_by_text("No hay llamadas en curso.")).to_be_hidden()

        bg.run(call.media(frames_of(True, 600) + frames_of(False, 800)))
        expect(card.locator("li.turn-caller").first).to_contain_text(CALLER_TEXT)
        expect(badge).to_have_text("En curso")
        assert server.call_view(call.call_sid).ended_at is None  # still in progress
        screenshots(page, f"05-en-curso-{source}")

        bg.run(call.stop())
        expect(badge).to_have_text("Finalizada")
        expect(page.get_by_text("No hay llamadas en curso.")).to_be_visible()
    finally:
        phone.cancel()


def test_refusals_expiry_and_network_errors(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    add_user(server, AGENT, "agent")
    add_user(server, CITIZEN, "citizen")
    page = browser.page(server)

    # No token: to the sign-in page, and back to the page asked for afterwards.
    page.goto("/admin/#/reservas")
    expect(page).to_have_url(re.compile(r"#/iniciar-sesion\?volver=(/|%2F)reservas"))
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()

    # A citizen's account signs in at the API but has no business in the dashboard.
    sign_in(page, CITIZEN)
    expect(page.locator("#login-error")).to_contain_text(
        "Su cuenta no tiene acceso al panel de administración."
    )
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('taina.admin.session')") is None
    screenshots(page, "06-ciudadano-sin-acceso")

    # An agent reads everything but changes nothing.
    sign_in(page, AGENT)
    expect(page.get_by_role("heading", name="Reservas")).to_be_visible()
    expect(page.locator("#user-role")).to_have_text("Agente")
    page.get_by_role("link", name="Instrucciones del asistente").click()
    expect(
        page.get_by_text("Solo un administrador puede cambiar las instrucciones.")
    ).to_be_visible()
    expect(page.get_by_label("Texto de las instrucciones")).not_to_be_editable()
    expect(page.get_by_role("button", name="Guardar nueva versión")).to_have_count(0)
    screenshots(page, "07-agente-instrucciones")
    refused = page.evaluate(
        """async () => {
            const s = JSON.parse(sessionStorage.getItem('taina.admin.session'));
            const r = await fetch('/api/prompts', {method: 'POST', headers: {
                'Authorization': 'Bearer ' + s.token, 'Content-Type': 'application/json'},
                body: JSON.stringify({text: 'no', activate: true})});
            return [r.status, (await r.json()).detail];
        }"""
    )
    assert refused == [403, "No tiene permiso para realizar esta acción."]
    page.get_by_role("link", name="Base de conocimiento").click()
    expect(
        page.get_by_text("Solo un administrador puede subir documentos o reindexar.")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Reindexar")).to_have_count(0)

    # The server cannot be reached.
    page.route("**/api/calls?*", lambda route: route.abort("connectionrefused"))
    page.get_by_role("link", name="Llamadas", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        "No se pudo conectar con el servidor. Revise su conexión e intente de nuevo."
    )
    screenshots(page, "08-error-de-red")
    page.unroute("**/api/calls?*")
    page.get_by_role("button", name="Reintentar").click()
    expect(page.get_by_text("Todavía no hay llamadas.")).to_be_visible()

    # The session ends while the page is open: the server answers 401.
    page.route(
        "**/api/bookings?*",
        lambda route: route.fulfill(
            status=401, json={"detail": "La sesión expiró. Inicie sesión de nuevo."}
        ),
    )
    page.get_by_role("link", name="Reservas").click()
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    expect(page.locator(".login")).to_contain_text("La sesión expiró. Inicie sesión de nuevo.")
    expect(page).to_have_url(re.compile(r"volver=(/|%2F)reservas"))
    page.unroute("**/api/bookings?*")
    screenshots(page, "09-sesion-expirada")

    # A kept session whose token has expired, found on reload: the real server refuses it.
    sign_in(page, ADMIN)
    expect(page.get_by_role("heading", name="Reservas")).to_be_visible()
    expired = issue_token(
        Principal(user_id="1", email=ADMIN, role="admin"),
        server.services.settings.signing_key,
        60,
        now=time.time() - 3600,
    )
    page.evaluate(
        """token => {
            const s = JSON.parse(sessionStorage.getItem('taina.admin.session'));
            s.token = token; s.expiresAt = null;
            sessionStorage.setItem('taina.admin.session', JSON.stringify(s));
        }""",
        expired,
    )
    # With its refresh cookie the session is renewed (issue 14); without it, it is over.
    page.reload()
    expect(page.get_by_role("heading", name="Reservas")).to_be_visible()
    page.evaluate(
        """token => {
            const s = JSON.parse(sessionStorage.getItem('taina.admin.session'));
            s.token = token; s.expiresAt = null;
            sessionStorage.setItem('taina.admin.session', JSON.stringify(s));
        }""",
        expired,
    )
    page.context.clear_cookies()
    page.reload()
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    expect(page.locator(".login")).to_contain_text(
        "La sesión no es válida. Inicie sesión de nuevo."
    )
    assert page.evaluate("sessionStorage.getItem('taina.admin.session')") is None

    # Signing out forgets the session.
    sign_in(page, ADMIN)
    expect(page.get_by_role("heading", name="Reservas")).to_be_visible()
    page.get_by_role("button", name="Cerrar sesión").click()
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    expect(page.get_by_text("Cerró la sesión.")).to_be_visible()
    page.goto("/admin/#/llamadas")
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()


def test_call_details_bookings_knowledge_and_statistics(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    sid = "CA" + secrets.token_hex(16)
    question = "Quiero sacar una cita para la cédula"
    tool = {
        "name": "find_slots",
        "arguments": {"service": "cedula"},
        "result": {"slots": ["lunes 9:00"]},
    }
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
            TurnRecord(seq=1, speaker="caller", text=question),
            TurnRecord(
                seq=2,
                speaker="bot",
                text="Claro, tengo un espacio el lunes a las nueve de la mañana.",
                heard_text="Claro, tengo un espacio",
                interrupted=True,
                timings={"first_byte_ms": 850.0, "endpoint_ms": 300.0, "stt_ms": 120.0},
                tools=[tool],
            ),
            TurnRecord(seq=3, speaker="caller", text="Sí, el lunes está bien", dtmf="1"),
            TurnRecord(
                seq=4,
                speaker="bot",
                text="Listo, su cita quedó reservada.",
                timings={"first_byte_ms": 640.0},
            ),
        ],
    )
    booking = book(server, sid)

    page = browser.page(server)
    # Recordings: the page gets the file with the session's token and plays it from memory.
    seen_auth: list[str | None] = []

    def with_recording(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        body["recording_url"] = f"/api/calls/{sid}/recording"
        route.fulfill(response=response, json=body)

    def recording(route: Any) -> None:
        seen_auth.append(route.request.headers.get("authorization"))
        route.fulfill(status=200, body=tiny_wav(), content_type="audio/wav")

    page.route(f"**/api/calls/{sid}", with_recording)
    page.route(f"**/api/calls/{sid}/recording", recording)
    open_dashboard(page, ADMIN)

    page.locator(f'tr[data-call-sid="{sid}"]').get_by_role("link").click()
    transcript = page.get_by_role("list", name="Transcripción")
    cut = transcript.locator('li[data-seq="2"]')
    expect(cut.locator(".badge-interrupted")).to_have_text("interrumpido")
    expect(cut).to_contain_text("Lo que escuchó: «Claro, tengo un espacio»")
    expect(cut).to_contain_text("Lo que iba a decir: Claro, tengo un espacio el lunes")
    expect(cut.locator(".badge-latency")).to_have_text("Latencia 850 ms")
    cut.get_by_text("Tiempos por etapa").click()
    expect(cut).to_contain_text("Detección de fin de turno")
    cut.get_by_text("Herramientas usadas (1)").click()
    expect(cut.locator(".tool-name")).to_have_text("find_slots")
    expect(transcript.locator('li[data-seq="3"]')).to_contain_text("Marcó en el teclado: 1")
    expect(
        page.get_by_text("Latencia de las respuestas: mediana 640 ms, máxima 850 ms.")
    ).to_be_visible()
    expect(page.get_by_role("region", name="Citas de la llamada")).to_contain_text(booking.code)
    audio = page.locator("audio.recording")
    expect(audio).to_have_attribute("src", re.compile(r"^blob:"))
    assert seen_auth and seen_auth[0] and seen_auth[0].startswith("Bearer ")
    screenshots(page, "10-llamada-detalle")

    page.get_by_role("link", name="Reservas").click()
    bookings = page.get_by_role("region", name="Reservas")
    expect(bookings).to_contain_text(booking.code)
    expect(bookings).to_contain_text("Ana Pérez")
    expect(bookings).to_contain_text("001-1234567-8")  # admins see the full cédula
    screenshots(page, "11-reservas")
    page.get_by_label("Estado").select_option("cancelled")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_text("Ninguna reserva coincide con los filtros.")).to_be_visible()
    page.get_by_label("Estado").select_option("confirmed")
    page.get_by_role("button", name="Filtrar").click()
    expect(page.get_by_role("region", name="Reservas")).to_contain_text(booking.code)

    page.get_by_role("link", name="Base de conocimiento").click()
    documents = page.get_by_role("region", name="Documentos")
    expect(documents.locator("tbody tr").first).to_be_visible()
    page.get_by_label("Archivo Markdown (.md, hasta 200 KB)").set_input_files(
        files=[
            {
                "name": "horario-de-verano.md",
                "mimeType": "text/markdown",
                "buffer": "# Horario de verano\n\nEn julio y agosto la oficina abre de ocho "
                "de la mañana a tres de la tarde.\n".encode(),
            }
        ]
    )
    page.get_by_role("button", name="Subir documento").click()
    expect(page.locator("#knowledge-status")).to_contain_text("Se subió «horario-de-verano.md».")
    expect(page.get_by_text("Hay cambios sin publicar")).to_be_visible()
    new_row = documents.locator("tr", has_text="horario-de-verano.md")
    expect(new_row).to_contain_text("sin indexar")
    page.get_by_role("button", name="Reindexar").click()
    expect(page.locator("#knowledge-status")).to_contain_text("Índice reconstruido")
    expect(new_row).not_to_contain_text("sin indexar")
    expect(page.get_by_text("El índice está al día con los documentos.")).to_be_visible()
    screenshots(page, "12-conocimiento")

    page.get_by_role("link", name="Estadísticas").click()
    expect(page.locator("#kpi-calls .kpi-value")).to_have_text("1")
    expect(page.locator("#kpi-booking .kpi-value")).to_have_text("100,0 %")
    expect(page.locator("#kpi-median .kpi-value")).to_have_text("745 ms")  # 850 and 640
    expect(page.get_by_role("img", name="Llamadas por día")).to_be_visible()
    expect(page.get_by_role("img", name="Latencia de respuesta")).to_be_visible()
    expect(page.locator(".top-questions")).to_contain_text(question)
    screenshots(page, "13-estadisticas")
    page.get_by_label("Periodo").select_option("7")
    expect(page).to_have_url(re.compile(r"dias=7"))
    expect(page.locator("#kpi-calls .kpi-value")).to_have_text("1")

    # Narrow screens: the same pages stay usable.
    phone = browser.page(server, width=390, height=844)
    open_dashboard(phone, ADMIN)
    expect(phone.locator(f'tr[data-call-sid="{sid}"]')).to_be_visible()
    screenshots(phone, "14-llamadas-movil")


SUPABASE_URL = "https://proyecto.supabase.co"
SUPABASE_SECRET = "secreto-de-prueba-del-proyecto-supabase-32+"


class FakeSupabaseAuth:
    """Answers supabase-js's password sign-in in the browser (``POST /auth/v1/token``) with
    real project-style JWTs signed with the project's secret, as GoTrue does."""

    def __init__(self, users: dict[str, tuple[str, str | None]]) -> None:
        self.users = users  # email → (password, TAINA role in app_metadata or None)
        self.tokens: list[str] = []

    def token_for(self, email: str, role: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
            "email": email,
            "aud": "authenticated",
            "role": "authenticated",
            "iss": f"{SUPABASE_URL}/auth/v1",
            "iat": now,
            "exp": now + 3600,
            "app_metadata": {"provider": "email", **({"role": role} if role else {})},
            "user_metadata": {},
        }
        return jwt.encode(claims, SUPABASE_SECRET, algorithm="HS256")

    def handle(self, route: Any) -> None:
        request = route.request
        if request.method == "OPTIONS":
            route.fulfill(status=204, headers=self._cors())
            return
        if "/auth/v1/logout" in request.url:
            route.fulfill(status=204, headers=self._cors())
            return
        body = json.loads(request.post_data or "{}")
        user = self.users.get(body.get("email", ""))
        if user is None or user[0] != body.get("password"):
            route.fulfill(
                status=400,
                headers=self._cors(),
                json={
                    "code": 400,
                    "error_code": "invalid_credentials",
                    "msg": "Invalid login credentials",
                },
            )
            return
        token = self.token_for(body["email"], user[1])
        self.tokens.append(token)
        now = int(time.time())
        route.fulfill(
            status=200,
            headers=self._cors(),
            json={
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 3600,
                "expires_at": now + 3600,
                "refresh_token": "refresh-" + secrets.token_hex(8),
                "user": {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, body["email"])),
                    "aud": "authenticated",
                    "role": "authenticated",
                    "email": body["email"],
                    "app_metadata": {"provider": "email"},
                    "user_metadata": {},
                    "created_at": datetime.now(UTC).isoformat(),
                },
            },
        )

    @staticmethod
    def _cors() -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Headers": "*",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        }


def test_sign_in_with_supabase_auth(
    dashboard_server: Any, browser: Browser, screenshots: Any
) -> None:
    server = dashboard_server(
        instant_engines(),
        supabase_url=SUPABASE_URL,
        supabase_anon_key="anon-key-publica",
        supabase_jwt_secret=SUPABASE_SECRET,
    )
    ensure_supabase(server)
    auth = FakeSupabaseAuth(
        {"jefa@example.org": ("clave-de-supabase", "admin"), CITIZEN: (PASSWORD, None)}
    )
    page = browser.page(server)
    page.route(f"{SUPABASE_URL}/auth/v1/**", auth.handle)
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("authorization")) if "/api/calls" in r.url else None,
    )

    page.goto("/admin/")
    expect(page.get_by_text("Entre con su cuenta del personal (Supabase).")).to_be_visible()
    sign_in(page, "jefa@example.org", "otra-clave")
    expect(page.locator("#login-error")).to_have_text("Correo o contraseña incorrectos.")
    sign_in(page, CITIZEN)  # a Supabase user without a staff role
    expect(page.locator("#login-error")).to_contain_text("no tiene acceso al panel")

    sign_in(page, "jefa@example.org", "clave-de-supabase")
    expect(page.get_by_role("heading", name="Llamadas", exact=True)).to_be_visible()
    expect(page.locator("#user-role")).to_have_text("Administrador")
    expect(page.get_by_text("Todavía no hay llamadas.")).to_be_visible()
    assert sent and sent[-1] == f"Bearer {auth.tokens[-1]}"
    # No local token is kept: supabase-js holds the session (in this tab's sessionStorage).
    assert page.evaluate("sessionStorage.getItem('taina.admin.session')") is None
    screenshots(page, "15-supabase-llamadas")

    page.reload()  # the Supabase session survives a reload
    expect(page.get_by_role("heading", name="Llamadas", exact=True)).to_be_visible()
    page.get_by_role("button", name="Cerrar sesión").click()
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
