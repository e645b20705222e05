"""TAINA_MAX_CONCURRENT_CALLS holds exactly under three times its value in concurrent attempts.

Against a real server on loopback: nine Twilio webhooks at once with a cap of three get
exactly three ``<Connect><Stream>`` answers and six spoken Spanish refusals; nine browser calls
starting at once get exactly three calls and six clear refusals (a Spanish message, then close
1013 with a reason). ``/healthz`` reports the calls on the line while they are on it.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from telephony.simulator import new_sid, parse_stream_twiml, webhook_params
from telephony.twiml import UNAVAILABLE_MESSAGE
from telephony.web_stream import BUSY_CLOSE_REASON, MSG_BUSY
from tests.integration.conftest import LiveServer, instant_engines
from tests.integration.test_twilio_stream import RawStream

CAP = 3
ATTEMPTS = 3 * CAP


@pytest.fixture
def server(live_server_factory) -> LiveServer:
    return live_server_factory(
        engines=instant_engines(), max_concurrent_calls=CAP, web_max_connections_per_ip=50
    )


async def _healthz(server: LiveServer) -> dict:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        return (await http.get(server.url + "/healthz")).json()


async def _token(call: RawStream) -> str | None:
    """The call token of a connected call; None when the webhook refused it (<Say>)."""
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        params = {"CallSid": call.call_sid, "From": "+18095550100", "To": "+18095550199"}
        resp = await http.post(f"{call.server.url}/twilio/voice", data=params)
    assert resp.status_code == 200, resp.text
    if "<Connect>" not in resp.text:
        assert UNAVAILABLE_MESSAGE in resp.text
        return None
    return parse_stream_twiml(resp.text).parameters["token"]


async def _until(cond, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_twilio_cap_holds_under_three_times_concurrent_webhooks(server: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:

        async def webhook() -> str:
            params = webhook_params(new_sid("CA"), new_sid("AC"), "+18095550100", "+18095550199")
            resp = await http.post(server.url + "/twilio/voice", data=params)
            assert resp.status_code == 200
            return resp.text

        answers = await asyncio.gather(*(webhook() for _ in range(ATTEMPTS)))
    connected = [a for a in answers if "<Connect>" in a]
    refused = [a for a in answers if "<Connect>" not in a]
    assert len(connected) == CAP
    assert len(refused) == ATTEMPTS - CAP
    for twiml in refused:  # the refused caller hears a short Spanish "call later"
        said = [el.text for el in ET.fromstring(twiml).iter("Say")]
        assert said == [UNAVAILABLE_MESSAGE] and "más tarde" in UNAVAILABLE_MESSAGE
        assert "<Hangup" in twiml

    # The three promised streams hold the cap: a later call is refused as well.
    assert await _token(RawStream(server)) is None


async def test_twilio_streams_count_as_active_calls(server: LiveServer) -> None:
    calls = []
    for _ in range(CAP):
        call = RawStream(server)
        token = await _token(call)
        assert token is not None
        await call.connect()
        await call.start(token)
        await call.collect(0.3)
        calls.append(call)
    assert (await _healthz(server))["active_calls"] == CAP
    # One more is refused while they are on the line.
    extra = RawStream(server)
    assert await _token(extra) is None
    for call in calls:
        await call.stop()

    async def idle() -> bool:
        return (await _healthz(server))["active_calls"] == 0

    await _until(idle)
    again = RawStream(server)  # room again once they hung up
    assert await _token(again) is not None


async def test_web_cap_holds_under_three_times_concurrent_starts(server: LiveServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/web/stream"
    release = asyncio.Event()

    async def visit(i: int) -> tuple[str, object]:
        async with websockets.connect(url, proxy=None) as ws:
            await ws.send(json.dumps({"type": "start", "session": f"cap-{i}"}))
            got: list[dict] = []
            try:
                while True:
                    raw = await asyncio.wait_for(ws.recv(), 10)
                    if isinstance(raw, bytes):
                        continue
                    msg = json.loads(raw)
                    got.append(msg)
                    if msg["type"] == "started":
                        await release.wait()  # stay on the line until every attempt is judged
                        return "started", msg["call_id"]
            except ConnectionClosed as closed:
                return "refused", (closed.rcvd, got)

    tasks = [asyncio.create_task(visit(i)) for i in range(ATTEMPTS)]

    async def judged() -> bool:
        refused = sum(1 for t in tasks if t.done())
        return refused >= ATTEMPTS - CAP

    await _until(judged)
    await asyncio.sleep(0.3)
    assert (await _healthz(server))["active_calls"] == CAP
    release.set()
    results = await asyncio.gather(*tasks)
    started = [r for r in results if r[0] == "started"]
    refused = [r for r in results if r[0] == "refused"]
    assert len(started) == CAP and len(refused) == ATTEMPTS - CAP
    for _, (rcvd, got) in refused:
        assert rcvd is not None and rcvd.code == 1013 and rcvd.reason == BUSY_CLOSE_REASON
        assert {"type": "error", "message": MSG_BUSY} in [
            {k: m.get(k) for k in ("type", "message")} for m in got
        ]

    async def idle() -> bool:
        return (await _healthz(server))["active_calls"] == 0

    await _until(idle)
