"""CallSession turn-taking with instant engines and a simulated phone on the other end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from app.recent_calls import RecentCalls
from pipeline.brain.base import CallContext
from pipeline.brain.offline import OfflineBrain
from pipeline.instant_engines import EnergyVad, EnergyVadStream, FixedSTT, ToneTTS
from pipeline.metrics import PipelineMetrics
from pipeline.session import CallSession, Engines, SessionConfig
from pipeline.turn_taking import TurnConfig

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz


class FakePhone:
    """The far end: plays audio at ``speed`` × real time and echoes marks like Twilio."""

    output_rate = RATE

    def __init__(self, speed: float = 20.0, transfer_ok: bool = False) -> None:
        self.speed = speed
        self.transfer_ok = transfer_ok
        self.session: CallSession | None = None
        self.audio: list[bytes] = []
        self.marks_sent: list[str] = []
        self.clears = 0
        self.hung_up = False
        self.transfers: list[str | None] = []
        self.sent_after_close = 0
        self.echo = True
        self._play_until = 0.0
        self._handles: list[asyncio.TimerHandle] = []

    def send_audio(self, pcm16: bytes, mark: str, on_sent: Callable[[float], None] | None = None):
        if self.session is not None and self.session.is_closed:
            self.sent_after_close += 1
        self.audio.append(pcm16)
        self.marks_sent.append(mark)
        if on_sent:
            on_sent(time.monotonic())
        if not self.echo:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._play_until = max(self._play_until, now) + len(pcm16) / 2 / RATE / self.speed
        self._handles.append(
            loop.call_at(self._play_until, lambda m=mark: self.session.mark_played(m))
        )

    def clear(self) -> None:
        self.clears += 1
        for h in self._handles:
            h.cancel()
        self._handles.clear()
        self._play_until = 0.0

    async def hangup(self) -> None:
        self.hung_up = True

    async def transfer(self, target: str | None) -> bool:
        self.transfers.append(target)
        return self.transfer_ok

    @property
    def seconds_sent(self) -> float:
        return sum(len(a) for a in self.audio) / 2 / RATE


def speech(ms: int) -> list[bytes]:
    n = RATE * ms // 1000
    rng = np.random.default_rng(ms)
    samples = (rng.standard_normal(n) * 0.2 * 32767).clip(-32767, 32767).astype(np.int16)
    data = samples.tobytes()
    return [data[i : i + FRAME * 2] for i in range(0, len(data), FRAME * 2)]


def silence(ms: int) -> list[bytes]:
    return [bytes(FRAME * 2)] * (ms // 20)


async def feed(session: CallSession, frames: list[bytes], realtime: float = 0.0) -> None:
    for frame in frames:
        session.feed_audio(frame)
        await asyncio.sleep(realtime)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def make_session(
    stt: FixedSTT | None = None,
    phone: FakePhone | None = None,
    tts: ToneTTS | None = None,
    vad: EnergyVad | None = None,
) -> tuple[CallSession, FakePhone, RecentCalls, FixedSTT, ToneTTS]:
    phone = phone or FakePhone()
    stt = stt or FixedSTT()
    tts = tts or ToneTTS(ms_per_char=40)
    recent = RecentCalls()
    cfg = SessionConfig(
        sample_rate=RATE,
        turn=TurnConfig(min_speech_ms=64, speculative_silence_ms=200, end_of_turn_silence_ms=400),
        barge_in_min_ms=300,
        speech_pad_ms=200,
        playback_grace_s=0.5,
        dtmf_timeout_s=0.3,
    )
    session = CallSession(
        ctx=CallContext(call_id="CAtest", ingress="simulator"),
        sink=phone,
        engines=Engines(vad=vad or EnergyVad(), stt=stt, tts=tts, brain=OfflineBrain()),
        config=cfg,
        observer=recent,
        metrics=PipelineMetrics.create(),
    )
    phone.session = session
    return session, phone, recent, stt, tts


def turns(recent: RecentCalls):
    view = recent.get("CAtest")
    assert view is not None
    return view.turns


async def test_greeting_is_spoken_and_recorded_when_heard() -> None:
    session, phone, recent, _, tts = make_session()
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    greeting = turns(recent)[0]
    assert greeting.speaker == "bot" and not greeting.interrupted
    assert "Punto Ciudadano" in greeting.text and greeting.heard_text == greeting.text
    assert phone.marks_sent and phone.seconds_sent > 1.0
    assert "first_byte_ms" in greeting.timings
    assert session.ctx.history[-1].content == greeting.text
    await session.close("caller-hangup")


async def test_question_gets_an_answer_with_timings() -> None:
    session, phone, recent, stt, tts = make_session()
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, silence(200) + speech(800) + silence(600))
    await until(lambda: len(turns(recent)) == 3)
    caller, bot = turns(recent)[1:]
    assert caller.speaker == "caller" and caller.text == stt.text
    assert bot.speaker == "bot" and "lunes a viernes" in bot.text and not bot.interrupted
    for key in (
        "endpoint_ms",
        "stt_ms",
        "brain_first_text_ms",
        "tts_first_audio_ms",
        "first_byte_ms",
    ):
        assert key in bot.timings, key
    assert bot.timings["endpoint_ms"] >= 380  # the end-of-turn silence was waited for
    # The whole utterance (with pre-roll) went to STT, not just a fragment.
    assert stt.calls and stt.calls[-1] >= int(0.8 * RATE * 2)
    await session.close("caller-hangup")
    assert not session._tasks


async def test_barge_in_clears_and_keeps_only_what_was_heard() -> None:
    phone = FakePhone(speed=1.0)  # real-time playback so the caller can talk over it
    session, phone, recent, _, _ = make_session(phone=phone, tts=ToneTTS(ms_per_char=50))
    await session.start()
    await until(lambda: len(turns(recent)) == 1, timeout=15)
    await feed(session, speech(700) + silence(500))
    await until(lambda: phone.seconds_sent > 8.0)  # the long answer is being played
    await asyncio.sleep(1.5)  # the caller hears about a second and a half of it
    await feed(session, speech(500), realtime=0.0)
    await until(lambda: phone.clears == 1)
    await until(lambda: len(turns(recent)) >= 3)
    bot = turns(recent)[2]
    assert bot.speaker == "bot" and bot.interrupted
    assert bot.heard_text and len(bot.heard_text) < len(bot.text)
    assert bot.text.startswith(bot.heard_text)
    assert session.ctx.history[-1].interrupted
    assert session.ctx.history[-1].content == bot.heard_text
    await session.close("caller-hangup")


async def test_short_backchannel_over_the_bot_does_not_interrupt() -> None:
    phone = FakePhone(speed=1.0)
    session, phone, recent, stt, _ = make_session(phone=phone)
    await session.start()
    await asyncio.sleep(0.5)
    await feed(session, speech(160) + silence(500))  # "ajá"
    await asyncio.sleep(0.2)
    assert phone.clears == 0
    assert stt.calls == []
    await session.close("caller-hangup")
    assert turns(recent)[0].interrupted  # hung up mid-greeting: marked as cut off


async def test_caller_continuing_during_stt_extends_the_same_utterance() -> None:
    stt = FixedSTT(delay_s=0.6)
    session, phone, recent, stt, _ = make_session(stt=stt)
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, speech(600) + silence(450))  # turn ends, STT starts (slow)
    await asyncio.sleep(0.05)
    await feed(session, speech(600) + silence(450))  # ...but the caller goes on
    await until(lambda: len(turns(recent)) == 3, timeout=5)
    callers = [t for t in turns(recent) if t.speaker == "caller"]
    assert len(callers) == 1  # one turn, not two
    assert max(stt.calls) >= int(1.2 * RATE * 2)  # both pieces transcribed together
    await session.close("caller-hangup")


async def test_dtmf_zero_asks_for_a_human_and_falls_back_when_transfer_impossible() -> None:
    session, phone, recent, _, tts = make_session()
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    session.feed_dtmf("0")
    await until(lambda: phone.transfers == [None])
    await until(lambda: any("no puedo comunicarle" in t for t in tts.spoken))
    dtmf_turn = next(t for t in turns(recent) if t.speaker == "caller")
    assert dtmf_turn.dtmf == "0"
    assert not session.is_closed
    await session.close("caller-hangup")


async def test_transfer_ends_the_session_when_it_succeeds() -> None:
    session, phone, recent, _, _ = make_session(phone=FakePhone(transfer_ok=True))
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    session.feed_dtmf("0")
    session.feed_dtmf("#")
    await until(lambda: session.is_closed)
    assert session.end_reason == "transfer" and session.outcome == "transferred"


async def test_goodbye_is_heard_then_the_bot_hangs_up() -> None:
    stt = FixedSTT(text="No, eso es todo. Adiós.")
    session, phone, recent, _, tts = make_session(stt=stt)
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, speech(500) + silence(500))
    await until(lambda: session.is_closed)
    assert phone.hung_up and session.end_reason == "bot-hangup"
    goodbye = turns(recent)[-1]
    assert goodbye.speaker == "bot" and "buen día" in goodbye.text and not goodbye.interrupted
    assert phone.sent_after_close == 0


async def test_hangup_mid_reply_stops_everything() -> None:
    phone = FakePhone(speed=1.0)
    session, phone, recent, _, _ = make_session(phone=phone)
    await session.start()
    await asyncio.sleep(0.3)
    await session.close("caller-hangup")
    sent = len(phone.audio)
    await asyncio.sleep(0.3)
    assert len(phone.audio) == sent
    assert not session._tasks
    view = recent.get("CAtest")
    assert view is not None and view.end_reason == "caller-hangup"
    # Closing twice is harmless.
    await session.close("disconnected")
    assert view.end_reason == "caller-hangup"


async def test_stt_failure_gets_a_spoken_apology_and_the_call_goes_on() -> None:
    class BrokenSTT(FixedSTT):
        async def transcribe(self, pcm16: bytes, sample_rate: int):
            raise RuntimeError("boom")

    session, phone, recent, _, tts = make_session(stt=BrokenSTT())
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, speech(500) + silence(500))
    await until(lambda: any("no le entendí" in t for t in tts.spoken))
    assert not session.is_closed
    await session.close("caller-hangup")


async def test_speech_without_words_is_asked_again_but_never_in_a_loop() -> None:
    """A "Sí" lost on a bad line must not be met with silence (spoken eval F17); line noise
    must not make the bot talk on and on either."""
    session, phone, recent, _, tts = make_session(stt=FixedSTT(text=""))
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    for _ in range(2):
        spoken = len(tts.spoken)
        await feed(session, speech(300) + silence(500))  # a lone "Sí." lost on the line
        await until(lambda spoken=spoken: len(tts.spoken) > spoken)  # "¿Sigue ahí? …"
        await until(lambda: session._reply_stage == "idle")
    unheard = [t for t in turns(recent) if t.speaker == "caller"]
    assert len(unheard) == 2 and all(t.timings.get("unheard") == 1.0 for t in unheard)
    spoken = len(tts.spoken)
    await feed(session, speech(300) + silence(500))
    await asyncio.sleep(0.5)
    assert len(tts.spoken) == spoken  # the third in a row gets no reply
    await session.close("caller-hangup")


@pytest.mark.parametrize("text", ["", "   "])
async def test_no_words_recognised_means_no_reply(text: str) -> None:
    """A short blip (a click) with no words is ignored."""
    session, phone, recent, _, tts = make_session(stt=FixedSTT(text=text))
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    spoken = len(tts.spoken)
    await feed(session, speech(120) + silence(500))
    await asyncio.sleep(0.3)
    assert len(tts.spoken) == spoken
    assert len(turns(recent)) == 1
    await session.close("caller-hangup")


def windows_at(levels: list[float]) -> bytes:
    """One 32 ms VAD window (512 samples) per level: a square wave of that RMS, which the
    energy VAD maps to a speech probability (RMS 0.021 -> 0.55, 0.019 -> 0.45)."""
    square = np.tile([1.0, -1.0], 256)
    return b"".join((square * level * 32767).round().astype(np.int16).tobytes() for level in levels)


async def test_quiet_short_answer_just_under_the_threshold_is_a_turn() -> None:
    """A quiet "Sí." after the bot's question: its onset just clears the speech threshold
    and its vowel stays just under it (but over the hysteresis floor). That is speech, and
    the caller must get an answer rather than silence (spoken run: "(sin respuesta)")."""
    session, phone, recent, stt, tts = make_session(stt=FixedSTT(text="Sí."))
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await until(lambda: session._reply_stage == "idle" and not session._playout.speaking)
    session.feed_audio(windows_at([0.0] * 4 + [0.021] + [0.019] * 5 + [0.0] * 20))
    await until(lambda: len(turns(recent)) == 3)
    caller = turns(recent)[1]
    assert caller.speaker == "caller" and caller.text == "Sí."
    await session.close("caller-hangup")


class StaleVadStream(EnergyVadStream):
    """Silero-like: once an utterance has been heard, the recurrent state keeps the model
    deaf (probability 0) through any silence, until ``reset``."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate)
        self._heard = self._deaf = False

    def probability(self, window: np.ndarray) -> float:
        p = super().probability(window)
        self._deaf = self._deaf or (self._heard and p < 0.1)
        self._heard = self._heard or p >= 0.5
        return 0.0 if self._deaf else p

    def reset(self) -> None:
        self._heard = self._deaf = False


class StaleVad(EnergyVad):
    def stream(self, sample_rate: int) -> StaleVadStream:
        return StaleVadStream(sample_rate)


async def test_each_utterance_starts_from_a_fresh_vad_state() -> None:
    """The caller's next answer is heard although the VAD's state after the previous one
    would have kept it deaf (spoken run: a "Sí." after a long cédula got no answer)."""
    session, phone, recent, stt, tts = make_session(vad=StaleVad())
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    for n in (3, 5):
        await until(lambda: session._reply_stage == "idle" and not session._playout.speaking)
        await feed(session, silence(200) + speech(800) + silence(600))
        await until(lambda n=n: len(turns(recent)) == n)
    assert [t.speaker for t in turns(recent)] == ["bot", "caller", "bot", "caller", "bot"]
    await session.close("caller-hangup")


class FakeLive:
    """A live transcriber: text for each utterance, optional failure, endpoint events."""

    name = "fake-live"

    def __init__(self, texts: list[str], fail: bool = False, delay_s: float = 0.0) -> None:
        self.texts = texts
        self.fail = fail
        self.delay_s = delay_s
        self.received = 0
        self.opened_with: dict | None = None
        self.closed = False
        self.endpoint = None

    async def open(self, *, call_id: str, encoding: str, sample_rate: int) -> FakeLive:
        self.opened_with = {"encoding": encoding, "sample_rate": sample_rate}
        return self

    def send(self, audio: bytes) -> None:
        self.received += len(audio)

    def on_endpoint(self, callback) -> None:
        self.endpoint = callback

    async def final_text(self, timeout: float):
        from pipeline.engines import Transcript

        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("provider dropped")
        return Transcript(self.texts.pop(0) if self.texts else "", 1.0, 0.01, provider=self.name)

    async def aclose(self) -> None:
        self.closed = True


def with_live(live: FakeLive, stt: FixedSTT | None = None):
    session, phone, recent, stt, tts = make_session(stt=stt)
    session._engines.live_stt = live
    return session, phone, recent, stt, tts


async def test_live_stt_transcript_is_used_and_batch_stt_is_not_needed() -> None:
    live = FakeLive(["¿Dónde queda la oficina principal?"])
    session, phone, recent, stt, tts = with_live(live)
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, speech(600) + silence(500))
    await until(lambda: len(turns(recent)) == 3)
    assert turns(recent)[1].text == "¿Dónde queda la oficina principal?"
    assert "avenida" in turns(recent)[2].text.lower()
    assert stt.calls == []  # no speculative or fallback Whisper run
    assert live.received > 0 and live.opened_with == {"encoding": "pcm16", "sample_rate": RATE}
    await session.close("caller-hangup")
    assert live.closed


async def test_failed_live_stt_falls_back_to_batch_for_the_same_turn() -> None:
    live = FakeLive([], fail=True)
    session, phone, recent, stt, tts = with_live(live, stt=FixedSTT(text="¿A qué hora abren?"))
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, speech(600) + silence(500))
    await until(lambda: len(turns(recent)) == 3)
    assert turns(recent)[1].text == "¿A qué hora abren?"
    assert len(stt.calls) == 1
    await session.close("caller-hangup")


async def test_provider_endpoint_ends_the_turn_early_but_never_mid_speech() -> None:
    live = FakeLive(["¿A qué hora abren las oficinas?"])
    session, phone, recent, stt, tts = with_live(live)
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, speech(600))
    live.endpoint()  # the provider calls it while the caller is still talking: ignored
    assert session._detector.speaking
    await feed(session, silence(240))  # shorter than the 400 ms VAD end-of-turn
    assert session._detector.speaking
    live.endpoint()  # now there is a pause: the provider's endpoint wins
    assert not session._detector.speaking
    await until(lambda: len(turns(recent)) == 3)
    assert turns(recent)[2].timings["endpoint_ms"] < 380
    await session.close("caller-hangup")
