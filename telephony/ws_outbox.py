"""The sending side of one WebSocket, owned by a single writer task.

Every transport queues its outgoing messages here instead of awaiting ``send`` itself: a
barge-in ``clear`` can then drop audio that has not gone out yet, a slow peer never blocks
the session, and nothing is ever sent after the socket closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketState

OnSent = Callable[[float], None]
_Item = tuple[str | bytes, OnSent | None]


class WebSocketOutbox:
    def __init__(self, ws: WebSocket, name: str) -> None:
        self._ws = ws
        self._name = name
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    def put(self, payload: str | bytes, on_sent: OnSent | None = None) -> None:
        """Queue a text (str) or binary (bytes) message; ``on_sent`` gets the monotonic time
        it went out on the wire."""
        self._queue.put_nowait((payload, on_sent))

    def drop_pending(self) -> int:
        """Forget everything not sent yet (barge-in); an end already queued is kept."""
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return dropped
            if item is None:
                self._queue.put_nowait(None)
                return dropped
            dropped += 1

    async def drain(self, timeout: float) -> None:
        """Send what is queued, then stop the writer (waits at most ``timeout``)."""
        self._queue.put_nowait(None)
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def close(self, code: int) -> None:
        if self._ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self._ws.close(code)

    async def shutdown(self, code: int, timeout: float = 2.0) -> None:
        """Flush briefly, stop the writer for good, close the socket."""
        if self._task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout)
            if not self._task.done():
                self._task.cancel()
        await self.close(code)

    async def _run(self) -> None:
        ws = self._ws
        while True:
            item = await self._queue.get()
            if item is None:
                return
            payload, on_sent = item
            if ws.application_state != WebSocketState.CONNECTED:
                return
            try:
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_text(payload)
            except Exception:  # the peer is gone; the receive loop will notice
                return
            if on_sent is not None:
                on_sent(time.monotonic())
