"""The admin dashboard in headless Chromium, driven by Playwright, against the real app.

The browser is the system's Chromium (``scripts/install_test_packages.sh`` installs it with apt);
``playwright install`` is never run, so nothing is downloaded. Each test gets a fresh browser
context (its own cookies and storage); the browser runs with a temporary profile that
Playwright deletes afterwards. Screenshots go to ``test-artifacts/screenshots/`` (git-ignored).

The servers are the integration suite's: uvicorn on loopback in a thread
(:func:`tests.integration.conftest.live_server_factory`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI

from app import api_live, routes_admin
from app.main import create_app
from app.users import create_user
from pipeline.session import Engines
from tests.integration.conftest import (  # noqa: F401  (re-exported fixtures and helpers)
    LiveServer,
    instant_engines,
    live_server_factory,
    settings_for,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--lang=es-419",  # native widgets (file picker, date fields) in Spanish, like the page
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "clave-segura-123"

T = TypeVar("T")


# --- the app ----------------------------------------------------------------------------------


def ensure_admin(app: FastAPI) -> None:
    """Serve the dashboard unless app/main.py already does (it will once the router is wired
    in); adding routes to a running app is fine, Starlette reads the list per request."""
    if not any(getattr(r, "path", None) == "/admin/config.json" for r in app.routes):
        app.include_router(routes_admin.router)


def with_live_stream(app: FastAPI) -> None:
    """Give ``app`` the live stream (``GET /api/live`` and its in-memory hub) unless it has
    it already: what app/main.py does once that is wired in. Must run before the app starts."""
    from contextlib import asynccontextmanager

    from app.live_events import LiveEvents, LiveObserver
    from pipeline.records import FanOutObserver

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI):  # type: ignore[no-untyped-def]
        async with inner(a) as state:
            own = None
            if getattr(a.state, "live_events", None) is None:
                own = LiveEvents(None)
                await own.start()
                a.state.live_events = own
                services = a.state.services
                services.observer = FanOutObserver(services.observer, LiveObserver(own))
            try:
                yield state
            finally:
                if own is not None:
                    await own.aclose()

    app.router.lifespan_context = lifespan
    if not any(getattr(r, "path", None) == "/api/live" for r in app.routes):
        app.include_router(api_live.router)


@pytest.fixture
def dashboard_server(
    live_server_factory: Callable[..., LiveServer],  # noqa: F811
    tmp_path: Path,
) -> Iterator[Callable[..., LiveServer]]:
    """``make(engines=None, live_stream=False, **settings)``: a started server with the
    dashboard. With ``live_stream`` the app also gets ``/api/live`` (built before start)."""
    own: list[LiveServer] = []

    def make(
        engines: Engines | None = None, *, live_stream: bool = False, **overrides: Any
    ) -> LiveServer:
        if not live_stream:
            server = live_server_factory(engines=engines, **overrides)
        else:
            settings = settings_for(tmp_path / f"live{len(own)}", **overrides)
            app = create_app(settings, engines=engines)
            with_live_stream(app)
            server = LiveServer(app).start()
            own.append(server)
        ensure_admin(server.app)
        return server

    yield make
    for server in own:
        server.stop()


def ensure_supabase(server: LiveServer) -> None:
    """Accept the configured Supabase project's tokens unless the app already does (it will
    once app/main.py wires the verifier in)."""
    from app.auth import token_verifiers
    from app.supabase_auth import SupabaseVerifier, supabase_verifier_from_settings

    verifiers = token_verifiers(server.app)
    if not any(isinstance(v, SupabaseVerifier) for v in verifiers):
        verifier = supabase_verifier_from_settings(server.services.settings)
        assert verifier is not None, "SUPABASE_URL is not set on this server"
        verifiers.append(verifier)


def add_user(server: LiveServer, email: str, role: str, password: str = PASSWORD) -> None:
    server.run(create_user(server.services.db, email, role, password, actor="test"))


# --- a loop for async helpers (calls, fake providers) while the test itself is sync ------------


class BackgroundLoop:
    """An asyncio loop in its own thread: the sync Playwright API owns the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bg-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


# --- the browser ------------------------------------------------------------------------------


@contextlib.contextmanager
def launch_chromium(extra_args: list[str] | None = None, timeout_ms: int = 15_000) -> Iterator[Any]:
    """The system Chromium under Playwright (skips the test when either is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: browser tests skipped (run scripts/install_test_packages.sh)"
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed: browser tests skipped")
    # Assertions wait for the page (never a fixed sleep); generous for a busy 2-core machine.
    expect.set_options(timeout=timeout_ms)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS + list(extra_args or []),
            headless=True,
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The system Chromium under Playwright, one per test module."""
    with launch_chromium() as browser:
        yield browser


class Browser:
    """Opens pages on one server; collects uncaught page errors so a test can fail on them."""

    def __init__(self, chromium: Any) -> None:
        self._chromium = chromium
        self._contexts: list[Any] = []
        self.page_errors: list[str] = []

    def page(self, server: LiveServer, *, width: int = 1280, height: int = 900) -> Any:
        context = self._chromium.new_context(
            base_url=server.url,
            viewport={"width": width, "height": height},
            locale="es-DO",
        )
        context.set_default_timeout(15_000)
        self._contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("console", self._on_console)
        return page

    def _on_console(self, msg: Any) -> None:
        # A Content-Security-Policy violation means some feature silently does not work.
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.page_errors.append(msg.text)

    def close(self) -> None:
        for context in self._contexts:
            with contextlib.suppress(Exception):
                context.close()


@pytest.fixture
def browser(chromium: Any) -> Iterator[Browser]:
    b = Browser(chromium)
    yield b
    b.close()
    assert not b.page_errors, f"uncaught errors in the dashboard: {b.page_errors}"


@pytest.fixture(scope="session")
def screenshots() -> Callable[[Any, str], Path]:
    """``shot(page, name)`` saves a full-page PNG under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shot(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    return shot
