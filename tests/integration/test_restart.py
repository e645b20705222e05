"""The server restarted between calls: the real ``taina serve`` stopped and started again on
the same port and data directory, with calls over the Twilio protocol before and after.

The awkward case is a call whose webhook was answered by the old process while its media
stream reaches the new one: the one-time call token in the stream's ``start`` must still
verify. It does because the signing key is not per process: it is ``TAINA_SECRET_KEY`` when
set, else a random key created once and kept in ``{data_dir}/secret.key`` (app/settings.py
``Settings.signing_key``), shared by every process of the deployment and by restarts.
"""

from __future__ import annotations

import asyncio
import signal
import stat
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from app.drain import STREAM_GRACE_S
from tests.faults.calls import Listener, until
from tests.faults.server_process import ServerProcess, stored_calls
from tests.integration.test_twilio_stream import RawStream, frames_of

pytestmark = pytest.mark.timeout(120)


async def converse(call: RawStream, token: str) -> None:
    """Open the stream, hear the greeting, ask one question, hear the answer, hang up."""
    await call.connect()
    await call.start(token)
    heard = Listener(call).start()
    await until(lambda: heard.audio_bytes() > 0, 10)
    asked = time.monotonic()
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    await until(lambda: heard.first_audio_after(asked) is not None, 10)
    await asyncio.sleep(0.3)
    await call.stop()
    await heard.closed(10)


async def stop(server: ServerProcess) -> tuple[int, float]:
    t = server.signal(signal.SIGTERM)
    code = await asyncio.to_thread(server.wait, 60)
    return code, time.monotonic() - t


async def test_calls_before_and_after_a_restart_and_a_stream_that_crosses_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "srv"
    old = ServerProcess(data).start()
    try:
        first = RawStream(old)  # type: ignore[arg-type]  # needs only .url and .port
        await converse(first, await first.webhook())
        crossing = RawStream(old)  # type: ignore[arg-type]
        crossing_token = await crossing.webhook()  # answered by the old process...
        code, stopped_s = await stop(old)
    finally:
        old.kill()
    assert code == 0, old.log()[-2000:]
    # The old process waited for the stream it had promised, then gave up on it.
    assert STREAM_GRACE_S - 0.5 <= stopped_s <= STREAM_GRACE_S + 5

    t_start = time.monotonic()
    new = ServerProcess(data, port=old.port).start()
    restart_s = time.monotonic() - t_start
    try:
        crossing.server = new  # type: ignore[assignment]
        await converse(crossing, crossing_token)  # ...its stream reaches the new one
        third = RawStream(new)  # type: ignore[arg-type]
        await converse(third, await third.webhook())

        # Still one-time: the same token on another stream is refused.
        replay = RawStream(new, sid=crossing.call_sid)  # type: ignore[arg-type]
        await replay.connect()
        await replay.start(crossing_token)
        with pytest.raises(ConnectionClosed) as refused:
            while True:
                await asyncio.wait_for(replay.ws.recv(), 5)  # type: ignore[union-attr]
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008
        code, _ = await stop(new)
    finally:
        new.kill()
    assert code == 0, new.log()[-2000:]

    calls = stored_calls(data)
    assert set(calls) == {first.call_sid, crossing.call_sid, third.call_sid}
    for call in calls.values():
        assert call.end_reason == "caller-hangup" and call.ended
        assert [t.speaker for t in call.turns] == ["bot", "caller", "bot"]
    key = data / "secret.key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert old.problems() == [] and new.problems() == []
    print(
        f"\nFIGURE restart: idle server with a promised stream stopped in {stopped_s:.1f} s "
        f"(stream grace {STREAM_GRACE_S:.0f} s); new process ready in {restart_s:.1f} s"
    )
