"""Safe defaults when Twilio signatures cannot be checked (no ``TWILIO_AUTH_TOKEN``).

Before issue 13, ``/twilio/status`` wrote a database record for anyone in the default
configuration, nothing at start-up said that signatures were off, and ``taina serve`` listened
on 0.0.0.0 that way. Now: the status callback is off without a token (and needs a valid
signature with one), start-up logs a loud warning, and ``taina serve`` refuses a non-loopback
address without a token unless ``TAINA_ALLOW_UNSIGNED=true``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.faults.server_process import ServerProcess, _taina_command, free_port
from tests.integration.conftest import LiveServer, instant_engines
from tests.integration.test_twilio_stream import call_sid, stream_sid

TOKEN = "s3cret-auth-token"
PUBLIC = "https://taina.example.org"
REPO = Path(__file__).resolve().parents[2]


def stream_events(server: LiveServer) -> int:
    server.run(server.services.recorder.flushed())

    async def count() -> int:
        from sqlalchemy import func, select

        from app.storage.models import StreamEvent

        async with server.services.db.session() as s:
            return int(await s.scalar(select(func.count()).select_from(StreamEvent)) or 0)

    return server.run(count())


def test_without_a_token_the_status_callback_is_off_and_not_offered(live_server_factory) -> None:
    server = live_server_factory(engines=instant_engines())
    status = {"CallSid": call_sid(), "StreamSid": stream_sid(), "StreamEvent": "stream-started"}
    for _ in range(3):
        r = httpx.post(f"{server.url}/twilio/status", data=status)
        assert r.status_code == 404
    assert stream_events(server) == 0
    twiml = httpx.post(f"{server.url}/twilio/voice", data={"CallSid": call_sid()}).text
    assert "<Stream" in twiml and "statusCallback" not in twiml


def test_with_a_token_the_status_callback_needs_a_valid_signature(live_server_factory) -> None:
    server = live_server_factory(
        engines=instant_engines(), twilio_auth_token=TOKEN, public_url=PUBLIC
    )
    status = {"CallSid": call_sid(), "StreamSid": stream_sid(), "StreamEvent": "stream-started"}
    url = f"{server.url}/twilio/status"
    assert httpx.post(url, data=status).status_code == 403
    forged = RequestValidator("other-token").compute_signature(f"{PUBLIC}/twilio/status", status)
    assert httpx.post(url, data=status, headers={"X-Twilio-Signature": forged}).status_code == 403
    assert stream_events(server) == 0
    good = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/twilio/status", status)
    assert httpx.post(url, data=status, headers={"X-Twilio-Signature": good}).status_code == 204
    assert stream_events(server) == 1
    # And the TwiML asks Twilio for the callbacks.
    params = {"CallSid": call_sid()}
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/twilio/voice", params)
    twiml = httpx.post(
        f"{server.url}/twilio/voice", data=params, headers={"X-Twilio-Signature": signature}
    ).text
    assert f'statusCallback="{PUBLIC}/twilio/status"' in twiml


def test_start_up_warns_loudly_when_signatures_are_off(tmp_path: Path) -> None:
    unsigned = ServerProcess(tmp_path / "unsigned").start()
    unsigned.kill()
    assert "TWILIO SIGNATURES ARE NOT CHECKED" in unsigned.log()
    signed = ServerProcess(tmp_path / "signed", **{"twilio_auth_token": TOKEN}).start()
    signed.kill()
    assert "TWILIO SIGNATURES ARE NOT CHECKED" not in signed.log()
    assert "Twilio signatures are checked" in signed.log()


def _serve(tmp_path: Path, host: str, **env: str) -> subprocess.Popen[bytes]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAINA_", "TWILIO_")) and k != "PUBLIC_URL"
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*_taina_command(), "serve", "--host", host, "--port", str(free_port())],
        cwd=tmp_path,
        env={**clean, "TAINA_ENGINE_MODE": "instant", "TAINA_DATA_DIR": str(tmp_path), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    t = time.monotonic()
    proc = _serve(tmp_path / "a", "0.0.0.0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert time.monotonic() - t < 30  # refused before loading anything heavy
    assert b"refusing to listen on 0.0.0.0 without TWILIO_AUTH_TOKEN" in err
    assert b"TAINA_ALLOW_UNSIGNED=true" in err


@pytest.mark.parametrize(
    "env",
    [{"TAINA_ALLOW_UNSIGNED": "true"}, {"TWILIO_AUTH_TOKEN": TOKEN}],
    ids=["allow-unsigned", "with-token"],
)
def test_serve_listens_publicly_when_signed_or_explicitly_allowed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    proc = _serve(tmp_path, "0.0.0.0", **env)
    try:
        # The port is in the arguments; find it again to probe readiness on loopback.
        port = int(proc.args[proc.args.index("--port") + 1])  # type: ignore[union-attr]
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_make_run_binds_loopback() -> None:
    """``make run`` works without a token: it serves on 127.0.0.1 unless HOST is given."""
    out = subprocess.run(
        ["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "taina serve --host 127.0.0.1 --port 8000" in out
