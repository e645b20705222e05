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

The second test runs the three workers as separate OS processes (this module run as
``python -m tests.integration.test_livekit_dispatch``) and kills one with SIGKILL.

Set ``TEST_REDIS_URL`` to run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
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
ROOT = Path(__file__).resolve().parents[2]

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
        self.on_join: Any = None  # async callback(room), the OS-process workers report joins

    async def connect(self, name: str) -> FakeRoom:
        room = FakeRoom(name)
        self.joined.append(name)
        if self.on_join is not None:
            await self.on_join(name)
        self.rooms[name] = room
        room.join(VISITOR)
        return room

    def start(self) -> None:
        self.task = asyncio.create_task(
            self.agent.run_dispatched(self.dispatch, self.name, self.stop)
        )

    async def crash(self) -> None:
        """Stops without a word: its loop and its calls are cancelled, its claims stay in
        Redis (nothing hands the rooms back)."""
        assert self.task is not None
        self.task.cancel()
        calls = list(self.agent._active.values())
        for t in calls:
            t.cancel()
        await asyncio.wait({self.task, *calls}, timeout=10)

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
        # A cancelled call closes its session and leaves its room (no task outlives it).
        assert all(r.disconnected for r in dead.rooms.values())
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


# --- three worker processes, one killed with SIGKILL ------------------------------------------


def _settings(twirp_url: str, prefix: str) -> Any:
    from app.settings import Settings

    return Settings(
        livekit_url=twirp_url,
        livekit_api_key=API_KEY,
        livekit_api_secret=API_SECRET,
        redis_url=TEST_REDIS_URL,
        redis_prefix=prefix,
        livekit_claim_lease_s=LEASE_S,
        pipeline_sample_rate=PIPE_RATE,
        livekit_sample_rate=OUT_RATE,
    )


def worker_process(name: str, twirp_url: str, prefix: str) -> None:
    """Child entry: one worker; reports each join to ``{prefix}test:joins``; its callers leave
    when ``{prefix}test:leave`` exists."""
    import redis.asyncio as aioredis

    async def main() -> None:
        client = aioredis.from_url(str(TEST_REDIS_URL))
        worker = Worker(
            name, _settings(twirp_url, prefix), RoomDispatch(client, prefix, lease_s=LEASE_S)
        )

        async def report(room: str) -> None:
            await client.rpush(f"{prefix}test:joins", f"{name} {room}")

        worker.on_join = report
        worker.start()
        await client.set(f"{prefix}test:ready:{name}", b"1")
        left: set[str] = set()
        while True:
            if await client.exists(f"{prefix}test:leave"):
                for room_name, room in list(worker.rooms.items()):
                    if room_name not in left:
                        left.add(room_name)
                        room.leave(VISITOR.identity)
            await asyncio.sleep(0.1)

    asyncio.run(main())


def spawn_worker(name: str, twirp_url: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_livekit_dispatch", name, twirp_url, prefix],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def test_a_worker_process_killed_with_sigkill_has_its_rooms_taken_over(
    live_server_factory: Any, tmp_path: Path
) -> None:
    import redis.asyncio as aioredis
    from livekit import api

    prefix = f"taina-lkp-{uuid.uuid4().hex[:10]}:"
    fake = FakeLiveKitTwirp(api_key=API_KEY, api_secret=API_SECRET)
    await fake.start()
    server = live_server_factory(
        engines=instant_engines(),
        live_backend="memory",
        livekit_url=fake.url,
        livekit_api_key=API_KEY,
        livekit_api_secret=API_SECRET,
        redis_url=TEST_REDIS_URL,
        redis_prefix=prefix,
    )
    client = aioredis.from_url(str(TEST_REDIS_URL))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    rooms = [f"call-+1809555010{i}_p{i}" for i in range(6)]
    try:
        for i in range(3):
            name = f"proc-{i}"
            procs[name] = spawn_worker(name, fake.url, prefix, tmp_path / f"{name}.log")
        deadline = time.monotonic() + 60
        for name, proc in procs.items():
            while not await client.exists(f"{prefix}test:ready:{name}"):
                assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
                assert time.monotonic() < deadline, f"{name} did not start"
                await asyncio.sleep(0.1)

        async with httpx.AsyncClient(base_url=server.url) as http:
            for name in rooms:
                fake.rooms[name] = api.Room(name=name)
                body, auth = signed_webhook("room_started", name)
                r = await http.post(
                    "/livekit/webhook", content=body, headers={"Authorization": auth}
                )
                assert r.status_code == 204, r.text

        async def joins() -> list[tuple[str, str]]:
            raw = await client.lrange(f"{prefix}test:joins", 0, -1)
            return [tuple(x.decode().split(" ", 1)) for x in raw]  # type: ignore[misc]

        async def wait_for(cond: Any, timeout: float) -> list[tuple[str, str]]:
            end = time.monotonic() + timeout
            while True:
                got = await joins()
                if cond(got):
                    return got
                assert time.monotonic() < end, got
                await asyncio.sleep(0.1)

        first = await wait_for(lambda j: {r for _, r in j} == set(rooms), 15)
        await asyncio.sleep(LEASE_S * 1.5)
        first = await joins()
        assert Counter(r for _, r in first) == Counter(rooms), first  # once each
        per_worker = Counter(w for w, _ in first)
        assert len(per_worker) >= 2, per_worker

        victim = per_worker.most_common(1)[0][0]
        orphans = {r for w, r in first if w == victim}
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(10)
        n = len(first)
        after = await wait_for(
            lambda j: {r for w, r in j[n:] if w != victim} >= orphans, LEASE_S * 4 + 10
        )
        await asyncio.sleep(LEASE_S * 1.5)  # more sweeps: nobody joins twice
        after = await joins()
        taken = [(w, r) for w, r in after[n:]]
        assert sorted(r for _, r in taken) == sorted(orphans), taken  # each orphan once
        assert victim not in {w for w, _ in taken}
        for r in orphans:
            assert (await RoomDispatch(client, prefix).holder(r)) in set(procs) - {victim}

        await client.set(f"{prefix}test:leave", b"1")  # the callers hang up
        deadline = time.monotonic() + 15
        while any(r in fake.rooms for r in rooms) or await client.hlen(f"{prefix}lk:wanted"):
            assert time.monotonic() < deadline, (
                sorted(fake.rooms),
                await client.hkeys(f"{prefix}lk:wanted"),
            )
            await asyncio.sleep(0.1)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await fake.stop()


if __name__ == "__main__":
    worker_process(*sys.argv[1:4])
