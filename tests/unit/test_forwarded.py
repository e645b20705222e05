"""``app.forwarded``: which Host values are accepted, and what a trusted proxy may change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.forwarded import ForwardedHeadersMiddleware, parse_trusted_proxies, valid_host


@pytest.mark.parametrize(
    "host",
    [
        "x",
        "x:80",
        "taina.example.org",
        "abc.ngrok.app:443",
        "127.0.0.1:8000",
        "[::1]",
        "[::1]:8080",
        "a_b",
    ],
)
def test_plain_hosts_are_valid(host: str) -> None:
    assert valid_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "@",
        "a@",
        ":80",
        "a@b",
        "x:0",
        "x:99999",
        "[::1",
        "evil.do/path",
        "a b",
        "a,b",
        "-x",
        "x" * 300,
    ],
)
def test_hosts_a_url_cannot_be_built_from_are_invalid(host: str) -> None:
    assert not valid_host(host)


def test_valid_host_is_linear_on_long_input() -> None:
    import time

    t = time.perf_counter()
    for n in (10_000, 100_000):
        valid_host("a" * n + "@")
        valid_host("[" + ":" * n)
    assert time.perf_counter() - t < 0.5


def test_trusted_proxies_parse_addresses_and_networks() -> None:
    nets = parse_trusted_proxies(" 10.0.0.0/8, 127.0.0.1 ,::1,")
    assert [str(n) for n in nets] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    assert parse_trusted_proxies("") == ()
    with pytest.raises(ValueError):
        parse_trusted_proxies("10.0.0.0/8, proxy.local")


def run(mw: ForwardedHeadersMiddleware, peer: str, headers: dict[str, str]) -> dict[str, Any]:
    """What the app behind the middleware sees (or the refusal's status)."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(
            client=scope["client"][0],
            scheme=scope["scheme"],
            headers={k.decode(): v.decode() for k, v in scope["headers"]},
        )

    mw.app = app
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "scheme": "http",
        "client": (peer, 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(mw(scope, receive, send))
    if sent:
        seen["status"] = sent[0]["status"]
    return seen


def test_untrusted_peers_lose_their_forwarded_headers() -> None:
    mw = ForwardedHeadersMiddleware(lambda *a: None, trusted_proxies="")
    seen = run(
        mw,
        "127.0.0.1",
        {"Host": "h", "X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "javascript",
         "X-Forwarded-Host": ":80", "Forwarded": "for=x"},
    )  # fmt: skip
    assert seen["client"] == "127.0.0.1" and seen["scheme"] == "http"
    assert seen["headers"] == {"host": "h"}


def test_a_trusted_proxy_sets_client_scheme_and_host() -> None:
    mw = ForwardedHeadersMiddleware(lambda *a: None, trusted_proxies="127.0.0.1, 10.0.0.0/8")
    seen = run(
        mw,
        "127.0.0.1",
        {"Host": "internal:8000", "X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.2.3",
         "X-Forwarded-Proto": "https", "X-Forwarded-Host": "taina.example.org"},
    )  # fmt: skip
    # The right-most address that is not a trusted proxy: 6.6.6.6 was the client's own claim.
    assert seen["client"] == "203.0.113.9"
    assert seen["scheme"] == "https"
    assert seen["headers"]["host"] == "taina.example.org"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "nadie"},
        {"X-Forwarded-Proto": "javascript"},
        {"X-Forwarded-Host": ":80"},
        {"X-Forwarded-Host": "a@b"},
    ],
)
def test_malformed_headers_from_a_trusted_proxy_are_a_400(headers: dict[str, str]) -> None:
    mw = ForwardedHeadersMiddleware(lambda *a: None, trusted_proxies="127.0.0.1")
    assert run(mw, "127.0.0.1", {"Host": "h", **headers}).get("status") == 400


def test_a_bad_host_is_a_400_and_two_hosts_too() -> None:
    mw = ForwardedHeadersMiddleware(lambda *a: None)
    assert run(mw, "127.0.0.1", {"Host": "a@"}).get("status") == 400
    assert "status" not in run(mw, "127.0.0.1", {})  # HTTP/1.0 without Host: fine
