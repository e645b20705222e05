"""DTMF under arbitrary input: the two wire parsers and the session that collects digits.

Only the sixteen DTMF keys ever act; anything else a peer calls a digit is refused by the
parsers (and ignored by the session, should another transport pass it on); a flood of digits
without a pause or ``#`` cannot grow one entry without bound (the whole entry would be stored
and sent to the brain — an LLM prompt — as one turn).
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.session import MAX_DTMF_DIGITS
from telephony.twilio_protocol import Dtmf, ProtocolError, parse_message
from telephony.web_protocol import DtmfDigit, parse_client_message
from telephony.web_protocol import ProtocolError as WebProtocolError
from tests.unit.test_session import make_session, turns, until

KEYS = "0123456789*#ABCD"
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
DIGITS = st.one_of(st.sampled_from(list(KEYS)), st.text(max_size=4), JSON_VALUES)


@FUZZ
@given(DIGITS)
def test_twilio_dtmf_accepts_exactly_the_sixteen_keys(digit: object) -> None:
    raw = json.dumps({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": digit}})
    parsed = parse_message(raw, 64 * 1024)
    if isinstance(digit, str) and len(digit) == 1 and digit in KEYS:
        assert parsed == Dtmf(stream_sid="MZ1", digit=digit)
    else:
        assert isinstance(parsed, ProtocolError) and parsed.event == "dtmf"


@FUZZ
@given(DIGITS)
def test_web_dtmf_accepts_exactly_the_sixteen_keys(digit: object) -> None:
    parsed = parse_client_message(json.dumps({"type": "dtmf", "digit": digit}), None, 8192)
    if isinstance(digit, str) and len(digit) == 1 and digit in KEYS:
        assert parsed == DtmfDigit(digit)
    else:
        assert isinstance(parsed, WebProtocolError) and not parsed.fatal


@FUZZ
@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4))
def test_twilio_dtmf_with_any_shape_never_raises(dtmf: dict[str, object]) -> None:
    parsed = parse_message(json.dumps({"event": "dtmf", "dtmf": dtmf}), 64 * 1024)
    assert isinstance(parsed, Dtmf | ProtocolError)


ENTRY = st.lists(
    st.one_of(st.sampled_from(list(KEYS)), st.text(max_size=3), st.just("pause")),
    max_size=80,
)


@settings(derandomize=True, database=None, deadline=None, max_examples=25)
@given(ENTRY)
def test_the_session_acts_only_on_keys_and_bounds_each_entry(presses: list[str]) -> None:
    """Any sequence of presses (keys, junk strings, pauses): no exception escapes, every
    recorded DTMF turn holds only keys and at most MAX_DTMF_DIGITS of them."""

    async def scenario() -> None:
        session, phone, recent, _, _ = make_session()
        phone.speed = 1000.0
        await session.start()
        for press in presses:
            if press == "pause":
                await asyncio.sleep(0.01)
            else:
                session.feed_dtmf(press)
        session.feed_dtmf("#")
        await asyncio.sleep(0.05)
        await session.close("caller-hangup")
        entries = [t.dtmf for t in turns(recent) if t.dtmf]
        for entry in entries:
            assert set(entry) <= set(KEYS) - {"#"}, entry
            assert len(entry) <= MAX_DTMF_DIGITS
        typed = "".join(p for p in presses if len(p) == 1 and p in KEYS and p != "#")
        if typed and len(typed) <= MAX_DTMF_DIGITS and "#" not in presses:
            assert entries and entries[0] == typed

    asyncio.run(scenario())


async def test_a_digit_flood_makes_bounded_turns() -> None:
    session, phone, recent, _, _ = make_session()
    phone.speed = 1000.0
    await session.start()
    for i in range(20_000):
        session.feed_dtmf(KEYS[i % 10])
    session.feed_dtmf("#")
    await until(lambda: any(t.dtmf for t in turns(recent)))
    await asyncio.sleep(0.1)
    await session.close("caller-hangup")
    entries = [t.dtmf for t in turns(recent) if t.dtmf]
    assert entries and all(len(e) <= MAX_DTMF_DIGITS for e in entries)
    assert sum(len(e) for e in entries) <= MAX_DTMF_DIGITS  # the excess was dropped
