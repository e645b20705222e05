"""``POST /api/livekit/token``: a visitor's ticket into their own LiveKit room.

Each press of "Llamar" gets a new session id and a room named from it (``web-<id>``), created
here with at most two participants (visitor + agent) and short empty/departure timeouts; the
agent worker finds it by its prefix, joins it, and ends it after 30 minutes at most. The token
is short-lived and can only join that one room. When LiveKit is not configured the answer is
404, and the page falls back to ``WS /web/stream``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from app.settings import Settings
from telephony.livekit_room import new_session_id

log = logging.getLogger("taina.livekit")

router = APIRouter(tags=["livekit"])

NOT_CONFIGURED = "Las salas de LiveKit no están configuradas en este servidor."
TOO_MANY = "Demasiadas solicitudes. Espere un momento e intente de nuevo."
UNAVAILABLE = "No se pudo preparar la sala de conversación. Intente de nuevo en un momento."


class TokenResponse(BaseModel):
    url: str
    token: str
    room: str
    identity: str
    expires_at: int  # Unix seconds: the token can no longer be used to join after this


class RateLimiter:
    """At most ``per_minute`` hits per key in any 60 s window; bounded memory."""

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if len(self._hits) >= self._max_keys:
            self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] < 60}
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= 60:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return False
        hits.append(now)
        return True


def livekit_configured(s: Settings) -> bool:
    return bool(s.livekit_url and s.livekit_api_key and s.livekit_api_secret)


def _settings(request: Request) -> Settings:
    services = getattr(request.app.state, "services", None)
    if services is not None:
        return services.settings
    return request.app.state.settings


def _limiter(request: Request, s: Settings) -> RateLimiter:
    limiter = getattr(request.app.state, "livekit_limiter", None)
    if limiter is None or limiter.per_minute != s.livekit_token_per_minute:
        limiter = RateLimiter(s.livekit_token_per_minute)
        request.app.state.livekit_limiter = limiter
    return limiter


def visitor_token(s: Settings, room: str, identity: str) -> tuple[str, int]:
    """A join-only JWT for one room; returns it with its expiry (Unix seconds)."""
    from livekit import api

    ttl = timedelta(seconds=s.livekit_token_ttl_s)
    token = (
        api.AccessToken(s.livekit_api_key, s.livekit_api_secret)
        .with_identity(identity)
        .with_name("Visitante")
        .with_kind("standard")
        .with_ttl(ttl)
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=True,
                can_publish_sources=["microphone"],
            )
        )
        .with_room_config(room_configuration(s, room))
        .to_jwt()
    )
    return token, int(time.time() + ttl.total_seconds())


def room_configuration(s: Settings, room: str):  # -> api.RoomConfiguration
    from livekit import api

    return api.RoomConfiguration(
        name=room,
        max_participants=2,
        empty_timeout=s.livekit_empty_timeout_s,
        departure_timeout=s.livekit_departure_timeout_s,
    )


async def create_room(s: Settings, room: str) -> None:
    """Create the room now, so its limits hold from the first join and the agent sees it."""
    from livekit import api

    lk = api.LiveKitAPI(s.livekit_url, s.livekit_api_key, s.livekit_api_secret)
    try:
        await lk.room.create_room(
            api.CreateRoomRequest(
                name=room,
                max_participants=2,
                empty_timeout=s.livekit_empty_timeout_s,
                departure_timeout=s.livekit_departure_timeout_s,
                metadata=json.dumps({"ingress": "web", "max_duration_s": s.livekit_room_max_s}),
            )
        )
    finally:
        await lk.aclose()


@router.post("/api/livekit/token", response_model=TokenResponse)
async def livekit_token(request: Request) -> TokenResponse:
    s = _settings(request)
    if not livekit_configured(s):
        raise HTTPException(404, NOT_CONFIGURED)
    ip = request.client.host if request.client else "-"
    if not _limiter(request, s).allow(ip):
        raise HTTPException(429, TOO_MANY)
    session_id = new_session_id()
    room = f"{s.livekit_room_prefix}{session_id}"
    identity = f"visitante-{session_id}"
    try:
        await create_room(s, room)
    except Exception as exc:
        log.warning("LiveKit room %s not created: %s", room, exc)
        raise HTTPException(503, UNAVAILABLE) from exc
    token, expires_at = visitor_token(s, room, identity)
    assert s.livekit_url is not None
    return TokenResponse(
        url=s.livekit_url, token=token, room=room, identity=identity, expires_at=expires_at
    )
