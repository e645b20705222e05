"""``WS /web/stream`` against the app under uvicorn on loopback, message by message.

Instant engines (energy VAD, fixed transcript, tone voice) keep these fast; the protocol, the
transport and the session are the real ones. The test client plays the page's part: it sends
16 kHz PCM16 frames and JSON control messages, and echoes audio marks when told to.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app import routes_web
from tests.integration.conftest import LiveServer, instant_engines

QUESTION = "¿A qué hora abren las oficinas?"


def with_web_routes(server: LiveServer) -> LiveServer:
    """Serve the visitor routes unless app/main.py already does (it will once wired in)."""
    if not any(getattr(r, "path", None) == "/web/stream" for r in server.app.routes):
        server.app.include_router(routes_web.router)
    return server


def frames(loud: bool, ms: int, seed: int = 1) -> list[bytes]:
    """20 ms PCM16 16 kHz frames of noise (speech to the energy VAD) or silence."""
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal(320) * (6000 if loud else 0)).astype(np.int16).tobytes()
        for _ in range(ms // 20)
    ]


class Page:
    """A hand-driven visitor page."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.ws: websockets.ClientConnection | None = None
        self.messages: list[dict] = []
        self.audio_bytes = 0
        self.call_id: str | None = None

    async def connect(self) -> None:
        self.ws = await websockets.connect(f"ws://127.0.0.1:{self.server.port}/web/stream")

    async def send(self, msg: dict | str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))

    async def start(self) -> None:
        await self.send({"type": "start", "session": "vtest"})
        started = await self.until(lambda m: m["type"] == "started", echo=False)
        self.call_id = started["call_id"]

    async def audio(self, chunks: list[bytes], pace: float = 0.02) -> None:
        for chunk in chunks:
            await self.send(chunk)
            await asyncio.sleep(pace)

    async def read(self, seconds: float, echo: bool = True) -> list[dict]:
        """Read for ``seconds``; binary frames count as audio, marks echoed when ``echo``."""
        got: list[dict] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                break
            got.append(self._take(raw))
            if echo and got[-1]["type"] == "audio_mark":
                await self.send({"type": "mark", "name": got[-1]["name"]})
        return got

    async def until(self, pred: Callable[[dict], bool], echo: bool = True, timeout: float = 10):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (left := end - loop.time()) > 0:
            raw = await asyncio.wait_for(self.ws.recv(), left)
            msg = self._take(raw)
            if echo and msg["type"] == "audio_mark":
                await self.send({"type": "mark", "name": msg["name"]})
            if pred(msg):
                return msg
        raise AssertionError("message never came")

    def _take(self, raw: str | bytes) -> dict:
        if isinstance(raw, bytes):
            self.audio_bytes += len(raw)
            msg = {"type": "audio", "bytes": len(raw)}
        else:
            msg = json.loads(raw)
        self.messages.append(msg)
        return msg


def kinds(msgs: list[dict]) -> list[str]:
    return [m["type"] for m in msgs]


async def _until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


@pytest.fixture
def server(live_server_factory) -> LiveServer:
    return with_web_routes(
        live_server_factory(engines=instant_engines(QUESTION), max_bad_messages=20)
    )


async def test_a_call_with_captions_audio_and_marks(server: LiveServer) -> None:
    page = Page(server)
    await page.connect()
    await page.start()
    assert page.call_id and page.call_id.startswith("web-")
    greeting = await page.read(1.5)
    k = kinds(greeting)
    # Audio goes out as 100 ms binary chunks (3200 bytes at 16 kHz), each followed by its mark.
    assert "audio" in k and "audio_mark" in k
    for i, m in enumerate(greeting):
        if m["type"] == "audio":
            assert m["bytes"] <= 3200
            assert greeting[i + 1]["type"] == "audio_mark"
    assert {"type": "state", "state": "hablando"} in greeting
    bot_caps = [m for m in greeting if m["type"] == "caption" and m["speaker"] == "bot"]
    assert bot_caps and bot_caps[-1]["final"] is True  # the greeting was heard (marks echoed)
    assert greeting[-1] == {"type": "state", "state": "escuchando"} or (
        {"type": "state", "state": "escuchando"} in greeting
    )

    await page.audio(frames(True, 600) + frames(False, 800))
    caller = await page.until(lambda m: m["type"] == "caption" and m["speaker"] == "caller")
    assert caller == {"type": "caption", "speaker": "caller", "text": QUESTION, "final": True}
    reply = await page.read(2.0)
    k = kinds(reply)
    assert "audio" in k and "audio_mark" in k
    partial = [m for m in reply if m["type"] == "caption" and not m["final"]]
    final = [m for m in reply if m["type"] == "caption" and m["final"]]
    assert partial and final and final[-1]["speaker"] == "bot"
    assert "ocho de la mañana" in final[-1]["text"]
    states = [m["state"] for m in page.messages if m["type"] == "state"]
    assert "pensando" in states and states[-1] == "escuchando"

    await page.send({"type": "dtmf", "digit": "0"})
    await page.read(0.3)
    await page.send({"type": "hangup"})
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(page.ws.recv(), 5)

    view = server.call_view(page.call_id)
    await _until(lambda: view.end_reason is not None)
    assert view.end_reason == "caller-hangup"
    assert [t.speaker for t in view.turns][:3] == ["bot", "caller", "bot"]
    stored = await asyncio.to_thread(server.stored_call, page.call_id)
    assert stored is not None and stored.ingress == "web"
    assert "first_byte_ms" in stored.turns[2].timings


async def test_barge_in_sends_clear(server: LiveServer) -> None:
    page = Page(server)
    await page.connect()
    await page.start()
    # Marks not echoed: the page is still "playing" the greeting when the visitor talks.
    await page.until(lambda m: m["type"] == "audio_mark", echo=False)
    await page.audio(frames(True, 800), pace=0.02)
    await page.until(lambda m: m["type"] == "clear", echo=False)
    after = await page.read(0.3, echo=False)
    assert {"type": "state", "state": "escuchando"} in after
    await page.send({"type": "hangup"})
    view = server.call_view(page.call_id)
    await _until(lambda: view.end_reason is not None)
    greeting = view.turns[0]
    assert greeting.speaker == "bot" and greeting.interrupted


async def test_bad_frames_are_ignored_and_the_call_goes_on(server: LiveServer) -> None:
    page = Page(server)
    await page.connect()
    await page.send(frames(True, 20)[0])  # audio before start
    await page.start()
    await page.read(0.5)
    for bad in [
        "not json",
        "[1, 2]",
        json.dumps({"type": "bogus"}),
        json.dumps({"type": "mark"}),
        json.dumps({"type": "dtmf", "digit": "xyz"}),
        json.dumps({"type": "start"}),  # a second start
        b"\x01\x02\x03",  # odd length
        b"",
    ]:
        await page.send(bad)
    await page.audio(frames(True, 600) + frames(False, 800))
    await page.until(lambda m: m["type"] == "caption" and m["speaker"] == "caller")
    await page.until(lambda m: m["type"] == "audio")
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{server.url}/metrics")).text
    assert 'taina_bad_messages_total{reason="json",transport="web"}' in metrics
    assert 'taina_bad_messages_total{reason="audio",transport="web"}' in metrics
    await page.send({"type": "hangup"})


async def test_an_oversize_frame_closes_the_stream(server: LiveServer) -> None:
    page = Page(server)
    await page.connect()
    await page.start()
    await page.send(bytes(64_000))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(page.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    view = server.call_view(page.call_id)
    await _until(lambda: view.end_reason is not None)
    assert view.end_reason == "protocol-error"


async def test_a_garbage_client_does_not_hurt_a_concurrent_one(server: LiveServer) -> None:
    victim = Page(server)
    await victim.connect()
    await victim.start()
    await victim.read(0.3)

    attacker = Page(server)
    await attacker.connect()
    await attacker.start()
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(200):
            await attacker.send("{garbage")
            await asyncio.sleep(0.001)
        while True:
            await asyncio.wait_for(attacker.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    await victim.audio(frames(True, 600) + frames(False, 800))
    await victim.until(lambda m: m["type"] == "caption" and m["speaker"] == "caller")
    await victim.until(lambda m: m["type"] == "audio")
    await victim.send({"type": "hangup"})


def _limit(server: LiveServer, monkeypatch, name: str, value: int) -> None:
    """Set a web limit: the setting when app/settings.py has it, else the route's default."""
    settings = server.services.settings
    if hasattr(settings, name):
        monkeypatch.setattr(settings, name, value)
    else:
        monkeypatch.setattr(routes_web, f"DEFAULT_{name.removeprefix('web_').upper()}", value)


async def test_message_flood_is_rate_limited(live_server_factory, monkeypatch) -> None:
    server = with_web_routes(live_server_factory(engines=instant_engines(), max_bad_messages=5))
    _limit(server, monkeypatch, "web_max_messages_per_s", 50)
    page = Page(server)
    await page.connect()
    await page.start()
    with pytest.raises(ConnectionClosed) as closed:
        for chunk in frames(False, 20 * 400):  # 400 frames as fast as possible
            await page.send(chunk)
        while True:
            await asyncio.wait_for(page.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{server.url}/metrics")).text
    assert 'taina_bad_messages_total{reason="rate",transport="web"}' in metrics


async def test_connections_per_address_are_limited(live_server_factory, monkeypatch) -> None:
    server = with_web_routes(live_server_factory(engines=instant_engines()))
    _limit(server, monkeypatch, "web_max_connections_per_ip", 2)
    pages = [Page(server) for _ in range(2)]
    for p in pages:
        await p.connect()
    with pytest.raises(InvalidStatus) as refused:
        await Page(server).connect()
    assert refused.value.response.status_code == 403
    await pages[0].ws.close()
    await asyncio.sleep(0.3)
    again = Page(server)
    await again.connect()  # a slot was freed
    await again.start()
    for p in [pages[1], again]:
        await p.ws.close()


async def test_visitor_page_and_assets_are_served(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert "Llamar" in page.text and 'lang="es"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        js = await client.get("/web/js/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/web/js/audio-worklets.js")).status_code == 200
        assert (await client.get("/web/../app/settings.py")).status_code == 404
        assert (await client.get("/web/%2e%2e/pyproject.toml")).status_code == 404
