"""Refresh tokens against the real app on loopback (issue 14, item 6): rotation, replay,
sign-out, password change, idle end. The browser side is in test_dashboard_issue14.py."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
from sqlalchemy import select

from app.refresh_tokens import COOKIE_NAME
from app.storage.models import RefreshToken
from tests.browser.conftest import PASSWORD, add_user
from tests.integration.conftest import instant_engines

ADMIN = "admin@example.org"


def login(http: httpx.Client) -> dict[str, Any]:
    r = http.post("/api/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()


def stored_tokens(server: Any) -> list[RefreshToken]:
    async def read() -> list[RefreshToken]:
        async with server.services.db.session() as s:
            return list((await s.scalars(select(RefreshToken))).all())

    return server.run(read())


def test_refresh_cookie_rotates_is_hashed_and_replay_ends_the_session(
    dashboard_server: Any,
) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    with httpx.Client(base_url=server.url) as http:
        body = login(http)
        assert body["idle_timeout_s"] == server.services.settings.admin_idle_timeout_s
        header = http.cookies.jar
        cookie = next(c for c in header if c.name == COOKIE_NAME)
        assert cookie.path == "/api/auth"
        assert cookie.has_nonstandard_attr("HttpOnly")
        first = cookie.value
        # Stored as a hash only: the raw value is nowhere in the table.
        rows = stored_tokens(server)
        assert [r.token_hash for r in rows] == [hashlib.sha256(first.encode()).hexdigest()]

        r = http.post("/api/auth/refresh")
        assert r.status_code == 200, r.text
        renewed = r.json()["access_token"]
        second = http.cookies.get(COOKIE_NAME)
        assert second and second != first
        assert http.get("/api/calls", headers={"Authorization": f"Bearer {renewed}"}).is_success

        # The spent token presented again (a copy): refused, and the whole sign-in ends.
        replay = httpx.post(f"{server.url}/api/auth/refresh", cookies={COOKIE_NAME: first})
        assert replay.status_code == 401
        assert replay.json()["detail"] == "La sesión no es válida. Inicie sesión de nuevo."
        r = http.post("/api/auth/refresh")
        assert r.status_code == 401


def test_sign_out_and_password_change_revoke_renewal(dashboard_server: Any) -> None:
    server = dashboard_server(instant_engines())
    add_user(server, ADMIN, "admin")
    with httpx.Client(base_url=server.url) as http:
        login(http)
        kept = http.cookies.get(COOKIE_NAME)
        assert http.post("/api/auth/logout").status_code == 204
        assert http.cookies.get(COOKIE_NAME) is None
        r = httpx.post(f"{server.url}/api/auth/refresh", cookies={COOKIE_NAME: kept})
        assert r.status_code == 401

    # Two sessions (two browsers); a password change in one ends the other's renewal too.
    with httpx.Client(base_url=server.url) as a, httpx.Client(base_url=server.url) as b:
        token = login(a)["access_token"]
        login(b)
        assert b.post("/api/auth/refresh").status_code == 200
        r = a.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": "otra-clave-segura-456"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 204, r.text
        r = b.post("/api/auth/refresh")
        assert r.status_code == 401
        assert a.post("/api/auth/refresh").status_code == 401


def test_an_idle_session_ends_and_says_so(dashboard_server: Any) -> None:
    server = dashboard_server(instant_engines(), admin_idle_timeout_s=3)
    add_user(server, ADMIN, "admin")
    with httpx.Client(base_url=server.url) as http:
        login(http)
        time.sleep(1.0)
        assert http.post("/api/auth/refresh").status_code == 200  # used: the deadline slides
        time.sleep(1.5)
        assert http.post("/api/auth/refresh").status_code == 200  # 2.5 s after sign-in
        time.sleep(3.5)
        r = http.post("/api/auth/refresh")
        assert r.status_code == 401
        assert r.json()["detail"] == "La sesión se cerró por inactividad. Inicie sesión de nuevo."
