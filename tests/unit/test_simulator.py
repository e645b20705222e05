"""The call simulator: earpiece/mark logic, clock, WAV, TwiML/URL/signature helpers, and whole
calls against a tiny fake TAINA server (aiohttp on loopback) that speaks Twilio's protocol."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator

from telephony.audio_codec import mulaw_to_pcm16, pcm16_to_mulaw, rms
from telephony.simulator import (
    EXIT_ERROR,
    EXIT_NO_ANSWER,
    EXIT_OK,
    CallOptions,
    Step,
    TwimlError,
    add_arguments,
    format_transcript,
    map_http_url,
    map_stream_url,
    parse_stream_twiml,
    run_call,
    sign,
    webhook_params,
)
from telephony.simulator_audio import (
    FRAME_BYTES,
    SILENCE_FRAME,
    CallerVoice,
    FrameClock,
    GapCounter,
    PlaybackBuffer,
    load_wav_as_ulaw8k,
    trim_silence,
    write_stereo_wav,
)

TOKEN = "test-auth-token-1234"
PUBLIC = "https://public.example.test"


def tone_pcm(ms: int, freq: float = 440.0, rate: int = 8000, amp: int = 8000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (amp * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()


def tone_ulaw(ms: int, freq: float = 440.0) -> bytes:
    return pcm16_to_mulaw(tone_pcm(ms, freq))


def write_wav(path: Path, pcm: bytes, rate: int = 8000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


# --- earpiece: playback buffer and marks ------------------------------------------------------


def test_mark_is_echoed_only_after_its_audio_has_played() -> None:
    pb = PlaybackBuffer()
    pb.feed(tone_ulaw(50))  # 400 bytes = 2.5 frames
    assert pb.add_mark("m") == []
    ticks = [pb.tick() for _ in range(4)]
    # Frames 1-3 carry the audio (the third is half audio, half padding); the mark is due only
    # once the third frame has finished playing, i.e. at the fourth tick.
    assert [t.audio_bytes for t in ticks] == [160, 160, 80, 0]
    assert [t.marks for t in ticks] == [[], [], [], ["m"]]
    assert all(len(t.frame) == FRAME_BYTES for t in ticks)
    assert ticks[2].frame[80:] == SILENCE_FRAME[80:]


def test_marks_between_chunks_are_echoed_in_order_as_each_chunk_ends() -> None:
    pb = PlaybackBuffer()
    pb.feed(tone_ulaw(20))
    pb.add_mark("one")
    pb.feed(tone_ulaw(20))
    pb.add_mark("two")
    assert [pb.tick().marks for _ in range(3)] == [[], ["one"], ["two"]]


def test_mark_with_nothing_buffered_is_echoed_at_once() -> None:
    pb = PlaybackBuffer()
    assert pb.add_mark("idle") == ["idle"]
    pb.feed(tone_ulaw(20))
    pb.tick()  # that frame is still sounding: a new mark waits for it to end
    assert pb.add_mark("after") == []
    assert pb.tick().marks == ["after"]
    assert pb.add_mark("quiet-again") == ["quiet-again"]


def test_clear_flushes_the_buffer_and_returns_every_pending_mark() -> None:
    pb = PlaybackBuffer()
    pb.feed(tone_ulaw(100), tag=3)  # 800 bytes
    pb.add_mark("a")
    pb.feed(tone_ulaw(100), tag=3)
    pb.add_mark("b")
    pb.tick()
    cleared = pb.clear()
    assert cleared.marks == ["a", "b"]
    assert cleared.discarded == {3: 1600 - 160}
    assert pb.buffered == 0 and pb.pending_marks == []
    after = pb.tick()
    assert after.frame == SILENCE_FRAME and after.marks == [] and after.audio_bytes == 0


def test_played_bytes_are_attributed_to_the_turn_that_sent_them() -> None:
    pb = PlaybackBuffer()
    pb.feed(b"\x01" * 100, tag="greeting")
    pb.feed(b"\x02" * 100, tag=0)
    frame = pb.tick()
    assert [(tag, len(piece)) for tag, piece in frame.pieces] == [("greeting", 100), (0, 60)]
    assert frame.frame == b"\x01" * 100 + b"\x02" * 60
    assert [(tag, len(piece)) for tag, piece in pb.tick().pieces] == [(0, 40)]


def _play(pb: PlaybackBuffer, gaps: GapCounter, ticks: range) -> None:
    for n in ticks:
        gaps.tick(n, pb.tick())


def test_audio_that_arrives_in_time_leaves_no_hole() -> None:
    pb, gaps = PlaybackBuffer(), GapCounter()
    pb.feed(b"\x01" * 400, tag=0)  # 2.5 frames
    _play(pb, gaps, range(2))
    pb.feed(b"\x01" * 400, tag=0)  # the rest arrives before the buffer ran dry
    _play(pb, gaps, range(2, 8))
    assert gaps.frames == {}


def test_late_audio_counts_the_silent_slots_the_caller_heard() -> None:
    pb, gaps = PlaybackBuffer(), GapCounter()
    pb.feed(b"\x01" * 320, tag=0)  # 2 whole frames
    _play(pb, gaps, range(5))  # ticks 2, 3, 4 play nothing: the server is late
    pb.feed(b"\x01" * 320, tag=0)
    _play(pb, gaps, range(5, 8))
    assert gaps.frames == {0: 3}


def test_a_frame_cut_short_then_resumed_is_one_hole_and_the_end_of_a_turn_is_none() -> None:
    pb, gaps = PlaybackBuffer(), GapCounter()
    pb.feed(b"\x01" * 240, tag=0)  # 1.5 frames: tick 1 runs dry half way
    _play(pb, gaps, range(2))
    pb.feed(b"\x01" * 160, tag=0)
    _play(pb, gaps, range(2, 6))  # resumes at tick 2; ends part-way: not a hole
    pb.feed(b"\x02" * 160, tag=1)  # the next turn starting later is not a hole either
    _play(pb, gaps, range(9, 11))
    assert gaps.frames == {0: 1}


# --- clock and microphone --------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += delay


async def test_clock_keeps_an_absolute_schedule_after_a_stall() -> None:
    ft = FakeTime()
    clock = FrameClock(now=ft.time, sleep=ft.sleep)
    seen: list[tuple[int, float, float]] = []

    async def on_tick(n: int, deadline: float) -> bool:
        seen.append((n, round(deadline - 100.0, 6), round(ft.now - 100.0, 6)))
        if n == 3:
            ft.now += 0.055  # a slow tick (e.g. a blocked send)
        return n < 7

    await clock.run(on_tick)
    assert [d for _, d, _ in seen] == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14]
    # Ticks 4 and 5 run late, back to back; from tick 6 on the schedule is met again: no drift.
    assert [t for _, _, t in seen] == [0.0, 0.02, 0.04, 0.06, 0.115, 0.115, 0.12, 0.14]
    assert clock.late_ticks == 2
    assert clock.max_lag_s == pytest.approx(0.035)


def test_caller_voice_pads_the_last_frame_and_flags_it() -> None:
    voice = CallerVoice()
    assert voice.next_frame() == (SILENCE_FRAME, False, False)
    voice.say(b"\x10" * 200)
    f1, s1, last1 = voice.next_frame()
    assert f1 == b"\x10" * 160
    f2, s2, last2 = voice.next_frame()
    assert (s1, last1, s2, last2) == (True, False, True, True)
    assert f2 == b"\x10" * 40 + SILENCE_FRAME[:120]
    assert voice.next_frame()[1] is False


# --- audio files ------------------------------------------------------------------------------


def test_stereo_wav_keeps_caller_and_bot_sample_aligned(tmp_path: Path) -> None:
    burst = tone_ulaw(20)
    caller = SILENCE_FRAME + burst + SILENCE_FRAME
    bot = SILENCE_FRAME + SILENCE_FRAME + burst
    out = tmp_path / "call.wav"
    write_stereo_wav(out, caller, bot)
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert samples.shape == (480, 2)
    loud_left = np.flatnonzero(np.abs(samples[:, 0]) > 100)
    loud_right = np.flatnonzero(np.abs(samples[:, 1]) > 100)
    assert 160 <= loud_left.min() and loud_left.max() < 320
    assert 320 <= loud_right.min() and loud_right.max() < 480
    expected = np.frombuffer(mulaw_to_pcm16(burst), dtype="<i2")
    assert np.array_equal(samples[160:320, 0], expected)
    assert np.array_equal(samples[320:480, 1], expected)


def test_wav_of_any_rate_and_channels_becomes_8k_mono_mulaw(tmp_path: Path) -> None:
    mono16k = tone_pcm(500, rate=16000)
    stereo = np.repeat(np.frombuffer(mono16k, dtype="<i2"), 2).tobytes()
    path = write_wav(tmp_path / "s.wav", stereo, rate=16000, channels=2)
    ulaw = load_wav_as_ulaw8k(path)
    assert abs(len(ulaw) - 4000) <= 2  # 500 ms at 8 kHz, one byte per sample
    assert rms(mulaw_to_pcm16(ulaw)) > 3000


def test_trim_silence_cuts_to_the_first_and_last_audible_frames() -> None:
    audio = SILENCE_FRAME * 3 + tone_ulaw(60) + SILENCE_FRAME * 4
    trimmed = trim_silence(audio)
    assert len(trimmed) == 3 * FRAME_BYTES
    assert trim_silence(SILENCE_FRAME * 5) == b""


# --- TwiML, URLs, signatures ------------------------------------------------------------------

TWIML = f"""<?xml version="1.0" encoding="UTF-8"?>
<Response><Connect><Stream url="wss://public.example.test/twilio/stream"
 statusCallback="{PUBLIC}/twilio/status"><Parameter name="token" value="t-1" />
<Parameter name="tenant" value="sd" /></Stream></Connect></Response>"""


def test_parse_stream_twiml_reads_url_parameters_and_callback() -> None:
    s = parse_stream_twiml(TWIML)
    assert s.url == "wss://public.example.test/twilio/stream"
    assert s.parameters == {"token": "t-1", "tenant": "sd"}
    assert s.status_callback == f"{PUBLIC}/twilio/status"
    assert s.status_callback_method == "POST"


def test_parse_stream_twiml_rejects_documents_without_a_bidirectional_stream() -> None:
    refusal = (
        "<Response><Say language='es-MX'>No disponible.</Say><Hangup/></Response>"
    )  # fmt: skip
    with pytest.raises(TwimlError) as err:
        parse_stream_twiml(refusal)
    assert err.value.said == ["No disponible."]
    with pytest.raises(TwimlError, match="Start"):
        parse_stream_twiml("<Response><Start><Stream url='wss://x/y'/></Start></Response>")
    with pytest.raises(TwimlError):
        parse_stream_twiml("not xml <")


def test_stream_url_is_mapped_onto_the_local_server_but_signed_as_written() -> None:
    webhook = "http://127.0.0.1:8000/twilio/voice"
    written = "wss://public.example.test/twilio/stream"
    assert map_stream_url(written, "http://127.0.0.1:8000", webhook) == (
        "ws://127.0.0.1:8000/twilio/stream",
        written,
    )
    assert map_stream_url(written, "https://taina.example.org", webhook)[0] == (
        "wss://taina.example.org/twilio/stream"
    )
    # A relative URL resolves against the webhook, and Twilio opens (and signs) it with wss.
    assert map_stream_url("/twilio/stream", "http://127.0.0.1:8000", webhook) == (
        "ws://127.0.0.1:8000/twilio/stream",
        "wss://127.0.0.1:8000/twilio/stream",
    )
    assert map_http_url(f"{PUBLIC}/twilio/status", "http://127.0.0.1:9") == (
        "http://127.0.0.1:9/twilio/status"
    )


def test_signatures_are_what_twilio_request_validator_accepts() -> None:
    params = webhook_params("CA" + "1" * 32, "AC" + "2" * 32, "+18095550100", "+18095550199")
    url = f"{PUBLIC}/twilio/voice"
    validator = RequestValidator(TOKEN)
    assert validator.validate(url, params, sign(TOKEN, url, params))
    assert not validator.validate(url, params, sign("other-token", url, params))
    ws_url = "wss://public.example.test/twilio/stream"
    assert validator.validate(ws_url, {}, sign(TOKEN, ws_url))
    assert not validator.validate(
        "https://public.example.test/twilio/stream", {}, sign(TOKEN, ws_url)
    )


def test_cli_keeps_the_order_of_say_wav_and_dtmf() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--say", "hola", "--dtmf", "1#", "--wav", "x.wav", "--say", "adiós", "--no-transcribe"]
    )
    assert args.steps == [
        Step("say", "hola"),
        Step("dtmf", "1#"),
        Step("wav", "x.wav"),
        Step("say", "adiós"),
    ]
    assert args.transcribe is False and args.server == "http://127.0.0.1:8000"
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtmf", "12x"])


# --- a fake TAINA server ----------------------------------------------------------------------


@dataclass
class FakeTaina:
    """Greets, then answers each caller utterance with a tone after a fixed delay.

    It decides "end of utterance" like a crude VAD (``eot_ms`` of silence after speech), sends
    its audio in 100 ms chunks each followed by a mark, and (``barge_clear``) sends ``clear``
    when the caller talks while its marks are still pending, exactly like TAINA would.
    """

    greet_ms: int = 300
    reply_ms: int = 300
    reply_delay_ms: int = 150
    eot_ms: int = 200
    silent: bool = False
    barge_clear: bool = True
    hangup_after_greeting: bool = False
    send_garbage: bool = False  # a binary frame and a non-JSON text frame before the greeting
    auth_token: str | None = None
    # what it observed
    webhook_forms: list[dict[str, str]] = field(default_factory=list)
    webhook_sig_ok: list[bool] = field(default_factory=list)
    stream_sig_ok: list[bool] = field(default_factory=list)
    status_events: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    invalid_frames: int = 0
    marks_sent: list[str] = field(default_factory=list)
    marks_echoed: list[str] = field(default_factory=list)
    clears_sent: int = 0
    loud_frames: int = 0
    dtmf: list[str] = field(default_factory=list)
    # (server-side latency: last caller speech frame received -> first reply media sent)
    server_latency_ms: list[float] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/twilio/voice", self.voice)
        app.router.add_post("/twilio/status", self.status)
        app.router.add_get("/twilio/stream", self.stream)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    async def voice(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.webhook_forms.append(form)
        if self.auth_token:
            sig = request.headers.get("X-Twilio-Signature", "")
            self.webhook_sig_ok.append(
                RequestValidator(self.auth_token).validate(f"{PUBLIC}/twilio/voice", form, sig)
            )
        return web.Response(text=TWIML, content_type="text/xml")

    async def status(self, request: web.Request) -> web.Response:
        self.status_events.append(str((await request.post())["StreamEvent"]))
        return web.Response(text="")

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        if self.auth_token:
            sig = request.headers.get("x-twilio-signature", "")
            self.stream_sig_ok.append(
                RequestValidator(self.auth_token).validate(
                    "wss://public.example.test/twilio/stream", {}, sig
                )
            )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        sid = ""
        pending: set[str] = set()
        in_speech = False
        silent_frames = 0
        last_speech_at = 0.0
        turn = 0
        tasks: list[asyncio.Task] = []

        async def play(ms: int, freq: float, label: str) -> None:
            audio = tone_ulaw(ms, freq)
            for i in range(0, len(audio), 800):
                chunk = audio[i : i + 800]
                payload = base64.b64encode(chunk).decode()
                await ws.send_str(
                    json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})
                )
                name = f"{label}-{i // 800}"
                pending.add(name)
                self.marks_sent.append(name)
                await ws.send_str(
                    json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}})
                )

        async def reply(speech_end: float, n: int) -> None:
            await asyncio.sleep(self.reply_delay_ms / 1000)
            self.server_latency_ms.append((loop.time() - speech_end) * 1000)
            await play(self.reply_ms, 600 + 100 * n, f"reply{n}")

        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                self.invalid_frames += 1
                continue
            event = data.get("event")
            if event != "media":
                self.events.append(data)
            else:
                self.events.append(
                    {"event": "media", **data["media"], "seq": data["sequenceNumber"]}
                )
            if event == "start":
                sid = data["streamSid"]
                if self.send_garbage:
                    await ws.send_bytes(b"\x00\x01")
                    await ws.send_str("{not json")
                if not self.silent:
                    await play(self.greet_ms, 500, "greet")
            elif event == "mark":
                name = data["mark"]["name"]
                self.marks_echoed.append(name)
                pending.discard(name)
                if self.hangup_after_greeting and not pending:
                    await ws.close()
                    break
            elif event == "dtmf":
                self.dtmf.append(data["dtmf"]["digit"])
                if data["dtmf"]["digit"] == "#" and not self.silent:
                    tasks.append(asyncio.create_task(reply(loop.time(), turn)))
                    turn += 1
            elif event == "stop":
                break
            elif event == "media":
                loud = rms(mulaw_to_pcm16(base64.b64decode(data["media"]["payload"]))) > 500
                if loud:
                    self.loud_frames += 1
                    if not in_speech and pending and self.barge_clear:
                        await ws.send_str(json.dumps({"event": "clear", "streamSid": sid}))
                        self.clears_sent += 1
                        pending.clear()
                    in_speech = True
                    silent_frames = 0
                    last_speech_at = loop.time()
                elif in_speech:
                    silent_frames += 1
                    if silent_frames * 20 >= self.eot_ms:
                        in_speech = False
                        if not self.silent:
                            tasks.append(asyncio.create_task(reply(last_speech_at, turn)))
                        turn += 1
        for t in tasks:
            t.cancel()
        await ws.close()
        return ws


@pytest.fixture
async def fake() -> FakeTaina:
    server = FakeTaina()
    runner = await server.start()
    yield server
    await runner.cleanup()


@pytest.fixture
def burst_wav(tmp_path: Path) -> str:
    # 200 ms silence, 400 ms tone, 300 ms silence: the simulator trims the edges.
    pcm = bytes(3200) + tone_pcm(400, 350) + bytes(4800)
    return str(write_wav(tmp_path / "burst.wav", pcm))


def fast(server: str, **kw: object) -> CallOptions:
    defaults: dict[str, object] = dict(
        server=server,
        transcribe=False,
        reply_quiet_ms=300,
        pause_ms=200,
        timeout_s=3.0,
        greeting_timeout_s=3.0,
    )
    defaults.update(kw)
    return CallOptions(**defaults)  # type: ignore[arg-type]


async def test_call_measures_latency_echoes_marks_and_speaks_twilio(
    fake: FakeTaina, burst_wav: str, tmp_path: Path
) -> None:
    fake.auth_token = TOKEN
    fake.send_garbage = True
    out = tmp_path / "call.wav"
    result = await run_call(
        fast(
            fake.base,
            wavs=[burst_wav, burst_wav],
            dtmf="1#",
            out=str(out),
            auth_token=TOKEN,
            public_url=PUBLIC,
            inject=["this is not json"],
        )
    )
    assert result.exit_code == EXIT_OK, result.error
    assert result.greeting is not None and result.greeting.answered
    assert [t.kind for t in result.turns] == ["wav", "wav", "dtmf"]

    # Latency: from the last speech frame (or digit) sent to the first reply audio received.
    # The fake server measures the same span from the last speech frame (or digit) it got.
    for turn, server_ms in zip(result.turns, fake.server_latency_ms, strict=True):
        assert turn.answered and turn.latency_ms is not None
        assert turn.latency_ms >= fake.reply_delay_ms
        # Generous: a wrong reference point (e.g. speech start) would be off by >= 380 ms.
        assert abs(turn.latency_ms - server_ms) < 150
        assert turn.latency_played_ms is not None and turn.latency_played_ms >= turn.latency_ms
        assert turn.bot_audio_ms == pytest.approx(fake.reply_ms, abs=20)
        assert not turn.interrupted
    # The 400 ms burst, trimmed of its file's silent edges, went out as exactly 20 frames.
    assert fake.loud_frames == 2 * 20

    # Every mark came back, in the order sent (nothing was cleared), after its audio played.
    assert fake.marks_echoed == fake.marks_sent
    assert result.marks_echoed == result.marks_received == len(fake.marks_sent)
    assert result.clears == 0 and fake.clears_sent == 0
    assert result.protocol_errors == 2  # the garbage frames were counted, and survived

    # Twilio's side of the protocol.
    assert fake.webhook_sig_ok == [True] and fake.stream_sig_ok == [True]
    form = fake.webhook_forms[0]
    assert form["CallSid"] == result.call_sid and len(result.call_sid) == 34
    assert form["CallStatus"] == "ringing" and form["Direction"] == "inbound"
    assert [e["event"] for e in fake.events[:2]] == ["connected", "start"]
    start = fake.events[1]["start"]
    assert start["customParameters"] == {"token": "t-1", "tenant": "sd"}
    assert start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert fake.events[-1]["event"] == "stop"
    assert fake.invalid_frames == 1
    media = [e for e in fake.events if e["event"] == "media"]
    assert [m["chunk"] for m in media[:3]] == ["1", "2", "3"]
    assert [m["timestamp"] for m in media[:3]] == ["0", "20", "40"]
    seqs = [int(e.get("sequenceNumber") or e.get("seq")) for e in fake.events[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert fake.dtmf == ["1", "#"]
    assert fake.status_events == ["stream-started", "stream-stopped"]

    # The recording: one 160-sample stereo frame per media frame sent.
    with wave.open(str(out), "rb") as w:
        assert w.getnchannels() == 2 and w.getnframes() == len(media) * 160
    assert "Bot [" in format_transcript(result)
    assert json.loads(json.dumps(result.to_dict()))["turns"][2]["said"] == "[DTMF 1#]"


async def test_barge_in_gets_a_clear_and_every_mark_back(fake: FakeTaina, burst_wav: str) -> None:
    fake.reply_ms = 1200  # a long answer the caller talks over
    result = await run_call(fast(fake.base, wavs=[burst_wav, burst_wav], barge_in_ms=300))
    assert result.exit_code == EXIT_OK, result.error
    assert result.clears == 1 and fake.clears_sent == 1
    first, second = result.turns
    assert first.interrupted and not second.interrupted
    assert first.bot_audio_ms < 1200  # the rest was flushed, never heard
    # The second utterance started while the first reply was playing.
    assert second.speech_start_ms < first.bot_end_ms
    # Played or flushed, every mark is echoed back.
    assert sorted(fake.marks_echoed) == sorted(fake.marks_sent)
    assert second.answered and second.latency_ms is not None
    assert "[interrumpido]" in format_transcript(result)


async def test_silent_bot_makes_the_call_fail(fake: FakeTaina, burst_wav: str) -> None:
    fake.silent = True
    result = await run_call(
        fast(fake.base, wavs=[burst_wav], timeout_s=1.0, greeting_timeout_s=0.5)
    )
    assert result.exit_code == EXIT_NO_ANSWER
    assert result.greeting is None
    assert result.turns[0].answered is False
    assert "no respondió" in (result.error or "")
    assert fake.events[-1]["event"] == "stop"


async def test_bot_hanging_up_ends_the_call(fake: FakeTaina, burst_wav: str) -> None:
    fake.hangup_after_greeting = True
    result = await run_call(fast(fake.base, wavs=[burst_wav, burst_wav]))
    assert result.hung_up_by_server
    assert result.greeting is not None and result.greeting.answered
    assert result.steps_skipped >= 1


async def test_unreachable_server_is_an_error() -> None:
    result = await run_call(fast("http://127.0.0.1:9", says=[], timeout_s=1.0))
    assert result.exit_code == EXIT_ERROR and result.error


def test_say_steps_can_be_voiced_by_a_caller_voice() -> None:
    from telephony.simulator import voiced_steps

    steps = [Step("say", "Quiero una cita."), Step("dtmf", "1")]
    assert voiced_steps(steps, None) == steps
    voiced = voiced_steps(steps, "pico-es")
    assert voiced[0].audio and len(voiced[0].audio) > 4000  # > 0.5 s of 8 kHz mu-law
    assert voiced[1].audio is None
    with pytest.raises(SystemExit, match="unknown caller voice"):
        voiced_steps(steps, "no-such-voice")
