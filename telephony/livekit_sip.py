"""LiveKit's server API for TAINA: SIP setup (``taina livekit setup-sip``) and call control.

Phone calls can reach TAINA through LiveKit SIP instead of Twilio Media Streams: an inbound
trunk accepts the INVITEs for the office's numbers, and a dispatch rule puts each caller in a
room of their own (``call-<number>_<random>``) with the TAINA agent dispatched to it. Both are
created through ``livekit-api``'s SIP service (Twirp), looked up by name first so running the
command twice changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.settings import Settings

log = logging.getLogger("taina.livekit")


@dataclass(frozen=True)
class SipSetup:
    trunk_id: str
    trunk_created: bool
    rule_id: str
    rule_created: bool
    numbers: list[str]


def trunk_numbers(s: Settings) -> list[str]:
    return [n.strip() for n in s.livekit_sip_trunk_numbers.split(",") if n.strip()]


def _api(s: Settings):  # -> api.LiveKitAPI
    from livekit import api

    if not (s.livekit_url and s.livekit_api_key and s.livekit_api_secret):
        raise RuntimeError("LIVEKIT_URL, LIVEKIT_API_KEY y LIVEKIT_API_SECRET son necesarios.")
    return api.LiveKitAPI(s.livekit_url, s.livekit_api_key, s.livekit_api_secret)


async def setup_sip(s: Settings) -> SipSetup:
    """Create (or find) the inbound trunk and the dispatch rule."""
    from livekit import api

    numbers = trunk_numbers(s)
    lk = _api(s)
    try:
        trunks = await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())
        trunk = next((t for t in trunks.items if t.name == s.livekit_sip_trunk_name), None)
        trunk_created = trunk is None
        if trunk is None:
            info = api.SIPInboundTrunkInfo(name=s.livekit_sip_trunk_name, numbers=numbers)
            if s.livekit_sip_auth_username and s.livekit_sip_auth_password:
                info.auth_username = s.livekit_sip_auth_username
                info.auth_password = s.livekit_sip_auth_password
            trunk = await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=info))
            log.info("created SIP inbound trunk %s", trunk.sip_trunk_id)
        elif sorted(trunk.numbers) != sorted(numbers):
            log.warning(
                "trunk %s exists with numbers %s (settings say %s); left unchanged",
                trunk.sip_trunk_id,
                list(trunk.numbers),
                numbers,
            )

        rules = await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())
        rule = next((r for r in rules.items if r.name == s.livekit_sip_dispatch_name), None)
        rule_created = rule is None
        if rule is None:
            rule = await lk.sip.create_dispatch_rule(
                api.CreateSIPDispatchRuleRequest(
                    dispatch_rule=api.SIPDispatchRuleInfo(
                        name=s.livekit_sip_dispatch_name,
                        trunk_ids=[trunk.sip_trunk_id],
                        rule=api.SIPDispatchRule(
                            dispatch_rule_individual=api.SIPDispatchRuleIndividual(
                                room_prefix=s.livekit_sip_room_prefix
                            )
                        ),
                        room_config=api.RoomConfiguration(
                            max_participants=2,
                            empty_timeout=s.livekit_empty_timeout_s,
                            departure_timeout=s.livekit_departure_timeout_s,
                            agents=[api.RoomAgentDispatch(agent_name=s.livekit_agent_name)],
                        ),
                    )
                )
            )
            log.info("created SIP dispatch rule %s", rule.sip_dispatch_rule_id)
        return SipSetup(
            trunk_id=trunk.sip_trunk_id,
            trunk_created=trunk_created,
            rule_id=rule.sip_dispatch_rule_id,
            rule_created=rule_created,
            numbers=list(trunk.numbers),
        )
    finally:
        await lk.aclose()


class LiveKitControl:
    """``RoomControl`` over the real API: delete a room, transfer a SIP participant (REFER)."""

    def __init__(self, s: Settings) -> None:
        self._lk = _api(s)

    async def delete_room(self, room: str) -> None:
        from livekit import api

        await self._lk.room.delete_room(api.DeleteRoomRequest(room=room))

    async def list_rooms(self) -> list[str]:
        from livekit import api

        resp = await self._lk.room.list_rooms(api.ListRoomsRequest())
        return [r.name for r in resp.rooms]

    async def transfer_sip(self, room: str, identity: str, transfer_to: str) -> bool:
        from livekit import api

        resp = await self._lk.sip.transfer_sip_participant(
            api.TransferSIPParticipantRequest(
                room_name=room,
                participant_identity=identity,
                transfer_to=transfer_to,
                play_dialtone=False,
            )
        )
        return resp.status != api.STS_TRANSFER_FAILED

    async def aclose(self) -> None:
        await self._lk.aclose()
