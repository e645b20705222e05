"""A local server that speaks Deepgram's live transcription protocol (``WS /v1/listen``).

What it implements, as Deepgram documents it: the upgrade is refused with HTTP 401 unless it
carries ``Authorization: Token <key>``; the query configures the stream (model, language,
encoding, sample_rate, interim_results, endpointing, utterance_end_ms, vad_events); binary
frames are audio; text frames are the control messages ``KeepAlive``, ``Finalize`` and
``CloseStream``; the server answers with ``Results`` (interim, ``is_final``, ``speech_final``,
``from_finalize``), ``SpeechStarted``, ``UtteranceEnd`` and, on CloseStream, ``Metadata``
before it closes. Times in results are seconds of the audio this connection received.

The "recogniser" is a loudness detector reading the real audio (mu-law or linear16): loud
20 ms windows are speech. Each utterance it hears is given the next scripted text, revealed
word by word in interim results and finalized at the endpoint (``endpointing`` ms of
silence), on a Finalize, or in pieces during long speech. The script position is kept across
connections, so an utterance interrupted by a dropped socket finishes on the next one.

Fault modes: ``refuse`` (HTTP ``refuse_status`` at the upgrade), ``hang_upgrade`` (never
answers the upgrade), ``stall`` (accepts, reads, never answers), ``drop`` (aborts the TCP
connection after ``drop_after_bytes`` of audio, for the first ``drop_connections``
connections; ``after_drop`` is the fault mode from then on, e.g. ``refuse``: the provider died
and stays down), ``garbage`` (non-JSON text, wrong shapes, unknown types and binary frames
interleaved with the real messages).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

if sys.version_info >= (3, 13):  # pragma: no cover
    import audioop
else:  # pragma: no cover
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

Fault = Literal["refuse", "hang_upgrade", "stall", "drop", "garbage"]

GARBAGE: list[str | bytes] = [
    "this is not json {",
    json.dumps({"type": "Results", "channel": "oops"}),
    json.dumps(
        {
            "type": "Results",
            "start": 0.0,
            "duration": 0.1,
            "is_final": True,
            "channel": {"alternatives": [{"transcript": 42}]},
        }
    ),
    json.dumps(
        {
            "type": "Results",
            "start": "soon",
            "duration": None,
            "channel": {"alternatives": [{"transcript": "basura"}]},
        }
    ),
    json.dumps([1, 2, 3]),
    json.dumps({"type": "Mystery", "data": 1}),
    b"\x00\x01\x02 binary from the server",
]

WINDOW_MS = 20
MAX_KEPT_AUDIO = 4 * 1024 * 1024


@dataclass
class FakeConnection:
    """What one client connection sent and received, for assertions."""

    path: str
    query: dict[str, str]
    authorization: str | None
    audio: bytearray = field(default_factory=bytearray)  # first MAX_KEPT_AUDIO bytes
    audio_bytes: int = 0
    frames: int = 0
    controls: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # monotonic, one per ``sent``
    frame_times: list[tuple[float, int]] = field(default_factory=list)  # (arrival, bytes)
    closed: str | None = None  # "client", "closestream", "dropped", "server"

    def results(self, **match: object) -> list[dict[str, Any]]:
        return [
            m
            for m in self.sent
            if m.get("type") == "Results" and all(m.get(k) == v for k, v in match.items())
        ]


class _Recogniser:
    """Per-connection speech detection on the audio clock."""

    def __init__(self, server: FakeDeepgram, conn: FakeConnection) -> None:
        q = conn.query
        self.server = server
        self.conn = conn
        self.encoding = q.get("encoding", "linear16")
        self.rate = int(q.get("sample_rate", "16000"))
        self.sample_bytes = 1 if self.encoding in ("mulaw", "alaw") else 2
        self.window_bytes = self.rate * WINDOW_MS // 1000 * self.sample_bytes
        self.interim = q.get("interim_results") == "true"
        self.vad_events = q.get("vad_events") == "true"
        ep = q.get("endpointing", "10")
        self.endpointing_ms = 0 if ep == "false" else int(ep)
        self.utterance_end_ms = int(q.get("utterance_end_ms", "0") or 0)
        self.request_id = str(uuid.uuid4())
        self.buf = bytearray()
        self.samples = 0
        self.active = False
        self.seg_start_s = 0.0  # where the audio not yet finalized begins
        self.seg_speech_ms = 0
        self.since_interim_ms = 0
        self.silence_ms = 0
        self.idle_ms = 0
        self.last_word_end_s = 0.0
        self.utterance_end_pending = False

    @property
    def t(self) -> float:
        return self.samples / self.rate

    def feed(self, audio: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self.buf += audio
        wb = self.window_bytes
        while len(self.buf) >= wb:
            window = bytes(self.buf[:wb])
            del self.buf[:wb]
            pcm = audioop.ulaw2lin(window, 2) if self.encoding == "mulaw" else window
            loud = audioop.rms(pcm, 2) >= self.server.energy_threshold
            self.samples += wb // self.sample_bytes
            self._window(loud, out)
        return out

    def _window(self, loud: bool, out: list[dict[str, Any]]) -> None:
        srv = self.server
        if loud:
            if not self.active:
                self.active = True
                self.seg_speech_ms = 0
                self.since_interim_ms = 0
                if self.vad_events:
                    out.append(
                        {
                            "type": "SpeechStarted",
                            "channel": [0],
                            "timestamp": round(self.t - WINDOW_MS / 1000, 3),
                        }
                    )
            self.seg_speech_ms += WINDOW_MS
            self.since_interim_ms += WINDOW_MS
            self.silence_ms = 0
            self.idle_ms = 0
            self.last_word_end_s = self.t
            if srv.final_every_ms and self.seg_speech_ms >= srv.final_every_ms:
                out.append(self._result(srv.take_words(self.seg_speech_ms, complete=False)))
                self.seg_speech_ms = 0
            elif self.interim and self.since_interim_ms >= srv.interim_ms:
                self.since_interim_ms = 0
                out.append(self._result(srv.peek_words(self.seg_speech_ms), is_final=False))
            return
        self.silence_ms += WINDOW_MS
        if self.active:
            if self.endpointing_ms and self.silence_ms >= self.endpointing_ms:
                out.append(self._result(srv.take_words(0, complete=True), speech_final=True))
                self.active = False
                self.seg_speech_ms = 0
                self.utterance_end_pending = self.utterance_end_ms > 0
            elif (
                not self.endpointing_ms
                and self.utterance_end_ms
                and self.silence_ms >= self.utterance_end_ms
            ):
                # No endpointing: the words still become final, just never speech_final.
                out.append(self._result(srv.take_words(0, complete=True)))
                self.active = False
                self.seg_speech_ms = 0
                self.utterance_end_pending = True
        else:
            self.idle_ms += WINDOW_MS
            if srv.silence_final_ms and self.idle_ms >= srv.silence_final_ms:
                self.idle_ms = 0
                out.append(self._result(""))
        if self.utterance_end_pending and self.silence_ms >= self.utterance_end_ms:
            self.utterance_end_pending = False
            out.append(
                {
                    "type": "UtteranceEnd",
                    "channel": [0, 1],
                    "last_word_end": round(self.last_word_end_s, 3),
                }
            )

    def finalize(self) -> dict[str, Any] | None:
        """Answer to a Finalize: everything heard so far becomes final."""
        if self.active or self.seg_speech_ms:
            result = self._result(self.server.take_words(0, complete=True), from_finalize=True)
            self.active = False
            self.seg_speech_ms = 0
            self.utterance_end_pending = self.utterance_end_ms > 0
            return result
        if self.server.finalize_reply:
            return self._result("", from_finalize=True)
        self.seg_start_s = self.t
        return None

    def _result(
        self,
        transcript: str,
        *,
        is_final: bool = True,
        speech_final: bool = False,
        from_finalize: bool = False,
    ) -> dict[str, Any]:
        start = self.seg_start_s
        end = self.t
        if is_final:
            self.seg_start_s = end
        words = transcript.split()
        step = (end - start) / max(len(words), 1)
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(end - start, 6),
            "start": round(start, 6),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": transcript,
                        "confidence": 0.98 if words else 0.0,
                        "words": [
                            {
                                "word": w.strip("¿?¡!.,").lower(),
                                "start": round(start + i * step, 3),
                                "end": round(start + (i + 1) * step, 3),
                                "confidence": 0.98,
                                "punctuated_word": w,
                            }
                            for i, w in enumerate(words)
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": "general", "version": "fake", "arch": "nova"},
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            },
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0" * 64,
            "created": datetime.now(UTC).isoformat(),
            "duration": round(self.t, 3),
            "channels": 1,
        }


class FakeDeepgram:
    def __init__(
        self,
        api_key: str = "test-key",
        texts: Sequence[str] = ("Hola, buenos días.",),
        *,
        fault: Fault | None = None,
        refuse_status: int = 401,
        drop_after_bytes: int = 0,
        drop_connections: int = 1,
        after_drop: Fault | None = None,
        finalize_reply: bool = True,
        finalize_delay_s: float = 0.0,
        word_ms: int = 150,
        interim_ms: int = 100,
        final_every_ms: int = 3000,
        silence_final_ms: int = 2000,
        energy_threshold: int = 500,
        record_timing: bool = False,
    ) -> None:
        self.api_key = api_key
        self.texts = list(texts)
        self.fault = fault
        self.refuse_status = refuse_status
        self.drop_after_bytes = drop_after_bytes
        self.drop_connections = drop_connections
        self.after_drop = after_drop
        self.finalize_reply = finalize_reply
        self.finalize_delay_s = finalize_delay_s
        self._later: set[asyncio.Task[None]] = set()
        self.word_ms = word_ms
        self.interim_ms = interim_ms
        self.final_every_ms = final_every_ms
        self.silence_final_ms = silence_final_ms
        self.energy_threshold = energy_threshold
        self.record_timing = record_timing

        self.connections: list[FakeConnection] = []
        self.refused: list[dict[str, Any]] = []
        self.recognised: list[str] = []  # each completed utterance's whole text
        self._item = 0
        self._done_words = 0
        self._pieces: list[str] = []
        self._dropped = 0
        self._garbage_i = 0
        self._server: Server | None = None
        self._release = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- script --------------------------------------------------------------------------
    def _words(self) -> list[str]:
        if not self.texts:
            return []
        return self.texts[min(self._item, len(self.texts) - 1)].split()

    def _revealed(self, seg_speech_ms: int) -> int:
        words = self._words()
        return min(len(words), self._done_words + max(1, seg_speech_ms // self.word_ms))

    def peek_words(self, seg_speech_ms: int) -> str:
        return " ".join(self._words()[self._done_words : self._revealed(seg_speech_ms)])

    def take_words(self, seg_speech_ms: int, *, complete: bool) -> str:
        words = self._words()
        upto = len(words) if complete else self._revealed(seg_speech_ms)
        piece = " ".join(words[self._done_words : upto])
        self._done_words = upto
        if piece:
            self._pieces.append(piece)
        if complete:
            self.recognised.append(" ".join(self._pieces))
            self._pieces = []
            self._item += 1
            self._done_words = 0
        return piece

    # --- server --------------------------------------------------------------------------
    async def start(self) -> FakeDeepgram:
        self._release = asyncio.Event()
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=4 * 1024 * 1024,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeDeepgram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = urlsplit(request.path).path
        auth = request.headers.get("Authorization")
        record = {"path": request.path, "authorization": auth}
        if path != "/v1/listen":
            self.refused.append({**record, "status": 404})
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if self.fault == "hang_upgrade":
            await self._release.wait()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "gone\n")
        if auth != f"Token {self.api_key}":
            self.refused.append({**record, "status": 401})
            return _json_response(
                401, {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}
            )
        if self.fault == "refuse":
            self.refused.append({**record, "status": self.refuse_status})
            return _json_response(
                self.refuse_status, {"err_code": "REFUSED", "err_msg": "Scripted refusal."}
            )
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        conn = FakeConnection(
            path=request.path,
            query=dict(parse_qsl(urlsplit(request.path).query)),
            authorization=request.headers.get("Authorization"),
        )
        self.connections.append(conn)
        rec = _Recogniser(self, conn)
        if self.fault == "garbage":
            for junk in GARBAGE:
                await ws.send(junk)
        try:
            async for msg in ws:
                if isinstance(msg, bytes):
                    if (
                        self.fault == "drop"
                        and self._dropped < self.drop_connections
                        and conn.audio_bytes + len(msg) > self.drop_after_bytes
                    ):
                        # Gone before this frame was heard: no answer about it was sent.
                        self._dropped += 1
                        conn.closed = "dropped"
                        if self.after_drop is not None:
                            self.fault = self.after_drop
                        ws.transport.abort()
                        return
                    conn.frames += 1
                    conn.audio_bytes += len(msg)
                    if self.record_timing:
                        conn.frame_times.append((time.monotonic(), len(msg)))
                    if len(conn.audio) < MAX_KEPT_AUDIO:
                        conn.audio += msg[: MAX_KEPT_AUDIO - len(conn.audio)]
                    for reply in rec.feed(msg):
                        await self._send(ws, conn, reply)
                    continue
                try:
                    kind = json.loads(msg).get("type")
                except (ValueError, AttributeError):
                    kind = "?"
                conn.controls.append(str(kind))
                if kind == "Finalize":
                    reply = rec.finalize()
                    if reply is not None and self.finalize_delay_s > 0:
                        task = asyncio.create_task(self._send_later(ws, conn, reply))
                        self._later.add(task)
                        task.add_done_callback(self._later.discard)
                    elif reply is not None:
                        await self._send(ws, conn, reply)
                elif kind == "CloseStream":
                    if self.fault == "stall":
                        continue
                    await self._send(ws, conn, rec.metadata())
                    conn.closed = "closestream"
                    await ws.close()
                    return
        except ConnectionClosed:
            pass
        if conn.closed is None:
            conn.closed = "client"

    async def _send_later(
        self, ws: ServerConnection, conn: FakeConnection, msg: dict[str, Any]
    ) -> None:
        await asyncio.sleep(self.finalize_delay_s)
        try:
            await self._send(ws, conn, msg)
        except ConnectionClosed:
            pass

    async def _send(self, ws: ServerConnection, conn: FakeConnection, msg: dict[str, Any]) -> None:
        if self.fault == "stall":
            return
        conn.sent.append(msg)
        conn.sent_at.append(time.monotonic())
        await ws.send(json.dumps(msg))
        if self.fault == "garbage":
            junk = GARBAGE[self._garbage_i % len(GARBAGE)]
            self._garbage_i += 1
            await ws.send(junk)


def _json_response(status: int, body: dict[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status, HTTPStatus(status).phrase, headers, data)


@contextmanager
def running_in_thread(**kwargs: Any) -> Iterator[FakeDeepgram]:
    """The fake on its own event loop in a thread, like a remote server: for benchmarks and
    for tests whose own loop is busy."""
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        fake = FakeDeepgram(**kwargs)
        holder["fake"] = fake
        loop.run_until_complete(fake.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(fake.stop())
        loop.close()

    thread = threading.Thread(target=run, name="fake-deepgram", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("fake Deepgram did not start")
    try:
        yield holder["fake"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)
        thread.join(10)
