"""A local server for OpenAI's audio endpoints: the real ``openai`` SDK is pointed at it.

* ``POST /v1/audio/speech``: JSON ``{"model", "voice", "input", "response_format",
  "instructions"?, "speed"?}`` with ``Authorization: Bearer …``; with ``response_format: pcm``
  the body is raw 24 kHz PCM16 mono, sent with chunked transfer as it is "generated".
* ``POST /v1/audio/transcriptions``: ``multipart/form-data`` with ``file``, ``model``,
  ``language``, ``prompt``, ``response_format``; answers ``{"text": …}`` (scripted). The WAV
  header of the upload is parsed and recorded, so a test can check what was sent.

Errors use OpenAI's JSON error shape. Each request consumes the next scripted
:class:`AudioBehaviour`: refuse (HTTP status), stall (headers and then nothing, or no answer
at all for transcriptions), drop mid-stream (TCP abort), garbage (a non-JSON transcription, an
HTML "speech" body).
"""

from __future__ import annotations

import asyncio
import io
import math
import time
import wave
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from tests.loopback_http import LoopbackFake

API_KEY = "sk-test-audio"
PCM_RATE = 24000
MS_PER_CHAR = 40.0


@dataclass
class AudioBehaviour:
    status: int = 200  # 401 / 429 / 500: refused
    headers_delay_s: float = 0.0
    first_audio_delay_s: float = 0.0  # speech: after the headers, before the first audio
    chunk_delay_s: float = 0.0
    chunk_ms: int = 100
    stall: bool = False  # speech: headers then nothing; transcription: never answers
    drop_after_chunks: int | None = None  # speech: abort after N chunks; transcription: at 0
    garbage: bool = False  # transcription: 200 with a non-JSON body; speech: HTML body
    text: str | None = None  # transcription text (default: FakeOpenAIAudio.transcript)


@dataclass
class AudioRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]  # JSON body, or the multipart form fields (file excluded)
    at: float
    wav: dict[str, int] | None = None  # rate, channels, sample_width, frames of an upload
    chunks_sent: int = 0
    completed: bool = False
    client_gone: bool = False


def speech_for(text: str, ms_per_char: float = MS_PER_CHAR) -> bytes:
    """The fake voice: 24 kHz PCM16, a text-dependent tone, ``ms_per_char`` per character."""
    n = int(len(text) * ms_per_char / 1000 * PCM_RATE)
    freq = 300.0 + (sum(text.encode()) % 200)
    t = np.arange(n, dtype=np.float64) / PCM_RATE
    return (0.3 * 32767 * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()


class FakeOpenAIAudio(LoopbackFake):
    """``async with FakeOpenAIAudio() as fake:`` then ``AsyncOpenAI(base_url=fake.base_url)``."""

    def __init__(self, *, api_key: str = API_KEY, ms_per_char: float = MS_PER_CHAR) -> None:
        super().__init__()
        self.api_key = api_key
        self.ms_per_char = ms_per_char
        self.transcript = "Quisiera sacar una cita para la cédula."
        self.default = AudioBehaviour()
        self.requests: list[AudioRequest] = []
        self._script: deque[AudioBehaviour] = deque()

    def script(self, *behaviours: AudioBehaviour) -> None:
        self._script.extend(behaviours)

    def audio_for(self, text: str) -> bytes:
        return speech_for(text, self.ms_per_char)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def speech_requests(self) -> list[AudioRequest]:
        return [r for r in self.requests if r.path.endswith("/audio/speech")]

    @property
    def transcription_requests(self) -> list[AudioRequest]:
        return [r for r in self.requests if r.path.endswith("/audio/transcriptions")]

    # --- lifecycle ----------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        return app

    # --- handlers -----------------------------------------------------------------------------
    def _next(self) -> AudioBehaviour:
        return self._script.popleft() if self._script else self.default

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        rec = AudioRequest(request.path, dict(request.headers), body, time.monotonic())
        self.requests.append(rec)
        beh = self._next()
        if not self._authorized(request):
            return _error(401)
        if beh.headers_delay_s:
            await self._sleep(beh.headers_delay_s)
        if beh.status != 200:
            return _error(beh.status)
        if not isinstance(body.get("input"), str) or not body.get("voice"):
            return _error(400)
        if body.get("response_format") != "pcm":
            return _error(400, "the fake only streams response_format=pcm")
        if beh.garbage:
            return web.Response(text="<html>oops</html>", content_type="text/html")
        audio = self.audio_for(body["input"])
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        size = PCM_RATE * 2 * beh.chunk_ms // 1000
        try:
            if beh.stall:
                await self._hold(request, rec)
                return response
            await self._sleep(beh.first_audio_delay_s)
            for n, start in enumerate(range(0, len(audio), size)):
                if beh.drop_after_chunks is not None and n >= beh.drop_after_chunks:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if n and beh.chunk_delay_s:
                    await asyncio.sleep(beh.chunk_delay_s)
                await response.write(audio[start : start + size])
                rec.chunks_sent += 1
            await response.write_eof()
            rec.completed = True
        except (ConnectionError, asyncio.CancelledError):
            self._gone(rec)
        return response

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, Any] = {}
        wav_info: dict[str, int] | None = None
        form = await request.post()
        for key, value in form.items():
            if hasattr(value, "file"):
                data = value.file.read()
                fields[key] = {"filename": value.filename, "bytes": len(data)}
                wav_info = _wav_info(data)
            else:
                fields[key] = str(value)
        rec = AudioRequest(
            request.path, dict(request.headers), fields, time.monotonic(), wav=wav_info
        )
        self.requests.append(rec)
        beh = self._next()
        if not self._authorized(request):
            return _error(401)
        if beh.headers_delay_s:
            await self._sleep(beh.headers_delay_s)
        if beh.status != 200:
            return _error(beh.status)
        if beh.stall:
            await self._hold(request, rec)
            return _error(504)
        if beh.drop_after_chunks is not None:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if beh.garbage:
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if "file" not in fields or "model" not in fields:
            return _error(400, "file and model are required")
        if wav_info is None:
            return _error(400, "Invalid file format.")
        text = beh.text if beh.text is not None else self.transcript
        rec.completed = True
        return web.json_response(
            {
                "text": text,
                "usage": {
                    "type": "tokens",
                    "input_tokens": 10,
                    "output_tokens": len(text.split()),
                    "total_tokens": 10 + len(text.split()),
                },
            }
        )


def _wav_info(data: bytes) -> dict[str, int] | None:
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            return {
                "rate": w.getframerate(),
                "channels": w.getnchannels(),
                "sample_width": w.getsampwidth(),
                "frames": w.getnframes(),
            }
    except (wave.Error, EOFError):
        return None


_KINDS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests"),
    500: ("server_error", "The server had an error while processing your request."),
    503: ("server_error", "The engine is currently overloaded."),
    504: ("server_error", "Gateway timeout."),
}


def _error(status: int, message: str | None = None) -> web.Response:
    kind, default = _KINDS.get(status, ("server_error", f"HTTP {status}"))
    return web.json_response(
        {
            "error": {
                "message": message or default,
                "type": kind,
                "param": None,
                "code": "rate_limit_exceeded" if status == 429 else None,
            }
        },
        status=status,
    )
