"""The real ``taina serve`` as a subprocess: signals, restarts and exit codes are the product's.

It runs with ``TAINA_ENGINE_MODE=instant`` (energy VAD, fixed transcript and reply, a tone
for speech), so a call is quick and the test exercises the server, not inference. Everything
the process keeps lives in ``data_dir``; its log goes to ``data_dir/server.log``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

# Settings a developer's shell (or .env) might hold that would change what is tested.
_SCRUBBED_PREFIXES = ("TAINA_", "OPENAI_", "DEEPGRAM_", "ELEVENLABS_", "TWILIO_", "LIVEKIT_")
_SCRUBBED = {"DATABASE_URL", "PUBLIC_URL", "REDIS_URL", "SUPABASE_URL", "SUPABASE_ANON_KEY"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _taina_command() -> list[str]:
    script = Path(sys.executable).with_name("taina")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "app.cli"]


class ServerProcess:
    """``taina serve`` on 127.0.0.1:``port`` with its state in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None, **settings: object) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED
        }
        env.update(
            TAINA_ENGINE_MODE="instant",
            TAINA_DATA_DIR=str(self.data_dir),
            TAINA_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update({f"TAINA_{k.upper()}": str(v) for k, v in self.settings.items()})
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*_taina_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.data_dir,  # no stray .env from the repository
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"taina serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"taina serve did not become ready:\n{self.log()}")
            time.sleep(0.1)

    def signal(self, sig: int = signal.SIGTERM) -> float:
        """Send ``sig``; returns the monotonic time it was sent."""
        assert self.proc is not None
        t = time.monotonic()
        self.proc.send_signal(sig)
        return t

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        """This run's log (a restart appends to the same file)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def problems(self) -> list[str]:
        """Log lines at ERROR or above, and tracebacks: a clean run has none."""
        return [
            line
            for line in self.log().splitlines()
            if re.search(r"\b(ERROR|CRITICAL)\b", line) or line.startswith("Traceback")
        ]


@dataclass
class StoredTurn:
    seq: int
    speaker: str
    text: str
    heard_text: str | None
    interrupted: bool


@dataclass
class StoredCall:
    call_sid: str
    end_reason: str | None
    ended: bool
    turns: list[StoredTurn]


def stored_calls(data_dir: Path) -> dict[str, StoredCall]:
    """What the SQLite file in ``data_dir`` holds, read after the process has exited."""
    conn = sqlite3.connect(data_dir / "taina.db")
    try:
        rows = conn.execute("SELECT id, call_sid, end_reason, ended_at FROM calls").fetchall()
        calls = {
            sid: StoredCall(sid, reason, ended is not None, []) for _, sid, reason, ended in rows
        }
        ids = {call_id: sid for call_id, sid, _, _ in rows}
        for call_id, seq, speaker, text, heard, interrupted in conn.execute(
            "SELECT call_id, seq, speaker, text, heard_text, interrupted FROM turns ORDER BY seq"
        ):
            calls[ids[call_id]].turns.append(
                StoredTurn(seq, speaker, text, heard, bool(interrupted))
            )
        return calls
    finally:
        conn.close()
