"""Real servers on loopback: the app under uvicorn in a background thread.

The app runs in its own thread and event loop, exactly as in production (uvicorn, real
sockets, real WebSockets); the test talks to it over 127.0.0.1 and may read its in-memory
state (``app.state.services``) to check what the server recorded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from pipeline.brain.offline import OfflineBrain
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines


class LiveServer:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self):
        return self.app.state.services

    def start(self, timeout: float = 120.0) -> LiveServer:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            proxy_headers=False,  # as `taina serve`: app/forwarded.py decides (issue 13)
            ws_max_size=1024 * 1024,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._server.serve())

        self._thread = threading.Thread(target=run, name="live-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)

    def call_view(self, call_sid: str):
        return self.services.recent.get(call_sid)

    def run(self, coro, timeout: float = 30.0):
        """Run a coroutine on the server's own loop (its database engine lives there)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stored_call(self, call_sid: str, timeout: float = 10.0):
        """The call as the database has it, once the recorder has flushed."""
        self.run(self.services.recorder.flushed(), timeout)
        return self.run(self.services.calls.get_call(call_sid), timeout)


def settings_for(tmp: Path, **overrides: object) -> Settings:
    """Settings isolated in ``tmp``, reusing the Whisper model assembled under ./data."""
    base = Settings()
    values: dict[str, object] = {
        "data_dir": tmp,
        "stt_model_dir": base.whisper_dir.resolve(),
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values)


def instant_engines(stt_text: str = "¿A qué hora abren las oficinas?") -> Engines:
    return Engines(
        vad=EnergyVad(),
        stt=FixedSTT(text=stt_text),
        tts=ToneTTS(ms_per_char=20),
        brain=OfflineBrain(),
    )


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def make(engines: Engines | None = None, **overrides: object) -> LiveServer:
        settings = settings_for(tmp_path / f"s{len(servers)}", **overrides)
        server = LiveServer(create_app(settings, engines=engines)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with the real embedded engines (Silero, Whisper, eSpeak), shared by the
    end-to-end tests because loading Whisper takes a few seconds."""
    settings = settings_for(tmp_path_factory.mktemp("embedded"))
    server = LiveServer(create_app(settings)).start()
    yield server
    server.stop()
