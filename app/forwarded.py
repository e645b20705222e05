"""Who is really asking, and at which address: the ``Host`` and ``X-Forwarded-*`` headers.

Both are chosen by the client, and the app builds URLs (TwiML stream URLs, the URL a Twilio
signature covers) and per-client limits (sign-in, sockets per address) from them. So:

* ``Host`` must be a plain ``host[:port]`` (a name, an IPv4 address or a bracketed IPv6
  address); anything else (``@``, ``a@``, ``:80``, spaces, paths) is answered 400 before any
  route runs, instead of surfacing later as a 500 from a URL that cannot be built.
* ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are believed only when
  the peer is one of ``TAINA_TRUSTED_PROXIES`` (addresses or CIDR networks, default none).
  From a trusted proxy they are validated (a bad value is a 400) and applied to the request:
  the client address (the right-most address in ``X-Forwarded-For`` that is not itself a
  trusted proxy), the scheme and the ``Host``. From anyone else they are dropped, so no route
  or limit ever sees a value a client picked for itself. RFC 7239's ``Forwarded`` is not
  supported: it is always dropped.

This replaces uvicorn's own ``proxy_headers`` (which trusts 127.0.0.1 by default and never
drops the headers): ``taina serve`` turns that off, and so must any other way of running the app.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("taina.forwarded")

# host[:port]: a DNS-ish name, an IPv4 address, or a bracketed IPv6 address. Linear-time (no
# nested quantifiers) and anchored by fullmatch.
_HOST = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)
_FORWARDED_HEADERS = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)
_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss")}

MSG_BAD_HOST = "La cabecera Host no es válida."
MSG_BAD_FORWARDED = "Las cabeceras X-Forwarded-* no son válidas."

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(spec: str | Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.1, 192.168.0.0/16"`` as networks; raises ValueError on a bad entry, so a typo
    in the setting stops the start-up instead of silently trusting nobody (or everybody)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    networks = []
    for raw in items:
        item = raw.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def valid_host(value: str) -> bool:
    """True for a ``host[:port]`` the app may build a URL from (port 1..65535 when given)."""
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    port = match.group("port")
    return port is None or 0 < int(port) <= 65535


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


class ForwardedHeadersMiddleware:
    """Validates ``Host``; applies ``X-Forwarded-*`` from trusted proxies, drops them otherwise."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: str | Iterable[str] = "") -> None:
        self.app = app
        self.trusted = parse_trusted_proxies(trusted_proxies)

    def is_trusted(self, host: str | None) -> bool:
        if not self.trusted or not host:
            return False
        ip = _ip(host)
        return ip is not None and any(ip in net for net in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = [(k, v) for k, v in headers if k in _FORWARDED_HEADERS]
        kept = [(k, v) for k, v in headers if k not in _FORWARDED_HEADERS]
        scope = dict(scope)
        if forwarded and self.is_trusted(peer):
            problem = self._apply(scope, kept, forwarded)
            if problem:
                await _refuse(scope, receive, send, problem)
                return
            # The validated values stay visible (signature checks read X-Forwarded-Host).
            kept.extend((k, v) for k, v in forwarded if k != b"forwarded")
        hosts = [v for k, v in kept if k == b"host"]
        if len(hosts) > 1 or (hosts and not valid_host(hosts[0].decode("latin-1"))):
            await _refuse(scope, receive, send, MSG_BAD_HOST)
            return
        scope["headers"] = kept
        await self.app(scope, receive, send)

    def _apply(
        self,
        scope: dict[str, Any],
        kept: list[tuple[bytes, bytes]],
        forwarded: list[tuple[bytes, bytes]],
    ) -> str | None:
        """Rewrite client, scheme and Host from a trusted proxy's headers; the error or None."""
        values: dict[bytes, str] = {}
        for name, value in forwarded:  # repeated headers join like a comma-separated list
            text = value.decode("latin-1")
            values[name] = f"{values[name]}, {text}" if name in values else text
        chain = values.get(b"x-forwarded-for")
        if chain is not None:
            hops = [h.strip() for h in chain.split(",")]
            client_ip = None
            for hop in reversed(hops):
                ip = _ip(hop)
                if ip is None:
                    return MSG_BAD_FORWARDED
                client_ip = str(ip)
                if not any(ip in net for net in self.trusted):
                    break
            if client_ip is not None:
                scope["client"] = (client_ip, 0)
        proto = values.get(b"x-forwarded-proto")
        if proto is not None:
            first = proto.split(",", 1)[0].strip().lower()
            if first not in _SCHEMES:
                return MSG_BAD_FORWARDED
            http_scheme, ws_scheme = _SCHEMES[first]
            scope["scheme"] = ws_scheme if scope["type"] == "websocket" else http_scheme
        host = values.get(b"x-forwarded-host")
        if host is not None:
            first = host.split(",", 1)[0].strip()
            if not valid_host(first):
                return MSG_BAD_FORWARDED
            kept[:] = [(k, v) for k, v in kept if k != b"host"]
            kept.append((b"host", first.encode("latin-1")))
        return None


async def _refuse(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    if scope["type"] == "websocket":
        # Before accept: uvicorn answers the upgrade with 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    log.debug("request refused: %s", detail)  # per request: never above debug
    response = JSONResponse({"detail": detail}, status_code=400, headers={"Connection": "close"})
    await response(scope, receive, send)
