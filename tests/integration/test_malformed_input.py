"""Malformed input that used to answer 500 (issue 13), now a clear 4xx, on a live server.

Sent as raw bytes where a client library would refuse to send them (a ``Host`` of ``@``), so
the server sees exactly what an attacker can put on the wire. Also: the database refusing
writes as on a full disk answers 503 with ``Retry-After`` (and an audit record it cannot store
is logged, the action still answered), never a 500.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import websockets
from sqlalchemy import event
from websockets.exceptions import InvalidStatus

from app.error_answers import MSG_UNSTORABLE
from app.forwarded import MSG_BAD_HOST
from app.users import audit, create_user, list_audit
from tests.integration.conftest import LiveServer, instant_engines
from tests.integration.test_fuzz_admin_api import TEST_DATABASE_URL, fresh_postgres
from tests.integration.test_twilio_stream import call_sid

ADMIN = "admin@example.org"
PASSWORD = "clave-segura-123"


@pytest.fixture
def server(live_server_factory) -> LiveServer:
    s = live_server_factory(engines=instant_engines())
    s.run(create_user(s.services.db, ADMIN, "admin", PASSWORD))
    return s


def raw(server: LiveServer, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as is; the status code and the body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def form_request(path: str, headers: bytes, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\n".encode()
        + headers
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "admin@example.org", "password": NaN}',
        b'{"email": "admin@example.org", "password": Infinity}',
        b'{"email": "admin@example.org", "password": -Infinity}',
        b'{"email": "admin@example.org", "password": "\\ud800"}',
        b'{"email": "\\udfff@example.org", "password": "clave-segura-123"}',
        b'{"email": "admin@example.org", "password": 1e999}',
        b'{"email": "admin@example.org", "password": ["\\ud83d"]}',
    ],
    ids=["nan", "inf", "-inf", "surrogate-password", "surrogate-email", "1e999", "nested"],
)
def test_a_login_body_with_nan_or_a_lone_surrogate_is_a_clear_422(
    server: LiveServer, body: bytes
) -> None:
    r = httpx.post(
        f"{server.url}/api/auth/login",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, (r.status_code, r.text)
    detail = r.json()["detail"]  # valid JSON, whatever the input echoed in ``errors``
    assert detail.startswith(("Datos no válidos", "El cuerpo de la solicitud"))


@pytest.mark.parametrize("field", ["From", "To"])
def test_a_webhook_with_control_characters_is_a_400(server: LiveServer, field: str) -> None:
    data = {"CallSid": "CA" + "3" * 32, "From": "+18095550100", "To": "+18095550199"}
    data[field] = "+1809\x00\x1b[2J\r\nX-Injected: 1"
    r = httpx.post(f"{server.url}/twilio/voice", data=data)
    assert r.status_code == 400 and "<Stream" not in r.text
    assert server.call_view(data["CallSid"]) is None
    data[field] = "+18095550100"
    assert httpx.post(f"{server.url}/twilio/voice", data=data).status_code == 200


BAD_HOSTS = [b"@", b"a@", b":80", b"a@b", b"evil.do/path", b"[::1", b"x:99999", b"x:0", b"a,b"]


@pytest.mark.parametrize("host", BAD_HOSTS, ids=[h.decode() for h in BAD_HOSTS])
def test_a_bad_host_is_a_400_on_every_kind_of_route(server: LiveServer, host: bytes) -> None:
    for request in (
        b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n",
        b"GET /admin/ HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n",
        b"GET /api/knowledge HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n",
        form_request("/twilio/voice", b"Host: " + host + b"\r\n", b"CallSid=CA" + b"4" * 32),
        form_request("/twilio/status", b"Host: " + host + b"\r\n", b"CallSid=x"),
    ):
        status, body = raw(server, request)
        assert status == 400, (host, request[:40], status, body[:200])
        if body:
            assert httpx.Response(400, content=body).json()["detail"] == MSG_BAD_HOST
    assert server.call_view("CA" + "4" * 32) is None


async def test_a_bad_host_on_a_websocket_upgrade_is_refused_before_accept(
    server: LiveServer,
) -> None:
    for path in ("/twilio/stream", "/web/stream"):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                f"ws://127.0.0.1:{server.port}{path}", additional_headers={"Host": "a@"}
            )
        assert refused.value.response.status_code in (400, 403)


@pytest.mark.parametrize(
    "header",
    [
        b"X-Forwarded-Host: :80",
        b"X-Forwarded-Host: @",
        b"X-Forwarded-Proto: javascript",
        b"X-Forwarded-Proto: javascript\r\nX-Forwarded-Host: a@",
        b"X-Forwarded-For: <script>",
        b"Forwarded: for=evil;host=:80",
    ],
)
def test_forwarded_headers_from_a_client_are_dropped_not_a_500(
    server: LiveServer, header: bytes
) -> None:
    """No trusted proxies (the default): the headers are ignored; the TwiML's stream URL is
    built from the real Host."""
    status, body = raw(
        server,
        form_request(
            "/twilio/voice",
            b"Host: taina.example.org\r\n" + header + b"\r\n",
            b"CallSid=" + call_sid().encode(),
        ),
    )
    assert status == 200, (status, body[:300])
    assert b'url="wss://taina.example.org/twilio/stream"' in body


@contextmanager
def database_refusing(
    server: LiveServer, statement_prefix: str | tuple[str, ...]
) -> Iterator[None]:
    """Make the database refuse writes as a full disk does (the driver's own error)."""

    def full(conn, cursor, statement, params, context, executemany) -> None:
        if statement.lstrip().upper().startswith(statement_prefix):
            raise sqlite3.OperationalError("database or disk is full")

    engine = server.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", full)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", full)


def test_an_audit_write_on_a_full_disk_is_logged_and_the_sign_in_answered(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with database_refusing(server, "INSERT INTO AUDIT_LOG"):
        r = httpx.post(f"{server.url}/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert server.run(audit(server.services.db, ADMIN, "prueba", "x")) is False
    assert "audit record not stored (database or disk is full)" in caplog.text
    actions = [e.action for e in server.run(list_audit(server.services.db))]
    assert "auth.login" not in actions and "prueba" not in actions


def test_any_write_on_a_full_disk_is_a_503_with_retry_after(server: LiveServer) -> None:
    with database_refusing(server, ("INSERT", "UPDATE")):
        r = httpx.post(f"{server.url}/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit()
    assert r.json()["detail"].startswith("El servidor no puede guardar datos")
    # The disk has room again: the same request works.
    ok = httpx.post(f"{server.url}/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert ok.status_code == 200


async def test_the_server_stays_healthy_after_all_of_it(server: LiveServer) -> None:
    await asyncio.to_thread(raw, server, b"GET /healthz HTTP/1.1\r\nHost: @\r\n\r\n")
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/healthz")).json()["status"] == "ok"


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set")
def test_a_nul_character_is_a_422_on_postgresql(live_server_factory) -> None:
    """PostgreSQL refuses a NUL in any text (SQLSTATE 22021): it was a 500 wherever a client's
    text reached a query — a sign-in e-mail, a search, a path parameter."""
    with fresh_postgres() as url:
        server = live_server_factory(engines=instant_engines(), database_url=url)
        try:
            server.run(create_user(server.services.db, ADMIN, "admin", PASSWORD))
            r = httpx.post(
                f"{server.url}/api/auth/login", json={"email": "a\x00@example.org", "password": "x"}
            )
            assert r.status_code == 422, r.text
            assert r.json()["detail"] == MSG_UNSTORABLE
            login = {"email": ADMIN, "password": PASSWORD}
            token = httpx.post(f"{server.url}/api/auth/login", json=login).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            for path in ("/api/calls?q=%00", "/api/calls/CA%00", "/api/bookings?q=a%00b"):
                r = httpx.get(f"{server.url}{path}", headers=auth)
                assert r.status_code < 500, (path, r.status_code, r.text[:200])
        finally:
            server.stop()
