"""A sign-in flood against the real ``taina serve``: refused cheaply, and the calls do not feel it.

Before issue 13, failed sign-ins were limited per address *and* e-mail, so one client varying
the e-mail was never refused; every attempt ran argon2 (64 MiB) in the default thread pool,
and live calls answered in 5–10 s. Here one client sends 1,000 sign-ins with distinct e-mails
(each with a made-up ``X-Forwarded-For``, which must not give it fresh addresses) while a
simulated phone call asks its questions at real time; the same call is measured with no flood
just before and just after, in the same run (``bench/signin_flood.py`` is the measuring code;
it prints the figure of docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from bench.signin_flood import quiet_vs_attacked
from tests.faults.server_process import ServerProcess, _taina_command

ADMIN = "admin@example.org"
PASSWORD = "clave-segura-123"
IP_LIMIT = 20  # TAINA_LOGIN_IP_RATE_LIMIT's default
# Turn latency under the flood, as a multiple of the quiet figure (issue 13's outcome).
MAX_RATIO = 1.2


def create_admin(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAINA_")}
    env["TAINA_DATA_DIR"] = str(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [*_taina_command(), "admin", "create-user", "--email", ADMIN, "--role", "admin",
         "--password", PASSWORD],
        cwd=data_dir,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip


async def sign_in(url: str, source: str, email: str, password: str) -> httpx.Response:
    """A sign-in from loopback address ``source`` (127.0.0.0/8 is all ours)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as http:
        return await http.post("/api/auth/login", json={"email": email, "password": password})


@pytest.mark.timeout(600)  # three calls at real time and a server start: ~3 min
async def test_a_sign_in_flood_gets_429s_and_a_call_beside_it_keeps_its_latency(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "server"
    create_admin(data_dir)
    server = ServerProcess(data_dir).start()
    try:
        result = await quiet_vs_attacked(server.url, 1000, 20, 5, tmp_path)
        flood = result["flood"]
        print(
            f"FIGURE sign-in flood: {flood['statuses']} of 1000 (first 429 after "
            f"{flood['first_429_at']}), turn latency median quiet {result['quiet_median_ms']} ms,"
            f" attacked {result['attacked_median_ms']} ms, ratio {result['ratio']}"
        )
        statuses = flood["statuses"]
        # Only the per-address budget ever reached a password check; the rest were refused
        # with Retry-After, however the e-mail and X-Forwarded-For varied. No 5xx.
        assert set(statuses) <= {"401", "429"}, statuses
        assert statuses.get("401", 0) <= IP_LIMIT, statuses
        assert statuses["429"] >= 1000 - IP_LIMIT, statuses
        assert flood["first_429_at"] <= IP_LIMIT
        assert flood["missing_retry_after"] == 0
        # The caller beside the flood: every turn answered, latency within the bound.
        assert len(result["attacked_ms"]) == 5 and len(result["quiet_ms"]) == 10
        assert result["ratio"] <= MAX_RATIO, result
        # Staff at another address sign in (the flood never reached the total limit).
        ok = await sign_in(server.url, "127.0.0.2", ADMIN, PASSWORD)
        assert ok.status_code == 200, ok.text
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{server.url}/healthz", timeout=5)
        assert health.json()["status"] == "ok"
    finally:
        server.kill()
    assert not server.problems(), server.problems()
