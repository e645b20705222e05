"""TwiML documents TAINA returns to Twilio.

The call flow relies on one Twilio rule: with ``<Connect><Stream>``, the verbs after ``<Connect>``
run only once our server closes the WebSocket, and with no further verb Twilio ends the call.
So the stream document has *nothing* after ``<Connect>``: closing the socket is how the assistant
hangs up. A spoken fallback there would also play after every normal goodbye. When the server
cannot take a call at all (e.g. at capacity), the webhook answers ``unavailable_twiml()`` instead,
and a transfer to a human replaces the running TwiML through the REST API (``call_control``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from twilio.twiml.voice_response import Connect, VoiceResponse

SAY_LANGUAGE = "es-MX"
MAX_PARAMETER_CHARS = 500  # Twilio: each Parameter's name + value must be shorter than this
TRANSFER_TIMEOUT_S = 20

UNAVAILABLE_MESSAGE = (
    "Lo sentimos, el asistente no está disponible en este momento. Por favor, llame más tarde."
)
TRANSFER_MESSAGE = "Le comunico con un agente. Un momento, por favor."

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def stream_url(public_base: str, path: str = "/twilio/stream") -> str:
    """The ``wss://`` URL Twilio must open for the media stream.

    Twilio only accepts ``wss`` and forbids a query string, so whatever scheme the operator wrote
    in PUBLIC_URL (usually ``https://``) becomes ``wss://`` and any query or fragment is dropped.
    A path prefix in the base (a reverse proxy serving TAINA under ``/taina``) is kept, so the
    same function also rebuilds the URL Twilio signed when the socket arrives.
    """
    parts = urlsplit(public_base.strip())
    if parts.scheme.lower() not in {"http", "https", "ws", "wss"} or not parts.hostname:
        raise ValueError(f"public base URL must be http(s)://host[:port], got {public_base!r}")
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never put credentials into TwiML
    return urlunsplit(("wss", netloc, prefixed_path(parts.path, path), "", ""))


def prefixed_path(prefix: str, path: str) -> str:
    """Prepend the public base's path prefix (a proxy that serves TAINA under ``/taina`` and
    strips it) unless the app-relative path already carries it."""
    prefix = prefix.rstrip("/")
    if not path.startswith("/"):
        path = "/" + path
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        return prefix + path
    return path


def connect_stream_twiml(
    stream_url: str,
    status_callback: str | None,
    parameters: Mapping[str, str],
    *,
    declaration: bool = True,
) -> str:
    """``<Connect><Stream>`` with per-call ``<Parameter>``s (they arrive in
    ``start.customParameters``; the stream URL itself cannot carry a query string)."""
    parts = urlsplit(stream_url)
    if parts.scheme != "wss" or not parts.hostname:
        raise ValueError(f"stream URL must be wss://host/path, got {stream_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("stream URL must not carry a query string; use parameters instead")
    for name, value in parameters.items():
        if not name:
            raise ValueError("stream parameter names must not be empty")
        if _has_control_chars(name) or _has_control_chars(value):
            raise ValueError(f"stream parameter {name!r} contains control characters")
        if len(name) + len(value) >= MAX_PARAMETER_CHARS:
            raise ValueError(
                f"stream parameter {name!r}: name + value must be under "
                f"{MAX_PARAMETER_CHARS} characters"
            )

    response = VoiceResponse()
    connect = Connect()
    if status_callback:
        stream = connect.stream(url=stream_url, status_callback=status_callback)
    else:
        stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    # Deliberately no verb after <Connect>: closing the socket must hang up, silently.
    return response.to_xml(xml_declaration=declaration)


def unavailable_twiml(*, declaration: bool = True) -> str:
    """Polite refusal for when the server cannot take the call (capacity, misconfiguration)."""
    response = VoiceResponse()
    response.say(UNAVAILABLE_MESSAGE, language=SAY_LANGUAGE)
    response.hangup()
    return response.to_xml(xml_declaration=declaration)


def transfer_twiml(number: str, caller_id: str | None = None, *, declaration: bool = True) -> str:
    """Announce and dial a human agent; used to replace the TwiML of a live call."""
    number = number.strip()
    if not _E164.fullmatch(number):
        raise ValueError(f"transfer number must be E.164 (+18095551234), got {number!r}")
    response = VoiceResponse()
    response.say(TRANSFER_MESSAGE, language=SAY_LANGUAGE)
    if caller_id:
        dial = response.dial(timeout=TRANSFER_TIMEOUT_S, caller_id=caller_id)
    else:
        dial = response.dial(timeout=TRANSFER_TIMEOUT_S)
    dial.number(number)
    return response.to_xml(xml_declaration=declaration)


def hangup_twiml(*, declaration: bool = True) -> str:
    response = VoiceResponse()
    response.hangup()
    return response.to_xml(xml_declaration=declaration)


def _has_control_chars(text: str) -> bool:
    """XML 1.0 cannot carry most C0 controls; refuse them rather than emit broken TwiML."""
    return any(ord(ch) < 0x20 and ch not in "\t\n\r" for ch in text)
