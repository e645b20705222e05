"""``GET /api/live``: calls in progress, as Server-Sent Events, for signed-in staff.

The stream opens with ``hello`` (which process and broker serve it) and a ``snapshot`` of the
calls in progress this process knows of, then relays every ``call_started``, ``turn`` and
``call_ended`` from any server process (see app/live_events.py). ``resync`` means events may
have been missed (broker reconnect, or this client fell behind): reload from the REST API.

Browsers' ``EventSource`` cannot send an Authorization header, so the token is also accepted
as ``?access_token=``; prefer ``fetch`` with the header where possible, since query strings
can end up in proxy logs. Each response ends after ``live_stream_max_s`` with a ``retry`` hint
(the browser reconnects by itself): a server shutdown then never waits long on a dashboard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from app.auth import MSG_FORBIDDEN, MSG_LOGIN_REQUIRED, Principal, authenticate, has_role
from app.live_events import LiveEvents
from app.personal_data import Redactor

router = APIRouter(prefix="/api", tags=["live"])

HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 2000
DEFAULT_MAX_S = 60.0
MSG_UNAVAILABLE = "Las actualizaciones en vivo no están disponibles."


async def live_viewer(
    request: Request,
    access_token: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> Principal:
    """Staff only (agent or admin); the token comes from the header or ``access_token``."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else ""
    token = token or (access_token or "")
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=MSG_LOGIN_REQUIRED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = await authenticate(request.app, token)
    if not has_role(principal, "agent"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=MSG_FORBIDDEN)
    return principal


def sse_message(event: dict[str, Any]) -> str:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    head = f"id: {event['id']}\n" if "id" in event else ""
    return f"{head}event: {event.get('type', 'message')}\ndata: {data}\n\n"


async def event_stream(
    hub: LiveEvents,
    *,
    max_s: float,
    heartbeat_s: float = HEARTBEAT_S,
    redact: Redactor | None = None,
) -> AsyncIterator[str]:
    """The viewer's stream. Events travel between processes in full (the broker is ours);
    ``redact`` masks personal numbers here, per viewer, as each event leaves the server."""
    show = redact or Redactor(full=False)
    sub = hub.subscribe()  # before the snapshot, so nothing falls between the two
    try:
        yield f"retry: {RETRY_MS}\n\n"
        yield sse_message(
            {"type": "hello", "origin": hub.origin, "pid": hub.pid, "backend": hub.backend_name}
        )
        yield sse_message({"type": "snapshot", "calls": show.data(hub.active_calls())})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        dropped = 0
        while (left := deadline - loop.time()) > 0:
            try:
                event = await sub.get(timeout=min(heartbeat_s, left))
            except StopAsyncIteration:
                break  # the hub closed: server shutting down
            if sub.dropped != dropped:
                dropped = sub.dropped
                yield sse_message({"type": "resync", "reason": "slow-client"})
            yield ": ping\n\n" if event is None else sse_message(show.data(event))
    finally:
        sub.close()


@router.get(
    "/live",
    summary="Llamadas en curso en tiempo real (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def live(
    request: Request, viewer: Annotated[Principal, Depends(live_viewer)]
) -> StreamingResponse:
    hub: LiveEvents | None = getattr(request.app.state, "live_events", None)
    if hub is None or hub.closed:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=MSG_UNAVAILABLE)
    services = getattr(request.app.state, "services", None)
    max_s = getattr(getattr(services, "settings", None), "live_stream_max_s", DEFAULT_MAX_S)
    return StreamingResponse(
        event_stream(hub, max_s=float(max_s), redact=Redactor.for_principal(viewer)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
