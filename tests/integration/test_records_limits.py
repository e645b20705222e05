"""The bounds of one call (issue 13): its length and its turns, each ended with a short
spoken notice, on record with its reason. Together with the per-call turn rate they bound
what one call can write and hold in memory however long it lasts.

Real server on loopback (uvicorn, Twilio route, transport, session; instant engines).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.session import CALL_TOO_LONG, TOO_MANY_TURNS
from tests.faults.keypad import open_call, press
from tests.integration.conftest import instant_engines
from tests.integration.test_faults import ended, sample, start_server, stored

pytestmark = pytest.mark.timeout(120)


async def test_a_call_longer_than_the_limit_hears_a_notice_and_is_ended(live_server_factory):
    server = await start_server(
        live_server_factory, engines=instant_engines(), max_call_seconds=2.0
    )
    call, listener = await open_call(server)
    t0 = time.monotonic()
    await listener.closed(20.0)  # the server hangs up; the caller did nothing
    took = time.monotonic() - t0
    view = await ended(server, call.call_sid)
    assert view.end_reason == "max-duration"
    assert 2.0 <= took < 15.0
    assert listener.audio_bytes(since=t0 + 2.0) > 0  # the notice was sent before the hang-up
    record = await stored(server, call.call_sid)
    assert record.end_reason == "max-duration"
    assert record.turns[-1].speaker == "bot" and record.turns[-1].text == CALL_TOO_LONG
    assert sample(server, "taina_turns_refused_total", reason="max-duration") == 1
    print(f"\nFIGURE call length limit 2 s: notice and hang-up {took:.1f} s after the start")


async def test_a_call_past_its_turn_cap_hears_a_notice_and_is_ended(live_server_factory):
    server = await start_server(
        live_server_factory,
        engines=instant_engines(),
        max_turns_per_call=3,
        max_turns_per_second=50.0,
    )
    call, listener = await open_call(server)
    for _ in range(6):
        if listener.close_code is not None:
            break
        await press(call, "1#")
        await asyncio.sleep(0.3)
    await listener.closed(20.0)
    view = await ended(server, call.call_sid)
    assert view.end_reason == "max-turns"
    record = await stored(server, call.call_sid)
    assert [t.dtmf for t in record.turns if t.speaker == "caller"] == ["1", "1", "1"]
    assert record.turns[-1].text == TOO_MANY_TURNS and record.end_reason == "max-turns"


async def test_keys_beyond_the_turn_rate_are_ignored_and_the_call_goes_on(live_server_factory):
    """Twenty entries in a burst: the first turn_burst are answered, the rest ignored; a
    second later the caller is heard again."""
    server = await start_server(
        live_server_factory, engines=instant_engines(), max_turns_per_second=1.0, turn_burst=2
    )
    call, listener = await open_call(server)
    await press(call, "1#" * 20)
    await asyncio.sleep(1.5)
    await press(call, "2#")
    await asyncio.sleep(0.5)
    await call.stop()
    await listener.closed(10.0)
    await ended(server, call.call_sid)
    record = await stored(server, call.call_sid)
    keyed = [t.dtmf for t in record.turns if t.speaker == "caller"]
    assert keyed[-1] == "2" and 2 <= len(keyed) <= 3, keyed
    assert sample(server, "taina_turns_refused_total", reason="rate") >= 18
