"""LiveKit rooms dispatched by webhook to three agent workers sharing claims in Redis.

The pieces are real except the media: the app (``create_app``, instant engines) serves
``POST /livekit/webhook`` on loopback; webhooks are signed the way LiveKit signs them (a JWT
with the API key carrying the body's SHA-256, built with ``livekit-api``'s ``AccessToken``);
the three workers are ``LiveKitAgent.run_dispatched`` with their own claims in a real Redis
and the real ``LiveKitControl`` against the local LiveKit Twirp server
(tests/fake_livekit_twirp.py). Only the WebRTC room is the unit tests' ``FakeRoom`` (no SFU
here): each worker's ``connect`` records which room it joined.

Asserted: a forged webhook is 401; each announced room is joined by exactly one worker and
the rooms are spread over the workers; when one worker dies (its tasks cancelled, no
goodbye), its rooms are claimed and joined by the others once the lease lapses, still once
each; when the callers leave, each room is deleted and its claim and announcement are gone.

Set ``TEST_REDIS_URL`` to run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToJson

from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.metrics import PipelineMetrics
from pipeline.session import Engines, SessionConfig
from telephony.livekit_agent import LiveKitAgent
from telephony.livekit_dispatch import RoomDispatch
from telephony.livekit_sip import LiveKitControl
from tests.fake_livekit_twirp import FakeLiveKitTwirp
from tests.integration.conftest import instant_engines
from tests.unit.test_livekit_room import OUT_RATE, PIPE_RATE, VISITOR, FakeRoom, Harness, until

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
API_KEY = "APIdespacho"
API_SECRET = "un-secreto-de-despacho-bastante-largo-123"
LEASE_S = 1.5

pytestmark = pytest.mark.skipif(
    not TEST_REDIS_URL, reason="TEST_REDIS_URL is not set: LiveKit dispatch test skipped"
)


def signed_webhook(event: str, room: str, secret: str = API_SECRET) -> tuple[str, str]:
    """(body, Authorization) as LiveKit sends them."""
    from livekit import api

    msg = api.WebhookEvent(event=event, room=api.Room(name=room, sid=f"RM_{room}"))
    if event == "participant_joined":
        msg.participant.identity = VISITOR.identity
    body = MessageToJson(msg)
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    token = api.AccessToken(API_KEY, secret).with_sha256(digest).to_jwt()
    return body, token


class Worker:
    """One agent worker: its own LiveKitAgent, claims under its own id."""

    def __init__(self, name: str, settings: Any, dispatch: RoomDispatch) -> None:
        self.name = name
        self.joined: list[str] = []
        self.rooms: dict[str, FakeRoom] = {}
        h = Harness(VISITOR)
        services = SimpleNamespace(
            settings=settings,
            engines=Engines(vad=EnergyVad(), stt=FixedSTT(), tts=ToneTTS(20), brain=h.brain),
            session_config=lambda: SessionConfig(sample_rate=PIPE_RATE),
            observer=h.recent,
            metrics=PipelineMetrics.create(),
        )
        self.control = LiveKitControl(settings)
        self.agent = LiveKitAgent(services, self.control, self.connect)  # type: ignore[arg-type]
        self.dispatch = dispatch
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def connect(self, name: str) -> FakeRoom:
        room = FakeRoom(name)
        self.joined.append(name)
        self.rooms[name] = room
        room.join(VISITOR)
        return room

    def start(self) -> None:
        self.task = asyncio.create_task(
            self.agent.run_dispatched(self.dispatch, self.name, self.stop)
        )

    async def crash(self) -> None:
        """Dies without a word: its loop and its calls stop, its claims stay in Redis."""
        assert self.task is not None
        self.task.cancel()
        calls = list(self.agent._active.values())
        for t in calls:
            t.cancel()
        await asyncio.gather(self.task, *calls, return_exceptions=True)

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None and not self.task.done():
            await asyncio.wait_for(self.task, 10)
        await self.control.aclose()


async def test_three_workers_serve_each_room_once_and_take_over_a_dead_ones_rooms(
    live_server_factory: Any,
) -> None:
    import redis.asyncio as aioredis
    from livekit import api

    from app.settings import Settings

    prefix = f"taina-lk-{uuid.uuid4().hex[:10]}:"
    fake = FakeLiveKitTwirp(api_key=API_KEY, api_secret=API_SECRET)
    await fake.start()
    common = {
        "livekit_url": fake.url,
        "livekit_api_key": API_KEY,
        "livekit_api_secret": API_SECRET,
        "redis_url": TEST_REDIS_URL,
        "redis_prefix": prefix,
        "livekit_claim_lease_s": LEASE_S,
    }
    server = live_server_factory(engines=instant_engines(), live_backend="memory", **common)
    settings = Settings(pipeline_sample_rate=PIPE_RATE, livekit_sample_rate=OUT_RATE, **common)
    client = aioredis.from_url(str(TEST_REDIS_URL))
    workers = [
        Worker(f"worker-{i}", settings, RoomDispatch(client, prefix, lease_s=LEASE_S))
        for i in range(3)
    ]
    rooms = [f"web-despacho-{i}" for i in range(6)]
    try:
        for w in workers:
            w.start()
        async with httpx.AsyncClient(base_url=server.url) as http:
            # Forged: signed with another secret, or not signed at all.
            body, bad = signed_webhook("room_started", rooms[0], secret="x" * 40)
            r = await http.post("/livekit/webhook", content=body, headers={"Authorization": bad})
            assert r.status_code == 401
            r = await http.post("/livekit/webhook", content=body)
            assert r.status_code == 401
            for name in rooms:
                fake.rooms[name] = api.Room(name=name)
                for event in ("room_started", "participant_joined"):  # LiveKit sends both
                    body, auth = signed_webhook(event, name)
                    r = await http.post(
                        "/livekit/webhook", content=body, headers={"Authorization": auth}
                    )
                    assert r.status_code == 204, r.text
            body, auth = signed_webhook("room_started", "otra-sala")  # not TAINA's
            r = await http.post("/livekit/webhook", content=body, headers={"Authorization": auth})
            assert r.status_code == 204

        def joins() -> Counter[str]:
            return Counter(n for w in workers for n in w.joined)

        await until(lambda: set(joins()) == set(rooms), 10)
        await asyncio.sleep(LEASE_S * 1.5)  # renewals and sweeps went by: still once each
        assert all(joins()[n] == 1 for n in rooms), joins()
        assert "otra-sala" not in joins()
        by_worker = {w.name: sorted(w.joined) for w in workers}
        assert sum(1 for j in by_worker.values() if j) >= 2, by_worker
        await until(lambda: all(r.frames for w in workers for r in w.rooms.values()), 10)

        # The worker with most rooms dies; its rooms are taken over by the others.
        dead = max(workers, key=lambda w: len(w.joined))
        orphans = list(dead.joined)
        await dead.crash()
        alive = [w for w in workers if w is not dead]
        await until(
            lambda: all(any(n in w.joined for w in alive) for n in orphans), LEASE_S * 4 + 5
        )
        await asyncio.sleep(LEASE_S)  # more sweeps: nobody joins a room twice
        alive_joins = Counter(n for w in alive for n in w.joined)
        assert alive_joins == Counter(rooms), alive_joins
        for name in orphans:
            holder = await workers[0].dispatch.holder(name)
            assert holder in {w.name for w in alive}
        await until(
            lambda: all(w.rooms[n].frames for w in alive for n in w.rooms if n in orphans), 10
        )

        # The callers leave: each call ends, its room is deleted, claim and announcement go.
        for w in alive:
            for room in w.rooms.values():
                room.leave(VISITOR.identity)
        await until(lambda: not any(n in fake.rooms for n in rooms), 10)
        await until(lambda: not any(w.agent._active for w in alive), 10)
        dispatch = workers[0].dispatch

        async def leftovers() -> list[str]:
            return await dispatch.wanted()

        for _ in range(50):
            if not await leftovers():
                break
            await asyncio.sleep(0.1)
        assert await leftovers() == []
        assert [await dispatch.holder(n) for n in rooms] == [None] * len(rooms)
    finally:
        for w in workers:
            if w.task is not None and not w.task.done():
                await w.close()
            else:
                await w.control.aclose()
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await fake.stop()
