"""The visitor call page (``/``, assets under ``/web/``) and its audio socket ``WS /web/stream``.

The page is static HTML, CSS and ES modules in ``web/visitor`` (no build step), served with the
same rules as the dashboard (known types only, nothing outside the folder, a strict CSP).
Each socket is one call: a ``WebMediaStream`` feeding a ``CallSession`` with ingress "web",
whose finished turns and spoken sentences are also sent to the page as live captions.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket, status
from fastapi.responses import FileResponse, RedirectResponse

from app.connection_limits import (
    active_calls,
    app_counter,
    client_ip,
    flood_bans,
    run_with_start_deadline,
)
from app.recordings import with_recording
from app.routes_admin import CONTENT_TYPES, MSG_NOT_FOUND, content_security_policy, resolve_asset
from app.services import Services
from pipeline.brain.base import CallContext
from pipeline.records import FanOutObserver
from pipeline.session import CallSession
from telephony.web_protocol import StartRequest
from telephony.web_stream import CaptioningTTS, CaptionObserver, WebMediaStream

log = logging.getLogger("taina.web")

VISITOR_DIR = Path(__file__).resolve().parent.parent / "web" / "visitor"

# Defaults for settings the lead may add to app/settings.py (read with getattr until then).
DEFAULT_MAX_CONNECTIONS_PER_IP = 4
DEFAULT_MAX_FRAME_BYTES = 8192  # 256 ms of 16 kHz PCM16; the page sends 640-byte (20 ms) frames
DEFAULT_MAX_MESSAGES_PER_S = 200  # 50 audio frames + ~10 marks per second in normal use


def _setting(services: Services, name: str, default: int) -> int:
    value = getattr(services.settings, name, None)
    return int(value) if value is not None else default


def web_session_factory(services: Services):
    """Builds the session for a started web stream; None when the office is at capacity."""

    async def make(start: StartRequest, sink: Any) -> CallSession | None:
        if services.drain.draining:  # shutting down: the page shows the Spanish refusal
            log.info("web call declined: the server is draining")
            return None
        call_id: str = sink.call_id
        ctx = CallContext(
            call_id=call_id,
            ingress="web",
            caller_number=None,
            started_at=datetime.now(UTC),
        )
        engines = dataclasses.replace(
            services.engines, tts=CaptioningTTS(services.engines.tts, sink.sentence_spoken)
        )
        session = CallSession(
            ctx=ctx,
            sink=sink,
            engines=engines,
            config=services.session_config(),
            observer=FanOutObserver(services.observer, CaptionObserver(sink)),
            metrics=services.metrics,
            stream_id=start.session,
        )
        services.drain.track(session)  # a graceful shutdown sees this call through
        return session

    if services.recordings is not None:
        return with_recording(make, services.recordings)
    return make


def make_router(root: Path = VISITOR_DIR) -> APIRouter:
    router = APIRouter(tags=["web visitors"])

    def serve(request: Request, path: Path) -> Response:
        services = getattr(request.app.state, "services", None)
        settings = getattr(services, "settings", None)
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if path.suffix == ".html":
            csp = content_security_policy(getattr(settings, "supabase_url", None))
            # The LiveKit SDK opens a WebSocket to the server (wss://…/rtc) and may fetch over
            # http(s) from the same host (/rtc/validate, LiveKit Cloud's /settings/regions, whose
            # answers point at other *.livekit.cloud hosts). Media itself is WebRTC: not CSP's.
            from urllib.parse import urlsplit

            lk = urlsplit(getattr(settings, "livekit_url", None) or "")
            if lk.scheme in ("ws", "wss", "http", "https") and lk.netloc:
                secure = lk.scheme in ("wss", "https")
                ws, http = ("wss", "https") if secure else ("ws", "http")
                hosts = [f"{ws}://{lk.netloc}", f"{http}://{lk.netloc}"]
                if (lk.hostname or "").endswith(".livekit.cloud"):
                    hosts += ["wss://*.livekit.cloud", "https://*.livekit.cloud"]
                csp = csp.replace("connect-src 'self'", "connect-src 'self' " + " ".join(hosts))
            headers["Content-Security-Policy"] = csp
            headers["X-Frame-Options"] = "DENY"
            headers["Referrer-Policy"] = "no-referrer"
            # The page asks for the microphone and nothing else.
            headers["Permissions-Policy"] = "microphone=(self), camera=(), geolocation=()"
        return FileResponse(path, media_type=CONTENT_TYPES[path.suffix.lower()], headers=headers)

    @router.get("/", include_in_schema=False, response_model=None)
    async def visitor_page(request: Request) -> Response:
        index = resolve_asset(root, "index.html")
        if index is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MSG_NOT_FOUND)
        return serve(request, index)

    @router.get("/web", include_in_schema=False)
    async def web_root() -> RedirectResponse:
        return RedirectResponse("/")

    @router.get("/web/{asset:path}", include_in_schema=False, response_model=None)
    async def visitor_asset(asset: str, request: Request) -> Response:
        path = resolve_asset(root, asset)
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MSG_NOT_FOUND)
        return serve(request, path)

    @router.websocket("/web/stream")
    async def web_stream(ws: WebSocket) -> None:
        services: Services = ws.app.state.services
        counter = app_counter(ws.app, "web_connections")  # every open socket, per address
        ip = client_ip(ws)
        bans = flood_bans(ws.app)
        if bans.banned(ip):  # its last stream flooded audio: no new work for it for a while
            services.metrics.bad_messages_total.labels("web", "flood-ban").inc()
            await ws.close(code=1008)  # before accept: the upgrade is answered with 403
            return
        limit = _setting(services, "web_max_connections_per_ip", DEFAULT_MAX_CONNECTIONS_PER_IP)
        if not counter.acquire(ip, limit):
            log.warning("web stream refused: %s has %d open streams", ip, limit)
            services.metrics.bad_messages_total.labels("web", "ip-limit").inc()
            await ws.close(code=1008)  # before accept: the upgrade is answered with 403
            return
        factory = web_session_factory(services)
        started: list[StartRequest] = []

        calls = active_calls(ws.app)

        async def make(start: StartRequest, sink: Any) -> Any:
            started.append(start)
            # The cap is checked and the slot taken in one step (no await between), and the
            # session holds it until it closes: concurrent starts cannot exceed it.
            if not await services.shared.reserve(
                calls, sink.call_id, services.settings.max_concurrent_calls
            ):
                log.warning("web call refused: at capacity", extra={"call_id": sink.call_id})
                return None
            try:
                session = await factory(start, sink)
            except BaseException:
                services.shared.cancel(calls, sink.call_id)
                raise
            if session is None:
                services.shared.cancel(calls, sink.call_id)
            else:
                calls.started(sink.call_id, session)
            return session

        try:
            transport = WebMediaStream(
                ws,
                pipeline_rate=services.settings.pipeline_sample_rate,
                max_frame_bytes=_setting(services, "web_max_frame_bytes", DEFAULT_MAX_FRAME_BYTES),
                max_messages_per_s=_setting(
                    services, "web_max_messages_per_s", DEFAULT_MAX_MESSAGES_PER_S
                ),
                max_bad_messages=services.settings.max_bad_messages,
                metrics=services.metrics,
                session_factory=make,
                jitter_ms=services.settings.inbound_jitter_ms,
                flood_limit_ms=services.settings.inbound_flood_limit_ms,
                forgive_ratio=services.settings.inbound_flood_forgive_ratio,
            )
            deadline = services.settings.stream_start_timeout_s
            if await run_with_start_deadline(
                transport.run(), started=lambda: bool(started), timeout_s=deadline
            ):
                log.warning("web stream closed: no start from %s in time", ip)
                services.metrics.bad_messages_total.labels("web", "start-timeout").inc()
            if transport.flooded:
                bans.ban(ip, services.settings.inbound_flood_ban_s)
        finally:
            counter.release(ip)

    return router


router = make_router()
