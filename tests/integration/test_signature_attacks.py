"""Webhook and media-stream signatures under attack-shaped input, on a live server with
``TWILIO_AUTH_TOKEN`` set.

Twilio's signatures carry no timestamp, so anything signed once can be sent again: a replayed
voice webhook answers 409 without a new call token, and a CallSid gets one media stream
(a replayed ``start`` is refused, with the same token or another one, during the call and
after it). Tampered parameters, URL or host, missing, empty, duplicated or huge signature
headers are refused — on the WebSocket before the upgrade is accepted (HTTP 403, never 101).
Nothing is recorded for a refused request, and the server stays healthy.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from twilio.request_validator import RequestValidator
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.connection_limits import call_registry
from telephony.simulator import parse_stream_twiml
from tests.integration.conftest import LiveServer, instant_engines
from tests.integration.test_twilio_stream import RawStream, call_sid, frames_of, stream_sid

TOKEN = "s3cret-auth-token"
PUBLIC = "https://taina.example.org"
VOICE = f"{PUBLIC}/twilio/voice"
STREAM = "wss://taina.example.org/twilio/stream"
validator = RequestValidator(TOKEN)


def sign(url: str, params: dict[str, str] | None = None, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params or {})


def form(sid: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "From": "+18095550100",
        "To": "+18095550199",
        "CallStatus": "ringing",
    }


@pytest.fixture
def server(live_server_factory) -> LiveServer:
    return live_server_factory(
        engines=instant_engines(), twilio_auth_token=TOKEN, public_url=PUBLIC
    )


def post(server: LiveServer, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", data=data, headers=headers, timeout=10)


def calls_started(server: LiveServer) -> float:
    registry = server.services.metrics.registry
    return registry.get_sample_value("taina_calls_total", {"ingress": "twilio"}) or 0.0


def healthy(server: LiveServer) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=5).json()["status"] == "ok"


async def signed_stream(server: LiveServer, sid: str, token: str) -> RawStream:
    call = RawStream(server, sid=sid)
    await call.connect(**{"X-Twilio-Signature": sign(STREAM)})
    await call.start(token)
    return call


async def closed_code(call: RawStream, timeout: float = 5.0) -> int | None:
    """Read until the server closes the socket; its close code. Fails if audio arrives."""
    assert call.ws is not None
    try:
        while True:
            msg = json.loads(await asyncio.wait_for(call.ws.recv(), timeout))
            assert msg["event"] != "media", "a refused stream got audio"
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def _until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_replayed_webhook_gets_no_second_call(server: LiveServer) -> None:
    sid = call_sid()
    params = form(sid)
    headers = {"X-Twilio-Signature": sign(VOICE, params)}
    first = post(server, "/twilio/voice", params, **headers)
    assert first.status_code == 200
    token = parse_stream_twiml(first.text).parameters["token"]

    # The same signed request again, before the stream connects: no TwiML, no new token.
    replay = post(server, "/twilio/voice", params, **headers)
    assert replay.status_code == 409 and "<Stream" not in replay.text

    call = await signed_stream(server, sid, token)
    assert "media" in [m["event"] for m in await call.collect(0.5)]
    # And again while the call is live.
    replay = post(server, "/twilio/voice", params, **headers)
    assert replay.status_code == 409 and "token" not in replay.text
    assert server.services.recent.active == 1
    assert call_registry(server.app, 3600).live == 1

    # The live call is untouched by the replays.
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    assert "media" in [m["event"] for m in await call.collect(1.5)]
    await call.stop()
    view = server.call_view(sid)
    await _until(lambda: view.end_reason is not None)
    assert view.end_reason == "caller-hangup"
    assert post(server, "/twilio/voice", params, **headers).status_code == 409
    assert healthy(server)


async def test_a_replayed_start_is_refused_during_and_after_the_call(server: LiveServer) -> None:
    sid = call_sid()
    params = form(sid)
    r = post(server, "/twilio/voice", params, **{"X-Twilio-Signature": sign(VOICE, params)})
    token = parse_stream_twiml(r.text).parameters["token"]
    call = await signed_stream(server, sid, token)
    await call.collect(0.5)
    calls_before = calls_started(server)

    # During the call: the same start (same token) on a second signed socket.
    replay = RawStream(server, sid=sid)
    replay.stream_sid = stream_sid()
    await replay.connect(**{"X-Twilio-Signature": sign(STREAM)})
    await replay.start(token)
    assert await closed_code(replay) == 1008
    # Another valid token for the same CallSid (as a second process could have minted): the
    # CallSid already has its stream.
    other = RawStream(server, sid=sid)
    await other.connect(**{"X-Twilio-Signature": sign(STREAM)})
    await other.start(server.services.tokens.mint(sid))
    assert await closed_code(other) == 1008

    # The real call goes on, then ends.
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    assert "media" in [m["event"] for m in await call.collect(1.5)]
    await call.stop()
    view = server.call_view(sid)
    await _until(lambda: view.end_reason is not None)

    # After the call: the one-time token, and a fresh token for that CallSid, are refused.
    for attempt_token in (token, server.services.tokens.mint(sid)):
        late = RawStream(server, sid=sid)
        await late.connect(**{"X-Twilio-Signature": sign(STREAM)})
        await late.start(attempt_token)
        assert await closed_code(late) == 1008
    assert calls_started(server) == calls_before
    assert view.end_reason == "caller-hangup" and server.services.recent.active == 0
    assert call_registry(server.app, 3600).live == 0

    # A refused start with a bad token does not burn a CallSid that has not streamed yet.
    fresh = call_sid()
    fparams = form(fresh)
    r = post(server, "/twilio/voice", fparams, **{"X-Twilio-Signature": sign(VOICE, fparams)})
    good = parse_stream_twiml(r.text).parameters["token"]
    forged = await signed_stream(server, fresh, good[:-6] + "AAAAAA")
    assert await closed_code(forged) == 1008
    real = await signed_stream(server, fresh, good)
    assert "media" in [m["event"] for m in await real.collect(0.5)]
    await real.stop()


def test_tampered_webhooks_are_refused_and_leave_no_trace(server: LiveServer) -> None:
    sid = call_sid()
    params = form(sid)
    good = sign(VOICE, params)
    attacks: list[tuple[str, dict[str, str], dict[str, str], str]] = [
        ("changed parameter", {**params, "From": "+18095550666"}, {"X-Twilio-Signature": good}, ""),
        ("added parameter", {**params, "Extra": "1"}, {"X-Twilio-Signature": good}, ""),
        (
            "removed parameter",
            {k: v for k, v in params.items() if k != "To"},
            {"X-Twilio-Signature": good},
            "",
        ),
        ("other URL", params, {"X-Twilio-Signature": sign(f"{PUBLIC}/other", params)}, ""),
        ("query added", params, {"X-Twilio-Signature": good}, "?tenant=x"),
        (
            "http instead of https",
            params,
            {"X-Twilio-Signature": sign(VOICE.replace("https", "http"), params)},
            "",
        ),
        ("other auth token", params, {"X-Twilio-Signature": sign(VOICE, params, "other")}, ""),
        ("missing header", params, {}, ""),
        ("empty header", params, {"X-Twilio-Signature": ""}, ""),
        ("padding only", params, {"X-Twilio-Signature": "===="}, ""),
        ("not base64", params, {"X-Twilio-Signature": "!!!not-a-signature!!!"}, ""),
        ("long header", params, {"X-Twilio-Signature": good * 20}, ""),
    ]
    for name, data, headers, query in attacks:
        r = httpx.post(f"{server.url}/twilio/voice{query}", data=data, headers=headers, timeout=10)
        assert r.status_code == 403, (name, r.status_code, r.text)
        assert "<Stream" not in r.text
    # A 64 KB header: refused by the HTTP parser or by the check, never accepted or a 500.
    r = httpx.post(
        f"{server.url}/twilio/voice",
        data=params,
        headers={"X-Twilio-Signature": "A" * 65536},
        timeout=10,
    )
    assert r.status_code in (400, 403, 413, 431), r.status_code
    # The status callback is held to the same rule.
    status = {"CallSid": sid, "StreamSid": stream_sid(), "StreamEvent": "stream-started"}
    r = post(server, "/twilio/status", status, **{"X-Twilio-Signature": sign(VOICE, status)})
    assert r.status_code == 403
    # Nothing was recorded for any of them, and the genuine request still works once.
    assert server.call_view(sid) is None
    assert call_registry(server.app, 3600).first_webhook(sid)  # the CallSid was never answered
    assert healthy(server)


def test_a_tampered_host_is_refused_without_public_url(live_server_factory) -> None:
    """Without PUBLIC_URL the signed URL comes from Host (and X-Forwarded-* from a trusted
    proxy only): changing Host breaks the signature; forwarded headers from an untrusted peer
    are dropped, so they can neither break a genuine signature nor stand in for a forged one."""
    server = live_server_factory(engines=instant_engines(), twilio_auth_token=TOKEN)
    local = f"http://127.0.0.1:{server.port}/twilio/voice"
    params = form(call_sid())
    ok = post(server, "/twilio/voice", params, **{"X-Twilio-Signature": sign(local, params)})
    assert ok.status_code == 200
    params = form(call_sid())
    r = post(
        server,
        "/twilio/voice",
        params,
        Host="evil.example.org",
        **{"X-Twilio-Signature": sign(local, params)},
    )
    assert r.status_code == 403
    for headers in (
        {"X-Forwarded-Host": "evil.example.org"},
        {"X-Forwarded-Proto": "https"},
        {"X-Forwarded-Host": "bad host/with spaces"},
        {"X-Forwarded-Proto": "javascript"},
    ):
        # Signed for the forged URL: refused (the header is not believed).
        params = form(call_sid())
        forged = "https://evil.example.org/twilio/voice"
        r = post(
            server,
            "/twilio/voice",
            params,
            **{"X-Twilio-Signature": sign(forged, params)},
            **headers,
        )
        assert r.status_code == 403, headers
        # Signed for the real URL: the dropped header changes nothing.
        params = form(call_sid())
        r = post(
            server,
            "/twilio/voice",
            params,
            **{"X-Twilio-Signature": sign(local, params)},
            **headers,
        )
        assert r.status_code == 200, headers


def test_forwarded_headers_from_a_trusted_proxy_rebuild_the_signed_url(
    live_server_factory,
) -> None:
    """With TAINA_TRUSTED_PROXIES naming the peer (here loopback), X-Forwarded-Proto/-Host
    are the public URL Twilio signed; malformed ones are a clear 400, never a 500."""
    server = live_server_factory(
        engines=instant_engines(), twilio_auth_token=TOKEN, trusted_proxies="127.0.0.1/32"
    )
    public = "https://abc.ngrok.app/twilio/voice"
    via_proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "abc.ngrok.app"}
    params = form(call_sid())
    r = post(
        server, "/twilio/voice", params, **{"X-Twilio-Signature": sign(public, params)}, **via_proxy
    )
    assert r.status_code == 200 and "wss://abc.ngrok.app/twilio/stream" in r.text
    params = form(call_sid())
    local = f"http://127.0.0.1:{server.port}/twilio/voice"
    r = post(
        server, "/twilio/voice", params, **{"X-Twilio-Signature": sign(local, params)}, **via_proxy
    )
    assert r.status_code == 403
    for bad in (
        {"X-Forwarded-Host": ":80"},
        {"X-Forwarded-Host": "@"},
        {"X-Forwarded-Proto": "javascript"},
        {"X-Forwarded-For": "not-an-ip"},
    ):
        r = post(server, "/twilio/voice", form(call_sid()), **bad)
        assert r.status_code == 400, bad
        assert r.json()["detail"] == "Las cabeceras X-Forwarded-* no son válidas."


async def test_stream_upgrades_with_bad_signatures_are_refused_before_accept(
    server: LiveServer,
) -> None:
    url = f"ws://127.0.0.1:{server.port}/twilio/stream"
    attacks = {
        "missing": {},
        "empty": {"X-Twilio-Signature": ""},
        "ws scheme": {"X-Twilio-Signature": sign(STREAM.replace("wss", "ws"))},
        "https scheme": {"X-Twilio-Signature": sign(STREAM.replace("wss", "https"))},
        "other path": {"X-Twilio-Signature": sign(STREAM + "x")},
        "other host": {"X-Twilio-Signature": sign("wss://evil.example.org/twilio/stream")},
        "with params": {"X-Twilio-Signature": sign(STREAM, {"CallSid": call_sid()})},
        "other token": {"X-Twilio-Signature": sign(STREAM, token="other")},
        "long": {"X-Twilio-Signature": sign(STREAM) * 10},
        "huge": {"X-Twilio-Signature": "A" * 65536},
    }
    for name, headers in attacks.items():
        with pytest.raises((InvalidStatus, ConnectionClosed, OSError, TimeoutError)) as refused:
            async with websockets.connect(url, additional_headers=headers, open_timeout=2) as ws:
                await ws.recv()  # only reached if the upgrade was accepted: it must not be
        if isinstance(refused.value, InvalidStatus):
            assert refused.value.response.status_code in (400, 403, 431), name
        else:
            # uvicorn's default WebSocket implementation (websockets-sansio) neither answers
            # nor closes an upgrade whose header line passes 8 KB (docs/RELIABILITY.md): the
            # request never reaches the app and is never accepted.
            assert name == "huge", (name, refused.value)
    pending = getattr(server.app.state, "twilio_pending", None)
    assert pending is None or pending.total == 0
    assert server.services.recent.active == 0
    # The genuine signature still opens a stream.
    sid = call_sid()
    params = form(sid)
    r = post(server, "/twilio/voice", params, **{"X-Twilio-Signature": sign(VOICE, params)})
    call = await signed_stream(server, sid, parse_stream_twiml(r.text).parameters["token"])
    assert "media" in [m["event"] for m in await call.collect(0.5)]
    await call.stop()
