"""A cap on every HTTP request body, enforced before any route reads it.

Twilio's webhooks are a few kilobytes of form fields and the admin API's JSON is small, so a
stranger must not be able to make the server read (or spool to disk) megabytes before the
signature or the token is even checked. Each request gets the limit of its route: the longest
matching entry of :func:`route_limits` (an exact method + path, or a path prefix), else
``TAINA_MAX_REQUEST_BODY_BYTES``. A declared ``Content-Length`` above the limit is refused
without reading anything; a chunked body (no ``Content-Length``) is counted as it arrives
and refused as soon as it passes the limit. The answer is 413 with a JSON ``detail`` in
Spanish, like every other error of the API.

WebSocket messages are bounded elsewhere: uvicorn's ``ws_max_size`` (``TAINA_WS_MAX_SIZE_BYTES``,
closes the socket with 1009) and each transport's own parser limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings


def limit_text(limit: int) -> str:
    """A byte count the way the dashboard shows sizes: whole MB or KB."""
    mb = 1024 * 1024
    if limit >= mb and limit % mb == 0:
        return f"{limit // mb} MB"
    return f"{max(1, -(-limit // 1024))} KB"


def too_large_message(limit: int) -> str:
    return f"La solicitud es demasiado grande: el límite es de {limit_text(limit)}."


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes its limit. An ``HTTPException``, so FastAPI
    routes reading the body re-raise it as is and answer the same JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """``path`` exact (with ``method``, or any method when None), or a prefix when
    ``prefix``; the most specific match wins (exact before prefix, longer prefix first)."""

    path: str
    limit: int
    method: str | None = None
    prefix: bool = False


def route_limits(settings: Settings) -> list[RouteLimit]:
    """Routes that legitimately take more than the default."""
    from app.api import MAX_BODY_BYTES
    from app.api.knowledge_routes import MULTIPART_OVERHEAD, UPLOAD_MAX_BODY_BYTES

    upload = max(UPLOAD_MAX_BODY_BYTES, settings.knowledge_upload_max_bytes + MULTIPART_OVERHEAD)
    return [
        # The admin API keeps its own 1 MB cap for JSON (a long prompt, escaped).
        RouteLimit("/api/", MAX_BODY_BYTES, prefix=True),
        # Knowledge documents: the route checks the document's own, smaller limit precisely.
        RouteLimit("/api/knowledge", upload, method="POST"),
    ]


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, default_limit: int, routes: Sequence[RouteLimit] = ()
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self._exact = {(r.method, r.path): r.limit for r in routes if not r.prefix}
        self._prefixes = sorted(
            ((r.path, r.limit) for r in routes if r.prefix), key=lambda p: -len(p[0])
        )

    def limit_for(self, method: str, path: str) -> int:
        exact = self._exact.get((method, path), self._exact.get((None, path)))
        if exact is not None:
            return exact
        for prefix, limit in self._prefixes:
            if path.startswith(prefix):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("method", ""), scope.get("path", ""))
        if limit <= 0:  # 0: no limit for this route
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Routes inside FastAPI have already answered it; only other readers get here.
            if not response_started:
                await _refuse(scope, receive, send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP parser refuses these before the app sees them
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    # The unread rest of the body is left to the server, which closes the connection.
    response = JSONResponse(
        {"detail": too_large_message(limit)},
        status_code=413,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
