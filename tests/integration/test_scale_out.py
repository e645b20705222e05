"""Scale-out: two server processes on one PostgreSQL serve calls at the same time.

Two real OS processes (this module run as ``python -m tests.integration.test_scale_out``: the
app from ``create_app`` under uvicorn, with instant engines injected because the embedded
ones would make two Whisper loads the whole test) share a fresh Postgres database. A staff
member's live stream (``GET /api/live``, signed in with a Supabase Auth token) is connected
to process A only; one call is placed on each process at once, over the Twilio protocol. The
stream on A must show B's call turn by turn, stamped with B's pid, and both calls must be in
the shared database.

Set ``TEST_DATABASE_URL`` to run (and ``TEST_REDIS_URL`` to repeat it over Redis pub/sub).
Three real ``taina serve`` processes behind HAProxy, with the replay cache and the call cap
shared through Redis and a SIGTERM drain, are in ``test_balancer.py`` (which reuses this
module's live-stream reader and database helpers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.engine import make_url

from app.live_events import asyncpg_dsn
from app.storage import CallRepository, Database

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
ROOT = Path(__file__).resolve().parents[2]

SUPABASE_URL = "http://supabase.invalid"
SUPABASE_SECRET = "scale-out-test-jwt-secret-at-least-32-chars"
CALLER_SAYS = "¿A qué hora abren las oficinas?"  # what the instant STT hears

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="TEST_DATABASE_URL is not set: two-process scale-out test skipped "
    "(e.g. TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test)",
)


# --- the server process -----------------------------------------------------------------------


def install_live_events(app: Any, settings: Any) -> None:
    """What app/main.py does once it is wired (see the report): a live hub, its observer, the
    Supabase verifier and ``/api/live``. Skips whatever the app already has, so this keeps
    working, and changes nothing, after the real wiring lands."""
    from app import api_live
    from app.auth import token_verifiers
    from app.live_events import LiveObserver, live_events_from_settings
    from app.supabase_auth import SupabaseVerifier, supabase_verifier_from_settings
    from pipeline.records import FanOutObserver

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            own = None
            if getattr(a.state, "live_events", None) is None:
                own = live_events_from_settings(settings)
                await own.start()
                a.state.live_events = own
                services = a.state.services
                services.observer = FanOutObserver(services.observer, LiveObserver(own))
            verifiers = token_verifiers(a)
            if not any(isinstance(v, SupabaseVerifier) for v in verifiers):
                verifier = supabase_verifier_from_settings(settings)
                if verifier is not None:
                    verifiers.append(verifier)
            try:
                yield state
            finally:
                if own is not None:
                    await own.aclose()

    app.router.lifespan_context = lifespan
    if not any(getattr(r, "path", None) == "/api/live" for r in app.routes):
        app.include_router(api_live.router)


def serve() -> None:
    """Child process entry: serve on a free port, write it to $SCALE_OUT_READY_FILE."""
    import uvicorn

    from app.logging_setup import setup_logging
    from app.main import create_app
    from app.settings import Settings
    from tests.integration.conftest import instant_engines

    settings = Settings()
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings, engines=instant_engines(CALLER_SAYS))
    install_live_events(app, settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        ready = Path(os.environ["SCALE_OUT_READY_FILE"])
        ready.with_suffix(".tmp").write_text(str(port))
        ready.with_suffix(".tmp").replace(ready)
        await task

    asyncio.run(main())


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def redis_prefix(db_url: str) -> str:
    """This run's Redis keys (replay cache, call cap) start with this."""
    return f"taina-scale-{db_url.rsplit('/', 1)[-1]}:"


async def drop_redis_keys(prefix: str) -> None:
    """Delete every key a run left under ``prefix`` (tokens and CallSids would expire in an
    hour; a test leaves nothing behind)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(str(TEST_REDIS_URL))
    try:
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def start_server(name: str, tmp: Path, db_url: str, backend: str) -> ServerProcess:
    data = tmp / name
    data.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "TAINA_DATA_DIR": str(data),
        "TAINA_SECRET_KEY": "scale-out-shared-secret",  # one deployment, one signing key
        "TAINA_LIVE_BACKEND": backend,
        "SUPABASE_URL": SUPABASE_URL,
        "SUPABASE_JWT_SECRET": SUPABASE_SECRET,
        "TAINA_LOG_LEVEL": "WARNING",
        "SCALE_OUT_READY_FILE": str(data / "ready"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("OPENAI_API_KEY", None)  # the offline brain: no network from the children
    if backend == "redis":
        assert TEST_REDIS_URL
        env["REDIS_URL"] = TEST_REDIS_URL
        # Replay cache and call cap in Redis too (app/shared_state.py), under this run's prefix.
        env["TAINA_REDIS_PREFIX"] = redis_prefix(db_url)
    else:
        env.pop("REDIS_URL", None)
    log = data / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_scale_out"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return ServerProcess(name, proc, log)


def wait_ready(server: ServerProcess, timeout: float = 180.0) -> ServerProcess:
    ready = Path(server.log.parent / "ready")
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if server.proc.poll() is not None:
            raise AssertionError(f"server {server.name} exited:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"server {server.name} did not start:\n{server.log_tail()}")
        time.sleep(0.1)
    server.port = int(ready.read_text())
    return server


# --- fixtures ---------------------------------------------------------------------------------


async def _admin_exec(statement: str) -> None:
    import asyncpg

    assert TEST_DATABASE_URL
    conn = await asyncpg.connect(asyncpg_dsn(TEST_DATABASE_URL))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


BACKENDS = [
    "postgres",
    pytest.param(
        "redis",
        marks=pytest.mark.skipif(
            not TEST_REDIS_URL,
            reason="TEST_REDIS_URL is not set: scale-out over Redis pub/sub skipped",
        ),
    ),
]


@dataclass
class Deployment:
    a: ServerProcess
    b: ServerProcess
    db_url: str


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Two server processes on one fresh database, live events over ``request.param``."""
    assert TEST_DATABASE_URL
    backend = request.param
    name = f"taina_scale_{uuid.uuid4().hex[:12]}"
    db_url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    tmp = tmp_path_factory.mktemp(f"scale-{backend}")
    asyncio.run(_admin_exec(f'CREATE DATABASE "{name}"'))
    servers: list[ServerProcess] = []
    try:
        # A first: it migrates the fresh database. Two processes migrating an empty database
        # at the same instant race on CREATE TABLE (see the report); once migrations take an
        # advisory lock both can start together.
        for label in ("a", "b"):
            servers.append(start_server(label, tmp, db_url, backend))
            wait_ready(servers[-1])
        yield Deployment(servers[0], servers[1], db_url)
    finally:
        for s in servers:
            s.stop()
        asyncio.run(_admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if backend == "redis":
            asyncio.run(drop_redis_keys(redis_prefix(db_url)))


# --- the test ---------------------------------------------------------------------------------


def admin_token() -> str:
    now = int(time.time())
    claims = {
        "iss": f"{SUPABASE_URL}/auth/v1",
        "aud": "authenticated",
        "sub": str(uuid.uuid4()),
        "email": "supervisora@taina.do",
        "role": "authenticated",
        "app_metadata": {"role": "admin"},
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(claims, SUPABASE_SECRET, algorithm="HS256")


@dataclass
class LiveReader:
    """Reads ``GET /api/live`` into a list of events, in the background."""

    url: str
    token: str
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveReader:
        self._task = asyncio.create_task(self._read())
        await self.until(lambda: any(e["type"] == "hello" for e in self.events), 15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", f"{self.url}/api/live", headers=headers) as r,
        ):
            self.status = r.status_code
            if r.status_code != 200:
                await r.aread()
                self.events.append({"type": "error", "body": r.text})
                return
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line[6:]))

    async def until(self, cond: Any, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if self._task is not None and self._task.done():
                self._task.result()
                raise AssertionError(f"live stream ended: {self.status} {self.events[-1:]}")
            if time.monotonic() > end:
                raise AssertionError(f"timed out; events so far: {self.events}")
            await asyncio.sleep(0.05)

    def of(self, call_sid: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("call_sid") == call_sid]


async def place_call(server: ServerProcess) -> str:
    from tests.integration.test_twilio_stream import RawStream, frames_of

    call = RawStream(server)  # type: ignore[arg-type]  # needs only .url and .port
    token = await call.webhook()
    await call.connect()
    await call.start(token)
    await call.collect(1.5)  # the greeting
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    await call.collect(2.0)  # the answer
    await call.stop()
    assert call.ws is not None
    with contextlib.suppress(Exception):
        await asyncio.wait_for(call.ws.wait_closed(), 5)
    return call.call_sid


async def stored_call(url: str, call_sid: str, timeout: float = 20.0) -> Any:
    """The call as the shared database has it, once its end and turns have landed."""
    db = Database(url)
    try:
        calls = CallRepository(db)
        end = time.monotonic() + timeout
        while True:
            got = await calls.get_call(call_sid)
            if got is not None and got.end_reason is not None and len(got.turns) >= 3:
                return got
            assert time.monotonic() < end, f"call {call_sid} not complete in the database: {got}"
            await asyncio.sleep(0.2)
    finally:
        await db.dispose()


async def test_two_processes_one_database_one_live_view(deployment: Deployment) -> None:
    a, b, shared_db = deployment.a, deployment.b, deployment.db_url
    async with LiveReader(a.url, admin_token()) as live:
        hello = next(e for e in live.events if e["type"] == "hello")
        assert hello["pid"] == a.pid and hello["backend"] in ("postgres", "redis")

        sid_a, sid_b = await asyncio.gather(place_call(a), place_call(b))

        def ended(sid: str) -> bool:
            return any(e["type"] == "call_ended" for e in live.of(sid))

        await live.until(lambda: ended(sid_a) and ended(sid_b), 20)

    # B's call, seen from A: every turn as it ended, stamped with B's process.
    seen = live.of(sid_b)
    assert {e["pid"] for e in seen} == {b.pid}, seen
    assert all(e["origin"] != hello["origin"] for e in seen)
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    turns = [e for e in seen if e["type"] == "turn"]
    assert [t["seq"] for t in turns] == sorted(t["seq"] for t in turns)
    assert [t["speaker"] for t in turns][:3] == ["bot", "caller", "bot"]
    assert turns[0]["text"]  # the greeting
    assert turns[1]["text"] == CALLER_SAYS
    # A's own call is there too, from A.
    assert {e["pid"] for e in live.of(sid_a)} == {a.pid}

    # The two calls overlapped: both had started before either ended.
    ids = {
        (e["call_sid"], e["type"]): e["id"]
        for e in live.events
        if e.get("type") in ("call_started", "call_ended")
    }
    assert max(ids[(sid_a, "call_started")], ids[(sid_b, "call_started")]) < min(
        ids[(sid_a, "call_ended")], ids[(sid_b, "call_ended")]
    )

    # Both calls, with their transcripts, in the one shared database.
    for sid in (sid_a, sid_b):
        stored = await stored_call(shared_db, sid)
        assert stored.ingress == "twilio" and stored.end_reason == "caller-hangup"
        assert [t.speaker for t in stored.turns][:3] == ["bot", "caller", "bot"]
        assert stored.turns[1].text == CALLER_SAYS
    live_b_texts = [t["text"] for t in turns]
    stored_b = await stored_call(shared_db, sid_b)
    assert live_b_texts == [t.text for t in stored_b.turns][: len(live_b_texts)]


async def test_live_stream_refuses_anonymous_and_citizens(deployment: Deployment) -> None:
    a = deployment.a
    citizen = jwt.decode(admin_token(), options={"verify_signature": False})
    citizen["app_metadata"] = {}
    citizen_token = jwt.encode(citizen, SUPABASE_SECRET, algorithm="HS256")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{a.url}/api/live")).status_code == 401
        r = await client.get(
            f"{a.url}/api/live", headers={"Authorization": f"Bearer {citizen_token}"}
        )
        assert r.status_code == 403


if __name__ == "__main__":
    serve()
