"""The admin REST API against the real app under uvicorn on loopback.

Accounts are created with the repository on the server's own loop; everything else goes through
HTTP exactly as the dashboard will: sign in, read calls (one placed over the Twilio protocol),
bookings, prompts, knowledge documents and analytics, and the refusals per role.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.exceptions import ConnectionClosed

from app import api
from app.api import analytics_routes
from app.api.deps import office_tz
from app.auth import Principal, issue_token
from app.knowledge_files import knowledge_source_dir
from app.main import create_app
from app.storage import TurnRecord
from app.users import create_user, list_audit
from knowledge import default_source_dir
from pipeline.session import Engines
from tests.integration.conftest import LiveServer, instant_engines, settings_for
from tests.integration.pg_scratch import scratch_database
from tests.integration.test_twilio_stream import RawStream, frames_of

PASSWORD = "clave-segura-123"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


def ensure_api(app: FastAPI) -> None:
    """Mount the API unless app.main already does (it will once the router is wired in)."""
    if "/api/auth/login" not in app.openapi()["paths"]:
        app.include_router(api.router)
    app.openapi_schema = None  # built again, with the API, on first request


class Api:
    """A sync client for one server, with helpers to make accounts and sign in."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=30)

    @property
    def services(self) -> Any:
        return self.server.services

    def user(self, email: str, role: str, password: str = PASSWORD) -> None:
        self.server.run(create_user(self.services.db, email, role, password, actor="test"))

    def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.http.post("/api/auth/login", json={"email": email, "password": password})

    def token(self, email: str, role: str) -> dict[str, str]:
        """Create the account, sign in, return the Authorization header."""
        self.user(email, role)
        r = self.login(email)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def get(self, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
        return self.http.get(path, headers=headers, params=params)

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def api_servers(directory: Path) -> Iterator[Callable[..., Api]]:
    """``make(engines=None, **settings)`` starts the app under uvicorn (data dirs below
    ``directory``) and returns a client for it; every server started is stopped on exit."""
    started: list[tuple[LiveServer, Api]] = []

    def make(engines: Engines | None = None, **overrides: Any) -> Api:
        settings = settings_for(directory / f"api{len(started)}", **overrides)
        app = create_app(settings, engines=engines or instant_engines())
        ensure_api(app)
        server = LiveServer(app).start()
        client = Api(server)
        started.append((server, client))
        return client

    try:
        yield make
    finally:
        for server, client in started:
            client.close()
            server.stop()


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    with api_servers(tmp_path) as make:
        yield make


@pytest.fixture
def api_client(make_api: Callable[..., Api]) -> Api:
    return make_api(login_rate_limit=3)


def insert_call(
    client: Api,
    sid: str,
    *,
    started_at: datetime,
    turns: list[TurnRecord],
    ingress: str = "twilio",
    caller: str | None = "+18095550100",
    outcome: str | None = None,
    end_reason: str = "caller-hangup",
) -> None:
    calls = client.services.calls

    async def write() -> None:
        await calls.start_call(
            sid, ingress, caller_number=caller, called_number="+18095550199", started_at=started_at
        )
        for turn in turns:
            await calls.add_turn(sid, turn)
        await calls.end_call(
            sid, ended_at=started_at + timedelta(seconds=42), end_reason=end_reason, outcome=outcome
        )

    client.server.run(write())


def conversation(question: str, *latencies_ms: float) -> list[TurnRecord]:
    """Greeting (5 s "latency", which analytics must ignore), then question/answer pairs."""
    turns = [TurnRecord(seq=0, speaker="bot", text="Hola.", timings={"first_byte_ms": 5000})]
    for i, latency in enumerate(latencies_ms):
        said = question if i == 0 else f"otra pregunta {i}"
        turns.append(TurnRecord(seq=2 * i + 1, speaker="caller", text=said))
        turns.append(
            TurnRecord(
                seq=2 * i + 2,
                speaker="bot",
                text="Con gusto le ayudo.",
                heard_text="Con gusto",
                interrupted=i == 0,
                timings={"first_byte_ms": latency, "stt_ms": 80.0},
            )
        )
    return turns


def book(client: Api, sid: str | None, cedula: str = "001-1234567-8") -> Any:
    async def run() -> Any:
        svc = client.services.booking_service
        slot = (await svc.available("cedula", limit=1))[0]
        return await svc.book(slot.id, "cedula", "Ana Pérez", cedula, "+18095550100", sid)

    return client.server.run(run())


# --- sign-in ----------------------------------------------------------------------------------


def test_login_returns_a_bearer_token_and_me_describes_it(api_client: Api) -> None:
    api_client.user("Admin@Example.org", "admin")
    r = api_client.login("admin@example.org")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["role"] == "admin" and body["email"] == "admin@example.org"
    me = api_client.get("/api/auth/me", {"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "user_id": me.json()["user_id"],
        "email": "admin@example.org",
        "role": "admin",
        "source": "local",
    }
    audit = api_client.server.run(list_audit(api_client.services.db, action="auth.login"))
    assert [a.target for a in audit] == ["admin@example.org"]


def test_bad_credentials_get_one_spanish_answer(api_client: Api) -> None:
    api_client.user("agente@example.org", "agent")
    wrong = api_client.login("agente@example.org", "no-es-la-clave")
    unknown = api_client.login("nadie@example.org", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] == "Correo o contraseña incorrectos."


def test_login_rate_limit_refuses_even_the_right_password(api_client: Api) -> None:
    api_client.user("admin@example.org", "admin")
    for _ in range(3):  # login_rate_limit=3 in this server
        assert api_client.login("admin@example.org", "adivinando").status_code == 401
    limited = api_client.login("admin@example.org")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "Demasiados intentos" in limited.json()["detail"]
    # The key is IP + e-mail: another account from the same address is not locked out.
    api_client.user("otra@example.org", "agent")
    assert api_client.login("otra@example.org").status_code == 200


def test_successful_login_clears_earlier_failures(api_client: Api) -> None:
    api_client.user("admin@example.org", "admin")
    for _ in range(2):
        assert api_client.login("admin@example.org", "mal").status_code == 401
    assert api_client.login("admin@example.org").status_code == 200
    for _ in range(2):
        assert api_client.login("admin@example.org", "mal").status_code == 401
    assert api_client.login("admin@example.org").status_code == 200


def test_malformed_and_oversized_bodies_are_refused_in_spanish(api_client: Api) -> None:
    r = api_client.http.post(
        "/api/auth/login", content=b"{no es json", headers={"Content-Type": "application/json"}
    )
    assert (
        r.status_code == 422
        and r.json()["detail"] == "El cuerpo de la solicitud no es JSON válido."
    )
    r = api_client.http.post("/api/auth/login", json={"email": "a@b.org"})
    assert r.status_code == 422 and r.json()["detail"] == "Datos no válidos en: password."
    # Bodies over the API's cap are refused before anything reads them (no token needed).
    huge = {"email": "a@b.org", "password": "x" * (api.MAX_BODY_BYTES + 1)}
    assert api_client.http.post("/api/auth/login", json=huge).status_code == 413


def test_expired_tampered_and_foreign_tokens_are_401(api_client: Api) -> None:
    key = api_client.services.settings.signing_key
    admin = Principal(user_id="1", email="admin@example.org", role="admin")
    expired = issue_token(admin, key, ttl_s=900, now=time.time() - 3600)
    r = api_client.get("/api/calls", {"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expiró" in r.json()["detail"]
    assert r.headers["WWW-Authenticate"] == "Bearer"

    forged = issue_token(admin, b"not-the-deployment-key-but-32-bytes-long", ttl_s=900)
    for token in (forged, "not-a-jwt", "a.b.c"):
        r = api_client.get("/api/calls", {"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
    r = api_client.get("/api/calls", {})
    assert r.status_code == 401 and r.json()["detail"] == "Se requiere iniciar sesión."


# --- who may do what --------------------------------------------------------------------------

# (method, path, json body, lowest role allowed); bodies are valid so only the role decides.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/auth/me", None, "citizen"),
    ("GET", "/api/calls", None, "agent"),
    ("GET", "/api/calls/CAunknown", None, "agent"),
    ("GET", "/api/bookings", None, "agent"),
    ("GET", "/api/analytics", None, "agent"),
    ("GET", "/api/prompts", None, "agent"),
    ("GET", "/api/knowledge", None, "agent"),
    ("POST", "/api/prompts", {"text": "Sea breve."}, "admin"),
    ("POST", "/api/prompts/1/activate", None, "admin"),
    ("POST", "/api/prompts/rollback", None, "admin"),
    ("POST", "/api/knowledge", None, "admin"),
    ("POST", "/api/knowledge/reindex", None, "admin"),
]
RANK = {"none": -1, "citizen": 0, "agent": 1, "admin": 2}


def test_refusal_matrix(api_client: Api) -> None:
    headers = {
        "none": {},
        "citizen": api_client.token("ciudadano@example.org", "citizen"),
        "agent": api_client.token("agente@example.org", "agent"),
        "admin": api_client.token("admin@example.org", "admin"),
    }
    for method, path, body, lowest in ENDPOINTS:
        for who, hdrs in headers.items():
            r = api_client.http.request(method, path, json=body, headers=hdrs)
            if who == "none":
                expected = "401"
            elif RANK[who] < RANK[lowest]:
                expected = "403"
            else:
                expected = "allowed"
            got = str(r.status_code) if r.status_code in (401, 403) else "allowed"
            assert got == expected, f"{who} {method} {path}: {r.status_code} {r.text}"
            if expected == "403":
                assert r.json()["detail"] == "No tiene permiso para realizar esta acción."


# --- calls ------------------------------------------------------------------------------------


async def test_a_phone_call_shows_up_with_its_transcript(api_client: Api) -> None:
    admin = await asyncio.to_thread(api_client.token, "admin@example.org", "admin")
    call = RawStream(api_client.server)
    token = await call.webhook()
    await call.connect()
    await call.start(token)
    await call.collect(1.0)
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    await call.collect(1.5)
    await call.stop()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(call.ws.recv(), 5)
    stored = await asyncio.to_thread(api_client.server.stored_call, call.call_sid)
    assert stored is not None and stored.ended_at is not None

    async with httpx.AsyncClient(base_url=api_client.server.url, headers=admin) as http:
        page = (await http.get("/api/calls")).json()
        assert page["total"] == 1
        item = page["items"][0]
        assert item["call_sid"] == call.call_sid and item["ingress"] == "twilio"
        assert item["caller_number"] == "+18095550100" and item["turn_count"] >= 3
        assert item["end_reason"] == "caller-hangup" and item["duration_s"] > 0

        detail = (await http.get(f"/api/calls/{call.call_sid}")).json()
        speakers = [t["speaker"] for t in detail["turns"]]
        assert speakers[:3] == ["bot", "caller", "bot"]
        assert detail["turns"][1]["text"] == "¿A qué hora abren las oficinas?"
        assert "first_byte_ms" in detail["turns"][2]["timings"]
        assert detail["bookings"] == [] and detail["recording_url"] is None

        found = (await http.get("/api/calls", params={"q": "QUÉ HORA abren"})).json()
        assert [c["call_sid"] for c in found["items"]] == [call.call_sid]
        assert (await http.get("/api/calls", params={"q": "pasaporte vencido"})).json()[
            "total"
        ] == 0
        by_phone = (await http.get("/api/calls", params={"phone": "809-555-0100"})).json()
        assert by_phone["total"] == 1

        missing = await http.get("/api/calls/CAnope")
        assert missing.status_code == 404 and missing.json()["detail"] == (
            "No se encontró la llamada."
        )


def test_call_filters_search_and_pages(api_client: Api) -> None:
    admin = api_client.token("admin@example.org", "admin")
    now = datetime.now(UTC).replace(microsecond=0)
    plan = [
        ("CA-old", now - timedelta(days=3), "twilio", "+18095551111", None, "Quiero renovar"),
        ("CA-web", now - timedelta(hours=5), "web", None, "transferred", "Necesito un agente"),
        ("CA-new", now - timedelta(hours=1), "twilio", "+18295552222", "booked", "Mi PASAPORTE"),
    ]
    for sid, started, ingress, caller, outcome, said in plan:
        insert_call(
            api_client,
            sid,
            started_at=started,
            turns=conversation(said, 300),
            ingress=ingress,
            caller=caller,
            outcome=outcome,
        )

    def sids(**params: Any) -> list[str]:
        r = api_client.get("/api/calls", admin, **params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] >= len(body["items"])
        return [c["call_sid"] for c in body["items"]]

    assert sids() == ["CA-new", "CA-web", "CA-old"]  # newest first
    assert sids(ingress="web") == ["CA-web"]
    assert sids(outcome="booked") == ["CA-new"]
    assert sids(phone="8295552222") == ["CA-new"]
    assert sids(q="pasaporte") == ["CA-new"]  # case-insensitive, in any turn
    assert sids(q="con gusto") == ["CA-new", "CA-web", "CA-old"]  # bot turns too
    assert sids(since=(now - timedelta(days=1)).isoformat()) == ["CA-new", "CA-web"]
    assert sids(until=(now - timedelta(hours=2)).isoformat()) == ["CA-web", "CA-old"]
    page = api_client.get("/api/calls", admin, limit=1, offset=1).json()
    assert page["total"] == 3 and [c["call_sid"] for c in page["items"]] == ["CA-web"]
    # A time without a zone is the office's local time (UTC-4 in Santo Domingo).
    local = (now - timedelta(hours=2)).astimezone(office_tz(api_client.services))
    assert sids(since=local.replace(tzinfo=None).isoformat()) == ["CA-new"]
    bad = api_client.get("/api/calls", admin, limit=0)
    assert bad.status_code == 422 and bad.json()["detail"] == "Datos no válidos en: limit."

    detail = api_client.get("/api/calls/CA-new", admin).json()
    assert detail["outcome"] == "booked" and detail["duration_s"] == 42
    reply = detail["turns"][2]
    assert reply["interrupted"] is True and reply["heard_text"] == "Con gusto"
    assert reply["timings"] == {"first_byte_ms": 300, "stt_ms": 80}


# --- bookings ---------------------------------------------------------------------------------


def test_bookings_list_filters_and_cedula_masking(api_client: Api) -> None:
    admin = api_client.token("admin@example.org", "admin")
    agent = api_client.token("agente@example.org", "agent")
    insert_call(api_client, "CA-booking", started_at=datetime.now(UTC), turns=[])
    booked = book(api_client, "CA-booking")
    book(api_client, None, cedula="402-0000000-1")

    full = api_client.get("/api/bookings", admin).json()
    assert full["total"] == 2
    item = next(b for b in full["items"] if b["code"] == booked.code)
    assert item["cedula"] == "00112345678" and item["service"] == "cedula"
    assert item["office"] == booked.office_code and item["status"] == "confirmed"
    assert item["call_sid"] == "CA-booking" and item["citizen_name"] == "Ana Pérez"
    starts = datetime.fromisoformat(item["starts_at"])
    assert starts == booked.starts_at

    masked = api_client.get("/api/bookings", agent).json()
    item = next(b for b in masked["items"] if b["code"] == booked.code)
    assert item["cedula"] == "*******5678"

    day = starts.date().isoformat()
    on_day = api_client.get("/api/bookings", admin, date=day).json()["items"]
    assert booked.code in [b["code"] for b in on_day]
    assert all(b["starts_at"].startswith(day) for b in on_day)
    assert api_client.get("/api/bookings", admin, service="pasaporte").json()["total"] == 0
    assert api_client.get("/api/bookings", admin, office=booked.office_code).json()["total"] >= 1
    assert api_client.get("/api/bookings", admin, status="cancelled").json()["total"] == 0
    assert api_client.get("/api/bookings", admin, status="lost").status_code == 422

    # The call's page lists the booking made during it (masked for agents too).
    detail = api_client.get("/api/calls/CA-booking", agent).json()
    assert [(b["code"], b["cedula"]) for b in detail["bookings"]] == [(booked.code, "*******5678")]


# --- prompts ----------------------------------------------------------------------------------


def test_prompt_versions_activation_and_rollback(api_client: Api) -> None:
    admin = api_client.token("admin@example.org", "admin")
    store = api_client.services.prompts
    default = store.default
    assert api_client.server.run(store.active()) == default  # also fills the store's cache

    def post(path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return api_client.http.post(path, json=body, headers=admin)

    r = post("/api/prompts", {"text": "Versión uno: sea breve."})
    assert r.status_code == 201 and r.json()["version"] == 1 and r.json()["active"] is False
    assert api_client.server.run(store.active()) == default  # saved, not active

    r = post("/api/prompts", {"text": "Versión dos: sea muy amable.", "activate": True})
    assert r.status_code == 201 and r.json()["active"] is True
    # The very next turn of any call in this process reads the new text (cache dropped).
    assert api_client.server.run(store.active()) == "Versión dos: sea muy amable."

    listing = api_client.get("/api/prompts", admin).json()
    assert listing["active_version"] == 2 and listing["default_text"] == default
    assert [(p["version"], p["active"]) for p in listing["items"]] == [(2, True), (1, False)]
    assert listing["items"][0]["created_by"] == "admin@example.org"

    r = post("/api/prompts/rollback")
    assert r.status_code == 200 and r.json()["version"] == 1
    assert api_client.server.run(store.active()) == "Versión uno: sea breve."
    r = post("/api/prompts/rollback")
    assert r.status_code == 409 and "anterior" in r.json()["detail"]

    assert post("/api/prompts/2/activate").json()["active"] is True
    assert api_client.server.run(store.active()) == "Versión dos: sea muy amable."
    r = post("/api/prompts/99/activate")
    assert r.status_code == 404 and r.json()["detail"] == "No existe la versión 99."
    r = post("/api/prompts", {"text": "   "})
    assert r.status_code == 422 and r.json()["detail"] == "El prompt no puede estar vacío."

    audit = api_client.server.run(list_audit(api_client.services.db))
    prompt_actions = [(a.action, a.target) for a in reversed(audit) if a.action.startswith("p")]
    assert prompt_actions == [
        ("prompt.created", "v1"),
        ("prompt.created", "v2"),
        ("prompt.activated", "v2"),
        ("prompt.rolled_back", "v1"),
        ("prompt.activated", "v2"),
    ]
    assert all(a.actor == "admin@example.org" for a in audit if a.action.startswith("prompt"))


# --- knowledge --------------------------------------------------------------------------------

NEW_DOC = (
    "# Operativo de Navidad\n\n"
    "## Horario especial\n\n"
    "Durante el operativo de Navidad las oficinas abren los domingos de diciembre de ocho a "
    "doce, solo para entregar cédulas ya impresas en el quiosco de mandarinas.\n"
)


def test_knowledge_upload_then_reindex_makes_it_searchable(api_client: Api) -> None:
    admin = api_client.token("admin@example.org", "admin")
    agent = api_client.token("agente@example.org", "agent")
    kb = api_client.services.knowledge
    packaged = default_source_dir()
    packaged_files = sorted(p.name for p in packaged.glob("*.md"))

    before = api_client.get("/api/knowledge", agent).json()
    assert sorted(d["path"] for d in before["documents"]) == packaged_files
    assert before["stale"] is False and all(d["sections"] > 0 for d in before["documents"])
    assert all(len(d["sha256"]) == 64 and d["title"] for d in before["documents"])

    def upload(name: str, data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return api_client.http.post(
            "/api/knowledge",
            files={"file": (name, data, "text/markdown")},
            headers=admin if headers is None else headers,
        )

    assert upload("navidad.md", NEW_DOC.encode(), agent).status_code == 403
    r = upload("navidad.md", NEW_DOC.encode())
    assert r.status_code == 201, r.text
    assert r.json()["replaced"] is False and r.json()["document"]["sections"] == 0
    assert r.json()["document"]["title"] == "Operativo de Navidad"

    # The packaged documents were copied to the data dir; the package itself is untouched.
    copy = api_client.services.settings.data_dir / "knowledge_data"
    assert sorted(p.name for p in copy.glob("*.md")) == sorted([*packaged_files, "navidad.md"])
    assert not (packaged / "navidad.md").exists()
    assert kb.source_dir == copy
    assert knowledge_source_dir(api_client.services.settings) == copy  # survives a restart

    # Not searchable until reindexed: calls keep a consistent index while staff edit.
    assert not any(h.source == "navidad.md" for h in kb.search("quiosco de mandarinas"))
    assert api_client.get("/api/knowledge", admin).json()["stale"] is True

    r = api_client.http.post("/api/knowledge/reindex", headers=admin)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["files"] == len(packaged_files) + 1 and info["rebuilt"] is True
    hits = kb.search("quiosco de mandarinas")
    assert hits and hits[0].source == "navidad.md" and "domingos de diciembre" in hits[0].text

    after = api_client.get("/api/knowledge", admin).json()
    doc = next(d for d in after["documents"] if d["path"] == "navidad.md")
    assert doc["sections"] == 1 and after["stale"] is False

    # Replacing a document keeps its name and says so.
    r = upload("navidad.md", (NEW_DOC + "\nTambién los sábados.\n").encode())
    assert r.status_code == 201 and r.json()["replaced"] is True

    actions = [a.action for a in api_client.server.run(list_audit(api_client.services.db))]
    assert actions[:3] == ["knowledge.replaced", "knowledge.reindexed", "knowledge.uploaded"]


def test_knowledge_upload_validation(api_client: Api) -> None:
    admin = api_client.token("admin@example.org", "admin")

    def upload(name: str, data: bytes) -> httpx.Response:
        return api_client.http.post(
            "/api/knowledge", files={"file": (name, data, "text/markdown")}, headers=admin
        )

    cases = [
        ("../fuera.md", NEW_DOC.encode(), 422, "Nombre de archivo no válido"),
        ("notas.txt", NEW_DOC.encode(), 422, "Nombre de archivo no válido"),
        (".oculto.md", NEW_DOC.encode(), 422, "Nombre de archivo no válido"),
        ("latin1.md", "# Título\n\nCédula y niño".encode("latin-1"), 415, "UTF-8"),
        ("grande.md", b"# T\n\n" + b"a" * (200 * 1024), 413, "200 KB"),
        ("plano.md", b"Solo texto sin titulos.\n", 422, "título"),
    ]
    for name, data, code, fragment in cases:
        r = upload(name, data)
        assert r.status_code == code, (name, r.status_code, r.text)
        assert fragment in r.json()["detail"], (name, r.json())
    r = api_client.http.post("/api/knowledge", headers=admin, data={"other": "x"})
    assert r.status_code == 422 and "Falta el archivo" in r.json()["detail"]
    two = [("file", ("a.md", NEW_DOC.encode())), ("file", ("b.md", NEW_DOC.encode()))]
    r = api_client.http.post("/api/knowledge", headers=admin, files=two)
    assert r.status_code == 400 and "un solo archivo" in r.json()["detail"]
    # Nothing was written anywhere.
    assert not (api_client.services.settings.data_dir / "knowledge_data").exists()


# --- analytics --------------------------------------------------------------------------------


def scenario_analytics(client: Api) -> None:
    """Known calls in and out of the window; every number is checked."""
    admin = client.token("admin@example.org", "admin")
    now = datetime.now(UTC).replace(microsecond=0)
    recent = now - timedelta(minutes=1)
    three_days = now - timedelta(days=3)
    insert_call(client, "CA-1", started_at=recent, turns=conversation("¿A qué hora abren?", 100))
    insert_call(client, "CA-2", started_at=recent, turns=conversation("a que hora ABREN", 200))
    insert_call(
        client,
        "CA-3",
        started_at=recent,
        turns=conversation("Quiero sacar mi pasaporte", 300, 400),
        outcome="transferred",
        end_reason="transfer",
    )
    hung_up = [*conversation("x"), TurnRecord(seq=1, speaker="caller", text="¿A qué hora abren?")]
    insert_call(client, "CA-4", started_at=three_days, turns=hung_up)  # no answer heard
    insert_call(client, "CA-5", started_at=three_days, turns=conversation("Una cita", 1000))
    insert_call(client, "CA-6", started_at=three_days, turns=[])  # silent caller
    book(client, "CA-5")
    # Outside the 30-day window: must not count anywhere.
    insert_call(
        client, "CA-old", started_at=now - timedelta(days=40), turns=conversation("Vieja", 9999)
    )
    book(client, "CA-old", cedula="402-1111111-1")

    r = client.get("/api/analytics", admin, days=30)
    assert r.status_code == 200, r.text
    a = r.json()
    tz = office_tz(client.services)
    assert a["days"] == 30 and a["calls_total"] == 6
    per_day = {d["day"]: d["calls"] for d in a["calls_per_day"]}
    assert len(a["calls_per_day"]) == 30 and sum(per_day.values()) == 6
    assert per_day[recent.astimezone(tz).date().isoformat()] == 3
    assert per_day[three_days.astimezone(tz).date().isoformat()] == 3
    assert a["calls_per_day"][-1]["day"] == datetime.now(tz).date().isoformat()
    # Replies only (greetings at 5000 ms excluded): 100, 200, 300, 400, 1000.
    assert a["median_turn_latency_ms"] == 300
    assert a["p95_turn_latency_ms"] == 1000
    assert a["booking_rate"] == round(1 / 6, 4)
    assert a["transfer_rate"] == round(1 / 6, 4)
    top = a["top_questions"]
    assert top[0] == {"text": "¿A qué hora abren?", "count": 3}
    assert {q["text"] for q in top[1:]} == {"Quiero sacar mi pasaporte", "Una cita"}
    assert all("otra pregunta" not in q["text"] for q in top)  # first caller turns only

    one_day = client.get("/api/analytics", admin, days=1).json()
    assert one_day["calls_total"] == 3  # today: the three calls of a minute ago
    assert client.get("/api/analytics", admin, days=0).status_code == 422


def test_analytics_numbers(make_api: Callable[..., Api]) -> None:
    scenario_analytics(make_api())


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A scratch Postgres database for one server, dropped afterwards."""
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set: admin API on PostgreSQL skipped")
    with scratch_database("taina_api") as url:
        yield url


def test_analytics_and_search_on_postgres(
    make_api: Callable[..., Api], pg_database_url: str
) -> None:
    client = make_api(database_url=pg_database_url)
    scenario_analytics(client)
    admin = client.token("otro-admin@example.org", "admin")
    found = client.get("/api/calls", admin, q="PASAPORTE").json()
    assert [c["call_sid"] for c in found["items"]] == ["CA-3"]
    bookings = client.get("/api/bookings", admin, status="confirmed").json()
    assert bookings["total"] == 2


# --- documentation ----------------------------------------------------------------------------


def test_openapi_documents_every_endpoint(api_client: Api) -> None:
    spec = api_client.http.get("/openapi.json").json()
    expected = {
        "/api/auth/login": {"post"},
        "/api/auth/me": {"get"},
        "/api/calls": {"get"},
        "/api/calls/{call_sid}": {"get"},
        "/api/bookings": {"get"},
        "/api/prompts": {"get", "post"},
        "/api/prompts/{version}/activate": {"post"},
        "/api/prompts/rollback": {"post"},
        "/api/knowledge": {"get", "post"},
        "/api/knowledge/reindex": {"post"},
        "/api/analytics": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(spec["paths"].get(path, {})), path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    upload = spec["paths"]["/api/knowledge"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    docs = api_client.http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_export_ends_a_crashed_call_as_the_list_does(make_api: Callable[..., Api]) -> None:
    """A call whose process died stays open in the database; the list records it as lost
    before showing it, and so must the CSV export when it is the first to read (before the
    fix the export showed it still in progress)."""
    client = make_api(max_call_seconds=60.0)
    admin = client.token("admin@example.org", "admin")
    started = datetime.now(UTC) - timedelta(hours=1)
    client.server.run(client.services.calls.start_call("CA-crashed", "twilio", started_at=started))
    r = client.http.get("/api/calls/export.csv", headers=admin)
    assert r.status_code == 200, r.text
    row = next(line for line in r.text.splitlines() if line.startswith("CA-crashed"))
    assert "server-lost" in row


def test_analytics_are_computed_off_the_event_loop(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grouping and masking up to a year of calls' first words is CPU work: it must not run on
    the loop that serves live calls (before the fix it ran in the request's coroutine)."""
    on_loop: list[bool] = []
    real_key = analytics_routes.question_key

    def spy(text: str) -> str:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # a worker thread has no running loop
            on_loop.append(False)
        return real_key(text)

    monkeypatch.setattr(analytics_routes, "question_key", spy)
    scenario_analytics(make_api())  # every figure as before
    assert on_loop and not any(on_loop)
