"""The browser wire format: every page message parsed, every bad one a value, never a raise."""

from __future__ import annotations

import orjson
import pytest

from telephony.web_protocol import (
    MAX_TEXT_BYTES,
    Audio,
    DtmfDigit,
    HangupRequest,
    MarkPlayed,
    ProtocolError,
    StartRequest,
    audio_mark_message,
    caption_message,
    clear_message,
    error_message,
    hangup_message,
    parse_client_message,
    started_message,
    state_message,
)

MAX = 8192


def parse_text(obj: object) -> object:
    return parse_client_message(orjson.dumps(obj).decode(), None, MAX)


def test_audio_frame() -> None:
    frame = bytes(range(256)) * 2 + bytes(128)  # 640 bytes = 20 ms at 16 kHz
    parsed = parse_client_message(None, frame, MAX)
    assert parsed == Audio(frame)


@pytest.mark.parametrize(
    ("data", "fatal"),
    [(b"", False), (b"\x00\x01\x02", False), (bytes(MAX + 2), True)],
)
def test_bad_audio(data: bytes, fatal: bool) -> None:
    parsed = parse_client_message(None, data, MAX)
    assert isinstance(parsed, ProtocolError)
    assert parsed.fatal is fatal


def test_control_messages() -> None:
    assert parse_text({"type": "start", "session": "v123abc"}) == StartRequest("v123abc")
    assert parse_text({"type": "start"}) == StartRequest(None)
    assert parse_text({"type": "start", "session": "<script>"}) == StartRequest(None)
    assert parse_text({"type": "mark", "name": "3.17"}) == MarkPlayed("3.17")
    assert parse_text({"type": "dtmf", "digit": "#"}) == DtmfDigit("#")
    assert parse_text({"type": "hangup"}) == HangupRequest()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        "null",
        '{"type": "mark"}',
        '{"type": "mark", "name": "a b"}',
        '{"type": "mark", "name": 5}',
        '{"type": "dtmf", "digit": "12"}',
        '{"type": "dtmf", "digit": "x"}',
        '{"type": "launch"}',
        '{"type": ["start"]}',
        '{"no": "type"}',
        "\udcff",
    ],
)
def test_bad_text_is_a_value(raw: str) -> None:
    parsed = parse_client_message(raw, None, MAX)
    assert isinstance(parsed, ProtocolError)
    assert not parsed.fatal


def test_oversize_text_is_fatal() -> None:
    parsed = parse_client_message("x" * (MAX_TEXT_BYTES + 1), None, MAX)
    assert isinstance(parsed, ProtocolError) and parsed.fatal


def test_neither_text_nor_bytes() -> None:
    assert isinstance(parse_client_message(None, None, MAX), ProtocolError)


def test_server_messages_are_json() -> None:
    assert orjson.loads(started_message("web-1")) == {"type": "started", "call_id": "web-1"}
    assert orjson.loads(audio_mark_message("0.1")) == {"type": "audio_mark", "name": "0.1"}
    assert orjson.loads(clear_message()) == {"type": "clear"}
    assert orjson.loads(caption_message("bot", "Abrimos a las 8:00 «a. m.»", False)) == {
        "type": "caption",
        "speaker": "bot",
        "text": "Abrimos a las 8:00 «a. m.»",
        "final": False,
    }
    assert orjson.loads(state_message("pensando")) == {"type": "state", "state": "pensando"}
    assert orjson.loads(error_message("Ocupado")) == {"type": "error", "message": "Ocupado"}
    assert orjson.loads(hangup_message()) == {"type": "hangup"}
