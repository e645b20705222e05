"""Call-side helpers for fault tests: a phone that keeps listening while the test does other
things, and abrupt disconnects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from tests.integration.test_twilio_stream import RawStream


@dataclass
class Heard:
    at: float  # monotonic arrival time
    msg: dict


@dataclass
class Listener:
    """Reads a ``RawStream`` in the background like Twilio's side of a call: every message is
    kept with its arrival time, every mark is echoed at once (instant playback), and the
    close (code, time) is noted when the server ends the call."""

    call: RawStream
    echo_marks: bool = True
    heard: list[Heard] = field(default_factory=list)
    close_code: int | None = None
    closed_at: float | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> Listener:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        ws = self.call.ws
        assert ws is not None
        try:
            while True:
                raw = await ws.recv()
                msg = json.loads(raw)
                self.heard.append(Heard(time.monotonic(), msg))
                if self.echo_marks and msg.get("event") == "mark":
                    with contextlib.suppress(ConnectionClosed):
                        await self.call.send(
                            {
                                "event": "mark",
                                "streamSid": self.call.stream_sid,
                                "mark": msg["mark"],
                            }
                        )
        except ConnectionClosed as closed:
            self.closed_at = time.monotonic()
            self.close_code = closed.rcvd.code if closed.rcvd is not None else None

    async def closed(self, timeout: float) -> None:
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def audio_bytes(self, since: float = 0.0, until: float = float("inf")) -> int:
        """Bytes of bot audio (mu-law 8 kHz: 8 bytes per ms) that arrived in [since, until)."""
        return sum(
            len(base64.b64decode(h.msg["media"]["payload"]))
            for h in self.heard
            if h.msg.get("event") == "media" and since <= h.at < until
        )

    def first_audio_after(self, t: float) -> float | None:
        for h in self.heard:
            if h.at >= t and h.msg.get("event") == "media":
                return h.at
        return None


async def until(cond, timeout: float = 5.0, interval: float = 0.02) -> None:
    """Wait for ``cond()`` to hold (checked on the test's loop)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


def drop_connection(call: RawStream) -> None:
    """The network fails under the call: the TCP connection is reset, no close frame, no
    Twilio ``stop`` message."""
    assert call.ws is not None
    call.ws.transport.abort()
