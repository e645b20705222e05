"""Three ``taina serve`` processes behind HAProxy, on one PostgreSQL and one Redis.

The deployment of docs/DEPLOYMENT.md on loopback: three real ``taina serve`` processes (instant
engines: the media path, drain and shared state are what is tested, not Whisper) on a fresh
Postgres database and a Redis key prefix of their own, behind HAProxy running the committed
``deploy/haproxy.cfg``. Calls are placed with the caller simulator (telephony/simulator.py)
through the balancer, exactly as Twilio would, and asserted:

* a stream token (and the signed webhook) replayed to each process is refused by every one of
  them (the replay cache and the CallSid's one webhook / one stream are in Redis; without it
  the two processes that never saw the call would accept it);
* the concurrent-call cap (3) holds for the deployment: with three calls on the line spread over
  the processes, a fourth is declined by every process, and accepted again once they end;
* every dashboard sees every call: a live stream (``GET /api/live``) on each process receives
  the ``call_started`` of calls served by the others;
* a SIGTERM to the process holding a call drains it: HAProxy marks it DOWN (``/readyz`` 503),
  new calls land on the other two, the call in progress goes on to its natural end, and the
  process then exits 0.

Needs ``TEST_DATABASE_URL``, ``TEST_REDIS_URL`` and the ``haproxy`` binary
(scripts/install_test_packages.sh installs it); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from telephony.simulator import EXIT_OK, CallOptions, CallResult, Step, run_call
from tests.integration.pg_scratch import scratch_database
from tests.integration.test_scale_out import (
    SUPABASE_SECRET,
    SUPABASE_URL,
    LiveReader,
    admin_token,
    drop_redis_keys,
)

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "haproxy.cfg"
CAP = 3

pytestmark = [
    pytest.mark.skipif(
        not (TEST_DATABASE_URL and TEST_REDIS_URL),
        reason="TEST_DATABASE_URL and TEST_REDIS_URL are needed for the balancer test",
    ),
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (install_test_packages)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class App:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, n: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-n:])


@dataclass
class Deployment:
    apps: list[App]
    lb: str
    stats: str
    haproxy: subprocess.Popen[bytes]
    db_url: str
    prefix: str
    readers: dict[str, LiveReader] = field(default_factory=dict)

    def app(self, name: str) -> App:
        return next(a for a in self.apps if a.name == name)


def _taina() -> list[str]:
    exe = Path(sys.executable).parent / "taina"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "app.cli"]


def start_app(name: str, tmp: Path, db_url: str, prefix: str) -> App:
    data = tmp / name
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": str(TEST_REDIS_URL),
        "TAINA_REDIS_PREFIX": prefix,
        "TAINA_LIVE_CHANNEL": f"{prefix}live",
        "TAINA_DATA_DIR": str(data),
        "TAINA_ENGINE_MODE": "instant",
        "TAINA_SECRET_KEY": "balancer-test-shared-secret",  # one deployment, one signing key
        "TAINA_MAX_CONCURRENT_CALLS": str(CAP),
        "TAINA_FLEET_LEASE_S": "3",
        "TAINA_DRAIN_TIMEOUT_S": "60",
        "TAINA_TRUSTED_PROXIES": "127.0.0.1",
        "SUPABASE_URL": SUPABASE_URL,
        "SUPABASE_JWT_SECRET": SUPABASE_SECRET,
        "TAINA_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY", "ELEVENLABS_API_KEY", "TWILIO_AUTH_TOKEN"):
        env.pop(key, None)
    log = data / "server.log"
    proc = subprocess.Popen(
        [*_taina(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return App(name, port, proc, log)


def wait_ready(app: App, timeout: float = 150.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if app.proc.poll() is not None:
            raise AssertionError(f"{app.name} exited:\n{app.tail()}")
        try:
            if httpx.get(f"{app.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{app.name} did not start:\n{app.tail()}")
        time.sleep(0.3)


def server_rows(stats: str) -> dict[str, dict[str, str]]:
    """HAProxy's CSV stats for the app servers: name -> row (status, stot, …)."""
    text = httpx.get(f"{stats}/stats;csv", timeout=5).text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {
        r["svname"]: r for r in rows if r["pxname"] == "taina_apps" and r["svname"] != "BACKEND"
    }


def wait_status(stats: str, want: dict[str, str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = server_rows(stats)
        if all(rows.get(k, {}).get("status", "").startswith(v) for k, v in want.items()):
            return
        assert time.monotonic() < deadline, {k: r["status"] for k, r in rows.items()}
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    assert TEST_DATABASE_URL and HAPROXY
    prefix = f"taina-lb-{uuid.uuid4().hex[:10]}:"
    tmp = tmp_path_factory.mktemp("balancer")
    with scratch_database("taina_lb") as db_url:
        yield from _deploy(tmp, db_url, prefix)


def _deploy(tmp: Path, db_url: str, prefix: str) -> Iterator[Deployment]:
    apps: list[App] = []
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        # All three at once on the empty database: migrations take an advisory lock.
        apps += [start_app(n, tmp, db_url, prefix) for n in ("app1", "app2", "app3")]
        for a in apps:
            wait_ready(a)
        lb_port, stats_port = free_port(), free_port()
        env = {
            **os.environ,
            "TAINA_LB_BIND": f"127.0.0.1:{lb_port}",
            "TAINA_LB_STATS": f"127.0.0.1:{stats_port}",
            **{f"TAINA_APP{i + 1}": f"127.0.0.1:{a.port}" for i, a in enumerate(apps)},
        }
        haproxy = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(CONFIG)],
            env=env,
            stdout=(tmp / "haproxy.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        stats = f"http://127.0.0.1:{stats_port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                wait_status(stats, {"app1": "UP", "app2": "UP", "app3": "UP"})
                break
            except (httpx.HTTPError, AssertionError):
                assert haproxy.poll() is None, (tmp / "haproxy.log").read_text()
                assert time.monotonic() < deadline, "HAProxy did not see the apps UP"
                time.sleep(0.2)
        yield Deployment(apps, f"http://127.0.0.1:{lb_port}", stats, haproxy, db_url, prefix)
    finally:
        if haproxy is not None:
            stop(haproxy)
        for a in apps:
            stop(a.proc)
        asyncio.run(drop_redis_keys(prefix))


async def active(app: App) -> int:
    """Calls on this process's line (its own count, from /healthz)."""
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            return int((await client.get(f"{app.url}/healthz")).json()["active_calls"])
    except httpx.HTTPError:
        return -1


async def counts(apps: list[App]) -> list[int]:
    return list(await asyncio.gather(*(active(a) for a in apps)))


async def call(server: str, turns: int = 1) -> CallResult:
    says = ["¿A qué hora abren las oficinas?", "¿Y los sábados?", "Gracias."]
    steps = [Step("say", says[i % len(says)]) for i in range(turns)]
    return await run_call(
        CallOptions(server=server, steps=steps, transcribe=False, timeout_s=20, pause_ms=300)
    )


def answered(result: CallResult) -> bool:
    return (
        result.exit_code == EXIT_OK
        and not result.hung_up_by_server
        and all(t.answered for t in result.turns)
    )


# --- the tests (in this order: the last one stops a process) ------------------------------------


async def test_a_replayed_stream_token_is_refused_by_every_process(deployment: Deployment) -> None:
    from websockets.exceptions import ConnectionClosed

    from tests.integration.test_twilio_stream import RawStream, events, stream_sid

    @dataclass
    class Target:
        url: str
        port: int

    async with httpx.AsyncClient(timeout=3) as client:
        for app in deployment.apps:
            health = (await client.get(f"{app.url}/healthz")).json()
            assert health["shared_state"] == "redis", (app.name, health)
    lb_port = int(deployment.lb.rsplit(":", 1)[1])
    first = RawStream(Target(deployment.lb, lb_port))  # type: ignore[arg-type]
    token = await first.webhook()  # through the balancer, to whichever process
    await first.connect()
    await first.start(token)
    assert "media" in events(await first.collect(1.5))  # the real stream: greeted
    try:
        async with httpx.AsyncClient() as client:  # the signed webhook replayed: no new token
            for app in deployment.apps:
                r = await client.post(
                    f"{app.url}/twilio/voice",
                    data={"CallSid": first.call_sid, "From": "+18095550100"},
                )
                assert r.status_code == 409, (app.name, r.status_code, r.text)
        for app in deployment.apps:
            replay = RawStream(Target(app.url, app.port), sid=first.call_sid)  # type: ignore[arg-type]
            replay.stream_sid = stream_sid()
            await replay.connect()
            await replay.start(token)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    msg = await asyncio.wait_for(replay.ws.recv(), 5)  # type: ignore[union-attr]
                    assert '"media"' not in str(msg), f"{app.name} accepted a replayed token"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, app.name
    finally:
        await first.stop()


async def wait_deployment_calls(apps: list[App], want: int, timeout: float = 10.0) -> None:
    """Until every process reports ``want`` calls deployment-wide (renewed every second)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as client:
        while True:
            seen = [(await client.get(f"{a.url}/healthz")).json() for a in apps]
            if all(h["deployment_calls"] == want for h in seen):
                return
            assert time.monotonic() < deadline, [h["deployment_calls"] for h in seen]
            await asyncio.sleep(0.1)


async def test_the_call_cap_holds_across_processes(deployment: Deployment) -> None:
    # The previous test's call has left the deployment's count (its slot freed at the next
    # renewal after it ended).
    await wait_deployment_calls(deployment.apps, 0)
    async with (
        LiveReader(deployment.app("app1").url, admin_token()) as live1,
        LiveReader(deployment.app("app2").url, admin_token()) as live2,
        LiveReader(deployment.app("app3").url, admin_token()) as live3,
    ):
        holding = [asyncio.create_task(call(deployment.lb, turns=3)) for _ in range(CAP)]
        deadline = time.monotonic() + 20
        while sum(max(n, 0) for n in await counts(deployment.apps)) < CAP:
            if time.monotonic() > deadline or any(t.done() for t in holding):
                done = [t.result() for t in holding if t.done()]
                raise AssertionError(
                    f"the first calls did not all start: {await counts(deployment.apps)}; "
                    f"ended: {[(r.exit_code, r.error) for r in done]}"
                )
            await asyncio.sleep(0.1)
        spread = await counts(deployment.apps)
        assert sum(1 for n in spread if n > 0) >= 2, f"calls not spread over processes: {spread}"
        # Each process reports the deployment's count, not only its own (renewed every 1 s).
        await wait_deployment_calls(deployment.apps, CAP, 4)
        # A fourth call is declined by every process, whichever the balancer would pick.
        async with httpx.AsyncClient() as client:
            for app in deployment.apps:
                r = await client.post(
                    f"{app.url}/twilio/voice",
                    data={"CallSid": "CA" + uuid.uuid4().hex, "From": "+18095550111"},
                )
                assert r.status_code == 200 and "<Stream" not in r.text, (app.name, r.text)
                assert "<Hangup" in r.text, r.text
        extra = await call(deployment.lb)
        assert extra.exit_code != EXIT_OK and not extra.turns, extra.error
        results = await asyncio.gather(*holding)
        assert all(answered(r) for r in results), [r.error for r in results]
        # Their slots are freed at each process's next renewal (lease 3 s, renewed every 1 s).
        await asyncio.sleep(1.5)
        after = await call(deployment.lb)
        assert answered(after), after.error

        # Every dashboard saw every call, wherever it was served.
        sids = {r.call_sid for r in results} | {after.call_sid}
        for live in (live1, live2, live3):
            await live.until(
                lambda live=live: (
                    sids <= {e.get("call_sid") for e in live.events if e["type"] == "call_started"}
                ),
                10,
            )
        pids = {e["pid"] for e in live1.events if e.get("call_sid") in sids}
        assert len(pids) >= 2, pids


async def test_sigterm_drains_one_process_while_new_calls_go_to_the_others(
    deployment: Deployment,
) -> None:
    await wait_deployment_calls(deployment.apps, 0)  # the cap test's calls have left
    long_call = asyncio.create_task(call(deployment.lb, turns=4))
    deadline = time.monotonic() + 20
    holder: App | None = None
    while holder is None:
        assert time.monotonic() < deadline, "the long call did not start"
        now = await counts(deployment.apps)
        holder = next((a for a, n in zip(deployment.apps, now, strict=True) if n == 1), None)
        await asyncio.sleep(0.1)
    others = [a for a in deployment.apps if a is not holder]
    await asyncio.sleep(1.0)  # the greeting is playing
    holder.proc.send_signal(signal.SIGTERM)
    t_signal = time.monotonic()
    await asyncio.to_thread(
        wait_status, deployment.stats, {holder.name: "DOWN"} | {a.name: "UP" for a in others}
    )
    t_down = time.monotonic()
    before = await asyncio.to_thread(server_rows, deployment.stats)
    async with httpx.AsyncClient(timeout=3) as client:
        assert (await client.get(f"{holder.url}/readyz")).status_code == 503

    fresh = await asyncio.gather(call(deployment.lb), call(deployment.lb))
    assert all(answered(r) for r in fresh), [r.error for r in fresh]
    after = await asyncio.to_thread(server_rows, deployment.stats)
    assert after[holder.name]["stot"] == before[holder.name]["stot"], "a new call reached it"
    gained = sum(int(after[a.name]["stot"]) - int(before[a.name]["stot"]) for a in others)
    assert gained >= 4  # two calls: a webhook and a media stream each

    result = await long_call  # the drained process's call goes on to its natural end
    t_call_end = time.monotonic()
    assert answered(result) and len(result.turns) == 4, result.error
    assert not result.hung_up_by_server
    code = await asyncio.to_thread(holder.proc.wait, 30)
    print(  # the figures docs/PERFORMANCE.md quotes (pytest -s)
        f"drain figures: SIGTERM -> HAProxy DOWN {t_down - t_signal:.2f} s; "
        f"call in progress went on {t_call_end - t_signal:.1f} s after SIGTERM "
        f"(4 turns, latencies {[round(x) for x in result.latencies_ms]} ms); "
        f"new calls' dial->greeting {[round(r.dial_to_greeting_ms or 0) for r in fresh]} ms; "
        f"process exit {time.monotonic() - t_call_end:.1f} s after its last call"
    )
    assert code == 0, holder.tail()
    assert "drain complete" in holder.log.read_text(errors="replace")
