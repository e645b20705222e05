"""Start an aiohttp application on 127.0.0.1 for the local protocol fakes."""

from __future__ import annotations

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
