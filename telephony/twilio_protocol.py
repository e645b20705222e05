"""Twilio Media Streams wire format: parse what Twilio sends, build what we send back.

Nothing here knows about sockets or conversations. Parsing never raises on bad input: it
returns a ``ProtocolError`` value so the transport can log it with the call id and go on.
The media fast path avoids building intermediate objects beyond what is needed.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

VALID_DTMF = frozenset("0123456789*#ABCD")
# Twilio SIDs are two letters and 32 hex digits; we accept any short token of safe characters
# so outbound messages can embed the streamSid without escaping.
_SID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    encoding: str
    sample_rate: int
    channels: int
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    payload: bytes  # raw mu-law
    timestamp_ms: int | None
    chunk: int | None


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class MarkEcho:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str | None


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Why a message was refused; ``event`` is the claimed event name when known."""

    reason: str
    event: str | None = None


InboundMessage = Connected | Start | Media | Dtmf | MarkEcho | Stop


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    """Twilio sends counters as strings; accept ints too, refuse anything else quietly."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def parse_message(raw: str | bytes, max_bytes: int) -> InboundMessage | ProtocolError:
    if len(raw) > max_bytes:
        return ProtocolError(f"message of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ProtocolError("malformed JSON")
    if not isinstance(msg, dict):
        return ProtocolError("message is not a JSON object")
    event = msg.get("event")
    if not isinstance(event, str):
        return ProtocolError("missing event name")
    if event == "media":
        return _parse_media(msg)
    if event == "start":
        return _parse_start(msg)
    if event == "mark":
        mark = msg.get("mark")
        name = _str(mark.get("name")) if isinstance(mark, dict) else None
        if name is None:
            return ProtocolError("mark without a name", event)
        return MarkEcho(stream_sid=_str(msg.get("streamSid")) or "", name=name)
    if event == "dtmf":
        dtmf = msg.get("dtmf")
        digit = _str(dtmf.get("digit")) if isinstance(dtmf, dict) else None
        if digit is None or len(digit) != 1 or digit not in VALID_DTMF:
            return ProtocolError("dtmf without a valid digit", event)
        return Dtmf(stream_sid=_str(msg.get("streamSid")) or "", digit=digit)
    if event == "stop":
        stop = msg.get("stop")
        call_sid = _str(stop.get("callSid")) if isinstance(stop, dict) else None
        return Stop(stream_sid=_str(msg.get("streamSid")) or "", call_sid=call_sid)
    if event == "connected":
        return Connected(
            protocol=_str(msg.get("protocol")) or "", version=_str(msg.get("version")) or ""
        )
    # The name is the peer's choice: logged (shortened), but counted as "other" so metric
    # labels stay a closed set however many names a client invents.
    return ProtocolError(f"unknown event {event[:40]!r}", "other")


def _parse_media(msg: dict[str, Any]) -> Media | ProtocolError:
    media = msg.get("media")
    if not isinstance(media, dict):
        return ProtocolError("media without a media object", "media")
    track = media.get("track")
    if track is not None and track not in ("inbound", "inbound_track"):
        return ProtocolError(f"unexpected media track {str(track)[:20]!r}", "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        return ProtocolError("media without a payload", "media")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return ProtocolError("media payload is not valid base64", "media")
    return Media(
        stream_sid=_str(msg.get("streamSid")) or "",
        payload=audio,
        timestamp_ms=_int(media.get("timestamp")),
        chunk=_int(media.get("chunk")),
    )


def _parse_start(msg: dict[str, Any]) -> Start | ProtocolError:
    start = msg.get("start")
    if not isinstance(start, dict):
        return ProtocolError("start without a start object", "start")
    stream_sid = _str(start.get("streamSid")) or _str(msg.get("streamSid"))
    call_sid = _str(start.get("callSid"))
    if not stream_sid or not call_sid:
        return ProtocolError("start without streamSid or callSid", "start")
    if not _SID_RE.fullmatch(stream_sid) or not _SID_RE.fullmatch(call_sid):
        return ProtocolError("start with a malformed streamSid or callSid", "start")
    fmt = start.get("mediaFormat") if isinstance(start.get("mediaFormat"), dict) else {}
    encoding = _str(fmt.get("encoding")) or "audio/x-mulaw"
    sample_rate = _int(fmt.get("sampleRate")) or 8000
    channels = _int(fmt.get("channels")) or 1
    if encoding != "audio/x-mulaw" or sample_rate != 8000 or channels != 1:
        return ProtocolError(
            f"unsupported media format {encoding}/{sample_rate}/{channels}", "start"
        )
    raw_params = start.get("customParameters")
    params: dict[str, str] = {}
    if isinstance(raw_params, dict):
        params = {str(k)[:500]: str(v)[:500] for k, v in list(raw_params.items())[:32]}
    tracks = start.get("tracks")
    return Start(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=_str(start.get("accountSid")) or "",
        tracks=tuple(t for t in tracks if isinstance(t, str)) if isinstance(tracks, list) else (),
        encoding=encoding,
        sample_rate=sample_rate,
        channels=channels,
        custom_parameters=params,
    )


# --- outbound ----------------------------------------------------------------------------------
# Built by hand: three fixed shapes, sent up to 50 times a second per call.


def media_message(stream_sid: str, mulaw: bytes) -> str:
    payload = base64.b64encode(mulaw).decode("ascii")
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{payload}"}}}}'


def mark_message(stream_sid: str, name: str) -> str:
    return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}).decode()


def clear_message(stream_sid: str) -> str:
    return f'{{"event":"clear","streamSid":"{stream_sid}"}}'
