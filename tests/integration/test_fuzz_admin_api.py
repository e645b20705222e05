"""Every HTTP route of the app under Hypothesis-generated requests, mostly signed in as admin.

The routes are read from the app itself (so a new route is fuzzed the day it is added): the
admin API under ``/api`` (except the live event stream, which stays open), the dashboard, the
Twilio webhooks, health and metrics, the visitor page, LiveKit tokens and the OpenAPI pages.
Each gets random path parameters, query strings, JSON or raw bodies, form and multipart bodies,
content types, methods and headers — including hostile ``Host`` and ``X-Forwarded-*`` values
and the webhooks' own form fields with control characters. Promises checked on a live server:

* never a 5xx;
* every error of ``/api`` and ``/admin`` is JSON with a non-empty ``detail`` string (Spanish
  from TAINA's own checks; the framework's few English ones — "Not Found", "Method Not
  Allowed" — for unknown routes);
* nothing is written on invalid input: for every answer >= 400 the database (prompts, audit
  log, knowledge documents, users, calls, bookings) and the data directory are unchanged;
* every route was reached.

Examples are derandomized, so CI sends the same requests every time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.main import create_app
from app.storage.models import (
    AuditLog,
    Booking,
    Call,
    KnowledgeDocument,
    SystemPrompt,
    User,
)
from app.users import create_user
from tests.integration.conftest import LiveServer, instant_engines, settings_for
from tests.integration.pg_scratch import scratch_database

PASSWORD = "clave-segura-123"
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=900,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# (method, path template, kind of body the route reads): the routes whose body is not the
# default of their prefix (JSON under /api, a form under /twilio, none elsewhere), and the
# routes fuzzed since before they were discovered from the app (kept: a route that vanishes
# should be noticed).
ROUTES: list[tuple[str, str, str]] = [
    ("POST", "/api/auth/login", "json"),
    ("GET", "/api/auth/me", "none"),
    ("GET", "/api/calls", "none"),
    ("GET", "/api/calls/{call_sid}", "none"),
    ("GET", "/api/calls/{call_sid}/recording", "none"),
    ("GET", "/api/bookings", "none"),
    ("GET", "/api/analytics", "none"),
    ("GET", "/api/prompts", "none"),
    ("POST", "/api/prompts", "json"),
    ("POST", "/api/prompts/rollback", "none"),
    ("POST", "/api/prompts/{version}/activate", "none"),
    ("GET", "/api/knowledge", "none"),
    ("POST", "/api/knowledge", "multipart"),
    ("POST", "/api/knowledge/reindex", "none"),
    ("GET", "/admin", "none"),
    ("GET", "/admin/", "none"),
    ("GET", "/admin/config.json", "none"),
    ("GET", "/admin/{asset}", "none"),
    ("POST", "/twilio/voice", "form"),
    ("POST", "/twilio/status", "form"),
]
# Streams that stay open (server-sent events) are fuzzed elsewhere.
SKIPPED = {("GET", "/api/live")}
# The parameters each route knows, so random values hit the validators, not only the 404s.
KNOWN_QUERY = [
    "since",
    "until",
    "outcome",
    "ingress",
    "phone",
    "q",
    "limit",
    "offset",
    "date",
    "office",
    "service",
    "status",
    "days",
    "force",
]
JSON_KEYS = ["email", "password", "text", "activate", "current_password", "new_password"]
# The Twilio webhooks' fields (a CallSid that matches Twilio's shape reaches further).
FORM_KEYS = ["CallSid", "From", "To", "StreamSid", "StreamEvent", "StreamError", "AccountSid"]

TEXT = st.text(max_size=40)
INTERESTING = st.sampled_from(
    [
        "",
        "0",
        "-1",
        "1",
        "501",
        "367",
        "true",
        "false",
        "null",
        "2025-02-30",
        "2025-03-01T08:00",
        "2025-03-01T08:00:00+99:00",
        "9" * 40,
        "1e309",
        "NaN",
        "../../etc/passwd",
        "..%2F..%2Fapp%2Fsettings.py",
        "%00",
        "\x00",
        "confirmed",
        "admin@example.org",
        "' OR 1=1 --",
        "ñandú 🎉",
        "a" * 300,
    ]
)
VALUE = st.one_of(INTERESTING, TEXT, st.integers().map(str))
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | VALUE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
JSON_BODY = st.one_of(
    st.fixed_dictionaries({}, optional={k: JSON for k in JSON_KEYS}),
    # Well-formed bodies with hostile values, so the routes' own checks and writes run too.
    st.fixed_dictionaries({"text": VALUE}, optional={"activate": st.booleans()}),
    st.fixed_dictionaries({"email": VALUE, "password": VALUE}),
    JSON,
)
HEADER_VALUE = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=zz",
        "application/octet-stream",
        "*/*",
    ]
)
AUTH = st.sampled_from(["admin", "admin", "admin", "admin", "agent", "none", "garbage"])
# Host and forwarded headers that once made 500s (issue 13), and some that are fine.
HOSTS = st.sampled_from(
    ["@", "a@", ":80", "a@b", "x:0", "x:99999", "[::1", "evil.do/path", "a,b", "ok.example.org"]
)
FORWARDED = st.sampled_from(
    [
        ("X-Forwarded-Host", ":80"),
        ("X-Forwarded-Host", "@"),
        ("X-Forwarded-Host", "evil.example.org"),
        ("X-Forwarded-Proto", "javascript"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-For", "<script>"),
        ("Forwarded", "for=evil;host=:80"),
    ]
)
# JSON that Python's parser accepts but JSON forbids (NaN, Infinity), or that UTF-8 cannot
# carry (lone surrogates): echoing it back in an error once made a 500 (issue 13).
HOSTILE_JSON = st.sampled_from(
    [
        b'{"email": "admin@example.org", "password": NaN}',
        b'{"email": "admin@example.org", "password": Infinity}',
        b'{"email": "\\ud800@example.org", "password": "x"}',
        b'{"text": "\\udfff", "activate": NaN}',
        b'{"current_password": -Infinity, "new_password": "\\ud83d"}',
        b"[NaN, 1e999]",
    ]
)
CALL_SIDS = st.one_of(
    st.text("0123456789abcdef", min_size=32, max_size=32).map(lambda h: "CA" + h), VALUE
)
FORM_VALUE = st.one_of(
    VALUE, st.text(st.characters(min_codepoint=0, max_codepoint=0x3000), max_size=20)
)
FILE_NAME = st.one_of(
    st.just("nuevo.md"),
    st.sampled_from(["../fuera.md", ".oculto.md", "a.txt", "", "x/y.md", "CON.md", "a\x00.md"]),
    TEXT,
)
FILE_DATA = st.one_of(
    st.just(b"# T\n\nTexto.\n"),
    st.binary(max_size=300),
    st.just("# Título\n\nCédula".encode("latin-1")),
)


def discover_routes(app: Any) -> list[tuple[str, str, str]]:
    """(method, template, body kind) of every HTTP route the app serves, plus :data:`ROUTES`."""
    found: dict[tuple[str, str], str] = {(m, t): kind for m, t, kind in ROUTES}

    def add(methods: Any, path: str | None) -> None:
        for method in sorted(set(methods or ()) - {"HEAD"}):
            template = re.sub(r"\{(\w+):path\}", r"{\1}", path or "")
            if not template or (method, template) in SKIPPED or (method, template) in found:
                continue
            default = "json" if template.startswith("/api/") and method != "GET" else "none"
            found[(method, template)] = "form" if template.startswith("/twilio/") else default

    for route in app.router.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # FastAPI's included routers
            for ctx in contexts():
                add(getattr(ctx, "methods", None), getattr(ctx, "path", None))
        elif not getattr(route, "routes", None):
            add(getattr(route, "methods", None), getattr(route, "path", None))
    return sorted((m, t, kind) for (m, t), kind in found.items())


@st.composite
def requests_(draw: st.DrawFn, routes: list[tuple[str, str, str]]) -> dict[str, Any]:
    method, template, body_kind = draw(st.sampled_from(routes))
    route = f"{method} {template}"
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))
    path = template
    for name in re.findall(r"\{(\w+)\}", template):
        raw = draw(st.one_of(VALUE, st.sampled_from(["CA" + "0" * 32, "1", "index.html"])))
        path = path.replace("{" + name + "}", quote(raw, safe="/" if name == "asset" else ""))
    query = draw(st.dictionaries(st.one_of(st.sampled_from(KNOWN_QUERY), TEXT), VALUE, max_size=4))
    body: dict[str, Any] = {}
    kind = draw(st.sampled_from([body_kind, body_kind, "json", "raw", "form", "multipart", "none"]))
    if kind == "json":
        body["json"] = draw(JSON_BODY)
    elif kind == "raw":
        body["content"] = draw(st.one_of(st.binary(max_size=400), HOSTILE_JSON))
    elif kind == "form":
        keys = st.one_of(st.sampled_from(FORM_KEYS), st.text(min_size=1, max_size=8))
        body["data"] = draw(st.dictionaries(keys, FORM_VALUE, max_size=5))
        if body_kind == "form" and draw(st.booleans()):
            body["data"]["CallSid"] = draw(CALL_SIDS)
    elif kind == "multipart":
        files = draw(st.lists(st.tuples(FILE_NAME, FILE_DATA), min_size=0, max_size=2))
        body["files"] = [("file", (name, data, "text/markdown")) for name, data in files]
        body["data"] = draw(st.dictionaries(st.sampled_from(["other", "file"]), TEXT, max_size=1))
        if not body["files"] and not body["data"]:
            body["data"] = {"other": "x"}
    names = st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True)
    headers = {
        "X-" + k: v for k, v in draw(st.dictionaries(names, HEADER_VALUE, max_size=2)).items()
    }
    content_type = draw(CONTENT_TYPES)
    if content_type and kind in ("raw", "json") and draw(st.booleans()):
        headers["Content-Type"] = content_type
    if draw(st.integers(0, 9)) == 0:
        headers["If-None-Match"] = draw(HEADER_VALUE)
    if draw(st.integers(0, 9)) == 0:
        headers["Host"] = draw(HOSTS)
    if draw(st.integers(0, 4)) == 0:
        name, value = draw(FORWARDED)
        headers[name] = value
    if draw(st.integers(0, 9)) == 0:
        headers["Cookie"] = "taina_refresh=" + quote(draw(VALUE), safe="")
    return {
        "route": route,
        "method": method,
        "path": path,
        "params": query,
        "headers": headers,
        "auth": draw(AUTH),
        **body,
    }


# --- the server and what it holds ----------------------------------------------------------------


class AdminApi:
    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=30)
        services = server.services
        self.tokens: dict[str, dict[str, str]] = {
            "none": {},
            "garbage": {"Authorization": "Bearer x.y.z"},
        }
        for role in ("admin", "agent"):
            email = f"{role}@example.org"
            server.run(create_user(services.db, email, role, PASSWORD, actor="test"))
            r = self.http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.tokens[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def snapshot(self) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
        """Row counts of every table a request could write, and the data directory's files."""
        services = self.server.services

        async def counts() -> dict[str, int]:
            out = {}
            async with services.db.session() as s:
                for model in (SystemPrompt, AuditLog, KnowledgeDocument, User, Call, Booking):
                    out[model.__tablename__] = int(
                        await s.scalar(select(func.count()).select_from(model)) or 0
                    )
                active = await s.scalar(
                    select(SystemPrompt.version).where(SystemPrompt.active.is_(True))
                )
                out["active_prompt"] = int(active or 0)
            return out

        data_dir = Path(services.settings.data_dir)
        files = {
            str(p.relative_to(data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in data_dir.rglob("*")
            if p.is_file() and ".db" not in p.name
        }
        return self.server.run(counts()), files

    def close(self) -> None:
        self.http.close()


TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A database of its own on ``TEST_DATABASE_URL``'s server, dropped afterwards."""
    with scratch_database("taina_fuzz") as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin_api(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[AdminApi]:
    """The app on SQLite (the default), and on PostgreSQL in a fresh database when
    ``TEST_DATABASE_URL`` is set: PostgreSQL refuses values SQLite stores (a NUL character in
    any text), so both are fuzzed."""
    with ExitStack() as stack:
        url = None
        if request.param == "postgres":
            if not TEST_DATABASE_URL:
                pytest.skip("TEST_DATABASE_URL is not set: the PostgreSQL fuzz is skipped")
            url = stack.enter_context(fresh_postgres())
        yield from _admin_api(tmp_path_factory, url)


def _admin_api(tmp_path_factory: pytest.TempPathFactory, url: str | None) -> Iterator[AdminApi]:
    settings_ = settings_for(
        Path(tmp_path_factory.mktemp("fuzz-api")),
        database_url=url,
        # Rate limiting has its own tests; here it would hide paths.
        login_rate_limit=1_000_000,
        login_ip_rate_limit=1_000_000,
        login_global_rate_limit=1_000_000,
        livekit_token_per_minute=1_000_000,
    )
    server = LiveServer(create_app(settings_, engines=instant_engines())).start()
    api = AdminApi(server)
    try:
        yield api
    finally:
        api.close()
        server.stop()


def test_every_route_answers_any_request_with_a_clear_error_and_writes_nothing(
    admin_api: AdminApi,
) -> None:
    routes = discover_routes(admin_api.server.app)
    seen: dict[int, int] = {}
    reached: set[str] = set()

    @FUZZ
    @given(st.data())
    def one_request(data: st.DataObject) -> None:
        req = data.draw(requests_(routes))
        before = admin_api.snapshot()
        auth = admin_api.tokens[req.pop("auth")]
        req["headers"] = {**req["headers"], **auth}
        route, method, path = req.pop("route"), req.pop("method"), req.pop("path")
        r = admin_api.http.request(method, path, **req)
        reached.add(route)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (route, r.status_code, r.text[:500])
        if r.status_code >= 400:
            if path.startswith(("/api", "/admin")):
                assert r.headers["content-type"].startswith("application/json"), r.headers
                detail = r.json().get("detail")
                assert isinstance(detail, str) and detail.strip(), r.text[:500]
            assert admin_api.snapshot() == before, f"{method} {path} → {r.status_code} wrote"

    one_request()
    print(admin_api.server.services.db.dialect, "status codes seen:", dict(sorted(seen.items())))
    # The fuzz reached past the validators: successes and refusals of several kinds.
    assert seen.get(200, 0) > 0 and seen.get(422, 0) > 0 and seen.get(404, 0) > 0, seen
    assert seen.get(400, 0) > 0, seen  # bad Host / forwarded headers, malformed webhooks
    # Hypothesis favours some routes; a plain request to each makes sure none is left out.
    all_routes = {f"{m} {t}" for m, t, _ in routes}
    assert len(reached) >= 0.9 * len(all_routes), sorted(all_routes - reached)
    for method, template, kind in routes:
        path = re.sub(r"\{\w+\}", "1", template)
        body: dict[str, Any] = {"json": {}} if kind == "json" else {}
        if kind == "form":
            body = {"data": {"CallSid": "CA" + "5" * 32, "From": "+18095550100"}}
        r = admin_api.http.request(method, path, headers=admin_api.tokens["admin"], **body)
        assert r.status_code < 500, (method, template, r.status_code, r.text[:300])
    assert admin_api.http.get("/healthz").json()["status"] == "ok"


def test_dashboard_assets_never_leave_their_folder(admin_api: AdminApi) -> None:
    """Traversal spellings through the asset route: 404 JSON, never a file outside."""
    for raw in (
        "../app/settings.py",
        "..%2Fapp%2Fsettings.py",
        "%2e%2e/%2e%2e/pyproject.toml",
        "....//app/settings.py",
        "js/../../app/settings.py",
        "/etc/passwd",
        "%00index.html",
        "index.html%00.png",
        ".git/config",
        "index.html/",
    ):
        r = admin_api.http.get(f"/admin/{raw}")
        assert r.status_code == 404, (raw, r.status_code)
        assert r.json()["detail"] in ("No se encontró el archivo.", "Not Found"), raw
        assert "BaseSettings" not in r.text
