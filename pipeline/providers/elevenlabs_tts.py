"""ElevenLabs streaming voice: one request per sentence, audio passed on as it arrives.

Phone calls ask for ``ulaw_8000``, which is exactly what Twilio plays, so those bytes go to
the caller untouched (no decode, resample or encode). Other rates get raw PCM at the nearest
rate ElevenLabs offers, resampled with a streaming filter when it is not the one asked for.

Two transports, chosen by ``mode``:

* ``"http"``: ``POST /v1/text-to-speech/{voice}/stream`` through the official SDK. httpx keeps
  the connection alive between sentences, so a warm request costs one round trip plus
  generation. The default, because the session hands over whole sentences.
* ``"websocket"``: the documented input-streaming socket
  (``/v1/text-to-speech/{voice}/stream-input``) with ``auto_mode`` and a ``flush`` per
  sentence. A socket carries one generation (``{"text": ""}`` closes it), so the handshake is
  hidden by keeping one spare socket per format opened and initialised ahead of time.

Cancellation (barge-in) closes the HTTP response or the socket, which stops generation at
ElevenLabs: nothing keeps streaming, or billing, for a sentence nobody will hear.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, Literal

import httpx
import websockets
from elevenlabs import AsyncElevenLabs, VoiceSettings
from elevenlabs.url_utils import build_ws_url
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.protocol import State

from pipeline.engines import AudioEncoding, FirstAudioReport
from pipeline.providers.tts_audio import PcmStream, nearest_rate
from telephony.audio_codec import pcm16_to_mulaw

log = logging.getLogger("taina.tts.elevenlabs")

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
# PCM rates requested as they are; 44.1/48 kHz are tier-gated and no caller needs them.
HTTP_PCM_RATES = (8000, 16000, 22050, 24000)
WS_PCM_RATES = (16000, 22050, 24000)  # the stream-input endpoint's documented PCM formats
CHUNK_MS = 20  # the SDK re-chunks the HTTP body; small pieces never hold audio back

Mode = Literal["http", "websocket"]


class ElevenLabsError(RuntimeError):
    """The stream broke the protocol, or ElevenLabs reported an error on it."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ElevenLabsTTS:
    """TextToSpeech on ElevenLabs (``eleven_multilingual_v2`` speaks Dominican Spanish well
    with a custom voice)."""

    name = "elevenlabs"
    native_encodings: tuple[AudioEncoding, ...] = ("mulaw",)
    reports_first_audio = True

    def __init__(
        self,
        api_key: str,
        voice_id: str,
        model: str = "eleven_multilingual_v2",
        base_url: str | None = None,
        mode: Mode = "http",
        *,
        voice_settings: Mapping[str, Any] | None = None,
        ws_prewarm: bool = True,
        ws_spare_max_age_s: float = 15.0,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        keepalive_s: float = 30.0,
        client: AsyncElevenLabs | None = None,
    ) -> None:
        if mode not in ("http", "websocket"):
            raise ValueError(f"unknown ElevenLabs mode {mode!r}")
        self.voice_id = voice_id
        self.model = model
        self.mode: Mode = mode
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._api_key = api_key
        self._voice_settings = dict(voice_settings) if voice_settings else None
        self._connect_timeout_s = connect_timeout_s
        self._http: httpx.AsyncClient | None = None
        if client is None:
            # No SDK retries: the failover chain is the retry, on the caller's time budget.
            # httpx drops idle connections after 5 s by default; a caller's turn is often
            # longer, and a new TCP + TLS connection costs two round trips on first audio.
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
                limits=httpx.Limits(keepalive_expiry=keepalive_s),
            )
            client = AsyncElevenLabs(
                api_key=api_key, base_url=self.base_url, httpx_client=self._http
            )
        self._client = client
        self._ws_prewarm = ws_prewarm
        self._ws_max_age_s = ws_spare_max_age_s
        self._spares: dict[str, list[tuple[ClientConnection, float]]] = {}
        self._warming: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    # --- TextToSpeech ------------------------------------------------------------------------
    async def synthesize(
        self,
        text: str,
        sample_rate: int,
        *,
        encoding: AudioEncoding = "pcm16",
        on_first_audio: FirstAudioReport | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield audio in ``encoding`` at ``sample_rate`` as ElevenLabs streams it."""
        text = " ".join(text.split())
        if not text:
            return
        t0 = time.perf_counter()
        output_format, source_rate = self.output_format_for(sample_rate, encoding)
        passthrough = output_format.startswith("ulaw")
        pcm = PcmStream(source_rate, sample_rate)
        to_mulaw = encoding == "mulaw" and not passthrough
        source = (
            self._http_audio(text, output_format, source_rate)
            if self.mode == "http"
            else self._ws_audio(text, output_format)
        )
        first = True
        async with aclosing(source) as chunks:
            async for raw in chunks:
                out = raw if passthrough else pcm.push(raw)
                if not out:
                    continue
                if first:
                    first = False
                    if on_first_audio is not None:
                        on_first_audio(self.name, time.perf_counter() - t0)
                yield pcm16_to_mulaw(out) if to_mulaw else out
        tail = b"" if passthrough else pcm.finish()
        if tail:
            yield pcm16_to_mulaw(tail) if to_mulaw else tail

    def output_format_for(self, sample_rate: int, encoding: AudioEncoding) -> tuple[str, int]:
        """The ``output_format`` to ask for, and its sample rate."""
        if encoding == "mulaw" and sample_rate == 8000:
            return "ulaw_8000", 8000
        rates = HTTP_PCM_RATES if self.mode == "http" else WS_PCM_RATES
        rate = nearest_rate(sample_rate, rates)
        return f"pcm_{rate}", rate

    async def warm_up(self, output_formats: tuple[str, ...] = ("ulaw_8000",)) -> None:
        """Pay the connection set-up (TCP + TLS, two round trips) before a caller is waiting:
        in http mode one cheap ``GET /v1/models`` leaves a kept-alive connection in the
        pool; in websocket mode the spare sockets are opened and initialised."""
        if self.mode == "http":
            if self._http is not None:
                try:
                    await self._http.get(
                        f"{self.base_url}/v1/models", headers={"xi-api-key": self._api_key}
                    )
                except httpx.HTTPError as exc:
                    log.info("could not pre-open an ElevenLabs connection: %s", exc)
            return
        if not self._ws_prewarm:
            return
        for fmt in output_formats:
            self._prewarm_later(fmt)
        await asyncio.gather(*self._warming.values(), return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        for task in [*self._warming.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._warming.values(), *self._background, return_exceptions=True)
        for spares in self._spares.values():
            for ws, _ in spares:
                _abort(ws)
        self._spares.clear()
        if self._http is not None:
            await self._http.aclose()

    # --- HTTP streaming ----------------------------------------------------------------------
    async def _http_audio(self, text: str, output_format: str, rate: int) -> AsyncIterator[bytes]:
        bytes_per_sample = 1 if output_format.startswith("ulaw") else 2
        chunk = max(2, rate * bytes_per_sample * CHUNK_MS // 1000)
        async with self._client.text_to_speech.with_raw_response.stream(
            self.voice_id,
            text=text,
            model_id=self.model,
            output_format=output_format,
            voice_settings=VoiceSettings(**self._voice_settings) if self._voice_settings else None,
            request_options={"chunk_size": chunk, "max_retries": 0},
        ) as response:  # leaving the block (done, failed or cancelled) closes the response
            _check_audio_type(response.headers.get("content-type", ""))
            async for piece in response.data:
                yield piece

    # --- WebSocket input streaming -----------------------------------------------------------
    async def _ws_audio(self, text: str, output_format: str) -> AsyncIterator[bytes]:
        ws, reused = await self._take_socket(output_format)
        self._prewarm_later(output_format)
        finished = False
        try:
            try:
                await self._send_sentence(ws, text)
            except ConnectionClosed:
                if not reused:
                    raise
                # The spare died while idle (inactivity timeout): not ElevenLabs failing.
                _abort(ws)
                ws = await self._open_socket(output_format)
                await self._send_sentence(ws, text)
            while True:
                try:
                    raw = await ws.recv()
                except ConnectionClosedOK as exc:
                    raise ElevenLabsError(f"socket closed before isFinal ({exc})") from exc
                msg = _parse(raw)
                audio = msg.get("audio")
                if audio:
                    yield _b64decode(audio)
                if msg.get("isFinal"):
                    finished = True
                    return
                if not audio and ("error" in msg or "message" in msg):
                    raise ElevenLabsError(
                        f"ElevenLabs error: {msg.get('message') or msg.get('error')}",
                        _ws_error_status(msg),
                    )
        finally:
            if finished:
                self._close_later(ws)  # polite close handshake, off the caller's time
            else:
                _abort(ws)  # cancelled or broken: drop it now, generation stops

    async def _send_sentence(self, ws: ClientConnection, text: str) -> None:
        await ws.send(json.dumps({"text": text + " ", "flush": True}, ensure_ascii=False))
        await ws.send('{"text": ""}')  # end of input: the socket closes after isFinal

    async def _take_socket(self, output_format: str) -> tuple[ClientConnection, bool]:
        warming = self._warming.get(output_format)
        if warming is not None and not self._spares.get(output_format):
            # A socket is already on its way: it arrives sooner than a new one would.
            await asyncio.shield(warming)
        spares = self._spares.get(output_format, [])
        now = time.monotonic()
        while spares:
            ws, opened = spares.pop()
            if ws.state is State.OPEN and now - opened < self._ws_max_age_s:
                return ws, True
            self._close_later(ws)
        return await self._open_socket(output_format), False

    async def _open_socket(self, output_format: str) -> ClientConnection:
        url = build_ws_url(
            self.base_url,
            ["v1", "text-to-speech", self.voice_id, "stream-input"],
            {"model_id": self.model, "output_format": output_format, "auto_mode": "true"},
        )
        try:
            ws = await websockets.connect(
                url,
                additional_headers={"xi-api-key": self._api_key},
                open_timeout=self._connect_timeout_s,
                close_timeout=1.0,
                max_size=4 * 1024 * 1024,
                compression=None,
                proxy=None if _is_loopback(url) else True,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ElevenLabsError(f"handshake refused: HTTP {status}", status) from exc
        init: dict[str, Any] = {"text": " "}
        if self._voice_settings:
            init["voice_settings"] = self._voice_settings
        try:
            await ws.send(json.dumps(init))
        except BaseException:
            _abort(ws)
            raise
        return ws

    def _prewarm_later(self, output_format: str) -> None:
        if not self._ws_prewarm or self._closed or output_format in self._warming:
            return
        if self._spares.get(output_format):
            return

        async def warm() -> None:
            try:
                ws = await self._open_socket(output_format)
                if self._closed:
                    _abort(ws)
                else:
                    self._spares.setdefault(output_format, []).append((ws, time.monotonic()))
            except Exception as exc:
                log.info("could not pre-open an ElevenLabs socket: %s", exc)
            finally:
                self._warming.pop(output_format, None)

        self._warming[output_format] = asyncio.create_task(warm(), name="elevenlabs-prewarm")

    def _close_later(self, ws: ClientConnection) -> None:
        if ws.state is State.CLOSED:
            return
        task = asyncio.create_task(ws.close(), name="elevenlabs-ws-close")
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _check_audio_type(content_type: str) -> None:
    """A 200 with an HTML or JSON body (a proxy's error page) is not audio."""
    kind = content_type.split(";")[0].strip().lower()
    if kind.startswith("text/") or kind.endswith("json"):
        raise ElevenLabsError(f"expected audio, got {kind}")


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ElevenLabsError("non-JSON message on the stream") from exc
    if not isinstance(msg, dict):
        raise ElevenLabsError("unexpected message on the stream")
    return msg


def _b64decode(audio: object) -> bytes:
    if not isinstance(audio, str):
        raise ElevenLabsError("audio is not a base64 string")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ElevenLabsError("audio is not valid base64") from exc


def _ws_error_status(msg: Mapping[str, Any]) -> int | None:
    """Errors that are refusals (bad key, quota) count as such; others are plain errors."""
    kind = str(msg.get("error") or "").lower()
    if "api_key" in kind or "auth" in kind:
        return 401
    if "quota" in kind or "limit" in kind or "concurren" in kind:
        return 429
    return None


def _abort(ws: ClientConnection) -> None:
    if ws.state is not State.CLOSED and ws.transport is not None:
        ws.transport.abort()


def _is_loopback(url: str) -> bool:
    host = httpx.URL(url.replace("ws", "http", 1)).host
    return host in ("127.0.0.1", "localhost", "::1")
