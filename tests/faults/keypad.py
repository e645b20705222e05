"""Callers for the records attacks (issue 13): a keypad flood, a normal caller, a short call.

All speak the Twilio Media Streams protocol through ``RawStream`` against any server with a
``url`` and a ``port`` (the in-thread ``LiveServer`` or the ``taina serve`` subprocess), so
the same callers serve the regression tests and ``bench/records_bench.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from tests.faults.calls import Listener
from tests.integration.test_twilio_stream import RawStream, frames_of


async def open_call(server: object) -> tuple[RawStream, Listener]:
    """Webhook, socket, start; a listener echoing marks (an instant phone)."""
    call = RawStream(server)  # type: ignore[arg-type]
    token = await call.webhook()
    await call.connect()
    await call.start(token)
    return call, Listener(call).start()


async def hang_up(call: RawStream, listener: Listener) -> None:
    with contextlib.suppress(ConnectionClosed, AssertionError):
        await call.stop()
        await listener.closed(5.0)
    await listener.stop()
    if call.ws is not None:
        with contextlib.suppress(Exception):
            await call.ws.close()


async def press(call: RawStream, keys: str) -> None:
    for key in keys:
        await call.send({"event": "dtmf", "streamSid": call.stream_sid, "dtmf": {"digit": key}})


@dataclass
class KeypadFlood:
    """One caller pressing "1#" as fast as the socket takes it: ~100+ entries a second."""

    server: object
    entries: int = 0
    call: RawStream | None = None
    listener: Listener | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self.call, self.listener = await open_call(self.server)
        try:
            while not stop.is_set() and self.listener.close_code is None:
                await press(self.call, "1#")
                self.entries += 1
                if self.entries % 20 == 0:
                    await asyncio.sleep(0.001)  # let the listener echo marks
        except ConnectionClosed:
            pass
        finally:
            await hang_up(self.call, self.listener)


@dataclass
class NormalCaller:
    """Speaks (noise to the energy VAD) at real time, waits for the reply to finish, again."""

    server: object
    speech_ms: int = 600
    answered: int = 0  # turns whose reply audio arrived
    unanswered: int = 0
    call: RawStream | None = None
    listener: Listener | None = None
    latencies: list[float] = field(default_factory=list)

    async def speak(self) -> float:
        """Send one utterance paced at real time; returns when the speech ended."""
        assert self.call is not None
        frames = frames_of(True, self.speech_ms) + frames_of(False, 800)
        speech_end = 0.0
        for i in range(0, len(frames), 5):
            t0 = time.monotonic()
            await self.call.media(frames[i : i + 5])
            if i + 5 >= self.speech_ms // 20 and not speech_end:
                speech_end = time.monotonic()
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
        return speech_end

    async def quiet(self, quiet_s: float = 0.6, max_s: float = 15.0) -> None:
        """Wait until the bot has not sent audio for ``quiet_s``."""
        assert self.listener is not None
        end = time.monotonic() + max_s
        while time.monotonic() < end:
            last = max((h.at for h in self.listener.heard if h.msg.get("event") == "media"),
                       default=0.0)  # fmt: skip
            if time.monotonic() - last >= quiet_s:
                return
            await asyncio.sleep(0.1)

    async def run(self, stop: asyncio.Event, reply_timeout_s: float = 6.0) -> None:
        self.call, self.listener = await open_call(self.server)
        try:
            await self.quiet()  # the greeting
            while not stop.is_set() and self.listener.close_code is None:
                speech_end = await self.speak()
                deadline = time.monotonic() + reply_timeout_s
                first = None
                while first is None and time.monotonic() < deadline:
                    first = self.listener.first_audio_after(speech_end)
                    await asyncio.sleep(0.05)
                if first is None:
                    self.unanswered += 1
                else:
                    self.answered += 1
                    self.latencies.append(first - speech_end)
                await self.quiet()
        except ConnectionClosed:
            pass
        finally:
            await hang_up(self.call, self.listener)


async def short_call(server: object, keys: str = "1#", wait_s: float = 0.3) -> str:
    """A whole call in a fraction of a second: greeting, one keypad turn, hang-up."""
    call, listener = await open_call(server)
    try:
        await press(call, keys)
        await asyncio.sleep(wait_s)
    finally:
        await hang_up(call, listener)
    return call.call_sid
