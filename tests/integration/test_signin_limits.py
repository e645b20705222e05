"""Each sign-in limit on a live server, one at a time: per client address, per account, in
total, the password pool's bound, and ``X-Forwarded-For`` believed only from trusted proxies.

Clients come from different loopback addresses (127.0.0.0/8 all reaches the server), so the
per-address limit is exercised with real peer addresses, not headers.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.password_pool import MSG_BUSY
from app.users import create_user
from tests.integration.conftest import LiveServer, instant_engines

ADMIN = "admin@example.org"
PASSWORD = "clave-segura-123"


async def sign_in(
    server: LiveServer, source: str, email: str, password: str, **headers: str
) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=60) as http:
        return await http.post(
            "/api/auth/login", json={"email": email, "password": password}, headers=headers
        )


def assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, (r.status_code, r.text)
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["detail"].startswith("Demasiados intentos de inicio de sesión")


@pytest.fixture
def server(live_server_factory) -> LiveServer:
    s = live_server_factory(
        engines=instant_engines(),
        login_rate_limit=3,
        login_ip_rate_limit=5,
        login_global_rate_limit=9,
        login_rate_window_s=60,
    )
    s.run(create_user(s.services.db, ADMIN, "admin", PASSWORD))
    return s


async def test_each_limit_refuses_with_retry_after_and_only_failures_count(
    server: LiveServer,
) -> None:
    # Per address: 5 failures with 5 different e-mails and made-up X-Forwarded-For (not
    # believed: no trusted proxies), then even the right password from there is refused.
    for i in range(5):
        r = await sign_in(
            server,
            "127.0.0.1",
            f"otro{i}@example.org",
            "x" * 9,
            **{"X-Forwarded-For": f"10.0.0.{i}"},
        )
        assert r.status_code == 401, r.text
    assert_limited(await sign_in(server, "127.0.0.1", "nuevo@example.org", "x" * 9))
    assert_limited(await sign_in(server, "127.0.0.1", ADMIN, PASSWORD))
    # Another address signs in; a success costs nothing (it is refunded everywhere).
    for _ in range(3):
        assert (await sign_in(server, "127.0.0.2", ADMIN, PASSWORD)).status_code == 200
    # Per account: 3 wrong passwords for the admin, each from its own address; the 4th
    # address is refused for that account, not for another one.
    for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        assert (await sign_in(server, source, ADMIN, "mala-clave-1")).status_code == 401
    assert_limited(await sign_in(server, "127.0.0.6", ADMIN, PASSWORD))
    assert (await sign_in(server, "127.0.0.6", "x@example.org", "y" * 9)).status_code == 401
    # In total: 5 + 3 + 1 = 9 failures: the next sign-in from anywhere waits for the window.
    assert_limited(await sign_in(server, "127.0.0.7", "z@example.org", "y" * 9))
    # Refused attempts wrote nothing (only the successful sign-ins are audited).
    entries = server.run(_audit_actions(server))
    assert entries.count("auth.login") == 3 and len(entries) == 3 + 1  # + user.created


async def _audit_actions(server: LiveServer) -> list[str]:
    from app.users import list_audit

    return [e.action for e in await list_audit(server.services.db, limit=1000)]


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(live_server_factory) -> None:
    server = live_server_factory(
        engines=instant_engines(),
        login_ip_rate_limit=2,
        login_rate_limit=100,
        trusted_proxies="127.0.0.1/32",
    )
    # Behind the proxy (127.0.0.1), each client has its own budget, keyed by X-Forwarded-For.
    client_a = {"X-Forwarded-For": "203.0.113.7, 127.0.0.1"}  # the proxy appended itself
    for _ in range(2):
        assert (
            await sign_in(server, "127.0.0.1", "a@example.org", "x" * 9, **client_a)
        ).status_code == 401
    assert_limited(await sign_in(server, "127.0.0.1", "a@example.org", "x" * 9, **client_a))
    r = await sign_in(
        server, "127.0.0.1", "a@example.org", "x" * 9, **{"X-Forwarded-For": "203.0.113.8"}
    )
    assert r.status_code == 401
    # A peer that is not a trusted proxy cannot pick an address: its header is dropped.
    for i in range(2):
        r = await sign_in(
            server, "127.0.0.9", "b@example.org", "x" * 9, **{"X-Forwarded-For": f"198.51.100.{i}"}
        )
        assert r.status_code == 401
    assert_limited(
        await sign_in(
            server, "127.0.0.9", "b@example.org", "x" * 9, **{"X-Forwarded-For": "198.51.100.99"}
        )
    )
    # Malformed from the trusted proxy: a clear 400.
    r = await sign_in(server, "127.0.0.1", "a@example.org", "x" * 9, **{"X-Forwarded-For": "nadie"})
    assert r.status_code == 400 and "X-Forwarded" in r.json()["detail"]


async def test_password_hashing_waits_in_its_own_bounded_pool(live_server_factory) -> None:
    """With one hashing thread and one waiting slot, a burst of sign-ins gets a few answers
    from argon2 and the rest an immediate 429, instead of a queue that grows with the burst."""
    server = live_server_factory(
        engines=instant_engines(),
        login_ip_rate_limit=1000,
        login_global_rate_limit=1000,
        password_hash_workers=1,
        password_hash_queue=1,
    )
    answers = await asyncio.gather(
        *(sign_in(server, "127.0.0.1", f"u{i}@example.org", "x" * 9) for i in range(12))
    )
    codes = sorted(r.status_code for r in answers)
    busy = [r for r in answers if r.status_code == 429]
    assert codes.count(401) >= 1 and busy, codes
    assert codes.count(401) <= 6, codes  # never the whole burst in the queue
    for r in busy:
        assert r.json()["detail"] == MSG_BUSY and r.headers["retry-after"].isdigit()
    # The pool drains: a sign-in afterwards is answered by argon2 again.
    await asyncio.sleep(0.2)
    for _ in range(50):
        r = await sign_in(server, "127.0.0.2", "late@example.org", "x" * 9)
        if r.status_code == 401:
            break
        await asyncio.sleep(0.2)
    assert r.status_code == 401
