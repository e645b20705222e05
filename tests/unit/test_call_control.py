"""Call control against a real HTTP server on loopback standing in for api.twilio.com."""

from __future__ import annotations

import base64
import socket

import pytest

from telephony.call_control import CallControlError, TwilioCallControl
from tests.fake_twilio_rest import FakeTwilio

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token"
CALL = "CA" + "fedcba9876543210" * 2


def expected_auth() -> str:
    return "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()


async def test_hangup_posts_status_completed(fake_twilio: FakeTwilio) -> None:
    control = TwilioCallControl(ACCOUNT, TOKEN, api_base_url=fake_twilio.base_url)
    assert await control.hangup(CALL) is True
    [request] = fake_twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert request.headers["Authorization"] == expected_auth()
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.form == {"Status": ["completed"]}


async def test_transfer_replaces_twiml_with_dial(fake_twilio: FakeTwilio) -> None:
    control = TwilioCallControl(ACCOUNT, TOKEN, api_base_url=fake_twilio.base_url + "/")
    assert await control.transfer(CALL, "+18095551234", caller_id="+18295550000") is True
    [request] = fake_twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert request.headers["Authorization"] == expected_auth()
    assert list(request.form) == ["Twiml"]
    twiml = request.form["Twiml"][0]
    assert twiml.startswith("<Response>")
    assert '<Say language="es-MX">Le comunico con un agente.' in twiml
    assert '<Dial callerId="+18295550000" timeout="20"><Number>+18095551234</Number></Dial>' in (
        twiml
    )


async def test_base_url_path_prefix_is_kept(fake_twilio: FakeTwilio) -> None:
    control = TwilioCallControl(ACCOUNT, TOKEN, api_base_url=fake_twilio.base_url + "/fake/")
    await control.hangup(CALL)
    assert fake_twilio.requests[0].path == f"/fake/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"code": 20404, "message": "The requested resource was not found", "status": 404}),
        (400, {"code": 21220, "message": "Call is not in-progress", "status": 400}),
    ],
)
async def test_call_already_ended_returns_false(
    fake_twilio: FakeTwilio, status: int, body: dict
) -> None:
    fake_twilio.status, fake_twilio.body = status, body
    control = TwilioCallControl(ACCOUNT, TOKEN, api_base_url=fake_twilio.base_url)
    assert await control.hangup(CALL) is False
    assert await control.transfer(CALL, "+18095551234") is False


async def test_auth_failure_raises(fake_twilio: FakeTwilio) -> None:
    fake_twilio.status = 401
    fake_twilio.body = {"code": 20003, "message": "Authenticate", "status": 401}
    control = TwilioCallControl(ACCOUNT, TOKEN, api_base_url=fake_twilio.base_url)
    with pytest.raises(CallControlError) as info:
        await control.hangup(CALL)
    assert info.value.status == 401
    assert info.value.code == 20003


async def test_unreachable_api_raises() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    control = TwilioCallControl(ACCOUNT, TOKEN, api_base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(CallControlError):
        await control.hangup(CALL)


async def test_invalid_arguments_never_reach_twilio(fake_twilio: FakeTwilio) -> None:
    control = TwilioCallControl(ACCOUNT, TOKEN, api_base_url=fake_twilio.base_url)
    for bad_sid in ("", "CA123", "../Accounts/x", CALL + "/Recordings"):
        with pytest.raises(ValueError):
            await control.hangup(bad_sid)
    with pytest.raises(ValueError):
        await control.transfer(CALL, "8095551234")
    assert fake_twilio.requests == []


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        TwilioCallControl("", TOKEN)
    with pytest.raises(ValueError):
        TwilioCallControl(ACCOUNT, TOKEN, api_base_url="ftp://127.0.0.1")
