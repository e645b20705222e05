"""A local LiveKit server API: the Twirp endpoints TAINA uses, over real HTTP on loopback.

The ``livekit-api`` SDK posts protobuf bodies (``Content-Type: application/protobuf``) to
``/twirp/livekit.<Service>/<Method>`` with ``Authorization: Bearer <JWT>``; this server decodes
them with the same protobuf classes, checks the JWT's HS256 signature, issuer and grants like
LiveKit does, keeps rooms/trunks/rules in memory, and records every request for assertions.
Errors are Twirp JSON (``{"code": …, "msg": …}``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import jwt
from aiohttp import web
from google.protobuf.message import Message
from livekit import api

from tests.loopback_http import serve_on_loopback


@dataclass
class Recorded:
    service: str
    method: str
    body: Message
    claims: dict[str, Any]


def _needs(service: str, method: str, body: Message, claims: dict[str, Any]) -> str | None:
    """The grant LiveKit requires for this call, or None when the claims carry it."""
    video = claims.get("video") or {}
    sip = claims.get("sip") or {}
    if service == "RoomService":
        if method == "ListRooms":
            return None if video.get("roomList") else "roomList"
        return None if video.get("roomCreate") else "roomCreate"
    if method == "TransferSIPParticipant":
        room = getattr(body, "room_name", "")
        if not (sip.get("call") and video.get("roomAdmin") and video.get("room") == room):
            return "sip.call + roomAdmin for the room"
        return None
    return None if sip.get("admin") else "sip.admin"


class FakeLiveKitTwirp:
    ROUTES: ClassVar[dict[tuple[str, str], type[Message]]] = {
        ("RoomService", "CreateRoom"): api.CreateRoomRequest,
        ("RoomService", "ListRooms"): api.ListRoomsRequest,
        ("RoomService", "DeleteRoom"): api.DeleteRoomRequest,
        ("SIP", "CreateSIPInboundTrunk"): api.CreateSIPInboundTrunkRequest,
        ("SIP", "ListSIPInboundTrunk"): api.ListSIPInboundTrunkRequest,
        ("SIP", "CreateSIPDispatchRule"): api.CreateSIPDispatchRuleRequest,
        ("SIP", "ListSIPDispatchRule"): api.ListSIPDispatchRuleRequest,
        ("SIP", "TransferSIPParticipant"): api.TransferSIPParticipantRequest,
    }

    def __init__(self, api_key: str = "APIfake", api_secret: str = "s" * 32) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.requests: list[Recorded] = []
        self.rejected: list[tuple[str, int, str]] = []
        self.rooms: dict[str, api.Room] = {}
        self.trunks: list[api.SIPInboundTrunkInfo] = []
        self.rules: list[api.SIPDispatchRuleInfo] = []
        self.transfer_fails = False
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/twirp/livekit.{service}/{method}", self._handle)
        self._runner, port = await serve_on_loopback(app)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def calls(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    # --- HTTP --------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        service, method = request.match_info["service"], request.match_info["method"]
        cls = self.ROUTES.get((service, method))
        if cls is None:
            return self._error(request, 404, "bad_route", f"no handler for {service}/{method}")
        if request.content_type != "application/protobuf":
            return self._error(request, 400, "malformed", "expected application/protobuf")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(request, 401, "unauthenticated", "missing bearer token")
        try:
            claims = jwt.decode(
                auth[7:],
                self.api_secret,
                algorithms=["HS256"],
                issuer=self.api_key,
                options={"require": ["exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return self._error(request, 401, "unauthenticated", str(exc))
        body = cls.FromString(await request.read())
        missing = _needs(service, method, body, claims)
        if missing:
            return self._error(request, 403, "permission_denied", f"needs {missing}")
        self.requests.append(Recorded(service, method, body, claims))
        handler = getattr(self, f"_{method}")
        result = handler(body)
        if isinstance(result, web.Response):
            return result
        return web.Response(body=result.SerializeToString(), content_type="application/protobuf")

    def _error(self, request: web.Request, status: int, code: str, msg: str) -> web.Response:
        self.rejected.append((request.path, status, msg))
        return web.json_response({"code": code, "msg": msg}, status=status)

    # --- RoomService -------------------------------------------------------------------------
    def _CreateRoom(self, req: api.CreateRoomRequest) -> api.Room:
        room = self.rooms.get(req.name)
        if room is None:
            room = api.Room(
                sid=f"RM_{uuid.uuid4().hex[:12]}",
                name=req.name,
                empty_timeout=req.empty_timeout,
                departure_timeout=req.departure_timeout,
                max_participants=req.max_participants,
                metadata=req.metadata,
            )
            self.rooms[req.name] = room
        return room

    def _ListRooms(self, req: api.ListRoomsRequest) -> api.ListRoomsResponse:
        names = set(req.names)
        rooms = [r for n, r in self.rooms.items() if not names or n in names]
        return api.ListRoomsResponse(rooms=rooms)

    def _DeleteRoom(self, req: api.DeleteRoomRequest) -> api.DeleteRoomResponse:
        self.rooms.pop(req.room, None)
        return api.DeleteRoomResponse()

    # --- SIP ---------------------------------------------------------------------------------
    def _CreateSIPInboundTrunk(
        self, req: api.CreateSIPInboundTrunkRequest
    ) -> api.SIPInboundTrunkInfo:
        trunk = api.SIPInboundTrunkInfo()
        trunk.CopyFrom(req.trunk)
        trunk.sip_trunk_id = f"ST_{uuid.uuid4().hex[:12]}"
        self.trunks.append(trunk)
        return trunk

    def _ListSIPInboundTrunk(
        self, req: api.ListSIPInboundTrunkRequest
    ) -> api.ListSIPInboundTrunkResponse:
        return api.ListSIPInboundTrunkResponse(items=self.trunks)

    def _CreateSIPDispatchRule(
        self, req: api.CreateSIPDispatchRuleRequest
    ) -> api.SIPDispatchRuleInfo:
        src = req.dispatch_rule if req.HasField("dispatch_rule") else req
        info = api.SIPDispatchRuleInfo(
            sip_dispatch_rule_id=f"SDR_{uuid.uuid4().hex[:12]}",
            rule=src.rule,
            trunk_ids=list(src.trunk_ids),
            name=src.name,
            metadata=src.metadata,
            room_config=src.room_config,
        )
        self.rules.append(info)
        return info

    def _ListSIPDispatchRule(
        self, req: api.ListSIPDispatchRuleRequest
    ) -> api.ListSIPDispatchRuleResponse:
        return api.ListSIPDispatchRuleResponse(items=self.rules)

    def _TransferSIPParticipant(self, req: api.TransferSIPParticipantRequest) -> Any:
        if self.transfer_fails:
            return web.json_response(
                {
                    "code": "unavailable",
                    "msg": "transfer failed",
                    "meta": {"sip_status_code": "486", "sip_status": "Busy Here"},
                },
                status=503,
            )
        return api.TransferSIPParticipantResponse(
            transfer_id=f"TR_{uuid.uuid4().hex[:8]}", status=api.STS_TRANSFER_SUCCESSFUL
        )
