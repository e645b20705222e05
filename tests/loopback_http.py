"""What every local protocol fake shares: an aiohttp app on 127.0.0.1, its lifecycle, and the
sleeps that must end when the client leaves or the fake closes (tests never hang on a fake)."""

from __future__ import annotations

import asyncio
from typing import Any, Self

from aiohttp import web


async def serve_on_loopback(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``app``; returns the runner (``await runner.cleanup()`` stops it) and the port
    actually bound (``port=0``: any free one)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    return runner, server.sockets[0].getsockname()[1]


class LoopbackFake:
    """Base of the provider fakes: ``async with Fake() as fake:`` serves ``_app()``."""

    def __init__(self) -> None:
        self.port = 0
        self.client_gone = asyncio.Event()  # a client left before its answer was complete
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, port: int = 0) -> Self:
        self._runner, self.port = await serve_on_loopback(self._app(), port)
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    def _client_left(request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    def _gone(self, rec: Any) -> None:
        rec.client_gone = True
        self.client_gone.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the fake closes so tests never wait on a stalled reply."""
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass

    async def _hold(self, request: web.Request, rec: Any) -> None:
        """Say nothing until the client gives up (noticed, unlike a plain sleep) or the fake
        closes."""
        while not self._closing.is_set():
            if self._client_left(request):
                self._gone(rec)
                return
            await self._sleep(0.02)
