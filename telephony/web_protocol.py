"""The browser's wire format on ``WS /web/stream``: parse what the page sends, build what we send.

Deliberately small, so the page's JavaScript stays small:

* page → server, **binary** frames: PCM16 mono little-endian at 16 kHz, 20 ms each (any whole
  number of samples up to the frame limit is accepted).
* page → server, **text** frames, JSON: ``{"type":"start","session":…}`` (once, first),
  ``{"type":"mark","name":…}`` (the audio before that marker has been played),
  ``{"type":"dtmf","digit":…}``, ``{"type":"hangup"}``.
* server → page, **binary** frames: PCM16 mono 16 kHz speech, each followed by a text
  ``{"type":"audio_mark","name":…}`` so the page knows where each chunk ends.
* server → page, **text**: ``started`` (with the call id), ``clear`` (drop all queued audio
  now: barge-in), ``caption`` (speaker, text, final), ``state`` (escuchando | pensando |
  hablando), ``error`` (a Spanish message to show), ``hangup``.

Parsing never raises: bad input comes back as a ``ProtocolError`` value, ``fatal`` when the
stream must be closed at once (a frame larger than allowed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import orjson

WIRE_RATE = 16000
FRAME_MS = 20
VALID_DTMF = frozenset("0123456789*#ABCD")
MAX_TEXT_BYTES = 2048  # control messages are tiny; anything bigger is abuse
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

State = Literal["escuchando", "pensando", "hablando"]
Speaker = Literal["bot", "caller"]


@dataclass(frozen=True, slots=True)
class Audio:
    pcm16: bytes


@dataclass(frozen=True, slots=True)
class StartRequest:
    session: str | None  # the page's own id for this visit (informational; the server names calls)


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    name: str


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    digit: str


@dataclass(frozen=True, slots=True)
class HangupRequest:
    pass


@dataclass(frozen=True, slots=True)
class ProtocolError:
    reason: str
    kind: str = "invalid"  # a short label for metrics
    fatal: bool = False


ClientMessage = Audio | StartRequest | MarkPlayed | DtmfDigit | HangupRequest | ProtocolError


def parse_client_message(
    text: str | None, data: bytes | None, max_audio_bytes: int
) -> ClientMessage:
    """One WebSocket message from the page (``text`` or ``data``). Never raises."""
    if data is not None and text is None:
        if len(data) > max_audio_bytes:
            return ProtocolError(f"audio frame of {len(data)} bytes", "oversize", fatal=True)
        if not data:
            return ProtocolError("empty audio frame", "audio")
        if len(data) % 2:
            return ProtocolError("audio frame with an odd number of bytes", "audio")
        return Audio(bytes(data))
    if text is None:
        return ProtocolError("message with neither text nor bytes")
    if len(text) > MAX_TEXT_BYTES:
        return ProtocolError(f"control message of {len(text)} chars", "oversize", fatal=True)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ProtocolError("not JSON", "json")
    if not isinstance(obj, dict):
        return ProtocolError("JSON that is not an object", "json")
    kind = obj.get("type")
    if kind == "mark":
        name = obj.get("name")
        if isinstance(name, str) and _NAME_RE.fullmatch(name):
            return MarkPlayed(name)
        return ProtocolError("mark without a valid name", "mark")
    if kind == "dtmf":
        digit = obj.get("digit")
        if isinstance(digit, str) and len(digit) == 1 and digit in VALID_DTMF:
            return DtmfDigit(digit)
        return ProtocolError("dtmf without a valid digit", "dtmf")
    if kind == "start":
        session = obj.get("session")
        if isinstance(session, str) and _NAME_RE.fullmatch(session):
            return StartRequest(session)
        return StartRequest(None)
    if kind == "hangup":
        return HangupRequest()
    label = kind[:20] if isinstance(kind, str) else "untyped"
    return ProtocolError(f"unknown message type {label!r}", "unknown")


# --- server → page ----------------------------------------------------------------------------


def _dump(obj: dict[str, object]) -> str:
    return orjson.dumps(obj).decode()


def started_message(call_id: str) -> str:
    return _dump({"type": "started", "call_id": call_id})


def audio_mark_message(name: str) -> str:
    return _dump({"type": "audio_mark", "name": name})


def clear_message() -> str:
    return '{"type":"clear"}'


def caption_message(speaker: Speaker, text: str, final: bool) -> str:
    return _dump({"type": "caption", "speaker": speaker, "text": text, "final": final})


def state_message(state: State) -> str:
    return _dump({"type": "state", "state": state})


def error_message(message: str) -> str:
    return _dump({"type": "error", "message": message})


def hangup_message() -> str:
    return '{"type":"hangup"}'
