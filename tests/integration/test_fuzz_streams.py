"""Both media streams as a whole under random message sequences, against a live server.

Hypothesis writes whole conversations for a hostile or broken peer: valid and invalid
messages, oversized text, binary frames, events out of order, another streamSid, media
before start, huge or negative timestamps and counters, bad tokens, junk DTMF. Each runs
through the real route, transport (``TwilioMediaStream`` / ``WebMediaStream``), protocol
parser and a real ``CallSession`` with instant engines, over real sockets. Promises checked:

* no exception escapes a stream (nothing is logged with a traceback; no call ends "error");
* the server stays healthy: a call placed before the fuzz, still open throughout, answers a
  question afterwards, and a new call works;
* bad messages are counted in ``taina_bad_messages_total``;
* memory stays bounded (a timestamp far in the future allocates nothing; the process grows by
  a few MB at most), and media timestamps cannot make the server process more audio than the
  wall clock allows.

Examples are derandomized, so CI runs the same sequences every time.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import json
import logging
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from app.connection_limits import call_registry
from app.main import create_app
from pipeline.instant_engines import EnergyVad, EnergyVadStream
from telephony.simulator import parse_stream_twiml
from telephony.twilio_protocol import Connected, Start, parse_message
from tests.integration.conftest import LiveServer, instant_engines, settings_for
from tests.integration.test_twilio_stream import RawStream, frames_of
from tests.integration.test_web_stream import frames as web_frames

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the server, a client loop, and the error log ------------------------------------------------


class ClientLoop:
    """An event loop in its own thread for the test's clients, so sockets (the victim call)
    live across Hypothesis examples, which are plain synchronous calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class ErrorLog(logging.Handler):
    """Every log record carrying a traceback, from any logger of the process."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Exception in ASGI" in record.getMessage():
            self.records.append(record)

    def describe(self) -> str:
        return "\n".join(f"{r.name}: {r.getMessage()}" for r in self.records)


class CountingVadStream(EnergyVadStream):
    """The instant VAD, counting the windows every session feeds it (32 ms each at 16 kHz)."""

    windows = 0

    def probability(self, window: np.ndarray) -> float:
        CountingVadStream.windows += 1
        return super().probability(window)


class CountingVad(EnergyVad):
    def stream(self, sample_rate: int) -> EnergyVadStream:
        return CountingVadStream(sample_rate)


@dataclass
class Env:
    server: LiveServer
    client: ClientLoop
    errors: ErrorLog
    victim: RawStream | None = None

    @property
    def app(self) -> Any:
        return self.server.app

    def bad_total(self, transport: str) -> float:
        counter = self.server.services.metrics.bad_messages_total
        return sum(
            s.value
            for metric in counter.collect()
            for s in metric.samples
            if s.name.endswith("_total") and s.labels.get("transport") == transport
        )

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every stream of the last example has finished on the server."""
        deadline = time.monotonic() + timeout
        registry = call_registry(self.app, 3600)
        while True:
            pending = getattr(self.app.state, "twilio_pending", None)
            web = getattr(self.app.state, "web_connections", None)
            idle = (
                (pending is None or pending.total == 0)
                and (web is None or web.total == 0)
                and registry.live == (1 if self.victim else 0)
            )
            if idle:
                return
            assert time.monotonic() < deadline, "a stream never finished on the server"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    settings_ = settings_for(
        Path(tmp_path_factory.mktemp("fuzz")),
        max_bad_messages=100_000,  # the fuzz counts every bad message; flood closing is tested
        web_max_messages_per_s=100_000,
        # A fuzzed burst of audio is a flood; banning loopback for 30 s would refuse the next
        # example's connection (403). The ban has its own tests (test_flood_*).
        inbound_flood_ban_s=0.0,
    )
    engines = dataclasses.replace(instant_engines(), vad=CountingVad())
    server = LiveServer(create_app(settings_, engines=engines)).start()
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    client = ClientLoop()
    try:
        yield Env(server, client, errors)
    finally:
        logging.getLogger().removeHandler(errors)
        client.close()
        server.stop()


# --- what a hostile Twilio can send --------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
NUMBER = st.one_of(
    st.none(),
    st.sampled_from([-1, -20, 0, 20, 2**31, 2**62, 2**63 - 1, 2**64 - 1]),
    st.integers(-(2**63), 2**64 - 1),
    st.integers(0, 10**6).map(str),
    st.just("9" * 30),
    st.just("-20"),
    st.text(max_size=6),
)
SID = st.sampled_from(["own", "own", "own", "other", "missing"])
MEDIA = st.tuples(
    st.just("media"),
    SID,
    NUMBER,
    NUMBER,
    st.one_of(st.binary(max_size=400), st.just(b"\xff" * 160)),
    st.sampled_from(["inbound", "inbound", None, "outbound", "bad-base64"]),
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each ``weight`` times as likely as a weight of 1."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


START = st.tuples(
    st.just("start"), st.sampled_from(["valid", "bad-token", "no-token", "other-call"])
)
TWILIO_ACTION = weighted(
    (10, MEDIA),
    (2, START),
    (2, st.tuples(st.just("mark"), SID, st.one_of(st.text(max_size=70), JSON))),
    (
        2,
        st.tuples(st.just("dtmf"), SID, st.one_of(st.sampled_from(list("0123456789*#ABCD")), JSON)),
    ),
    (1, st.tuples(st.just("stop"), st.sampled_from(["other", "missing"]))),  # the own: last
    (1, st.tuples(st.just("connected"))),
    (2, st.tuples(st.just("text"), st.text(max_size=120))),
    (2, st.tuples(st.just("json"), JSON)),
    (2, st.tuples(st.just("binary"), st.binary(max_size=300))),
    (2, st.tuples(st.just("event"), st.text(max_size=12), JSON)),
    (1, st.tuples(st.just("oversized"), st.integers(64 * 1024 + 1, 100 * 1024))),
    (1, st.tuples(st.just("pause"), st.integers(0, 30))),
)
# Most scripts get past a valid start, so the fuzz reaches the started call's code paths; a
# stop for this stream, when there is one, comes last (it ends the call).
TWILIO_SCRIPT = st.builds(
    lambda before, start, after, stop: [
        *before,
        *([("start", "valid")] if start else []),
        *after,
        *([("stop", "own")] if stop else []),
    ],
    st.lists(TWILIO_ACTION, max_size=4),
    st.sampled_from([True, True, True, False]),
    st.lists(TWILIO_ACTION, min_size=5, max_size=40),
    st.booleans(),
)


def render(action: tuple[Any, ...], call: RawStream, token: str) -> str | bytes | None:
    """One action as the exact message to send (None for a pause)."""
    kind = action[0]

    def sid(which: str) -> str | None:
        return {"own": call.stream_sid, "other": "MZ" + "0" * 32, "missing": None}[which]

    def msg(event: str, which: str, **body: Any) -> str:
        m: dict[str, Any] = {"event": event, "sequenceNumber": str(secrets.randbelow(10**6))}
        if sid(which) is not None:
            m["streamSid"] = sid(which)
        m.update(body)
        return json.dumps(m)

    if kind == "start":
        params = {"token": token, "from": "+18095550100"}
        if action[1] == "bad-token":
            params["token"] = token[:-4] + "AAAA"
        elif action[1] == "no-token":
            del params["token"]
        start = {
            "accountSid": "AC" + "0" * 32,
            "streamSid": call.stream_sid,
            "callSid": "CA" + "f" * 32 if action[1] == "other-call" else call.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": params,
        }
        return msg("start", "own", start=start)
    if kind == "media":
        _, which, timestamp, chunk, payload, track = action
        media: dict[str, Any] = {"payload": base64.b64encode(payload).decode()}
        if track == "bad-base64":
            media["payload"] = "%%%" + media["payload"]
        elif track is not None:
            media["track"] = track
        if timestamp is not None:
            media["timestamp"] = timestamp
        if chunk is not None:
            media["chunk"] = chunk
        return msg("media", which, media=media)
    if kind == "mark":
        return msg("mark", action[1], mark={"name": action[2]})
    if kind == "dtmf":
        return msg("dtmf", action[1], dtmf={"digit": action[2], "track": "inbound_track"})
    if kind == "stop":
        return msg("stop", action[1], stop={"callSid": call.call_sid})
    if kind == "connected":
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    if kind == "text":
        return action[1]
    if kind == "json":
        return json.dumps(action[1])
    if kind == "binary":
        return action[1]
    if kind == "event":
        return json.dumps({"event": action[1], "streamSid": call.stream_sid, "x": action[2]})
    if kind == "oversized":
        return "x" * action[1]
    return None


async def _webhook(server: LiveServer, call: RawStream) -> str:
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{server.url}/twilio/voice",
            data={"CallSid": call.call_sid, "From": "+18095550100", "To": "+18095550199"},
        )
    assert r.status_code == 200, r.text
    return parse_stream_twiml(r.text).parameters["token"]


async def _drain(ws: websockets.ClientConnection, seconds: float) -> list[str | bytes]:
    """Read whatever the server sends for a moment (never echoing marks)."""
    got: list[str | bytes] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while (left := end - loop.time()) > 0:
            got.append(await asyncio.wait_for(ws.recv(), left))
    except (TimeoutError, ConnectionClosed):
        pass
    return got


async def play_twilio(server: LiveServer, actions: list[tuple[Any, ...]]) -> tuple[RawStream, int]:
    """Send the actions on one stream; returns the call and how many messages were surely bad
    (everything before the first start, except ``connected``: refused by the parser or as
    "before start")."""
    call = RawStream(server)
    token = await _webhook(server, call)
    surely_bad = 0
    seen_start = False
    async with websockets.connect(
        f"ws://127.0.0.1:{server.port}/twilio/stream", max_size=None
    ) as ws:
        for action in actions:
            raw = render(action, call, token)
            if raw is None:
                await asyncio.sleep(action[1] / 1000)
                continue
            parsed = parse_message(raw, 64 * 1024)
            seen_start = seen_start or action[0] == "start" or isinstance(parsed, Start)
            try:
                await ws.send(raw)
            except ConnectionClosed:
                break
            if not seen_start and not isinstance(parsed, Connected):
                surely_bad += 1
        await _drain(ws, 0.02)
    return call, surely_bad


# --- the tests -----------------------------------------------------------------------------------


def test_twilio_stream_survives_any_message_sequence(env: Env) -> None:
    server = env.server
    victim = env.victim = RawStream(server)

    async def open_victim() -> None:
        await victim.connect()
        await victim.start(await victim.webhook())
        await victim.collect(0.5)

    env.client.run(open_victim())
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    env.settle()

    @FUZZ
    @given(TWILIO_SCRIPT)
    def one_stream(actions: list[tuple[Any, ...]]) -> None:
        env.errors.records.clear()
        before = env.bad_total("twilio")
        call, surely_bad = env.client.run(play_twilio(server, actions), timeout=60)
        env.settle()
        assert not env.errors.records, env.errors.describe()
        assert env.bad_total("twilio") - before >= surely_bad
        view = server.call_view(call.call_sid)
        if view is not None:  # a valid start made a call: it ended cleanly and was recorded
            deadline = time.monotonic() + 5
            while view.end_reason is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert view.end_reason is not None and view.end_reason != "error", view.end_reason

    one_stream()

    gc.collect()
    grown_mb = (process.memory_info().rss - rss_before) / 1e6
    assert grown_mb < 60, f"the server process grew by {grown_mb:.0f} MB"

    async def victim_still_answers() -> None:
        await victim.media(frames_of(True, 600) + frames_of(False, 800))
        reply = await victim.collect(1.5)
        assert any(m["event"] == "media" for m in reply), "the open call stopped answering"
        await victim.stop()

    env.client.run(victim_still_answers())
    env.victim = None
    view = server.call_view(victim.call_sid)
    deadline = time.monotonic() + 5
    while view.end_reason is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert view.end_reason == "caller-hangup"
    assert [t.speaker for t in view.turns][:3] == ["bot", "caller", "bot"]
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    assert not env.errors.records, env.errors.describe()


def test_timestamps_cannot_outrun_the_clock(env: Env) -> None:
    """A timestamp far in the future, negative, then jumps of a second on every message: the
    session is fed at most what the wall clock allows, and nothing big is allocated."""
    server = env.server
    env.settle()

    async def scenario() -> tuple[float, int]:
        call = RawStream(server)
        await call.connect()
        await call.start(await call.webhook())
        await call.collect(0.2)
        before = CountingVadStream.windows
        t0 = time.monotonic()
        payload = base64.b64encode(b"\xff" * 160).decode()
        stamps = [0, 2**63 - 1, -5, 20, 2**62] + [40 + 1000 * i for i in range(1, 300)]
        for ts in stamps:
            await call.send(
                {
                    "event": "media",
                    "streamSid": call.stream_sid,
                    "media": {"timestamp": ts, "chunk": ts, "payload": payload},
                }
            )
        try:  # 6 s of audio sent at once: the server may close the stream as a flood
            await call.collect(0.2, echo_marks=False)
            await call.stop()
            await _drain(call.ws, 0.3)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
        elapsed = time.monotonic() - t0
        return elapsed, CountingVadStream.windows - before

    elapsed, windows = env.client.run(scenario())
    fed_s = windows * 0.032  # the instant VAD's 32 ms windows
    payload_s = 304 * 0.02
    # Without a bound the jumps alone would feed ~300 s of silence in well under a second.
    assert fed_s <= payload_s + elapsed + 1.5, (fed_s, elapsed)


# --- the browser stream --------------------------------------------------------------------------

NAME = st.one_of(
    st.sampled_from(["m1", "0", "web-1:2.3_x", "a" * 64, "a" * 65, ""]),
    st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
    st.text(max_size=70),
    JSON,
)
WEB_ACTION = weighted(
    (8, st.tuples(st.just("audio"), st.integers(0, 1200))),
    (1, st.tuples(st.just("start"), st.one_of(st.text(max_size=70), JSON))),
    (2, st.tuples(st.just("mark"), NAME)),
    (2, st.tuples(st.just("dtmf"), st.one_of(st.sampled_from(list("0123456789*#")), JSON))),
    (2, st.tuples(st.just("type"), JSON)),
    (2, st.tuples(st.just("text"), st.text(max_size=200))),
    (2, st.tuples(st.just("binary"), st.binary(max_size=700))),
    (1, st.tuples(st.just("pause"), st.integers(0, 30))),
)
# Closing frames (a fatal oversized frame, a hangup) end the call, so they come last.
WEB_SCRIPT = st.builds(
    lambda before, start, after, end: [
        *before,
        *([("start", "fuzz")] if start else []),
        *after,
        *([end] if end else []),
    ],
    st.lists(WEB_ACTION, max_size=3),
    st.sampled_from([True, True, True, False]),
    st.lists(WEB_ACTION, min_size=5, max_size=40),
    st.one_of(
        st.none(),
        st.tuples(st.just("hangup")),
        st.tuples(st.just("oversized-binary"), st.integers(8193, 40_000)),
        st.tuples(st.just("oversized-text"), st.integers(2049, 10_000)),
    ),
)


def render_web(action: tuple[Any, ...], rng: np.random.Generator) -> str | bytes | None:
    kind = action[0]
    if kind in ("start", "mark"):
        key = "session" if kind == "start" else "name"
        return json.dumps({"type": kind, key: action[1]})
    if kind == "dtmf":
        return json.dumps({"type": "dtmf", "digit": action[1]})
    if kind == "hangup":
        return '{"type":"hangup"}'
    if kind == "type":
        return json.dumps({"type": action[1]})
    if kind == "text":
        return action[1]
    if kind == "audio":  # PCM16 noise of any byte count, odd included
        return rng.integers(0, 256, action[1], dtype=np.uint8).tobytes()
    if kind == "binary":
        return action[1]
    if kind == "oversized-binary":
        return bytes(action[1])
    if kind == "oversized-text":
        return "y" * action[1]
    return None


async def play_web(server: LiveServer, actions: list[tuple[Any, ...]]) -> str | None:
    rng = np.random.default_rng(len(actions))
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/web/stream") as ws:
        for action in actions:
            raw = render_web(action, rng)
            if raw is None:
                await asyncio.sleep(action[1] / 1000)
                continue
            try:
                await ws.send(raw)
            except ConnectionClosed:
                break
        got = await _drain(ws, 0.05)
    for raw in got:
        if isinstance(raw, str) and '"started"' in raw:
            return json.loads(raw)["call_id"]
    return None


def test_web_stream_survives_any_frame_sequence(env: Env) -> None:
    server = env.server
    env.settle()

    @FUZZ
    @given(WEB_SCRIPT)
    def one_page(actions: list[tuple[Any, ...]]) -> None:
        env.errors.records.clear()
        call_id = env.client.run(play_web(server, actions), timeout=60)
        env.settle()
        assert not env.errors.records, env.errors.describe()
        if call_id is not None:
            view = server.call_view(call_id)
            deadline = time.monotonic() + 5
            while view is not None and view.end_reason is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert view is not None and view.end_reason not in (None, "error"), view

    one_page()

    async def a_real_visit() -> None:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/web/stream") as ws:
            await ws.send(json.dumps({"type": "start", "session": "after-fuzz"}))
            for frame in web_frames(True, 600) + web_frames(False, 900):
                await ws.send(frame)
                await asyncio.sleep(0.02)  # real time: inbound audio is paced
            got = await _drain(ws, 1.5)
        texts = [json.loads(m) for m in got if isinstance(m, str)]
        assert any(m["type"] == "caption" and m["speaker"] == "caller" for m in texts)

    env.client.run(a_real_visit())
    assert not env.errors.records, env.errors.describe()
