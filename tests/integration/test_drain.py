"""SIGTERM drains calls gracefully (app/drain.py).

The first tests run the real ``taina serve`` in a subprocess with instant engines
(TAINA_ENGINE_MODE=instant) and send it real signals, with calls over the Twilio protocol on
real sockets: what is under test is the process — its signal handling, what it answers while
draining, how the calls in progress end, what it stored, and its exit status. The last ones
drive the drain of an in-process server directly, to look closely at the goodbye.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

import app.drain
from app.drain import DRAIN_GOODBYE, END_REASON
from pipeline.brain.offline import OfflineBrain
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines
from telephony.twiml import UNAVAILABLE_MESSAGE
from telephony.web_stream import MSG_BUSY
from tests.faults.calls import Listener, until
from tests.faults.engines import PacedTTS
from tests.faults.server_process import ServerProcess, stored_calls
from tests.integration.conftest import LiveServer
from tests.integration.test_twilio_stream import RawStream, frames_of

pytestmark = pytest.mark.timeout(120)

DRAIN_S = 8.0  # the drain deadline these tests configure (production default: 60 s)


async def open_call(server: ServerProcess) -> tuple[RawStream, Listener]:
    call = RawStream(server)  # type: ignore[arg-type]  # needs only .url and .port
    token = await call.webhook()
    await call.connect()
    await call.start(token)
    listener = Listener(call).start()
    await until(lambda: listener.audio_bytes() > 0, 10)  # the greeting is playing
    return call, listener


async def readiness(server: ServerProcess) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{server.url}/readyz", timeout=2)).status_code


async def wait_not_ready(server: ServerProcess, timeout: float = 3.0) -> float:
    t0 = time.monotonic()
    while await readiness(server) != 503:
        assert time.monotonic() - t0 < timeout, "readiness never went to 503"
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def web_call_refusal(server: ServerProcess) -> tuple[list[dict], int | None]:
    """Open a visitor stream and ask to start; returns what the page was told and the close."""
    got: list[dict] = []
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/web/stream") as ws:
        await ws.send(json.dumps({"type": "start", "session": "drain-test"}))
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(raw, str):
                    got.append(json.loads(raw))
        except ConnectionClosed as closed:
            return got, closed.rcvd.code if closed.rcvd else None


async def test_sigterm_drains_calls_in_progress_then_exits_0(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "srv", drain_timeout_s=DRAIN_S).start()
    try:
        a, a_heard = await open_call(server)  # will hang up by itself during the drain
        b, b_heard = await open_call(server)  # still on the line at the deadline
        late = RawStream(server)  # type: ignore[arg-type]
        late_token = await late.webhook()  # webhook answered now, media stream after SIGTERM

        t_signal = server.signal(signal.SIGTERM)
        not_ready_s = await wait_not_ready(server)

        async with httpx.AsyncClient() as client:
            health = await client.get(f"{server.url}/healthz")
            assert health.status_code == 200 and health.json()["draining"] is True
            # A new phone call is declined politely, in Spanish, and hung up.
            declined_sid = "CA" + "d" * 32
            r = await client.post(
                f"{server.url}/twilio/voice", data={"CallSid": declined_sid, "From": "+1809"}
            )
        assert r.status_code == 200
        assert UNAVAILABLE_MESSAGE in r.text and "<Hangup" in r.text and "<Connect" not in r.text
        # A new web visitor is refused with a Spanish message.
        page_saw, web_close = await web_call_refusal(server)
        assert {"type": "error", "message": MSG_BUSY} in page_saw and web_close == 1013

        # The stream of a call whose webhook was answered before the signal is still taken.
        await late.connect()
        await late.start(late_token)
        late_heard = Listener(late).start()
        await until(lambda: late_heard.audio_bytes() > 0, 5)

        # A call in progress keeps working: a question during the drain gets its answer.
        asked = time.monotonic()
        await a.media(frames_of(True, 600) + frames_of(False, 800))
        await until(lambda: a_heard.first_audio_after(asked) is not None, 5)
        await asyncio.sleep(0.3)
        await a.stop()
        await late.stop()
        await a_heard.closed(5)
        await late_heard.closed(5)

        # The last call hears the goodbye at the deadline, then the server hangs up.
        await b_heard.closed(DRAIN_S + 20)
        assert b_heard.close_code == 1000
        assert b_heard.closed_at is not None
        deadline_at = t_signal + DRAIN_S
        assert b_heard.closed_at >= deadline_at - 0.2
        goodbye_start = b_heard.first_audio_after(deadline_at - 0.2)
        assert goodbye_start is not None and goodbye_start - deadline_at < 1.0
        assert b_heard.audio_bytes(since=deadline_at - 0.2) >= 8 * 2000  # ≥ 2 s of speech

        code = await asyncio.to_thread(server.wait, 30)
        exited_s = time.monotonic() - t_signal
        assert code == 0, server.log()[-3000:]
    finally:
        server.kill()

    calls = stored_calls(server.data_dir)
    assert set(calls) == {a.call_sid, b.call_sid, late.call_sid}  # the declined one never started
    assert calls[a.call_sid].end_reason == "caller-hangup"
    assert [t.speaker for t in calls[a.call_sid].turns] == ["bot", "caller", "bot"]
    assert calls[late.call_sid].end_reason == "caller-hangup"
    ended = calls[b.call_sid]
    assert ended.end_reason == END_REASON and ended.ended
    goodbye = ended.turns[-1]
    assert goodbye.speaker == "bot" and goodbye.text == DRAIN_GOODBYE
    assert goodbye.heard_text == DRAIN_GOODBYE and not goodbye.interrupted
    assert all(c.ended for c in calls.values())
    assert server.problems() == []
    assert "2 call(s) ended on their own, 1 at the deadline, 0 call record(s)" in server.log()
    print(
        f"\nFIGURE drain: readiness 503 after {not_ready_s * 1000:.0f} ms; goodbye started "
        f"{(goodbye_start - deadline_at) * 1000:.0f} ms after the {DRAIN_S:.0f} s deadline; "
        f"last call hung up {b_heard.closed_at - deadline_at:.2f} s after it; "
        f"process exited 0 {exited_s:.2f} s after SIGTERM"
    )


async def test_sigint_with_no_calls_exits_0_at_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "srv", drain_timeout_s=60).start()
    try:
        t = server.signal(signal.SIGINT)  # Ctrl+C
        code = await asyncio.to_thread(server.wait, 20)
        elapsed = time.monotonic() - t
    finally:
        server.kill()
    assert code == 0 and elapsed < 5, server.log()[-2000:]
    assert server.problems() == []
    print(f"\nFIGURE drain: idle server exits 0 {elapsed:.2f} s after SIGINT")


async def test_a_second_signal_quits_at_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "srv", drain_timeout_s=60).start()
    try:
        _, heard = await open_call(server)
        server.signal(signal.SIGTERM)
        await wait_not_ready(server)
        await asyncio.sleep(0.3)
        assert heard.closed_at is None  # the first signal left the call alone
        t = server.signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.wait, 20)
        elapsed = time.monotonic() - t
        await heard.closed(5)
    finally:
        server.kill()
    assert code == -signal.SIGTERM  # uvicorn's forced exit re-raises the signal
    assert elapsed < 3.0, f"took {elapsed:.1f} s to quit"
    print(f"\nFIGURE drain: second SIGTERM quits in {elapsed:.2f} s")


# --- the goodbye, up close (in-process server, the drain started directly) -------------------


async def drain_now(server: LiveServer) -> app.drain.DrainReport:
    """What the first SIGTERM does, with a deadline that has already passed."""
    services = server.services
    future = asyncio.run_coroutine_threadsafe(services.drain.run(services, 0.0), server.loop)
    return await asyncio.wrap_future(future)


async def test_the_goodbye_cuts_the_bot_short_and_cannot_be_talked_over(
    live_server_factory,
) -> None:
    tts = PacedTTS(ms_per_char=20)
    engines = Engines(vad=EnergyVad(), stt=FixedSTT(), tts=tts, brain=OfflineBrain())
    server = await asyncio.to_thread(live_server_factory, engines=engines)
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    heard = Listener(call, echo_marks=False).start()  # the greeting is still playing...
    await until(lambda: heard.audio_bytes() > 0 and tts.active == 1, 5)  # ...and being made

    drained = asyncio.create_task(drain_now(server))
    await until(lambda: any(h.msg["event"] == "clear" for h in heard.heard), 3)
    heard.echo_marks = True  # from now on the phone plays what it gets
    await until(lambda: any("mantenimiento" in text for text in tts.spoken), 3)
    await call.media(frames_of(True, 800) + frames_of(False, 800))  # the caller talks over it
    report = await drained
    await heard.closed(5)

    assert report.ended_at_deadline == 1 and report.unwritten_records == 0
    assert heard.close_code == 1000
    view = server.call_view(call.call_sid)
    assert view.end_reason == END_REASON
    greeting, goodbye = view.turns  # no caller turn: speech over the goodbye is ignored
    assert greeting.interrupted and greeting.heard_text == ""  # no mark came back for it
    assert goodbye.text == DRAIN_GOODBYE and goodbye.heard_text == DRAIN_GOODBYE
    assert not goodbye.interrupted
    events = [h.msg["event"] for h in heard.heard]
    cleared = events.index("clear")
    assert "media" in events[cleared:] and "clear" not in events[cleared + 1 :]
    stored = await asyncio.to_thread(server.stored_call, call.call_sid)
    assert stored.end_reason == END_REASON and stored.turns[-1].text == DRAIN_GOODBYE


async def test_a_phone_that_never_confirms_playback_is_hung_up_anyway(
    live_server_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.drain, "GOODBYE_TIMEOUT_S", 1.0)
    engines = Engines(vad=EnergyVad(), stt=FixedSTT(), tts=ToneTTS(20), brain=OfflineBrain())
    server = await asyncio.to_thread(live_server_factory, engines=engines)
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    heard = Listener(call, echo_marks=False).start()  # marks never come back
    await until(lambda: heard.audio_bytes() > 0, 5)
    t0 = time.monotonic()
    report = await drain_now(server)
    await heard.closed(5)
    took = time.monotonic() - t0

    assert report.ended_at_deadline == 1 and 1.0 <= took < 3.0
    view = server.call_view(call.call_sid)
    assert view.end_reason == END_REASON
    goodbye = view.turns[-1]
    assert goodbye.text == DRAIN_GOODBYE
    assert goodbye.interrupted and goodbye.heard_text == ""  # on record as not heard
