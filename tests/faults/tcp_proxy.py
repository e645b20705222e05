"""A TCP proxy a test can cut and restore: a database (or any server) going away mid-call.

``cut()`` aborts every connection in flight (both sides get a reset, as when a database
server dies or a network path fails) and closes the listening socket, so new connections
are refused at once; ``restore()`` listens again on the same port. The proxied server itself
is untouched, so what comes back is exactly what was there before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class TcpProxy:
    """``async with TcpProxy(host, port) as proxy:`` then connect to ``proxy.port``."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.accepted = 0  # connections proxied since start
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def start(self) -> TcpProxy:
        await self._listen()
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._on_client, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> int:
        """Refuse new connections and reset the open ones; returns how many were reset."""
        server, self._server = self._server, None
        if server is not None:
            server.close()  # stop listening: new connections are refused from now on
        reset = 0
        for writer in list(self._writers):
            transport = writer.transport
            if not transport.is_closing():
                reset += 1
            transport.abort()
        self._writers.clear()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.gather(*self._pipes, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        return reset

    async def restore(self) -> None:
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        await self.cut()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def probe_refused(self) -> bool:
        """True when a plain TCP connect to the proxy is refused right now (blocking, quick)."""
        with socket.socket() as sock:
            sock.settimeout(1.0)
            try:
                sock.connect((self.host, self.port))
            except OSError:
                return True
            return False

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted in the instant before a cut
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side finished: end the other too (a database connection is all or nothing).
            writer.transport.abort()
