"""A local ElevenLabs text-to-speech server for tests: the real ``elevenlabs`` SDK (and our own
WebSocket client) is pointed at it by base URL.

It speaks the documented wire protocols:

* ``POST /v1/text-to-speech/{voice_id}/stream`` (what ``text_to_speech.stream()`` calls) and
  ``POST /v1/text-to-speech/{voice_id}`` (``convert()``): JSON body ``{"text", "model_id",
  "voice_settings", …}``, ``output_format`` in the query, the ``xi-api-key`` header checked;
  the audio comes back as a chunked body in the requested format (``ulaw_8000``,
  ``pcm_{rate}``). Errors are JSON ``{"detail": {"status", "message"}}``.
* ``WS /v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=…&auto_mode=…``:
  the first message is ``{"text": " ", "voice_settings"?, "generation_config"?,
  "xi-api-key"?}``; text messages fill a buffer that is generated when it reaches the
  ``chunk_length_schedule`` (default 120/160/250/290 characters), on ``flush: true``, on
  ``try_trigger_generation`` (≥ 50 characters), on every message with ``auto_mode=true``,
  and finally on ``{"text": ""}``, which ends with ``{"isFinal": true}`` and a close. Audio
  messages are ``{"audio": base64, "isFinal": null, "normalizedAlignment": {…},
  "alignment": {…}}``; errors are ``{"message", "error", "code"}`` then close code 1008.

The audio for a text is deterministic (:func:`tone_for`), so a test can check every byte.
Each request consumes the next scripted :class:`Behaviour` (default: a healthy voice), which
can refuse, stall, drop the connection mid-stream or send garbage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from telephony.audio_codec import pcm16_to_mulaw
from tests.loopback_http import LoopbackFake

API_KEY = "el-test-key"
DEFAULT_SCHEDULE = (120, 160, 250, 290)
MS_PER_CHAR = 40.0  # audio length per character of text


@dataclass
class Behaviour:
    """What the fake voice does for one request (HTTP) or one socket (WS)."""

    status: int = 200  # 401 / 429 / 500: refused (HTTP error, or WS handshake refused)
    ws_error: str | None = None  # WS: an in-band {"error": …} message then close 1008
    headers_delay_s: float = 0.0  # HTTP: before the response headers
    first_audio_delay_s: float = 0.0  # generation latency: before the first audio chunk
    chunk_delay_s: float = 0.0  # between audio chunks
    chunk_ms: int = 100  # audio per chunk
    stall: bool = False  # headers (WS: accepted) and then nothing, ever
    stall_after_chunks: int | None = None  # send N chunks, then nothing (connection kept)
    drop_after_chunks: int | None = None  # send N chunks, then abort the TCP connection
    # WS: "json" (a non-JSON frame) or "base64" (bad audio); HTTP (any value): an HTML page
    garbage: str | None = None


@dataclass
class Recorded:
    kind: str  # "http" | "ws"
    path: str
    voice_id: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None = None  # HTTP JSON body
    messages: list[dict[str, Any]] = field(default_factory=list)  # WS client messages
    at: float = 0.0
    chunks_sent: int = 0
    completed: bool = False  # the whole audio went out
    client_gone: bool = False  # the client closed before the end
    peer: Any = None  # the client's address: same address, same (kept-alive) connection

    @property
    def output_format(self) -> str:
        return self.query.get("output_format", "mp3_44100_128")


def format_rate(output_format: str) -> tuple[str, int]:
    codec, _, rest = output_format.partition("_")
    return codec, int(rest.split("_")[0])


def tone_for(text: str, output_format: str, ms_per_char: float = MS_PER_CHAR) -> bytes:
    """The fake voice: a tone whose pitch depends on the text, ``ms_per_char`` per char."""
    codec, rate = format_rate(output_format)
    n = int(len(text) * ms_per_char / 1000 * rate)
    freq = 200.0 + (sum(text.encode()) % 200)
    t = np.arange(n, dtype=np.float64) / rate
    pcm = (0.3 * 32767 * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()
    if codec == "ulaw":
        return pcm16_to_mulaw(pcm)
    if codec == "pcm":
        return pcm
    raise ValueError(f"the fake only speaks ulaw_8000 and pcm_*, not {output_format}")


class FakeElevenLabs(LoopbackFake):
    """``async with FakeElevenLabs() as fake:`` then ``ElevenLabsTTS(base_url=fake.base_url)``."""

    def __init__(self, *, api_key: str = API_KEY, ms_per_char: float = MS_PER_CHAR) -> None:
        super().__init__()
        self.api_key = api_key
        self.ms_per_char = ms_per_char
        self.default = Behaviour()
        self.requests: list[Recorded] = []
        self.model_listings: list[Any] = []  # client address of each GET /v1/models
        self._script: deque[Behaviour] = deque()

    # --- scripting ----------------------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> None:
        self._script.extend(behaviours)

    def audio_for(self, text: str, output_format: str) -> bytes:
        return tone_for(text, output_format, self.ms_per_char)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._http)
        app.router.add_post("/v1/text-to-speech/{voice_id}", self._http)
        app.router.add_get("/v1/text-to-speech/{voice_id}/stream-input", self._ws)
        app.router.add_get("/v1/models", self._models)
        return app

    # --- HTTP ---------------------------------------------------------------------------------
    def _next(self) -> Behaviour:
        return self._script.popleft() if self._script else self.default

    async def _http(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        rec = Recorded(
            "http",
            request.path,
            request.match_info["voice_id"],
            dict(request.query),
            dict(request.headers),
            body=body,
            at=time.monotonic(),
            peer=_peer(request),
        )
        self.requests.append(rec)
        beh = self._next()
        if request.headers.get("xi-api-key") != self.api_key:
            return _error(401, "invalid_api_key", "Invalid API key")
        if beh.headers_delay_s:
            await self._sleep(beh.headers_delay_s)
        if beh.status != 200:
            return _error(beh.status, *_ERRORS.get(beh.status, ("error", "Error")))
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return _error(422, "invalid_request", "text is required")
        try:
            audio = self.audio_for(body["text"], rec.output_format)
        except ValueError as exc:
            return _error(422, "invalid_output_format", str(exc))
        if beh.garbage:
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        codec, _ = format_rate(rec.output_format)
        response = web.StreamResponse(
            headers={"Content-Type": "audio/basic" if codec == "ulaw" else "audio/pcm"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if beh.stall:
                await self._hold(request, rec)
                return response
            await self._sleep(beh.first_audio_delay_s)
            for n, chunk in enumerate(self._chunks(audio, rec.output_format, beh)):
                if beh.drop_after_chunks is not None and n >= beh.drop_after_chunks:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if beh.stall_after_chunks is not None and n >= beh.stall_after_chunks:
                    await self._hold(request, rec)
                    return response
                if n and beh.chunk_delay_s:
                    await asyncio.sleep(beh.chunk_delay_s)
                await response.write(chunk)
                rec.chunks_sent += 1
            await response.write_eof()
            rec.completed = True
        except (ConnectionError, asyncio.CancelledError):
            self._gone(rec)
        return response

    async def _models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: what a client may call to open its connection early."""
        self.model_listings.append(_peer(request))
        if request.headers.get("xi-api-key") != self.api_key:
            return _error(401, "invalid_api_key", "Invalid API key")
        return web.json_response(
            [{"model_id": "eleven_multilingual_v2", "can_do_text_to_speech": True}]
        )

    # --- WebSocket input streaming ------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        rec = Recorded(
            "ws",
            request.path,
            request.match_info["voice_id"],
            dict(request.query),
            dict(request.headers),
            at=time.monotonic(),
        )
        self.requests.append(rec)
        beh = self._next()
        if beh.status != 200:
            return _error(beh.status, *_ERRORS.get(beh.status, ("error", "Error")))
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        try:
            await self._ws_session(request, ws, rec, beh)
        except (ConnectionError, asyncio.CancelledError):
            self._gone(rec)
        finally:
            if not ws.closed:
                await ws.close()
        return ws

    async def _ws_session(
        self, request: web.Request, ws: web.WebSocketResponse, rec: Recorded, beh: Behaviour
    ) -> None:
        fmt = rec.output_format
        auto_mode = request.query.get("auto_mode", "false").lower() == "true"
        inactivity = float(request.query.get("inactivity_timeout", "20"))
        buffer = ""
        generations = 0
        schedule: list[float] = list(DEFAULT_SCHEDULE)
        first = True
        while True:
            try:
                msg = await ws.receive(timeout=inactivity)
            except TimeoutError:
                await self._ws_fail(ws, "input_timeout_exceeded", "No text received in time")
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                if not rec.completed:
                    self._gone(rec)
                return
            if msg.type != WSMsgType.TEXT:
                await self._ws_fail(ws, "invalid_message", "Expected a text message")
                return
            try:
                data = json.loads(msg.data)
            except ValueError:
                await self._ws_fail(ws, "invalid_message", "Invalid JSON")
                return
            rec.messages.append(data)
            if first:
                first = False
                key = request.headers.get("xi-api-key") or data.get("xi-api-key")
                if key != self.api_key:
                    await self._ws_fail(ws, "invalid_api_key", "Invalid API key")
                    return
                if data.get("text") != " ":
                    await self._ws_fail(ws, "invalid_message", "First message must be ' '")
                    return
                config = data.get("generation_config") or {}
                schedule = list(config.get("chunk_length_schedule") or schedule)
                if beh.ws_error:
                    await self._ws_fail(ws, beh.ws_error, "Refused by the fake")
                    return
                continue
            text = data.get("text")
            if not isinstance(text, str):
                await self._ws_fail(ws, "invalid_message", "text is required")
                return
            if beh.stall:
                continue  # reads everything, says nothing
            if text == "":
                if buffer.strip():
                    if not await self._generate(request, ws, buffer, fmt, beh, rec):
                        return
                await ws.send_str(json.dumps({"isFinal": True}))
                rec.completed = True
                await ws.close()
                return
            buffer += text
            threshold = schedule[min(generations, len(schedule) - 1)]
            if (
                auto_mode
                or data.get("flush")
                or len(buffer) >= threshold
                or (data.get("try_trigger_generation") and len(buffer) >= 50)
            ):
                if buffer.strip() and not await self._generate(request, ws, buffer, fmt, beh, rec):
                    return
                buffer = ""
                generations += 1

    async def _generate(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        text: str,
        fmt: str,
        beh: Behaviour,
        rec: Recorded,
    ) -> bool:
        """Stream the audio of ``text``; False when the behaviour ended the socket."""
        text = text.strip()
        audio = self.audio_for(text, fmt)
        await self._sleep(beh.first_audio_delay_s)
        chunks = self._chunks(audio, fmt, beh)
        for n, chunk in enumerate(chunks):
            if beh.drop_after_chunks is not None and n >= beh.drop_after_chunks:
                if request.transport is not None:
                    request.transport.abort()
                return False
            if beh.stall_after_chunks is not None and n >= beh.stall_after_chunks:
                await self._hold(request, rec)
                return False
            if n and beh.chunk_delay_s:
                await asyncio.sleep(beh.chunk_delay_s)
            if beh.garbage == "json":
                await ws.send_str("<html>502 Bad Gateway</html>")
                return False
            encoded = (
                "%%% not base64 %%%"
                if beh.garbage == "base64"
                else base64.b64encode(chunk).decode()
            )
            alignment = _alignment(text, n, len(chunks))
            await ws.send_str(
                json.dumps(
                    {
                        "audio": encoded,
                        "isFinal": None,
                        "normalizedAlignment": alignment,
                        "alignment": alignment,
                    }
                )
            )
            rec.chunks_sent += 1
        return True

    async def _ws_fail(self, ws: web.WebSocketResponse, error: str, message: str) -> None:
        await ws.send_str(json.dumps({"message": message, "error": error, "code": 1008}))
        await ws.close(code=1008, message=message[:100].encode())

    # --- helpers ------------------------------------------------------------------------------
    def _chunks(self, audio: bytes, fmt: str, beh: Behaviour) -> list[bytes]:
        codec, rate = format_rate(fmt)
        size = max(2, rate * (1 if codec == "ulaw" else 2) * beh.chunk_ms // 1000)
        return [audio[i : i + size] for i in range(0, len(audio), size)]


_ERRORS = {
    401: ("invalid_api_key", "Invalid API key"),
    429: ("too_many_concurrent_requests", "Too many concurrent requests"),
    500: ("internal_server_error", "Internal server error"),
    503: ("service_unavailable", "Service unavailable"),
}


def _peer(request: web.Request) -> Any:
    return request.transport.get_extra_info("peername") if request.transport else None


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": kind, "message": message}}, status=status)


def _alignment(text: str, n: int, total: int) -> dict[str, list[Any]]:
    """A plausible character alignment for chunk ``n`` of ``total`` (relative to the chunk)."""
    lo = len(text) * n // total
    hi = len(text) * (n + 1) // total
    chars = list(text[lo:hi])
    step = int(MS_PER_CHAR)
    return {
        "chars": chars,
        "charStartTimesMs": [i * step for i in range(len(chars))],
        "charDurationsMs": [step] * len(chars),
    }
