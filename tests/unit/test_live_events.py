"""The live-events hub, its brokers and the SSE endpoint.

In-process behaviour needs nothing; the Postgres LISTEN/NOTIFY backend runs against the real
server at ``TEST_DATABASE_URL`` and the Redis backend against ``TEST_REDIS_URL`` (each skipped,
saying so, when its variable is unset).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.api_live import event_stream, router, sse_message
from app.auth import LocalTokenVerifier, Principal, issue_token
from app.live_events import (
    MAX_PAYLOAD_BYTES,
    LiveEvents,
    LiveObserver,
    PostgresBackend,
    RedisBackend,
    asyncpg_dsn,
    choose_backend,
    fit_payload,
    live_events_from_settings,
)
from app.settings import Settings
from pipeline.records import CallInfo, TurnRecord

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
NOW = datetime(2030, 3, 4, 14, 0, tzinfo=UTC)

needs_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="TEST_DATABASE_URL is not set: Postgres LISTEN/NOTIFY live-events tests skipped",
)
needs_redis = pytest.mark.skipif(
    not TEST_REDIS_URL,
    reason="TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0): "
    "Redis pub/sub live-events tests skipped",
)


def info(call_sid: str = "CA1") -> CallInfo:
    return CallInfo(
        call_id=call_sid,
        ingress="twilio",
        caller_number="+18095550100",
        called_number="+18095550199",
        stream_id="MZ1",
        started_at=NOW,
    )


def turn(seq: int, speaker: str = "bot", text: str = "Buenos días.", **kw: Any) -> TurnRecord:
    return TurnRecord(
        seq=seq,
        speaker=speaker,  # type: ignore[arg-type]
        text=text,
        heard_text=kw.pop("heard_text", text),
        interrupted=kw.pop("interrupted", False),
        started_at=NOW,
        ended_at=NOW,
        **kw,
    )


async def next_event(sub: Any, timeout: float = 5.0) -> dict[str, Any]:
    event = await sub.get(timeout)
    assert event is not None, "no event within the timeout"
    return event


@pytest.fixture
async def hub() -> AsyncIterator[LiveEvents]:
    h = LiveEvents()
    await h.start()
    yield h
    await h.aclose()


# --- in-process -------------------------------------------------------------------------------


async def test_observer_events_reach_every_subscriber(hub: LiveEvents) -> None:
    obs = LiveObserver(hub)
    with hub.subscribe() as a, hub.subscribe() as b:
        obs.call_started(info())
        obs.turn_ended("CA1", turn(0, timings={"first_byte_ms": 412.34}))
        obs.turn_ended("CA1", turn(1, "caller", "Quiero una cita para la cédula", dtmf="1"))
        obs.turn_ended(
            "CA1",
            turn(2, text="Claro. ¿Para qué día?", heard_text="Claro.", interrupted=True),
        )
        obs.call_ended("CA1", NOW, "caller-hangup", "booked")
        for sub in (a, b):
            got = [await next_event(sub) for _ in range(5)]
            assert [e["type"] for e in got] == [
                "call_started",
                "turn",
                "turn",
                "turn",
                "call_ended",
            ]
            started, greet, caller, barged, ended = got
            assert started["caller_number"] == "+18095550100"
            assert started["started_at"] == NOW.isoformat()
            assert greet["latency_ms"] == 412.3 and greet["speaker"] == "bot"
            assert caller["text"] == "Quiero una cita para la cédula" and caller["dtmf"] == "1"
            assert barged["interrupted"] is True and barged["heard_text"] == "Claro."
            assert ended["reason"] == "caller-hangup" and ended["outcome"] == "booked"
            assert {e["pid"] for e in got} == {os.getpid()}
            assert {e["origin"] for e in got} == {hub.origin}
            assert [e["id"] for e in got] == sorted(e["id"] for e in got)


async def test_publish_never_waits_and_slow_subscribers_lose_the_oldest() -> None:
    hub = LiveEvents(subscriber_queue=3)
    await hub.start()
    with hub.subscribe() as slow:
        for i in range(10):
            hub.publish({"type": "turn", "call_sid": "CA1", "seq": i})
        assert slow.dropped == 7
        assert [(await next_event(slow))["seq"] for _ in range(3)] == [7, 8, 9]
    await hub.aclose()


async def test_snapshot_of_calls_in_progress(hub: LiveEvents) -> None:
    obs = LiveObserver(hub)
    obs.call_started(info("CA1"))
    obs.call_started(info("CA2"))
    obs.turn_ended("CA1", turn(0))
    obs.turn_ended("CA1", turn(1, "caller", "Hola"))
    obs.call_ended("CA2", NOW, "caller-hangup", None)
    calls = hub.active_calls()
    assert [c["call_sid"] for c in calls] == ["CA1"]
    assert [t["seq"] for t in calls[0]["turns"]] == [0, 1]


async def test_closing_the_hub_ends_subscriptions(hub: LiveEvents) -> None:
    sub = hub.subscribe()
    waiter = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)
    await hub.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 2)
    hub.publish({"type": "turn"})  # after close: ignored, no error


async def test_publish_from_another_thread_lands_on_the_hub_loop(hub: LiveEvents) -> None:
    with hub.subscribe() as sub:
        t = threading.Thread(target=hub.publish, args=({"type": "turn", "seq": 5},))
        t.start()
        t.join()
        assert (await next_event(sub))["seq"] == 5


def test_payload_fits_a_postgres_notify() -> None:
    long_text = "Señora, la cédula se renueva en la oficina más cercana. " * 400
    payload = fit_payload(
        {"type": "turn", "call_sid": "CA1", "text": long_text, "heard_text": long_text}
    )
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    event = json.loads(payload)
    assert event["truncated"] is True and event["call_sid"] == "CA1"
    assert event["text"].startswith("Señora, la cédula")
    small = fit_payload({"type": "turn", "text": "Hola"})
    assert "truncated" not in json.loads(small)


def test_backend_choice(tmp_path: Any) -> None:
    assert choose_backend(Settings(data_dir=tmp_path)) == "memory"
    pg = "postgresql+asyncpg://u:p@db:5432/taina"
    assert choose_backend(Settings(data_dir=tmp_path, database_url=pg)) == "postgres"
    assert (
        choose_backend(Settings(data_dir=tmp_path, database_url=pg, redis_url="redis://r"))
        == "redis"
    )
    assert choose_backend(Settings(data_dir=tmp_path, live_backend="memory", redis_url="x")) == (
        "memory"
    )
    with pytest.raises(ValueError):
        live_events_from_settings(Settings(data_dir=tmp_path, live_backend="postgres"))
    assert asyncpg_dsn(pg) == "postgresql://u:p@db:5432/taina"


# --- through a broker: a fake one first, to pin down the hub's own logic ----------------------


class FakeBroker:
    def __init__(self) -> None:
        self.listeners: list[Callable[[str], None]] = []
        self.up = True
        self.sent: list[str] = []


class FakeBackend:
    name = "fake"

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.on_reconnect: Callable[[], None] = lambda: None

    async def start(self, deliver: Callable[[str], None], on_reconnect: Callable[[], None]) -> None:
        self.broker.listeners.append(deliver)
        self.on_reconnect = on_reconnect

    async def send(self, payload: str) -> None:
        if not self.broker.up:
            raise ConnectionError("broker down")
        self.broker.sent.append(payload)
        for deliver in list(self.broker.listeners):
            deliver(payload)

    async def aclose(self) -> None:
        pass


async def test_two_hubs_share_events_without_echoes() -> None:
    broker = FakeBroker()
    a = LiveEvents(FakeBackend(broker), retry_initial_s=0.01)
    b = LiveEvents(FakeBackend(broker), retry_initial_s=0.01)
    await a.start()
    await b.start()
    with a.subscribe() as sub_a, b.subscribe() as sub_b:
        LiveObserver(b).turn_ended("CA9", turn(3, "caller", "¿Cuánto cuesta el pasaporte?"))
        got_a = await next_event(sub_a)
        got_b = await next_event(sub_b)
        assert got_a["text"] == got_b["text"] == "¿Cuánto cuesta el pasaporte?"
        assert got_a["origin"] == b.origin
        await asyncio.sleep(0.05)
        assert await sub_b.get(0.05) is None  # b's own event did not come back twice
        assert a.received == 1 and b.received == 0

        broker.up = False
        b.publish({"type": "turn", "call_sid": "CA9", "seq": 4})
        assert (await next_event(sub_b))["seq"] == 4  # local delivery needs no broker
        assert await sub_a.get(0.1) is None
        broker.up = True
        assert (await next_event(sub_a))["seq"] == 4  # queued, then sent when it is back
    await a.aclose()
    await b.aclose()


async def test_reconnect_tells_subscribers_to_resync() -> None:
    backend = FakeBackend(FakeBroker())
    hub = LiveEvents(backend)
    await hub.start()
    with hub.subscribe() as sub:
        backend.on_reconnect()
        assert (await next_event(sub))["type"] == "resync"
    await hub.aclose()


# --- the SSE endpoint -------------------------------------------------------------------------


async def test_event_stream_format(hub: LiveEvents) -> None:
    LiveObserver(hub).call_started(info("CA7"))
    chunks: list[str] = []

    async def read() -> None:
        async for chunk in event_stream(hub, max_s=0.6, heartbeat_s=0.1):
            chunks.append(chunk)
            if len(chunks) == 3:
                LiveObserver(hub).turn_ended("CA7", turn(0, text="Bienvenido."))

    await asyncio.wait_for(read(), 5)
    assert chunks[0].startswith("retry: ")
    assert "event: hello" in chunks[1]
    snapshot = json.loads(chunks[2].split("data: ", 1)[1])
    assert snapshot["type"] == "snapshot" and snapshot["calls"][0]["call_sid"] == "CA7"
    turn_chunk = next(c for c in chunks if c.startswith("id: ") and "event: turn" in c)
    assert json.loads(turn_chunk.split("data: ", 1)[1])["text"] == "Bienvenido."
    assert ": ping\n\n" in chunks  # heartbeats while idle
    assert hub.subscribers == 0  # the stream unsubscribed when it ended


def test_sse_message_escapes_newlines_in_json() -> None:
    msg = sse_message({"type": "turn", "id": 3, "text": "línea uno\nlínea dos"})
    assert msg.startswith("id: 3\nevent: turn\ndata: ")
    assert msg.count("\n") == 4  # the text's newline is escaped inside the JSON


@pytest.fixture
def live_app(hub: LiveEvents) -> tuple[FastAPI, bytes]:
    app = FastAPI()
    key = b"k" * 32
    app.state.token_verifiers = [LocalTokenVerifier(key)]
    app.state.live_events = hub
    app.include_router(router)
    return app, key


def token(key: bytes, role: str) -> str:
    return issue_token(Principal(user_id="7", email=f"{role}@taina.do", role=role), key, 300)


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({"Authorization": "Bearer nonsense"}, {}, 401),
        ({}, {"access_token": "nonsense"}, 401),
        ("citizen", {}, 403),
    ],
)
async def test_live_endpoint_refuses_non_staff(
    live_app: tuple[FastAPI, bytes], headers: Any, params: dict, status: int
) -> None:
    app, key = live_app
    if headers == "citizen":
        headers = {"Authorization": f"Bearer {token(key, 'citizen')}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/api/live", headers=headers, params=params)
    assert r.status_code == status
    assert r.json()["detail"]


async def test_live_endpoint_unavailable_without_a_hub(live_app: tuple[FastAPI, bytes]) -> None:
    app, key = live_app
    del app.state.live_events
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/api/live", params={"access_token": token(key, "agent")})
    assert r.status_code == 503


# --- real brokers -----------------------------------------------------------------------------


async def _pair(make_backend: Callable[[], Any]) -> tuple[LiveEvents, LiveEvents]:
    a, b = LiveEvents(make_backend()), LiveEvents(make_backend())
    await a.start()
    await b.start()
    return a, b


async def _cross_process_roundtrip(a: LiveEvents, b: LiveEvents) -> None:
    with a.subscribe() as sub_a, b.subscribe() as sub_b:
        long_text = "ñ" * 20_000  # 40 kB of UTF-8: must be cut to fit the broker
        LiveObserver(b).turn_ended("CA-x", turn(1, "caller", long_text))
        got = await next_event(sub_a)
        assert got["origin"] == b.origin and got["call_sid"] == "CA-x"
        assert got["truncated"] is True and set(got["text"].rstrip("…")) == {"ñ"}
        assert (await next_event(sub_b))["origin"] == b.origin
        assert await sub_b.get(0.3) is None  # no echo of b's own event
        LiveObserver(a).call_ended("CA-x", NOW, "caller-hangup", None)
        assert (await next_event(sub_b))["type"] == "call_ended"


@needs_postgres
async def test_postgres_listen_notify_between_hubs() -> None:
    assert TEST_DATABASE_URL
    channel = f"taina_live_test_{uuid.uuid4().hex[:8]}"
    a, b = await _pair(lambda: PostgresBackend(TEST_DATABASE_URL, channel))
    try:
        await _cross_process_roundtrip(a, b)
    finally:
        await a.aclose()
        await b.aclose()


@needs_postgres
async def test_postgres_listener_reconnects_after_losing_its_connection() -> None:
    import asyncpg

    assert TEST_DATABASE_URL
    channel = f"taina_live_test_{uuid.uuid4().hex[:8]}"
    backend_a = PostgresBackend(TEST_DATABASE_URL, channel, reconnect_initial_s=0.1)
    a = LiveEvents(backend_a)
    b = LiveEvents(PostgresBackend(TEST_DATABASE_URL, channel))
    await a.start()
    await b.start()
    try:
        with a.subscribe() as sub_a:
            admin = await asyncpg.connect(asyncpg_dsn(TEST_DATABASE_URL))
            try:
                pid = backend_a._conn.get_server_pid()
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            assert (await next_event(sub_a, 15))["type"] == "resync"
            assert backend_a.connects == 2
            b.publish({"type": "turn", "call_sid": "CA-r", "seq": 1})
            assert (await next_event(sub_a))["call_sid"] == "CA-r"
    finally:
        await a.aclose()
        await b.aclose()


@needs_redis
async def test_redis_pubsub_between_hubs() -> None:
    assert TEST_REDIS_URL
    channel = f"taina_live_test_{uuid.uuid4().hex[:8]}"
    a, b = await _pair(lambda: RedisBackend(TEST_REDIS_URL, channel))
    try:
        await _cross_process_roundtrip(a, b)
    finally:
        await a.aclose()
        await b.aclose()


@needs_redis
async def test_redis_subscriber_reconnects_after_being_killed() -> None:
    import redis.asyncio as aioredis

    assert TEST_REDIS_URL
    channel = f"taina_live_test_{uuid.uuid4().hex[:8]}"
    name = f"taina-live-test-{uuid.uuid4().hex[:8]}"
    a = LiveEvents(RedisBackend(TEST_REDIS_URL, channel, reconnect_initial_s=0.1, client_name=name))
    b = LiveEvents(RedisBackend(TEST_REDIS_URL, channel))
    await a.start()
    await b.start()
    admin = aioredis.from_url(TEST_REDIS_URL)
    try:
        with a.subscribe() as sub_a:
            ours = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
            assert ours, "hub a's subscriber is not visible in CLIENT LIST"
            for c in ours:
                await admin.client_kill_filter(_id=c["id"])
            assert (await next_event(sub_a, 15))["type"] == "resync"
            b.publish({"type": "turn", "call_sid": "CA-r", "seq": 2})
            assert (await next_event(sub_a))["call_sid"] == "CA-r"
    finally:
        await admin.aclose()
        await a.aclose()
        await b.aclose()
