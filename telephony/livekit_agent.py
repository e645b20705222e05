"""``taina livekit-agent``: the worker that puts TAINA into LiveKit rooms.

How rooms are found — two modes:

* **Dispatched** (the default when ``REDIS_URL`` is set): LiveKit's webhooks reach
  ``POST /livekit/webhook`` on the app, which announces TAINA's rooms in Redis; workers block
  on the announcements, and a room is served by the one worker whose claim (``SET NX`` with a
  lease, renewed while the call lasts) succeeded. Any number of workers may run; a dead
  worker's rooms are claimed by the others once its lease lapses
  (telephony/livekit_dispatch.py, :meth:`LiveKitAgent.run_dispatched`).
* **Polling** (no Redis, or ``taina livekit-agent --poll``): the worker lists
  ``RoomService.ListRooms`` every ``livekit_poll_interval_s`` and joins each room whose name
  starts with the web prefix (``web-``) or the SIP prefix (``call-``). A room is handled once
  per worker, so run exactly one worker in this mode.

Each room gets its own ``LiveKitCallTransport`` and ``CallSession``, built from the same
``Services`` as the Twilio path (engines, brain, storage, metrics). The ``rtc.Room`` adapter
below is the only code that touches the real-time SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from app.services import Services
from app.settings import Settings
from pipeline.session import CallSession
from telephony.livekit_dispatch import RoomDispatch
from telephony.livekit_room import (
    AudioChunk,
    Caller,
    LiveKitCallTransport,
    Participant,
    RoomLike,
    RoomListener,
    livekit_session,
)
from telephony.livekit_sip import LiveKitControl

log = logging.getLogger("taina.livekit")

_KINDS = {0: "standard", 1: "ingress", 2: "egress", 3: "sip", 4: "agent"}


def agent_token(s: Settings, room: str) -> str:
    from livekit import api

    return (
        api.AccessToken(s.livekit_api_key, s.livekit_api_secret)
        .with_identity(s.livekit_agent_identity)
        .with_name("TAINA")
        .with_kind("agent")
        .with_ttl(timedelta(seconds=s.livekit_room_max_s + 300))
        .with_grants(
            api.VideoGrants(
                room_join=True,
                room=room,
                can_publish=True,
                can_subscribe=True,
                can_publish_data=True,
            )
        )
        .to_jwt()
    )


# --- the real room -----------------------------------------------------------------------------
class RtcRoom:
    """``RoomLike`` over ``livekit.rtc.Room``. Not exercised by the unit tests (no server)."""

    def __init__(self, room: Any, name: str, sample_rate: int) -> None:
        self._room = room
        self.name = name
        self._rate = sample_rate
        self._source: Any = None
        self._listener: RoomListener | None = None

    @classmethod
    async def connect(cls, url: str, token: str, name: str, sample_rate: int) -> RtcRoom:
        from livekit import rtc

        room = rtc.Room()
        await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
        return cls(room, name, sample_rate)

    def set_listener(self, listener: RoomListener) -> None:
        self._listener = listener
        room = self._room
        room.on("participant_connected", lambda p: listener.on_participant_joined(_p(p)))
        room.on("participant_disconnected", lambda p: listener.on_participant_left(p.identity))
        room.on(
            "sip_dtmf_received",
            lambda ev: listener.on_dtmf(
                ev.participant.identity if ev.participant is not None else None, ev.digit
            ),
        )
        room.on("disconnected", lambda *_: listener.on_disconnected())

    def remote_participants(self) -> list[Participant]:
        return [_p(p) for p in self._room.remote_participants.values()]

    async def audio_frames(self, identity: str) -> AsyncIterator[AudioChunk]:
        from livekit import rtc

        participant = self._room.remote_participants.get(identity)
        if participant is None:
            return
        stream = rtc.AudioStream.from_participant(
            participant=participant,
            track_source=rtc.TrackSource.SOURCE_MICROPHONE,
            sample_rate=self._rate,
            num_channels=1,
        )
        try:
            async for event in stream:
                frame = event.frame
                yield AudioChunk(bytes(frame.data.cast("B")), frame.sample_rate)
        finally:
            await stream.aclose()

    async def publish_audio(self, sample_rate: int) -> None:
        from livekit import rtc

        self._source = rtc.AudioSource(sample_rate, 1, queue_size_ms=200)
        track = rtc.LocalAudioTrack.create_audio_track("taina-voz", self._source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self._room.local_participant.publish_track(track, options)

    async def capture_audio(self, pcm16: bytes) -> None:
        from livekit import rtc

        src = self._source
        frame = rtc.AudioFrame(pcm16, src.sample_rate, 1, len(pcm16) // 2)
        await src.capture_frame(frame)

    def queued_audio_s(self) -> float:
        return float(self._source.queued_duration) if self._source is not None else 0.0

    def clear_audio(self) -> None:
        if self._source is not None:
            self._source.clear_queue()

    async def send_data(self, payload: bytes, topic: str) -> None:
        await self._room.local_participant.publish_data(payload, reliable=True, topic=topic)

    async def disconnect(self) -> None:
        try:
            await self._room.disconnect()
        finally:
            if self._source is not None:
                await self._source.aclose()
                self._source = None


def _p(p: Any) -> Participant:
    return Participant(
        identity=p.identity, kind=_KINDS.get(int(p.kind), "standard"), attributes=dict(p.attributes)
    )


# --- the worker --------------------------------------------------------------------------------
Connect = Callable[[str], Awaitable[RoomLike]]


class LiveKitAgent:
    """Joins every TAINA room once and runs one call in it."""

    def __init__(
        self, services: Services, control: Any, connect: Connect, *, keep_done: int = 1000
    ) -> None:
        self._services = services
        self._s = services.settings
        self._control = control
        self._connect = connect
        self._active: dict[str, asyncio.Task[str]] = {}
        self._done: OrderedDict[str, str] = OrderedDict()
        self._keep_done = keep_done

    def _ours(self, room: str) -> bool:
        return room.startswith((self._s.livekit_room_prefix, self._s.livekit_sip_room_prefix))

    async def poll_once(self) -> list[str]:
        """Start a call task for each new room; returns the rooms started."""
        started = []
        for name in await self._control.list_rooms():
            if self._ours(name) and name not in self._active and name not in self._done:
                task = asyncio.create_task(self.handle(name), name=f"lk-room-{name}")
                self._active[name] = task
                task.add_done_callback(lambda t, n=name: self._finished(n, t))
                started.append(name)
        return started

    def _finished(self, name: str, task: asyncio.Task[str]) -> None:
        self._active.pop(name, None)
        reason = "cancelled" if task.cancelled() else ("error" if task.exception() else "")
        self._done[name] = reason or task.result()
        while len(self._done) > self._keep_done:
            self._done.popitem(last=False)

    async def handle(self, name: str) -> str:
        s = self._s
        room = await self._connect(name)
        transfer_to = s.livekit_sip_transfer_to or s.transfer_number
        transport = LiveKitCallTransport(
            room,
            pipeline_rate=s.pipeline_sample_rate,
            output_rate=s.livekit_sample_rate,
            control=self._control,
            transfer_to=transfer_to,
            max_duration_s=s.livekit_room_max_s,
        )
        reason = await transport.run(self._make_session)
        log.info("room %s done: %s", name, reason)
        if reason not in ("transfer",):
            try:  # a finished call's room is not kept around for anyone to rejoin
                await self._control.delete_room(name)
            except Exception:
                log.warning("could not delete room %s", name, exc_info=True)
        return reason

    async def _make_session(self, caller: Caller, transport: LiveKitCallTransport) -> CallSession:
        svc = self._services
        return livekit_session(
            caller,
            transport,
            engines=svc.engines,
            config=svc.session_config(),
            observer=svc.observer,
            metrics=svc.metrics,
        )

    # --- dispatched by webhooks, claims in Redis ----------------------------------------------
    def _start(self, name: str, on_done: Callable[[str], None] | None = None) -> None:
        task = asyncio.create_task(self.handle(name), name=f"lk-room-{name}")
        self._active[name] = task

        def finished(t: asyncio.Task[str], n: str = name) -> None:
            self._finished(n, t)
            if on_done is not None and not t.cancelled():
                on_done(n)

        task.add_done_callback(finished)

    async def run_dispatched(
        self, dispatch: RoomDispatch, worker: str, stop: asyncio.Event | None = None
    ) -> None:
        """Serve the rooms LiveKit's webhooks announce, each claimed by exactly one worker.

        Wakes on each announcement (``BLPOP``); every ``lease / 3`` it renews its claims and
        looks over the announced rooms for one whose claim lapsed (a dead worker's): those it
        claims and joins. A graceful stop hands its rooms back at once; a crash (the task
        cancelled, the process killed) lets them lapse after the lease.
        """
        stop = stop or asyncio.Event()
        period = dispatch.lease_s / 3
        finished: set[str] = set()
        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                for name in list(finished):  # calls that ended: claim and announcement go
                    finished.discard(name)
                    await dispatch.done(name, worker)
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + period
                    lost = await dispatch.renew(list(self._active), worker)
                    for name in lost:  # another worker has it now: never serve twice
                        log.warning("room %s: claim lost, leaving it", name)
                        task = self._active.get(name)
                        if task is not None:
                            task.cancel()
                    for name in await dispatch.wanted():  # takeover of lapsed claims
                        await self._try_claim(dispatch, worker, name, finished)
                name = await dispatch.next_room(min(period, 1.0))
                if name is not None:
                    await self._try_claim(dispatch, worker, name, finished)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LiveKit dispatch: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)
        tasks = list(self._active.items())
        for _, task in tasks:
            task.cancel()
        await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)
        for name, _ in tasks:  # graceful: hand the rooms back now, not after the lease
            with contextlib.suppress(Exception):
                await dispatch.release(name, worker)

    async def _try_claim(
        self, dispatch: RoomDispatch, worker: str, name: str, finished: set[str]
    ) -> None:
        if not self._ours(name) or name in self._active:
            return
        if await dispatch.claim(name, worker):
            log.info("room %s claimed by %s", name, worker)
            self._done.pop(name, None)  # a room taken over may have been seen here before
            self._start(name, finished.add)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception as exc:
                log.warning("listing LiveKit rooms failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), self._s.livekit_poll_interval_s)
            except TimeoutError:
                pass
        for task in list(self._active.values()):
            task.cancel()
        await asyncio.gather(*self._active.values(), return_exceptions=True)


def worker_id() -> str:
    """This worker's name on its claims: host, pid and a random part (a restarted worker
    with the same pid does not inherit a dead one's claims)."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


async def run_agent(settings: Settings, *, poll: bool = False) -> None:
    """Load the engines once, then serve rooms until interrupted: dispatched by LiveKit's
    webhooks through Redis when ``REDIS_URL`` is set, by polling ListRooms otherwise (or with
    ``poll``)."""
    from app.services import build_services

    if not (settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret):
        raise SystemExit("Configure LIVEKIT_URL, LIVEKIT_API_KEY y LIVEKIT_API_SECRET.")
    services = await build_services(settings)
    control = LiveKitControl(settings)
    url = settings.livekit_url

    async def connect(name: str) -> RoomLike:
        return await RtcRoom.connect(
            url, agent_token(settings, name), name, settings.livekit_sample_rate
        )

    agent = LiveKitAgent(services, control, connect)
    client = services.shared.client
    stop = asyncio.Event()  # SIGTERM/SIGINT: stop cleanly, handing claimed rooms back
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if client is not None and not poll:
            me = worker_id()
            log.info("LiveKit agent %s: rooms dispatched by webhook (claims in Redis)", me)
            dispatch = RoomDispatch(
                client, settings.redis_prefix, lease_s=settings.livekit_claim_lease_s
            )
            await agent.run_dispatched(dispatch, me, stop)
        else:
            log.info(
                "LiveKit agent polling rooms %s* and %s* (run one worker in this mode)",
                settings.livekit_room_prefix,
                settings.livekit_sip_room_prefix,
            )
            await agent.run(stop)
    finally:
        await control.aclose()
        await services.aclose()
