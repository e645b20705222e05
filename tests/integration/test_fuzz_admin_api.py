"""The admin API and dashboard routes under Hypothesis-generated requests, signed in as admin.

Every route of ``/api`` (except the live event stream) and of ``/admin`` gets random path
parameters, query strings, JSON or raw bodies, form and multipart bodies, content types,
methods and headers. Promises checked on a live server:

* never a 5xx;
* every error is JSON with a non-empty ``detail`` string (Spanish from TAINA's own checks;
  the framework's few English ones — "Not Found", "Method Not Allowed" — for unknown routes);
* nothing is written on invalid input: for every answer >= 400 the database (prompts, audit
  log, knowledge documents, users, calls, bookings) and the data directory are unchanged.

Examples are derandomized, so CI sends the same requests every time.
"""

from __future__ import annotations

from collections.abc import Iterator
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

PASSWORD = "clave-segura-123"
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=600,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# (method, path template, kind of body the route reads)
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
]
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
JSON_KEYS = ["email", "password", "text", "activate"]

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


@st.composite
def requests_(draw: st.DrawFn) -> dict[str, Any]:
    method, template, body_kind = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))
    path = template
    for name in ("call_sid", "version", "asset"):
        if "{" + name + "}" in path:
            raw = draw(st.one_of(VALUE, st.sampled_from(["CA" + "0" * 32, "1", "index.html"])))
            path = path.replace("{" + name + "}", quote(raw, safe="/" if name == "asset" else ""))
    query = draw(st.dictionaries(st.one_of(st.sampled_from(KNOWN_QUERY), TEXT), VALUE, max_size=4))
    body: dict[str, Any] = {}
    kind = draw(st.sampled_from([body_kind, body_kind, "json", "raw", "form", "multipart", "none"]))
    if kind == "json":
        body["json"] = draw(JSON_BODY)
    elif kind == "raw":
        body["content"] = draw(st.binary(max_size=400))
    elif kind == "form":
        body["data"] = draw(st.dictionaries(st.text(min_size=1, max_size=8), TEXT, max_size=3))
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
    return {
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


@pytest.fixture(scope="module")
def admin_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminApi]:
    settings_ = settings_for(
        Path(tmp_path_factory.mktemp("fuzz-api")),
        login_rate_limit=1_000_000,  # rate limiting has its own tests; here it would hide paths
    )
    server = LiveServer(create_app(settings_, engines=instant_engines())).start()
    api = AdminApi(server)
    try:
        yield api
    finally:
        api.close()
        server.stop()


def test_admin_api_answers_any_request_with_a_clear_error_and_writes_nothing(
    admin_api: AdminApi,
) -> None:
    seen: dict[int, int] = {}

    @FUZZ
    @given(requests_())
    def one_request(req: dict[str, Any]) -> None:
        before = admin_api.snapshot()
        auth = admin_api.tokens[req.pop("auth")]
        req["headers"] = {**req["headers"], **auth}
        method, path = req.pop("method"), req.pop("path")
        r = admin_api.http.request(method, path, **req)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (r.status_code, r.text[:500])
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/json"), r.headers
            detail = r.json().get("detail")
            assert isinstance(detail, str) and detail.strip(), r.text[:500]
            assert admin_api.snapshot() == before, f"{method} {path} → {r.status_code} wrote"

    one_request()
    print("status codes seen:", dict(sorted(seen.items())))
    # The fuzz reached past the validators: successes and refusals of several kinds.
    assert seen.get(200, 0) > 0 and seen.get(422, 0) > 0 and seen.get(404, 0) > 0, seen
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
