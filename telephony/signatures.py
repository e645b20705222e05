"""Checking that a webhook or media stream really comes from Twilio.

Twilio signs the URL *it called* (plus, for form webhooks, every POST parameter) with the account
auth token. Behind a TLS-terminating proxy or a tunnel the app sees ``http://internal:8000/...``,
so the URL must be rebuilt: from PUBLIC_URL when configured (the most reliable), else from the
``X-Forwarded-Proto``/``X-Forwarded-Host`` headers, else as the request arrived. For the media
stream WebSocket, Twilio signs ``wss://host/path`` with no parameters.

Every input here is attacker-controlled: the checks return a negative result instead of raising.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

from telephony.twiml import prefixed_path, stream_url

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_SIGNATURE_CHARS = 128  # base64 HMAC-SHA1 is 28 chars, HMAC-SHA256 44
_HOST = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")  # host[:port]


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Outcome of one check; ``reason`` and ``url`` are for logs (neither is secret)."""

    ok: bool
    reason: str  # "ok", "missing-signature", "oversized-signature", "bad-url", "mismatch", "error"
    url: str = ""

    def __bool__(self) -> bool:
        return self.ok


class TwilioSignatureChecker:
    """Validates ``X-Twilio-Signature`` on voice webhooks and on the media stream upgrade."""

    def __init__(self, auth_token: str, public_url: str | None = None) -> None:
        if not auth_token:
            raise ValueError("a Twilio auth token is required to check signatures")
        self._validator = RequestValidator(auth_token)
        self._public_url = public_url.strip() if public_url else None
        if self._public_url:
            parts = urlsplit(self._public_url)
            if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"PUBLIC_URL must be http(s)://host[:port], got {public_url!r}")

    # --- webhooks -----------------------------------------------------------------------------
    def check_webhook(
        self, url_as_called: str, headers: Mapping[str, str], form: Mapping[str, Any]
    ) -> bool:
        return self.verify_webhook(url_as_called, headers, form).ok

    def verify_webhook(
        self, url_as_called: str, headers: Mapping[str, str], form: Mapping[str, Any]
    ) -> SignatureCheck:
        """``url_as_called`` is the request URL as the app saw it (with its query string);
        ``form`` every POST parameter, unmodified (a dict or a multidict such as Starlette's
        ``FormData``, whose repeated keys Twilio's validator handles)."""
        try:
            signature = _header(headers, SIGNATURE_HEADER)
            if not signature:
                return SignatureCheck(False, "missing-signature")
            if len(signature) > MAX_SIGNATURE_CHARS:
                return SignatureCheck(False, "oversized-signature")
            url = self._public_webhook_url(url_as_called, headers)
            if url is None:
                return SignatureCheck(False, "bad-url")
            ok = self._validator.validate(url, form if form is not None else {}, signature)
            return SignatureCheck(bool(ok), "ok" if ok else "mismatch", url)
        except Exception:  # attacker input must never crash the route
            logger.debug("webhook signature check failed with an exception", exc_info=True)
            return SignatureCheck(False, "error")

    def _public_webhook_url(self, url_as_called: str, headers: Mapping[str, str]) -> str | None:
        called = urlsplit(url_as_called)
        if self._public_url:
            public = urlsplit(self._public_url)
            path = prefixed_path(public.path, called.path or "/")
            netloc = public.netloc.rsplit("@", 1)[-1]
            return urlunsplit((public.scheme.lower(), netloc, path, called.query, ""))
        scheme = _first(_header(headers, "X-Forwarded-Proto")) or called.scheme
        host = _first(_header(headers, "X-Forwarded-Host")) or called.netloc
        scheme = scheme.lower()
        if scheme not in {"http", "https"} or not _HOST.fullmatch(host):
            return None
        return urlunsplit((scheme, host, called.path or "/", called.query, ""))

    # --- media stream -------------------------------------------------------------------------
    def check_stream(self, path: str, host_header: str | None, headers: Mapping[str, str]) -> bool:
        return self.verify_stream(path, host_header, headers).ok

    def verify_stream(
        self, path: str, host_header: str | None, headers: Mapping[str, str]
    ) -> SignatureCheck:
        """Checks the WebSocket upgrade: Twilio signs ``wss://{public host}{path}``, no params."""
        try:
            signature = _header(headers, SIGNATURE_HEADER)
            if not signature:
                return SignatureCheck(False, "missing-signature")
            if len(signature) > MAX_SIGNATURE_CHARS:
                return SignatureCheck(False, "oversized-signature")
            if not path.startswith("/"):
                return SignatureCheck(False, "bad-url")
            if self._public_url:
                url = stream_url(self._public_url, path)
            else:
                host = _first(_header(headers, "X-Forwarded-Host")) or (host_header or "").strip()
                if not _HOST.fullmatch(host):
                    return SignatureCheck(False, "bad-url")
                url = f"wss://{host}{path}"
            ok = self._validator.validate(url, {}, signature)
            return SignatureCheck(bool(ok), "ok" if ok else "mismatch", url)
        except Exception:
            logger.debug("stream signature check failed with an exception", exc_info=True)
            return SignatureCheck(False, "error")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts as well as Starlette's ``Headers``."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        wanted = name.lower()
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == wanted:
                value = candidate
                break
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).strip()


def _first(value: str | None) -> str:
    """The first hop of a comma-separated forwarded header is the one the client (Twilio) used."""
    return value.split(",", 1)[0].strip() if value else ""


UNSIGNED_WARNING = (
    "\n"
    "!!! TWILIO SIGNATURES ARE NOT CHECKED: TWILIO_AUTH_TOKEN is not set. !!!\n"
    "!!! Anyone who can reach this server can place calls on /twilio/voice and\n"
    "!!! /twilio/stream; /twilio/status is off. Set TWILIO_AUTH_TOKEN before exposing it\n"
    "!!! (taina serve refuses a non-loopback address without it unless\n"
    "!!! TAINA_ALLOW_UNSIGNED=true).\n"
)


def warn_if_unsigned(auth_token: str | None, log: logging.Logger = logger) -> bool:
    """Log :data:`UNSIGNED_WARNING` at WARNING when there is no token; True if it did.
    Called once at start-up, so an operator reading the log cannot miss it."""
    if auth_token:
        log.info("Twilio signatures are checked on every webhook and media stream")
        return False
    log.warning(UNSIGNED_WARNING)
    return True
