"""Call recordings: consent notice, the two-track timeline, WAV output and the stores.

The Supabase store runs the real ``storage3`` client (what ``supabase`` uses for
``client.storage``) against a local server speaking the Storage API paths it calls.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from app.recordings import (
    CONSENT_NOTICE,
    CallAudio,
    FileRecordingStore,
    Recordings,
    SupabaseRecordingStore,
    call_meta_writer,
    recording_name,
    recordings_from_settings,
    with_consent_notice,
    with_recording,
)
from app.settings import Settings
from app.storage import CallRepository, Database
from pipeline.brain.base import CallContext, UserInput
from pipeline.brain.offline import OfflineBrain
from pipeline.instant_engines import ToneTTS
from telephony.audio_codec import pcm16_to_mulaw
from tests.unit.test_session import FakePhone, feed, make_session, silence, speech

SERVICE_KEY = "service-role-key-for-tests"


def tone(ms: int, rate: int = 8000, amp: int = 8000) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * 440 * t) * amp).astype(np.int16).tobytes()


def read_wav(data: bytes) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(io.BytesIO(data)) as w:
        params = w.getparams()
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return params, frames.reshape(-1, params.nchannels)


# --- consent ----------------------------------------------------------------------------------


async def test_consent_notice_comes_before_the_greeting() -> None:
    inner = OfflineBrain()
    brain = with_consent_notice(inner)
    ctx = CallContext(call_id="CA1", ingress="twilio")
    greeting = await brain.greeting(ctx)
    assert greeting.startswith(CONSENT_NOTICE)
    assert greeting.endswith(await inner.greeting(ctx))
    assert "grabada" in CONSENT_NOTICE and brain.name == inner.name
    assert with_consent_notice(brain) is brain
    reply = [o async for o in brain.respond(ctx, UserInput(text="¿A qué hora abren?"))]
    assert reply


# --- the timeline -----------------------------------------------------------------------------


def test_bot_audio_is_laid_on_the_callers_timeline_and_cut_by_clear() -> None:
    audio = CallAudio(rate=8000)
    audio.add_inbound(pcm16_to_mulaw(bytes(1600)), 8000, "mulaw")  # 100 ms of caller silence
    audio.add_outbound(pcm16_to_mulaw(tone(300)), 8000, "mulaw")  # bot queues 300 ms at once
    assert audio.seconds == pytest.approx(0.4)  # starts at 100 ms, not at 0
    audio.add_inbound(bytes(1600), 8000)  # 100 ms more
    audio.clear()  # barge-in at 200 ms: the rest was never heard
    assert audio.seconds == pytest.approx(0.2, abs=0.01)
    audio.add_inbound(bytes(1600), 8000)
    audio.add_outbound(tone(100), 8000)  # the next reply starts at "now" (300 ms)
    params, frames = read_wav(audio.to_wav())
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    bot = frames[:, 1]
    assert not bot[:790].any()  # nothing before the bot started
    assert np.abs(bot[900:1500]).max() > 5000  # what was heard of the first reply
    assert not bot[1610:2390].any()  # cut at the barge-in; silence until the next reply
    assert np.abs(bot[2450:3150]).max() > 5000


def test_pipeline_rate_audio_is_resampled_to_the_recording_rate() -> None:
    audio = CallAudio(rate=8000)
    frame = tone(20, rate=16000)
    for _ in range(50):  # one second in 20 ms frames, as a transport feeds it
        audio.add_inbound(frame, 16000)
    assert audio.seconds == pytest.approx(1.0, abs=0.03)  # the resampler's small lag


def test_runaway_calls_stop_recording_at_the_cap() -> None:
    audio = CallAudio(rate=8000, max_s=1.0)
    for _ in range(30):
        audio.add_inbound(bytes(1600), 8000)
    assert audio.truncated and audio.seconds <= 1.1


def test_recording_names_are_safe() -> None:
    assert recording_name("CA0123abc") == "CA0123abc.wav"
    assert recording_name("../../etc/passwd") == "______etc_passwd.wav"


# --- a whole session, through the factory wrapper ---------------------------------------------


async def test_with_recording_records_a_real_session(tmp_path: Path) -> None:
    """A real CallSession, played and spoken to in real time as on a phone line."""
    recordings = Recordings(FileRecordingStore(tmp_path), pipeline_rate=16000)
    phone = FakePhone(speed=1.0)

    async def make(first: Any, sink: Any) -> Any:
        session, _, recent, _, _ = make_session(phone=sink, tts=ToneTTS(ms_per_char=4))
        made.append(recent)
        return session

    made: list[Any] = []
    proxy = await with_recording(make, recordings)("start-message", phone)
    phone.session = proxy
    await proxy.start()
    recent = made[0]

    def bot_turns() -> int:
        view = recent.get("CAtest")
        return 0 if view is None else sum(t.speaker == "bot" for t in view.turns)

    while bot_turns() < 1:  # the line is open: silence flows while the greeting plays
        await feed(proxy, silence(20), realtime=0.02)
    await feed(proxy, speech(800) + silence(600), realtime=0.02)
    while bot_turns() < 2:
        await feed(proxy, silence(20), realtime=0.02)
    await proxy.close("caller-hangup")
    await recordings.flushed()
    assert recordings.saved == 1 and phone.clears == 0
    params, frames = read_wav((tmp_path / "CAtest.wav").read_bytes())
    assert params.nchannels == 2 and params.framerate == 8000
    caller, bot = frames[:, 0].astype(np.int32), frames[:, 1].astype(np.int32)
    assert np.abs(caller).max() > 3000  # the caller's speech
    assert np.abs(bot).max() > 1000  # the greeting and the answer (a quiet tone voice)
    sent_s = sum(len(a) for a in phone.audio) / 2 / 16000
    assert np.count_nonzero(bot) / 8000 == pytest.approx(sent_s, rel=0.1)
    # The caller spoke after the greeting and before the answer, as it happened.
    talk = np.flatnonzero(np.abs(caller) > 3000)
    voice = np.flatnonzero(bot)
    assert voice[0] < talk[0] < talk[-1] < voice[-1]


async def test_stores_and_links_to_the_call(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await db.migrate()
    calls = CallRepository(db)
    await calls.start_call("CA42", "twilio")
    recordings = Recordings(
        FileRecordingStore(tmp_path / "recordings"), on_saved=call_meta_writer(calls)
    )
    audio = recordings.begin()
    audio.call_sid = "CA42"
    audio.add_inbound(tone(500), 8000)
    info = await recordings.save(audio)
    assert info is not None and info["store"] == "file" and info["seconds"] == 0.5
    stored = await calls.get_call("CA42")
    assert stored is not None and stored.meta["recording"]["path"].endswith("CA42.wav")
    assert await recordings.fetch("CA42") == (tmp_path / "recordings" / "CA42.wav").read_bytes()
    assert await recordings.fetch("CA-missing") is None
    await db.dispose()


# --- Supabase Storage, over HTTP --------------------------------------------------------------


class FakeStorage:
    """Supabase Storage's object endpoints as storage3 calls them."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_uploads = False
        self.app = FastAPI()
        self.app.add_api_route(
            "/storage/v1/object/{bucket}/{path:path}", self.upload, methods=["POST"]
        )
        self.app.add_api_route("/storage/v1/object/{bucket}/{path:path}", self.download)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {SERVICE_KEY}" and (
            request.headers.get("apikey") == SERVICE_KEY
        )

    async def upload(self, bucket: str, path: str, request: Request) -> Response:
        self.requests.append(("POST", f"{bucket}/{path}"))
        if not self._authorized(request):
            return _error(403, "Unauthorized", "Invalid Compact JWS")
        if self.fail_uploads:
            return _error(500, "internal", "storage backend down")
        key = f"{bucket}/{path}"
        if key in self.objects and request.headers.get("x-upsert") != "true":
            return _error(409, "Duplicate", "The resource already exists")
        form = await request.form()
        upload = form["file"]
        self.objects[key] = (await upload.read(), upload.content_type or "")
        return JSONResponse({"Key": key, "Id": "00000000-0000-0000-0000-000000000001"})

    async def download(self, bucket: str, path: str, request: Request) -> Response:
        self.requests.append(("GET", f"{bucket}/{path}"))
        if not self._authorized(request):
            return _error(403, "Unauthorized", "Invalid Compact JWS")
        found = self.objects.get(f"{bucket}/{path}")
        if found is None:
            return _error(400, "not_found", "Object not found", status_code="404")
        return Response(found[0], media_type=found[1])


def _error(http: int, error: str, message: str, status_code: str | None = None) -> Response:
    body = {"statusCode": status_code or str(http), "error": error, "message": message}
    return JSONResponse(body, status_code=http)


@pytest.fixture
def storage() -> Iterator[tuple[FakeStorage, str]]:
    fake = FakeStorage()
    server = uvicorn.Server(
        uvicorn.Config(fake.app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake storage did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield fake, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


async def test_supabase_store_uploads_with_the_storage_client(
    storage: tuple[FakeStorage, str],
) -> None:
    fake, url = storage
    store = SupabaseRecordingStore(url, SERVICE_KEY, "grabaciones")
    recordings = Recordings(store)
    audio = recordings.begin()
    audio.call_sid = "CA77"
    audio.add_inbound(tone(200), 8000)
    audio.add_outbound(tone(200), 8000)
    info = await recordings.save(audio)
    assert info is not None
    assert (info["store"], info["bucket"], info["path"]) == ("supabase", "grabaciones", "CA77.wav")
    data, content_type = fake.objects["grabaciones/CA77.wav"]
    assert content_type == "audio/wav"
    params, frames = read_wav(data)
    assert params.nchannels == 2 and len(frames) == 1600 + 1600  # the bot followed the caller
    # Saving again (a retried save) overwrites instead of failing on a duplicate.
    assert await recordings.save(audio) is not None
    assert await recordings.fetch("CA77") == fake.objects["grabaciones/CA77.wav"][0]
    assert await recordings.fetch("CA-none") is None
    await recordings.aclose()


async def test_failed_uploads_fall_back_to_the_data_dir(
    storage: tuple[FakeStorage, str], tmp_path: Path
) -> None:
    fake, url = storage
    fake.fail_uploads = True
    recordings = Recordings(
        SupabaseRecordingStore(url, SERVICE_KEY, "grabaciones"),
        fallback=FileRecordingStore(tmp_path),
        retry_s=0.01,
    )
    audio = recordings.begin()
    audio.call_sid = "CA88"
    audio.add_inbound(tone(100), 8000)
    info = await recordings.save(audio)
    assert info is not None and info["store"] == "file"
    assert [r for r in fake.requests if r[0] == "POST"] == [("POST", "grabaciones/CA88.wav")] * 3
    assert (tmp_path / "CA88.wav").exists()
    assert await recordings.fetch("CA88") == (tmp_path / "CA88.wav").read_bytes()
    await recordings.aclose()


async def test_wrong_key_is_an_error_not_a_silent_success(
    storage: tuple[FakeStorage, str],
) -> None:
    _, url = storage
    store = SupabaseRecordingStore(url, "not-the-key", "grabaciones")
    with pytest.raises(Exception, match="Invalid Compact JWS"):
        await store.save("x.wav", b"RIFF")
    await store.aclose()


# --- settings ---------------------------------------------------------------------------------


def test_recordings_are_off_by_default(tmp_path: Path) -> None:
    assert recordings_from_settings(Settings(data_dir=tmp_path)) is None
    local = recordings_from_settings(Settings(data_dir=tmp_path, record_calls=True))
    assert local is not None and isinstance(local.store, FileRecordingStore)
    assert local.store.directory == tmp_path / "recordings"
    with pytest.raises(ValueError):
        recordings_from_settings(
            Settings(data_dir=tmp_path, record_calls=True, recordings_bucket="grabaciones")
        )
    remote = recordings_from_settings(
        Settings(
            data_dir=tmp_path,
            record_calls=True,
            recordings_bucket="grabaciones",
            supabase_url="https://abc.supabase.co",
            supabase_service_role_key=SERVICE_KEY,
        )
    )
    assert remote is not None and isinstance(remote.store, SupabaseRecordingStore)
    assert isinstance(remote.fallback, FileRecordingStore)
    asyncio.run(remote.aclose())
