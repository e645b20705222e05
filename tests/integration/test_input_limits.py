"""Connection and payload limits against a live server.

* Twilio media streams: at most ``twilio_max_pending_per_ip`` sockets per address that have
  not sent a valid ``start``; started calls are not counted (Twilio carries many calls from a
  few addresses). A socket that sends no ``start`` within ``stream_start_timeout_s`` is closed
  (slowloris); the browser stream has the same deadline on top of its per-address cap.
* HTTP request bodies: ``max_request_body_bytes`` by default, larger for the admin API and
  the knowledge upload; a declared size over the limit or a chunked body that passes it gets
  a 413 with a Spanish ``detail``, and nothing is written.
* WebSocket messages: one larger than uvicorn's ``ws_max_size`` closes only that stream
  (1009); the call is recorded and every other call goes on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.users import create_user, list_audit
from tests.integration.conftest import LiveServer, instant_engines
from tests.integration.test_twilio_stream import RawStream, frames_of

STREAM = "/twilio/stream"


def metric(server: LiveServer, transport: str, reason: str) -> float:
    registry = server.services.metrics.registry
    labels = {"transport": transport, "reason": reason}
    return registry.get_sample_value("taina_bad_messages_total", labels) or 0.0


def pending(server: LiveServer) -> int:
    counter = getattr(server.app.state, "twilio_pending", None)
    return 0 if counter is None else counter.total


async def _until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def closed_within(ws: websockets.ClientConnection, seconds: float) -> int | None:
    """The close code the server sent, failing if the socket is still open after ``seconds``."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), seconds)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        raise AssertionError(f"the socket was still open after {seconds} s") from None


# --- per-address pending limit and start deadline -------------------------------------------------


async def test_pending_twilio_streams_are_capped_per_address_started_calls_are_not(
    live_server_factory,
) -> None:
    server = live_server_factory(
        engines=instant_engines(), twilio_max_pending_per_ip=3, stream_start_timeout_s=30
    )
    url = f"ws://127.0.0.1:{server.port}{STREAM}"
    silent = [await websockets.connect(url) for _ in range(3)]
    await _until(lambda: pending(server) == 3)
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 403  # refused before accept
    assert metric(server, "twilio", "ip-limit") == 1

    # A slot frees when one of them goes away.
    await silent.pop().close()
    await _until(lambda: pending(server) == 2)

    # Real calls from the same address: each is pending only until its start, so five calls
    # run at once although only three sockets may be pending.
    calls = [RawStream(server) for _ in range(5)]
    for call in calls:
        await call.connect()
        await call.start(await call.webhook())
        await call.collect(0.2)
    assert server.services.recent.active == 5
    assert pending(server) == 2
    for call in calls[:2]:
        await call.media(frames_of(True, 600) + frames_of(False, 800))
        assert "media" in [m["event"] for m in await call.collect(1.5)]
    for call in calls:
        await call.stop()
    for ws in silent:
        await ws.close()
    await _until(lambda: pending(server) == 0 and server.services.recent.active == 0)


async def test_a_stream_that_never_starts_is_closed_at_the_deadline(live_server_factory) -> None:
    server = live_server_factory(engines=instant_engines(), stream_start_timeout_s=0.5)
    url = f"ws://127.0.0.1:{server.port}{STREAM}"
    t0 = time.monotonic()
    silent = await websockets.connect(url)
    chatty = await websockets.connect(url)  # talks, but never a valid start
    for _ in range(5):
        await chatty.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        await chatty.send("not json")
    assert await closed_within(silent, 3) is not None
    assert await closed_within(chatty, 3) is not None
    assert time.monotonic() - t0 < 3
    assert metric(server, "twilio", "start-timeout") == 2
    await _until(lambda: pending(server) == 0)

    # A call that starts in time is not touched by the deadline.
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    await asyncio.sleep(1.0)
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    assert "media" in [m["event"] for m in await call.collect(1.5)]
    await call.stop()


async def test_a_silent_browser_socket_is_closed_at_the_deadline(live_server_factory) -> None:
    server = live_server_factory(
        engines=instant_engines(), stream_start_timeout_s=0.5, web_max_connections_per_ip=2
    )
    url = f"ws://127.0.0.1:{server.port}/web/stream"
    silent = [await websockets.connect(url) for _ in range(2)]
    with pytest.raises(InvalidStatus):
        await websockets.connect(url)  # the per-address cap (moved to app.connection_limits)
    for ws in silent:
        assert await closed_within(ws, 3) is not None
    assert metric(server, "web", "start-timeout") == 2
    # The slots are free again, and a visitor who starts is served.
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "session": "ok"}))
        started = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert started["type"] == "started"
        await asyncio.sleep(1.0)
        await ws.send(json.dumps({"type": "hangup"}))
        assert await closed_within(ws, 5) is not None  # read what is queued, then the close


# --- HTTP bodies ---------------------------------------------------------------------------------


@pytest.fixture
def limited(live_server_factory) -> LiveServer:
    return live_server_factory(engines=instant_engines(), max_request_body_bytes=16 * 1024)


def chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    """A body sent with chunked transfer encoding: no Content-Length to check up front."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"a" * n


def test_webhook_bodies_over_the_limit_get_a_clear_413(limited: LiveServer) -> None:
    url = f"{limited.url}/twilio/voice"
    form = {"CallSid": "CA" + "1" * 32, "From": "+1809" + "5" * 20_000}
    r = httpx.post(url, data=form)
    assert r.status_code == 413
    assert r.json()["detail"] == "La solicitud es demasiado grande: el límite es de 16 KB."
    r = httpx.post(
        url,
        content=chunks(64 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413 and "16 KB" in r.json()["detail"]
    assert "content-length" not in r.request.headers  # it really was chunked
    # The status callback is off without a token: refused without reading the body at all.
    r = httpx.post(
        f"{limited.url}/twilio/status",
        content=chunks(20_000),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 404
    # Small requests are untouched.
    ok = httpx.post(url, data={"CallSid": "CA" + "2" * 32, "From": "+18095550100"})
    assert ok.status_code == 200 and "<Stream" in ok.text
    assert limited.call_view("CA" + "1" * 32) is None


def test_api_bodies_over_the_limit_write_nothing(limited: LiveServer) -> None:
    services = limited.services
    limited.run(create_user(services.db, "admin@example.org", "admin", "clave-segura-123"))
    with httpx.Client(base_url=limited.url, timeout=30) as http:
        login = http.post(
            "/api/auth/login", json={"email": "admin@example.org", "password": "clave-segura-123"}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        audit_before = len(limited.run(list_audit(services.db)))
        # The API allows 1 MB of JSON (a long prompt, escaped), more than the default.
        big = http.post("/api/prompts", json={"text": "x" * 100_000}, headers=headers)
        assert big.status_code == 422  # over the prompt's own length limit, but read
        huge = http.post(
            "/api/prompts",
            content=b'{"text":"' + b"x" * (2 * 1024 * 1024) + b'"}',
            headers={**headers, "Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        assert huge.json()["detail"] == "La solicitud es demasiado grande: el límite es de 1 MB."
        chunked = http.post(
            "/api/prompts",
            content=chunks(2 * 1024 * 1024),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert chunked.status_code == 413 and "1 MB" in chunked.json()["detail"]
        # Uploads: the document limit (200 KB) answers in its own words; a chunked body far
        # past the upload cap is cut off by the middleware.
        doc = http.post(
            "/api/knowledge",
            files={"file": ("grande.md", b"# T\n\n" + b"a" * (300 * 1024), "text/markdown")},
            headers=headers,
        )
        assert doc.status_code == 413 and "200 KB" in doc.json()["detail"]
        boundary = "xyz"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="a.md"\r\nContent-Type: text/markdown\r\n\r\n# T\n\n'
        ).encode()

        def upload_body() -> Iterator[bytes]:
            yield head
            yield from chunks(9 * 1024 * 1024, 64 * 1024)

        r = http.post(
            "/api/knowledge",
            content=upload_body(),
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert r.status_code == 413 and "MB" in r.json()["detail"]
        prompts = http.get("/api/prompts", headers=headers).json()
        assert prompts["items"] == []
    assert len(limited.run(list_audit(services.db))) == audit_before
    assert not (services.settings.data_dir / "knowledge_data").exists()


# --- WebSocket messages --------------------------------------------------------------------------


async def test_an_oversized_ws_message_closes_only_that_stream(live_server_factory) -> None:
    server = live_server_factory(engines=instant_engines())
    victim = RawStream(server)
    await victim.connect()
    await victim.start(await victim.webhook())
    await victim.collect(0.3)

    attacker = RawStream(server)
    await attacker.connect()
    await attacker.start(await attacker.webhook())
    await attacker.collect(0.3)
    # Between the parser's limit and uvicorn's: refused as a bad message, the call goes on.
    await attacker.send("x" * (server.services.settings.max_ws_message_bytes + 1))
    await _until(lambda: metric(server, "twilio", "invalid") >= 1)
    # Past uvicorn's ws_max_size (1 MB): that socket is closed with 1009 ("message too big").
    with pytest.raises(ConnectionClosed) as closed:
        await attacker.send("x" * (2 * 1024 * 1024))
        while True:
            await asyncio.wait_for(attacker.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    view = server.call_view(attacker.call_sid)
    await _until(lambda: view.end_reason is not None)
    assert view.end_reason in ("caller-hangup", "disconnected")
    stored = await asyncio.to_thread(server.stored_call, attacker.call_sid)
    assert stored is not None and stored.end_reason == view.end_reason

    await victim.media(frames_of(True, 600) + frames_of(False, 800))
    assert "media" in [m["event"] for m in await victim.collect(1.5)]
    await victim.stop()
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/healthz")).json()["status"] == "ok"
