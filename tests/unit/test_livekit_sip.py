"""``taina livekit setup-sip`` and SIP transfer against a local Twirp server, real SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from livekit import api

from app.settings import Settings
from telephony.livekit_sip import LiveKitControl, setup_sip
from tests.fake_livekit_twirp import FakeLiveKitTwirp

SECRET = "un-secreto-de-prueba-bastante-largo-1234"


@pytest.fixture
async def fake() -> AsyncIterator[FakeLiveKitTwirp]:
    server = FakeLiveKitTwirp(api_key="APIprueba", api_secret=SECRET)
    await server.start()
    yield server
    await server.stop()


def settings(url: str, **kw: object) -> Settings:
    return Settings(
        livekit_url=url,
        livekit_api_key="APIprueba",
        livekit_api_secret=SECRET,
        livekit_sip_trunk_numbers="+18095550000, +18295550001",
        livekit_agent_name="taina",
        **kw,
    )


async def test_setup_creates_trunk_and_dispatch_rule(fake: FakeLiveKitTwirp) -> None:
    result = await setup_sip(
        settings(fake.url, livekit_sip_auth_username="twilio", livekit_sip_auth_password="clave")
    )
    assert result.trunk_created and result.rule_created

    (trunk_call,) = fake.calls("CreateSIPInboundTrunk")
    trunk = trunk_call.body.trunk
    assert trunk.name == "taina-entrada"
    assert list(trunk.numbers) == ["+18095550000", "+18295550001"]
    assert trunk.auth_username == "twilio" and trunk.auth_password == "clave"
    assert trunk_call.claims["sip"]["admin"] is True

    (rule_call,) = fake.calls("CreateSIPDispatchRule")
    rule = rule_call.body.dispatch_rule
    assert rule.name == "taina-despacho"
    assert list(rule.trunk_ids) == [result.trunk_id]
    assert rule.rule.WhichOneof("rule") == "dispatch_rule_individual"
    assert rule.rule.dispatch_rule_individual.room_prefix == "call-"
    assert [a.agent_name for a in rule.room_config.agents] == ["taina"]
    assert rule.room_config.max_participants == 2
    assert result.rule_id == fake.rules[0].sip_dispatch_rule_id


async def test_setup_is_idempotent(fake: FakeLiveKitTwirp) -> None:
    first = await setup_sip(settings(fake.url))
    second = await setup_sip(settings(fake.url))
    assert not second.trunk_created and not second.rule_created
    assert (second.trunk_id, second.rule_id) == (first.trunk_id, first.rule_id)
    assert len(fake.calls("CreateSIPInboundTrunk")) == 1
    assert len(fake.calls("CreateSIPDispatchRule")) == 1
    assert len(fake.calls("ListSIPInboundTrunk")) == 2
    assert len(fake.calls("ListSIPDispatchRule")) == 2


async def test_setup_without_auth_leaves_credentials_empty(fake: FakeLiveKitTwirp) -> None:
    await setup_sip(settings(fake.url))
    trunk = fake.calls("CreateSIPInboundTrunk")[0].body.trunk
    assert trunk.auth_username == "" and trunk.auth_password == ""


async def test_wrong_secret_is_refused(fake: FakeLiveKitTwirp) -> None:
    s = settings(fake.url)
    s.livekit_api_secret = "otro-secreto-igual-de-largo-que-el-bueno"
    with pytest.raises(api.ServerError):
        await setup_sip(s)
    assert fake.rejected and fake.rejected[0][1] == 401
    assert fake.trunks == []


async def test_transfer_sip_participant(fake: FakeLiveKitTwirp) -> None:
    control = LiveKitControl(settings(fake.url))
    try:
        ok = await control.transfer_sip("call-+18095550100_abc", "sip_+18095550100", "tel:+1809")
        assert ok
        (call,) = fake.calls("TransferSIPParticipant")
        assert call.body.room_name == "call-+18095550100_abc"
        assert call.body.participant_identity == "sip_+18095550100"
        assert call.body.transfer_to == "tel:+1809"
        assert call.claims["sip"]["call"] is True
        assert call.claims["video"]["roomAdmin"] is True
        assert call.claims["video"]["room"] == "call-+18095550100_abc"

        fake.transfer_fails = True
        with pytest.raises(api.SipCallError) as err:
            await control.transfer_sip("call-x", "sip_x", "tel:+1809")
        assert err.value.sip_status_code == 486
    finally:
        await control.aclose()


async def test_room_control_lists_and_deletes(fake: FakeLiveKitTwirp) -> None:
    control = LiveKitControl(settings(fake.url))
    try:
        fake.rooms["web-1"] = api.Room(name="web-1")
        fake.rooms["call-2"] = api.Room(name="call-2")
        assert sorted(await control.list_rooms()) == ["call-2", "web-1"]
        await control.delete_room("web-1")
        assert list(fake.rooms) == ["call-2"]
        assert fake.calls("ListRooms")[0].claims["video"]["roomList"] is True
    finally:
        await control.aclose()
