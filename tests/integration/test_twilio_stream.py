"""The Twilio webhook and media stream against a real server on loopback, message by message.

Instant engines (energy VAD, fixed transcript, tone voice) keep these fast; the protocol, the
transport and the session are the real ones.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets

import httpx
import numpy as np
import pytest
import websockets
from twilio.request_validator import RequestValidator
from websockets.exceptions import ConnectionClosed, InvalidStatus

from telephony.audio_codec import pcm16_to_mulaw
from telephony.simulator import parse_stream_twiml
from tests.integration.conftest import LiveServer, instant_engines


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def stream_sid() -> str:
    return "MZ" + secrets.token_hex(16)


def frames_of(loud: bool, ms: int) -> list[str]:
    """Base64 mu-law 20 ms frames of noise (speech to the energy VAD) or silence."""
    out = []
    rng = np.random.default_rng(1)
    for _ in range(ms // 20):
        pcm = (rng.standard_normal(160) * (6000 if loud else 0)).astype(np.int16).tobytes()
        out.append(base64.b64encode(pcm16_to_mulaw(pcm)).decode())
    return out


class RawStream:
    """A hand-driven Twilio: every message is ours to choose."""

    def __init__(self, server: LiveServer, sid: str | None = None) -> None:
        self.server = server
        self.call_sid = sid or call_sid()
        self.stream_sid = stream_sid()
        self.ws: websockets.ClientConnection | None = None
        self.received: list[dict] = []
        self.seq = 0
        self.chunk = 0

    async def webhook(self, **headers: str) -> str:
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{self.server.url}/twilio/voice",
                data={"CallSid": self.call_sid, "From": "+18095550100", "To": "+18095550199"},
                headers=headers,
            )
        assert r.status_code == 200, r.text
        return parse_stream_twiml(r.text).parameters["token"]

    async def connect(self, **headers: str) -> None:
        self.ws = await websockets.connect(
            f"ws://127.0.0.1:{self.server.port}/twilio/stream", additional_headers=headers
        )

    async def send(self, msg: dict | str) -> None:
        assert self.ws is not None
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def start(self, token: str) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.seq += 1
        await self.send(
            {
                "event": "start",
                "sequenceNumber": str(self.seq),
                "streamSid": self.stream_sid,
                "start": {
                    "accountSid": "AC" + "0" * 32,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": {"token": token, "from": "+18095550100"},
                },
            }
        )

    async def media(self, payloads: list[str], sid: str | None = None) -> None:
        for payload in payloads:
            self.seq += 1
            self.chunk += 1
            await self.send(
                {
                    "event": "media",
                    "sequenceNumber": str(self.seq),
                    "streamSid": sid or self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(self.chunk),
                        "timestamp": str(self.chunk * 20),
                        "payload": payload,
                    },
                }
            )
            await asyncio.sleep(0.02)  # real time: inbound audio is paced (flood limit)

    async def collect(self, seconds: float, echo_marks: bool = True) -> list[dict]:
        """Read for ``seconds``, echoing marks at once (an instant phone)."""
        assert self.ws is not None
        got: list[dict] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                break
            msg = json.loads(raw)
            got.append(msg)
            if echo_marks and msg["event"] == "mark":
                await self.send(
                    {"event": "mark", "streamSid": self.stream_sid, "mark": msg["mark"]}
                )
        self.received += got
        return got

    async def stop(self) -> None:
        await self.send(
            {"event": "stop", "streamSid": self.stream_sid, "stop": {"callSid": self.call_sid}}
        )


def events(msgs: list[dict]) -> list[str]:
    return [m["event"] for m in msgs]


@pytest.fixture
def server(live_server_factory) -> LiveServer:
    return live_server_factory(engines=instant_engines(), max_bad_messages=20)


async def test_full_call_over_the_protocol(server: LiveServer) -> None:
    call = RawStream(server)
    token = await call.webhook()
    await call.connect()
    await call.start(token)
    greeting = await call.collect(1.5)
    assert "media" in events(greeting) and "mark" in events(greeting)
    media = [m for m in greeting if m["event"] == "media"]
    assert all(m["streamSid"] == call.stream_sid for m in greeting)
    # Outbound audio is mu-law 8 kHz in small chunks (100 ms = 800 bytes), each with a mark.
    sizes = {len(base64.b64decode(m["media"]["payload"])) for m in media}
    assert max(sizes) <= 800
    assert events(greeting).count("mark") == len(media)

    await call.media(frames_of(True, 600) + frames_of(False, 800))
    reply = await call.collect(1.5)
    assert "media" in events(reply)
    for digit in "0#":
        await call.send({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": digit}})
    await call.collect(0.5)
    await call.stop()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(call.ws.recv(), 5)

    view = server.call_view(call.call_sid)
    await _until(lambda: view.end_reason is not None)
    assert view.end_reason == "caller-hangup"
    speakers = [t.speaker for t in view.turns]
    assert speakers[:3] == ["bot", "caller", "bot"]
    assert any(t.dtmf == "0" for t in view.turns)

    stored = await asyncio.to_thread(server.stored_call, call.call_sid)
    assert stored is not None and stored.end_reason == "caller-hangup"
    assert stored.ingress == "twilio" and stored.caller_number == "+18095550100"
    assert [t.speaker for t in stored.turns][:3] == ["bot", "caller", "bot"]
    assert stored.greeting_ms is not None and stored.greeting_ms > 0
    reply = stored.turns[2]
    assert "first_byte_ms" in reply.timings and "stt_ms" in reply.timings


async def test_bad_messages_are_ignored_and_the_call_goes_on(server: LiveServer) -> None:
    call = RawStream(server)
    token = await call.webhook()
    await call.connect()
    await call.media(frames_of(False, 40))  # media before start
    await call.start(token)
    await call.collect(0.5)
    bad = [
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"event": "bogus"}),
        json.dumps({"no": "event"}),
        json.dumps({"event": "media", "streamSid": call.stream_sid, "media": {"payload": "@@@"}}),
        json.dumps({"event": "media", "streamSid": call.stream_sid, "media": {}}),
        json.dumps({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": "xyz"}}),
        json.dumps({"event": "mark", "streamSid": call.stream_sid, "mark": {}}),
        json.dumps({"event": "start", "start": {}}),
        "x" * 70_000,  # oversized
    ]
    for msg in bad:
        await call.send(msg)
    await call.media(frames_of(True, 200), sid=stream_sid())  # another stream's media
    # Still alive: a real question gets a real answer.
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    reply = await call.collect(1.5)
    assert "media" in events(reply)
    view = server.call_view(call.call_sid)
    assert any(t.speaker == "caller" for t in view.turns)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{server.url}/metrics")).text
    assert 'taina_bad_messages_total{reason="media",transport="twilio"}' in metrics
    await call.stop()


async def test_a_flood_of_garbage_closes_only_that_stream(server: LiveServer) -> None:
    victim = RawStream(server)
    await victim.connect()
    await victim.start(await victim.webhook())
    await victim.collect(0.3)

    attacker = RawStream(server)
    await attacker.connect()
    await attacker.start(await attacker.webhook())
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            await attacker.send("{garbage")
            await asyncio.sleep(0.001)
        await asyncio.wait_for(attacker.ws.recv(), 5)
        while True:
            await asyncio.wait_for(attacker.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    await victim.media(frames_of(True, 600) + frames_of(False, 800))
    assert "media" in events(await victim.collect(1.5))
    await victim.stop()


async def test_stream_without_a_valid_token_is_refused(server: LiveServer) -> None:
    call = RawStream(server)
    await call.webhook()
    await call.connect()
    await call.start("forged-token")
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            msg = json.loads(await asyncio.wait_for(call.ws.recv(), 5))
            assert msg["event"] != "media", "no audio for an unauthenticated stream"
    assert closed.value.rcvd.code == 1008
    assert server.call_view(call.call_sid) is None


async def test_a_call_token_works_once(server: LiveServer) -> None:
    first = RawStream(server)
    token = await first.webhook()
    await first.connect()
    await first.start(token)
    assert "media" in events(await first.collect(0.5))

    replay = RawStream(server, sid=first.call_sid)
    replay.stream_sid = stream_sid()
    await replay.connect()
    await replay.start(token)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(replay.ws.recv(), 5)
    assert closed.value.rcvd.code == 1008
    await first.stop()


async def test_webhook_refuses_requests_without_a_call_sid(server: LiveServer) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{server.url}/twilio/voice", data={"From": "+1809"})
    assert r.status_code == 400


async def test_signatures_are_enforced_when_an_auth_token_is_set(live_server_factory) -> None:
    public = "https://taina.example.org"
    server = live_server_factory(
        engines=instant_engines(), twilio_auth_token="s3cret", public_url=public
    )
    validator = RequestValidator("s3cret")
    params = {"CallSid": call_sid(), "From": "+18095550100", "To": "+18095550199"}
    async with httpx.AsyncClient() as client:
        unsigned = await client.post(f"{server.url}/twilio/voice", data=params)
        assert unsigned.status_code == 403
        forged = await client.post(
            f"{server.url}/twilio/voice",
            data=params,
            headers={"X-Twilio-Signature": validator.compute_signature(f"{public}/other", params)},
        )
        assert forged.status_code == 403
        signed = await client.post(
            f"{server.url}/twilio/voice",
            data=params,
            headers={
                "X-Twilio-Signature": validator.compute_signature(f"{public}/twilio/voice", params)
            },
        )
        assert signed.status_code == 200
        stream = parse_stream_twiml(signed.text)
        assert stream.url == "wss://taina.example.org/twilio/stream"
        status = await client.post(f"{server.url}/twilio/status", data={"CallSid": "x"})
        assert status.status_code == 403

    call = RawStream(server, sid=params["CallSid"])
    with pytest.raises(InvalidStatus) as refused:
        await call.connect()
    assert refused.value.response.status_code == 403
    wrong_scheme = validator.compute_signature(f"{public}/twilio/stream", {})
    with pytest.raises(InvalidStatus):
        await call.connect(**{"X-Twilio-Signature": wrong_scheme})
    good = validator.compute_signature("wss://taina.example.org/twilio/stream", {})
    await call.connect(**{"X-Twilio-Signature": good})
    await call.start(stream.parameters["token"])
    assert "media" in events(await call.collect(0.5))
    await call.stop()


async def test_status_callbacks_health_and_metrics(server: LiveServer) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{server.url}/twilio/status",
            data={
                "CallSid": call_sid(),
                "StreamSid": stream_sid(),
                "StreamEvent": "stream-error",
                "StreamError": "handshake failed",
            },
        )
        assert r.status_code == 404  # off without TWILIO_AUTH_TOKEN: nobody can sign it
        health = (await client.get(f"{server.url}/healthz")).json()
        assert health["status"] == "ok" and health["engines"]["brain"] == "offline"

    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    await call.collect(0.5)
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    await call.collect(1.0)
    await call.stop()
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{server.url}/metrics")).text
    assert 'taina_calls_total{ingress="twilio"}' in metrics
    assert "taina_turn_latency_seconds_count 1.0" in metrics
    assert "taina_greeting_seconds_count" in metrics
    assert 'taina_stage_seconds_count{stage="stt"}' in metrics
    assert "process_cpu_seconds_total" in metrics


async def _until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_transfer_goes_through_the_twilio_rest_api(live_server_factory, fake_twilio) -> None:
    """DTMF 0 asks for a human: the server tells Twilio (REST, a local stand-in) to <Dial>."""
    account = "AC" + "1" * 32
    server = live_server_factory(
        engines=instant_engines(),
        twilio_account_sid=account,
        twilio_auth_token="tok",
        twilio_api_base_url=fake_twilio.base_url,
        transfer_number="+18095550123",
        public_url="https://taina.example.org",
    )
    validator = RequestValidator("tok")
    call = RawStream(server)
    params = {"CallSid": call.call_sid, "From": "+18095550100", "To": "+18095550199"}
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{server.url}/twilio/voice",
            data=params,
            headers={
                "X-Twilio-Signature": validator.compute_signature(
                    "https://taina.example.org/twilio/voice", params
                )
            },
        )
    token = parse_stream_twiml(r.text).parameters["token"]
    await call.connect(
        **{
            "X-Twilio-Signature": validator.compute_signature(
                "wss://taina.example.org/twilio/stream", {}
            )
        }
    )
    await call.start(token)
    await call.collect(0.5)
    for digit in "0#":
        await call.send({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": digit}})
    await call.collect(1.5)
    await _until(lambda: fake_twilio.requests)
    [request] = fake_twilio.requests
    assert request.path == f"/2010-04-01/Accounts/{account}/Calls/{call.call_sid}.json"
    twiml = request.form["Twiml"][0]
    assert "<Dial" in twiml and "+18095550123" in twiml
    view = server.call_view(call.call_sid)
    await _until(lambda: view.end_reason is not None)
    assert view.end_reason == "transfer" and view.outcome == "transferred"


async def test_the_bot_hangs_up_after_its_goodbye_is_heard(live_server_factory) -> None:
    server = live_server_factory(engines=instant_engines(stt_text="No, eso es todo. Adiós."))
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    await call.collect(0.5)
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            raw = await asyncio.wait_for(call.ws.recv(), 10)
            msg = json.loads(raw)
            if msg["event"] == "mark":  # the goodbye plays; marks echo back as it is heard
                await call.send(
                    {"event": "mark", "streamSid": call.stream_sid, "mark": msg["mark"]}
                )
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    view = server.call_view(call.call_sid)
    await _until(lambda: view.end_reason is not None)
    assert view.end_reason == "bot-hangup"
    assert "buen día" in view.turns[-1].text and not view.turns[-1].interrupted
