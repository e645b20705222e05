"""The agent's room logic against a fake room: audio in, turns, audio and captions out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from app.recent_calls import RecentCalls
from pipeline.brain.base import CallContext, TextChunk, Transfer, UserInput
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.metrics import PipelineMetrics
from pipeline.session import CallSession, Engines, SessionConfig
from pipeline.turn_taking import TurnConfig
from telephony.livekit_room import (
    INGRESS_SIP,
    INGRESS_WEB,
    AudioChunk,
    Caller,
    LiveKitCallTransport,
    Participant,
    RoomListener,
    livekit_session,
)

IN_RATE = 48000  # what WebRTC delivers
OUT_RATE = 48000
PIPE_RATE = 16000
FRAME_IN = IN_RATE * 20 // 1000  # samples per 20 ms


class FakeRoom:
    """A room with one remote participant. Plays the published audio ``speed`` × real time."""

    def __init__(self, name: str = "web-abc", speed: float = 20.0) -> None:
        self.name = name
        self.speed = speed
        self.listener: RoomListener | None = None
        self.participants: list[Participant] = []
        self.inbound: dict[str, asyncio.Queue[AudioChunk | None]] = {}
        self.published_rate: int | None = None
        self.frames: list[bytes] = []
        self.data: list[dict] = []
        self.clears = 0
        self.disconnected = False
        self._play_until = 0.0

    # test side
    def join(self, p: Participant) -> None:
        self.participants.append(p)
        self.inbound[p.identity] = asyncio.Queue()
        if self.listener is not None:
            self.listener.on_participant_joined(p)

    def leave(self, identity: str) -> None:
        self.participants = [p for p in self.participants if p.identity != identity]
        self.inbound[identity].put_nowait(None)
        assert self.listener is not None
        self.listener.on_participant_left(identity)

    def speak(self, identity: str, pcm16: bytes) -> None:
        q = self.inbound[identity]
        step = FRAME_IN * 2
        for i in range(0, len(pcm16), step):
            q.put_nowait(AudioChunk(pcm16[i : i + step], IN_RATE))

    def messages(self, kind: str) -> list[dict]:
        return [m for m in self.data if m["type"] == kind]

    # RoomLike
    def set_listener(self, listener: RoomListener) -> None:
        self.listener = listener

    def remote_participants(self) -> list[Participant]:
        return list(self.participants)

    async def audio_frames(self, identity: str) -> AsyncIterator[AudioChunk]:
        q = self.inbound[identity]
        while (chunk := await q.get()) is not None:
            yield chunk
            await asyncio.sleep(0.02 / self.speed)

    async def publish_audio(self, sample_rate: int) -> None:
        self.published_rate = sample_rate

    async def capture_audio(self, pcm16: bytes) -> None:
        now = time.monotonic()
        self._play_until = max(self._play_until, now) + len(pcm16) / 2 / OUT_RATE / self.speed
        self.frames.append(pcm16)

    def queued_audio_s(self) -> float:
        return max(self._play_until - time.monotonic(), 0.0)

    def clear_audio(self) -> None:
        self.clears += 1
        self._play_until = 0.0

    async def send_data(self, payload: bytes, topic: str) -> None:
        assert topic == "taina"
        self.data.append(json.loads(payload))

    async def disconnect(self) -> None:
        self.disconnected = True


class FakeControl:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.deleted: list[str] = []
        self.transfers: list[tuple[str, str, str]] = []

    async def delete_room(self, room: str) -> None:
        self.deleted.append(room)

    async def transfer_sip(self, room: str, identity: str, transfer_to: str) -> bool:
        self.transfers.append((room, identity, transfer_to))
        return self.ok


class ScriptBrain:
    """Greets, answers every turn with one sentence; "agente" or DTMF 0 asks for a human."""

    name = "script"

    def __init__(self) -> None:
        self.inputs: list[UserInput] = []

    async def greeting(self, ctx: CallContext) -> str:
        return "Hola, bienvenido."

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator:
        self.inputs.append(user)
        if user.dtmf == "0" or "agente" in user.text:
            yield TextChunk("Le comunico con un agente.")
            yield Transfer()
            return
        yield TextChunk("Abrimos de ocho de la mañana a cuatro de la tarde, de lunes a viernes.")


def tone48(ms: int, amp: float = 0.2) -> bytes:
    n = IN_RATE * ms // 1000
    rng = np.random.default_rng(ms)
    return (rng.standard_normal(n) * amp * 32767).clip(-32767, 32767).astype(np.int16).tobytes()


def silence48(ms: int) -> bytes:
    return bytes(IN_RATE * ms // 1000 * 2)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Harness:
    def __init__(self, participant: Participant, *, stt_text: str = "¿A qué hora abren?") -> None:
        self.room = FakeRoom(name="call-18095550100_x" if participant.is_sip else "web-abc")
        self.control = FakeControl()
        self.transport = LiveKitCallTransport(
            self.room,
            pipeline_rate=PIPE_RATE,
            output_rate=OUT_RATE,
            control=self.control,
            transfer_to="+18095550199",
        )
        self.brain = ScriptBrain()
        self.stt = FixedSTT(stt_text)
        self.recent = RecentCalls()
        self.participant = participant
        self.callers: list[Caller] = []
        self.task: asyncio.Task[str] | None = None

    async def make(self, caller: Caller, transport: LiveKitCallTransport) -> CallSession:
        self.callers.append(caller)
        engines = Engines(
            vad=EnergyVad(), stt=self.stt, tts=ToneTTS(ms_per_char=20), brain=self.brain
        )
        cfg = SessionConfig(
            sample_rate=PIPE_RATE,
            turn=TurnConfig(
                min_speech_ms=64, speculative_silence_ms=200, end_of_turn_silence_ms=400
            ),
            barge_in_min_ms=200,
            speech_pad_ms=200,
            playback_grace_s=0.5,
            dtmf_timeout_s=0.2,
        )
        return livekit_session(
            caller,
            transport,
            engines=engines,
            config=cfg,
            observer=self.recent,
            metrics=PipelineMetrics.create(),
        )

    async def start(self) -> None:
        self.task = asyncio.create_task(self.transport.run(self.make, wait_caller_s=5))
        await asyncio.sleep(0)
        self.room.join(self.participant)
        await until(lambda: self.transport.session is not None)
        # the greeting is spoken and fully played
        await until(lambda: self.session_turns("bot") >= 1)

    @property
    def session(self) -> CallSession:
        assert self.transport.session is not None
        return self.transport.session

    def session_turns(self, speaker: str) -> int:
        view = self.recent.get(self.room.name)
        return 0 if view is None else sum(1 for t in view.turns if t.speaker == speaker)

    async def finish(self) -> str:
        assert self.task is not None
        return await asyncio.wait_for(self.task, 10)


VISITOR = Participant("visitante-1", "standard")
SIP_CALLER = Participant(
    "sip_18095550100",
    "sip",
    {"sip.phoneNumber": "+18095550100", "sip.trunkPhoneNumber": "+18095550000"},
)


async def test_visitor_turn_produces_audio_and_captions() -> None:
    h = Harness(VISITOR)
    await h.start()
    assert h.callers[0].ingress == INGRESS_WEB and h.callers[0].caller_number is None
    assert h.room.published_rate == OUT_RATE
    greeting_frames = len(h.room.frames)
    assert greeting_frames > 0
    assert all(len(f) == OUT_RATE * 2 * 20 // 1000 for f in h.room.frames)  # 20 ms frames

    h.room.speak(VISITOR.identity, tone48(800) + silence48(700))
    await until(lambda: h.session_turns("bot") >= 2)

    assert h.stt.calls, "the visitor's audio reached STT"
    # 800 ms at 48 kHz reached the pipeline resampled to 16 kHz (roughly, with VAD padding)
    assert max(h.stt.calls) / 2 / PIPE_RATE == pytest.approx(0.8, abs=0.45)
    assert len(h.room.frames) > greeting_frames
    captions = h.room.messages("caption")
    assert {"type": "caption", "role": "user", "text": "¿A qué hora abren?", "final": True} in (
        captions
    )
    bot_final = [c for c in captions if c["role"] == "assistant" and c["final"]]
    assert bot_final[-1]["text"].startswith("Abrimos de ocho")
    assert any(c["role"] == "assistant" and not c["final"] for c in captions)
    states = [m["state"] for m in h.room.messages("state")]
    assert "pensando" in states and "hablando" in states
    assert states[-1] == "escuchando"
    # every chunk the session sent was reported played from the room's own clock
    view = h.recent.get(h.room.name)
    assert view is not None and not view.turns[-1].interrupted

    h.room.leave(VISITOR.identity)
    assert await h.finish() == "caller-hangup"
    assert h.session.is_closed and h.session.end_reason == "caller-hangup"
    assert h.room.disconnected


async def test_barge_in_clears_the_audio_source() -> None:
    h = Harness(VISITOR)
    h_room_speed = 1.0  # play in real time so the reply is still playing when we interrupt
    await h.start()
    h.room.speed = h_room_speed
    h.room.speak(VISITOR.identity, tone48(600) + silence48(600))
    await until(lambda: any(m.get("state") == "hablando" for m in h.room.data[-3:]), 10)
    await until(lambda: len(h.room.frames) > 0 and h.room.queued_audio_s() > 0.3)
    h.room.speed = 20.0
    h.room.speak(VISITOR.identity, tone48(700) + silence48(600))
    await until(lambda: h.room.clears >= 1)
    await until(lambda: any(t.interrupted for t in h.recent.get(h.room.name).turns))
    h.room.leave(VISITOR.identity)
    await h.finish()


async def test_sip_participant_is_a_phone_caller_with_dtmf_and_transfer() -> None:
    h = Harness(SIP_CALLER)
    await h.start()
    caller = h.callers[0]
    assert caller.ingress == INGRESS_SIP
    assert caller.caller_number == "+18095550100"
    assert caller.called_number == "+18095550000"
    assert h.session.ctx.ingress == "livekit-sip"
    assert h.session.ctx.caller_number == "+18095550100"

    assert h.transport.on_dtmf is not None
    h.transport.on_dtmf(SIP_CALLER.identity, "0")
    reason = await h.finish()
    assert h.brain.inputs[-1].dtmf == "0"
    assert h.control.transfers == [(h.room.name, SIP_CALLER.identity, "tel:+18095550199")]
    assert reason == "transfer"
    assert h.session.outcome == "transferred"


async def test_web_visitor_cannot_be_transferred() -> None:
    h = Harness(VISITOR, stt_text="quiero un agente")
    await h.start()
    h.room.speak(VISITOR.identity, tone48(600) + silence48(600))
    await until(lambda: h.session_turns("bot") >= 3)  # greeting, handoff line, "no puedo" notice
    assert h.control.transfers == []
    assert "no puedo comunicarle" in h.recent.get(h.room.name).turns[-1].text
    h.room.leave(VISITOR.identity)
    assert await h.finish() == "caller-hangup"


async def test_dtmf_from_another_participant_is_ignored() -> None:
    h = Harness(SIP_CALLER)
    await h.start()
    h.transport.on_dtmf("someone-else", "0")
    await asyncio.sleep(0.4)
    assert h.brain.inputs == []
    h.room.leave(SIP_CALLER.identity)
    assert await h.finish() == "caller-hangup"


async def test_agents_are_not_callers_and_nobody_times_out() -> None:
    room = FakeRoom()
    transport = LiveKitCallTransport(room, pipeline_rate=PIPE_RATE, output_rate=OUT_RATE)
    room.join(Participant("otro-agente", "agent"))

    async def never(caller: Caller, t: LiveKitCallTransport) -> CallSession:
        raise AssertionError("no session for an agent")

    assert await transport.run(never, wait_caller_s=0.2) == "no-caller"
    assert room.disconnected


async def test_bot_hangup_deletes_the_room() -> None:
    h = Harness(VISITOR)
    await h.start()
    await h.transport.hangup()
    assert await h.finish() == "bot-hangup"
    assert h.control.deleted == [h.room.name]


async def test_agent_worker_joins_our_rooms_once_and_deletes_them_after() -> None:
    from types import SimpleNamespace

    from livekit import api

    from app.settings import Settings
    from telephony.livekit_agent import LiveKitAgent, agent_token
    from telephony.livekit_sip import LiveKitControl
    from tests.fake_livekit_twirp import FakeLiveKitTwirp

    secret = "un-secreto-de-prueba-bastante-largo-1234"
    fake = FakeLiveKitTwirp(api_key="APIprueba", api_secret=secret)
    await fake.start()
    settings = Settings(
        livekit_url=fake.url,
        livekit_api_key="APIprueba",
        livekit_api_secret=secret,
        pipeline_sample_rate=PIPE_RATE,
        livekit_sample_rate=OUT_RATE,
    )
    for name in ("web-uno", "call-+18095550100_ab", "otra-sala"):
        fake.rooms[name] = api.Room(name=name)
    h = Harness(VISITOR)
    rooms: dict[str, FakeRoom] = {}

    async def connect(name: str) -> FakeRoom:
        room = FakeRoom(name)
        rooms[name] = room
        room.join(SIP_CALLER if name.startswith("call-") else VISITOR)
        return room

    services = SimpleNamespace(
        settings=settings,
        engines=Engines(vad=EnergyVad(), stt=FixedSTT(), tts=ToneTTS(20), brain=h.brain),
        session_config=lambda: SessionConfig(sample_rate=PIPE_RATE),
        observer=h.recent,
        metrics=PipelineMetrics.create(),
    )
    control = LiveKitControl(settings)
    agent = LiveKitAgent(services, control, connect)  # type: ignore[arg-type]
    try:
        started = await agent.poll_once()
        assert sorted(started) == ["call-+18095550100_ab", "web-uno"]
        assert await agent.poll_once() == []  # not joined twice
        await until(lambda: all(r.frames for r in rooms.values()))  # both greeted
        assert h.recent.get("call-+18095550100_ab").info.ingress == "livekit-sip"
        assert h.recent.get("web-uno").info.ingress == "livekit"
        rooms["web-uno"].leave(VISITOR.identity)
        await until(lambda: "web-uno" not in fake.rooms)
        assert "otra-sala" in fake.rooms
        assert await agent.poll_once() == []  # a finished room is not rejoined
        claims = api.TokenVerifier("APIprueba", secret).verify(agent_token(settings, "web-uno"))
        assert claims.kind == "agent" and claims.video.room == "web-uno"
        assert claims.video.room_join and claims.video.can_publish_data
    finally:
        stop = asyncio.Event()
        stop.set()
        await agent.run(stop)
        await control.aclose()
        await fake.stop()
