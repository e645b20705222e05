"""``POST /livekit/webhook``: LiveKit tells TAINA a room wants an agent.

Configure LiveKit's ``webhook.urls`` with ``{PUBLIC_URL}/livekit/webhook`` (any ``taina serve``
process behind the balancer may receive it). The request is verified with ``livekit-api``'s
``WebhookReceiver`` (a JWT signed with the API secret carrying the body's SHA-256): anything
else is 401. ``room_started`` and ``participant_joined`` for TAINA's rooms (web and SIP
prefixes) announce the room to the agent workers through Redis (telephony/livekit_dispatch.py);
``room_finished`` withdraws it. Without LiveKit keys or without Redis the route answers 404 and
the agent finds rooms by polling, as one worker (``taina livekit-agent --poll``).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from telephony.livekit_dispatch import DISPATCH_EVENTS, RoomDispatch, webhook_event

log = logging.getLogger("taina.livekit")

router = APIRouter(tags=["livekit"])

MAX_BODY_BYTES = 64 * 1024  # LiveKit's events are a few KB


def _dispatch(request: Request) -> RoomDispatch | None:
    services = request.app.state.services
    s = services.settings
    client = services.shared.client
    if client is None or not (s.livekit_api_key and s.livekit_api_secret):
        return None
    dispatch: RoomDispatch | None = getattr(request.app.state, "livekit_dispatch", None)
    if dispatch is None:
        dispatch = RoomDispatch(client, s.redis_prefix, lease_s=s.livekit_claim_lease_s)
        request.app.state.livekit_dispatch = dispatch
    return dispatch


@router.post(
    "/livekit/webhook",
    summary="LiveKit webhook: a room wants an agent",
    status_code=204,
    include_in_schema=False,
)
async def livekit_webhook(request: Request) -> Response:
    dispatch = _dispatch(request)
    if dispatch is None:
        return Response(status_code=404)
    s = request.app.state.services.settings
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return Response(status_code=413)
    try:
        event = webhook_event(
            raw.decode("utf-8"),
            request.headers.get("authorization"),
            s.livekit_api_key,
            s.livekit_api_secret,
        )
    except (PermissionError, UnicodeDecodeError) as exc:
        log.warning("LiveKit webhook refused: %s", exc)
        return Response(status_code=401)
    room = event.room.name
    if not room.startswith((s.livekit_room_prefix, s.livekit_sip_room_prefix)):
        return Response(status_code=204)  # someone else's room
    if event.event in DISPATCH_EVENTS:
        if await dispatch.announce(room):
            log.info("LiveKit room %s announced to the agents (%s)", room, event.event)
    elif event.event == "room_finished":
        await dispatch.forget(room)
    return Response(status_code=204)
