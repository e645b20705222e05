"""Twilio's three entry points: the voice webhook, stream status callbacks, the media stream."""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Request, Response, WebSocket

from app.call_factory import WebhookClock, twilio_session_factory
from app.connection_limits import (
    Slot,
    active_calls,
    app_counter,
    call_registry,
    client_ip,
    flood_bans,
    run_with_start_deadline,
)
from app.services import Services
from telephony.call_control import TwilioCallControl
from telephony.twilio_protocol import Start
from telephony.twilio_stream import SessionFactory, SessionLike, TwilioMediaStream
from telephony.twiml import connect_stream_twiml, stream_url, unavailable_twiml

log = logging.getLogger("taina.twilio")
router = APIRouter(tags=["twilio"])

_CALL_SID_RE = re.compile(r"CA[0-9a-fA-F]{32}")


def _services(request: Request | WebSocket) -> Services:
    return request.app.state.services


def _public_base(request: Request, services: Services) -> str:
    """The https base Twilio reaches us at: PUBLIC_URL, else what the proxy says, else Host."""
    if services.settings.public_url:
        return services.settings.public_url.rstrip("/")
    proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or "localhost"
    return f"{proto}://{host.split(',')[0].strip()}"


def _printable(text: str) -> str:
    """Log-safe: control characters (a forged line break in a log) become U+FFFD."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)


def _xml(body: str, status: int = 200) -> Response:
    return Response(content=body, media_type="text/xml", status_code=status)


@router.post("/twilio/voice", summary="Twilio voice webhook: answers with <Connect><Stream>")
async def voice_webhook(request: Request) -> Response:
    services = _services(request)
    if services.signatures is None and flood_bans(request.app).banned(client_ip(request)):
        # Unsigned mode: this address's last stream flooded audio; no new call for it yet.
        retry = str(max(1, int(services.settings.inbound_flood_ban_s)))
        return Response(status_code=429, headers={"Retry-After": retry})
    form = await request.form()
    call_sid = str(form.get("CallSid") or "")
    if services.signatures is not None:
        check = services.signatures.verify_webhook(str(request.url), request.headers, form)
        if not check:
            log.warning(
                "voice webhook refused: signature %s",
                check.reason,
                extra={"call_id": call_sid or "-"},
            )
            return Response(status_code=403)
    if not _CALL_SID_RE.fullmatch(call_sid):
        log.warning("voice webhook without a valid CallSid")
        return Response("missing or malformed CallSid", status_code=400)
    if not all(str(form.get(k) or "").isprintable() for k in ("From", "To")):
        # Control characters are not from Twilio; refused before the CallSid is used up.
        log.warning("voice webhook with control characters in From/To", extra={"call_id": call_sid})
        return Response("malformed From or To", status_code=400)
    registry = call_registry(request.app, services.settings.twilio_replay_window_s)
    window = services.settings.twilio_replay_window_s
    if not registry.first_webhook(call_sid) or not await services.shared.first(
        "webhook", call_sid, window
    ):
        # Twilio asks once per call: this is a replayed request (to this process or, with
        # Redis, to any process of the deployment). No new call token for it.
        log.warning("voice webhook replayed: refused", extra={"call_id": call_sid})
        return Response("call already answered", status_code=409)
    if services.drain.draining:  # shutting down: the caller hears the Spanish refusal
        log.info("server draining: call declined", extra={"call_id": call_sid})
        return _xml(unavailable_twiml())
    # The slot is promised here, checked and taken in one step (no await between), so
    # concurrent webhooks cannot exceed the cap; the stream's session then holds it.
    limit = services.settings.max_concurrent_calls
    promise_s = max(services.settings.stream_start_timeout_s, 10.0)
    if not await services.shared.promise(active_calls(request.app), call_sid, limit, promise_s):
        log.warning("at capacity (%d calls): call declined", limit, extra={"call_id": call_sid})
        return _xml(unavailable_twiml())
    clock: WebhookClock = request.app.state.webhook_clock
    clock.mark(call_sid)
    services.drain.stream_promised()
    base = _public_base(request, services)
    params = {"token": services.tokens.mint(call_sid)}
    for key, name in (("From", "from"), ("To", "to")):
        value = str(form.get(key) or "")[:64]
        if value:
            params[name] = value
    # Without a token /twilio/status is off, so Twilio is not asked to call it.
    callback = f"{base}/twilio/status" if services.signatures is not None else None
    twiml = connect_stream_twiml(stream_url(base), status_callback=callback, parameters=params)
    log.info("incoming call from %s", params.get("from", "?"), extra={"call_id": call_sid})
    return _xml(twiml)


@router.post("/twilio/status", summary="Twilio stream status callback", status_code=204)
async def stream_status(request: Request) -> Response:
    """Writes a stream event to the database, so only Twilio may call it: with a valid
    signature, and not at all when no ``TWILIO_AUTH_TOKEN`` is set (then the TwiML asks for no
    status callbacks, and anyone else would be writing anonymous records)."""
    services = _services(request)
    if services.signatures is None:
        return Response(status_code=404)
    form = await request.form()
    call_sid = _printable(str(form.get("CallSid") or "-")[:64])
    check = services.signatures.verify_webhook(str(request.url), request.headers, form)
    if not check:
        log.warning(
            "status callback refused: signature %s", check.reason, extra={"call_id": call_sid}
        )
        return Response(status_code=403)
    event = str(form.get("StreamEvent") or "")[:40]
    error = str(form.get("StreamError") or "")[:500]
    level = logging.WARNING if event == "stream-error" else logging.INFO
    log.log(level, "stream status %s %s", event, error, extra={"call_id": call_sid})
    services.recorder.stream_event(
        call_sid,
        str(form.get("StreamSid") or "")[:64] or None,
        event or "unknown",
        error=error or None,
        payload={k: str(v)[:500] for k, v in list(form.items())[:40]},
    )
    return Response(status_code=204)


@router.websocket("/twilio/stream")
async def media_stream(ws: WebSocket) -> None:
    services = _services(ws)
    settings = services.settings
    if services.signatures is not None:
        check = services.signatures.verify_stream(ws.url.path, ws.headers.get("host"), ws.headers)
        if not check:
            log.warning("media stream refused: signature %s", check.reason)
            await ws.close(code=1008)  # before accept: the upgrade is answered with 403
            return
    # Until its start is valid a socket is "pending": capped per address, and closed when it
    # stays silent past the deadline. Started calls are not counted (Twilio's few addresses
    # carry many calls); max_concurrent_calls caps those.
    ip = client_ip(ws)
    # Unsigned streams only (signed ones come from Twilio's shared addresses): an address
    # whose last stream flooded audio gets no new stream for a while.
    bans = flood_bans(ws.app) if services.signatures is None else None
    if bans is not None and bans.banned(ip):
        services.metrics.bad_messages_total.labels("twilio", "flood-ban").inc()
        await ws.close(code=1008)  # before accept: the upgrade is answered with 403
        return
    pending = app_counter(ws.app, "twilio_pending")
    if not pending.acquire(ip, settings.twilio_max_pending_per_ip):
        log.warning("media stream refused: %s has %d streams not started", ip, pending.count(ip))
        services.metrics.bad_messages_total.labels("twilio", "ip-limit").inc()
        await ws.close(code=1008)  # before accept: the upgrade is answered with 403
        return
    slot = Slot(pending, ip)
    claimed: list[str] = []
    transport = TwilioMediaStream(
        ws,
        pipeline_rate=settings.phone_pipeline_rate,
        max_message_bytes=settings.max_ws_message_bytes,
        max_bad_messages=settings.max_bad_messages,
        metrics=services.metrics,
        session_factory=_one_stream_per_call(ws, services, slot, claimed),
        transfer_handler=_transfer_handler(services),
        jitter_ms=settings.inbound_jitter_ms,
        flood_limit_ms=settings.inbound_flood_limit_ms,
        forgive_ratio=settings.inbound_flood_forgive_ratio,
    )
    try:
        timed_out = await run_with_start_deadline(
            transport.run(),
            started=lambda: slot.released,
            timeout_s=settings.stream_start_timeout_s,
        )
        if timed_out:
            log.warning("media stream closed: no valid start from %s in time", ip)
            services.metrics.bad_messages_total.labels("twilio", "start-timeout").inc()
        if bans is not None and transport.flooded:
            bans.ban(ip, settings.inbound_flood_ban_s)
    finally:
        slot.release()
        registry = call_registry(ws.app, settings.twilio_replay_window_s)
        for call_sid in claimed:
            registry.stream_ended(call_sid)


def _one_stream_per_call(
    ws: WebSocket, services: Services, slot: Slot, claimed: list[str]
) -> SessionFactory:
    """The session factory, behind two guards: the stream stops being pending once a start
    arrives, and a CallSid gets one stream (a replayed start is refused whatever its token)."""
    inner = twilio_session_factory(services, ws.app.state.webhook_clock)
    registry = call_registry(ws.app, services.settings.twilio_replay_window_s)
    calls = active_calls(ws.app)

    async def make(start: Start, sink: TwilioMediaStream) -> SessionLike | None:
        slot.release()
        window = services.settings.twilio_replay_window_s
        if not registry.claim_stream(start.call_sid):
            log.warning(
                "stream refused: call already has a stream", extra={"call_id": start.call_sid}
            )
            return None
        if not await services.shared.first("stream", start.call_sid, window):
            registry.unclaim_stream(start.call_sid)  # streamed on another process
            log.warning(
                "stream refused: call already has a stream", extra={"call_id": start.call_sid}
            )
            return None
        # The webhook's promised slot (or, if it lapsed, a free one): the cap holds here too.
        if not await services.shared.reserve(
            calls, start.call_sid, services.settings.max_concurrent_calls
        ):
            registry.unclaim_stream(start.call_sid)
            services.shared.forget("stream", start.call_sid)
            log.warning("stream refused: at capacity", extra={"call_id": start.call_sid})
            return None
        try:
            session = await inner(start, sink)
        except BaseException:
            registry.unclaim_stream(start.call_sid)
            services.shared.forget("stream", start.call_sid)
            services.shared.cancel(calls, start.call_sid)
            raise
        if session is None:  # bad token: this stream never existed
            registry.unclaim_stream(start.call_sid)
            services.shared.forget("stream", start.call_sid)
            services.shared.cancel(calls, start.call_sid)
            return None
        calls.started(start.call_sid, session)
        claimed.append(start.call_sid)
        return session

    return make


def _transfer_handler(services: Services):
    s = services.settings
    if not (s.twilio_account_sid and s.twilio_auth_token and s.transfer_number):
        return None
    control = TwilioCallControl(s.twilio_account_sid, s.twilio_auth_token, s.twilio_api_base_url)
    number = s.transfer_number

    async def transfer(call_sid: str, target: str | None) -> bool:
        return await control.transfer(call_sid, target or number)

    return transfer
