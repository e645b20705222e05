"""Parsing every Twilio event, and refusing every malformed one without raising."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.twilio_protocol import (
    Connected,
    Dtmf,
    MarkEcho,
    Media,
    ProtocolError,
    Start,
    Stop,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)

LIMIT = 64 * 1024
SID = "MZ" + "a" * 32
CALL = "CA" + "b" * 32


def parse(msg: object) -> object:
    return parse_message(json.dumps(msg), LIMIT)


def test_connected() -> None:
    assert parse({"event": "connected", "protocol": "Call", "version": "1.0.0"}) == Connected(
        "Call", "1.0.0"
    )


def test_start_with_custom_parameters() -> None:
    msg = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": SID,
        "start": {
            "accountSid": "AC" + "c" * 32,
            "streamSid": SID,
            "callSid": CALL,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "t0k", "from": "+1809"},
        },
    }
    start = parse(msg)
    assert isinstance(start, Start)
    assert (start.stream_sid, start.call_sid, start.tracks) == (SID, CALL, ("inbound",))
    assert start.custom_parameters == {"token": "t0k", "from": "+1809"}


def test_media_decodes_payload_and_counters() -> None:
    audio = bytes(range(160))
    media = parse(
        {
            "event": "media",
            "sequenceNumber": "4",
            "streamSid": SID,
            "media": {
                "track": "inbound",
                "chunk": "2",
                "timestamp": "5",
                "payload": base64.b64encode(audio).decode(),
            },
        }
    )
    assert media == Media(stream_sid=SID, payload=audio, timestamp_ms=5, chunk=2)


def test_dtmf_mark_stop() -> None:
    assert parse(
        {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "#"}}
    ) == Dtmf(SID, "#")
    assert parse({"event": "mark", "streamSid": SID, "mark": {"name": "3.7"}}) == MarkEcho(
        SID, "3.7"
    )
    assert parse({"event": "stop", "streamSid": SID, "stop": {"callSid": CALL}}) == Stop(SID, CALL)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "malformed JSON"),
        ("[]", "not a JSON object"),
        ('{"event": 3}', "missing event"),
        ('{"event": "bogus"}', "unknown event"),
        ('{"event": "media", "streamSid": "x"}', "without a media object"),
        ('{"event": "media", "media": {"payload": "!!!"}}', "not valid base64"),
        ('{"event": "media", "media": {"payload": 5}}', "without a payload"),
        ('{"event": "media", "media": {"track": "outbound", "payload": ""}}', "track"),
        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "valid digit"),
        ('{"event": "dtmf", "dtmf": {"digit": "x"}}', "valid digit"),
        ('{"event": "mark", "mark": {"name": 1}}', "without a name"),
        ('{"event": "start", "start": {"callSid": "CA1"}}', "without streamSid"),
        (
            '{"event": "start", "start": {"callSid": "CA1", "streamSid": "MZ\\"1"}}',
            "malformed",
        ),
        (
            '{"event": "start", "start": {"callSid": "CA1", "streamSid": "MZ1",'
            ' "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000}}}',
            "unsupported media format",
        ),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(raw: str, reason: str) -> None:
    result = parse_message(raw, LIMIT)
    assert isinstance(result, ProtocolError)
    assert reason in result.reason


def test_oversized_message_is_refused_before_parsing() -> None:
    result = parse_message('{"event":"media"' + " " * LIMIT + "}", LIMIT)
    assert isinstance(result, ProtocolError) and "exceeds" in result.reason


def test_outbound_messages_are_valid_twilio_json() -> None:
    media = json.loads(media_message(SID, b"\xff" * 160))
    assert media == {
        "event": "media",
        "streamSid": SID,
        "media": {"payload": base64.b64encode(b"\xff" * 160).decode()},
    }
    assert json.loads(mark_message(SID, 'a"b')) == {
        "event": "mark",
        "streamSid": SID,
        "mark": {"name": 'a"b'},
    }
    assert json.loads(clear_message(SID)) == {"event": "clear", "streamSid": SID}


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_input_never_raises(raw: str | bytes) -> None:
    parse_message(raw, LIMIT)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop"]),
    st.dictionaries(
        st.sampled_from(["streamSid", "start", "media", "dtmf", "mark", "stop", "sequenceNumber"]),
        json_values,
        max_size=5,
    ),
)
def test_every_event_with_arbitrary_fields_never_raises(event: str, fields: dict) -> None:
    result = parse_message(json.dumps({"event": event, **fields}), LIMIT)
    if isinstance(result, Start):
        # Anything accepted as a start carries SIDs safe to embed in outbound JSON.
        json.loads(media_message(result.stream_sid, b""))
