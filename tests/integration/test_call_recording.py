"""A recorded phone call over the real Twilio protocol: consent notice first, then a stereo
WAV of both sides in the data dir, linked from the call's record.

Until the app wires recordings itself (``with_recording`` in the Twilio session factory, see
app/recordings.py), this test applies the same wrapper by patching the route's factory.
"""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import numpy as np
import pytest

import app.routes_twilio as routes_twilio
from app.recordings import (
    CONSENT_NOTICE,
    FileRecordingStore,
    Recordings,
    call_meta_writer,
    with_consent_notice,
    with_recording,
)
from pipeline.brain.offline import OfflineBrain
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines
from tests.integration.conftest import LiveServer
from tests.integration.test_twilio_stream import RawStream, frames_of


async def paced(call: RawStream, frames: list[str]) -> None:
    await call.media(frames)  # RawStream.media sends at real time (inbound audio is paced)


async def one_question_call(server: LiveServer) -> RawStream:
    """A whole Twilio call: 1.5 s of line silence (the greeting plays), the caller speaks for
    0.6 s, 1.9 s of silence (the answer plays), hang-up. A phone line carries media all the
    time, silence included, in real time."""
    call = RawStream(server)
    token = await call.webhook()
    await call.connect()
    await call.start(token)
    await asyncio.gather(call.collect(1.5), paced(call, frames_of(False, 1500)))
    await asyncio.gather(
        call.collect(2.5), paced(call, frames_of(True, 600) + frames_of(False, 1900))
    )
    await call.stop()
    await asyncio.wait_for(call.ws.wait_closed(), 5)
    return call


async def recorded_call(server: LiveServer) -> str:
    """:func:`one_question_call` on a server that records calls; its call SID once the
    recording is linked to the stored call (the link is written after the call ends)."""
    call = await one_question_call(server)

    def linked() -> bool:
        got = server.stored_call(call.call_sid)
        return got is not None and "recording" in got.meta

    for _ in range(200):
        if await asyncio.to_thread(linked):
            return call.call_sid
        await asyncio.sleep(0.05)
    raise AssertionError("the recording was never linked to the call")


async def test_recorded_call_hears_the_notice_and_is_saved(
    live_server_factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recordings = Recordings(FileRecordingStore(tmp_path / "recordings"), pipeline_rate=16000)
    real_factory = routes_twilio.twilio_session_factory
    monkeypatch.setattr(
        routes_twilio,
        "twilio_session_factory",
        lambda services, clock: with_recording(real_factory(services, clock), recordings),
    )
    engines = Engines(
        vad=EnergyVad(),
        stt=FixedSTT(text="¿A qué hora abren las oficinas?"),
        tts=ToneTTS(ms_per_char=5),
        brain=with_consent_notice(OfflineBrain()),
    )
    server = live_server_factory(engines=engines)
    recordings.on_saved = call_meta_writer(server.services.calls, server.services.recorder)

    call = await one_question_call(server)

    stored = await asyncio.to_thread(server.stored_call, call.call_sid)
    assert stored is not None
    assert stored.turns[0].text.startswith(CONSENT_NOTICE)  # said first, and on the record

    await asyncio.to_thread(server.run, recordings.flushed())
    wav = tmp_path / "recordings" / f"{call.call_sid}.wav"
    assert wav.exists()
    with wave.open(io.BytesIO(wav.read_bytes())) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    caller, bot = frames[:, 0].astype(np.int32), frames[:, 1].astype(np.int32)
    assert np.abs(caller).max() > 3000  # the caller's noise burst, from the mu-law wire
    assert np.count_nonzero(bot) > 8000 * 0.5  # the notice, greeting and answer
    loud = np.flatnonzero(np.abs(caller) > 3000)
    assert np.count_nonzero(bot[: loud[0]]) > 0  # the bot spoke before the caller did

    def linked() -> bool:
        got = server.run(server.services.calls.get_call(call.call_sid))
        return got is not None and "recording" in got.meta

    for _ in range(100):
        if await asyncio.to_thread(linked):
            break
        await asyncio.sleep(0.05)
    got = await asyncio.to_thread(server.run, server.services.calls.get_call(call.call_sid))
    assert got.meta["recording"]["store"] == "file"
    assert got.meta["recording"]["path"] == str(wav)


async def test_recording_switched_on_by_settings_is_served_to_staff(live_server_factory) -> None:
    """TAINA_RECORD_CALLS=true: consent notice, a WAV per call, and the dashboard's player
    URL in the call's API detail (staff only)."""
    import httpx

    from app.users import create_user

    engines = Engines(
        vad=EnergyVad(),
        stt=FixedSTT(text="¿A qué hora abren las oficinas?"),
        tts=ToneTTS(ms_per_char=5),
        brain=None,  # built by the app, which wraps it with the consent notice
    )
    server = live_server_factory(engines=engines, record_calls=True)
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    await asyncio.gather(call.collect(1.0), paced(call, frames_of(False, 1000)))
    await asyncio.gather(
        call.collect(2.0), paced(call, frames_of(True, 600) + frames_of(False, 1400))
    )
    await call.stop()
    await asyncio.wait_for(call.ws.wait_closed(), 5)
    await asyncio.to_thread(server.run, server.services.recordings.flushed())

    await asyncio.to_thread(
        server.run, create_user(server.services.db, "ana@example.org", "agent", "s3creto-largo")
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        token = (
            await http.post(
                "/api/auth/login", json={"email": "ana@example.org", "password": "s3creto-largo"}
            )
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        detail = None
        for _ in range(100):
            detail = (await http.get(f"/api/calls/{call.call_sid}", headers=auth)).json()
            if detail.get("recording_url"):
                break
            await asyncio.sleep(0.05)
        assert detail["turns"][0]["text"].startswith(CONSENT_NOTICE)
        assert detail["recording_url"] == f"/api/calls/{call.call_sid}/recording"
        audio = await http.get(detail["recording_url"], headers=auth)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(audio.content)) as w:
            assert (w.getnchannels(), w.getframerate()) == (2, 8000) and w.getnframes() > 8000
        assert (await http.get(detail["recording_url"])).status_code == 401
