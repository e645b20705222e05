"""Changing a live call through Twilio's REST API: hang up, or hand the caller to a human.

A transfer cannot happen over the media stream itself: replacing the call's running TwiML with
``<Dial>`` is Twilio's documented way off a bidirectional stream. The SDK is synchronous
(``requests``), so every call runs in a worker thread to keep the event loop free.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from telephony.twiml import transfer_twiml

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
CALL_NOT_IN_PROGRESS = 21220  # Twilio error code: the call already ended
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")


class CallControlError(RuntimeError):
    """Twilio refused the request or could not be reached (auth, network, validation)."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class _RebasedHttpClient(TwilioHttpClient):
    """Sends every SDK request to another origin (a local fake in tests), keeping path + query.

    twilio 9 builds absolute URLs as ``https://api.twilio.com/2010-04-01/...`` (possibly with an
    edge/region host) before handing them to the HTTP client, so rewriting here covers them all.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        base = urlsplit(base_url)
        if base.scheme not in {"http", "https"} or not base.netloc:
            raise ValueError(f"api_base_url must be http(s)://host[:port], got {base_url!r}")
        self._scheme = base.scheme
        self._netloc = base.netloc
        self._prefix = base.path.rstrip("/")

    def rebase(self, url: str) -> str:
        parts = urlsplit(url)
        path = self._prefix + parts.path
        return urlunsplit((self._scheme, self._netloc, path, parts.query, parts.fragment))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rebase(url), *args, **kwargs)


class TwilioCallControl:
    def __init__(self, account_sid: str, auth_token: str, api_base_url: str | None = None) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio account SID and auth token are required for call control")
        http_client = (
            _RebasedHttpClient(api_base_url, REQUEST_TIMEOUT_S)
            if api_base_url
            else TwilioHttpClient(timeout=REQUEST_TIMEOUT_S)
        )
        self._client = Client(account_sid, auth_token, http_client=http_client)

    async def hangup(self, call_sid: str) -> bool:
        """Ends the call. False if it had already ended; raises CallControlError otherwise."""
        return await self._update(call_sid, status="completed")

    async def transfer(self, call_sid: str, number: str, caller_id: str | None = None) -> bool:
        """Replaces the call's TwiML with an announcement and a ``<Dial>`` to ``number``; the
        media stream ends as a consequence. False if the call had already ended."""
        twiml = transfer_twiml(number, caller_id, declaration=False)
        return await self._update(call_sid, twiml=twiml)

    async def _update(self, call_sid: str, **changes: str) -> bool:
        if not _CALL_SID.fullmatch(call_sid or ""):
            raise ValueError(f"not a Twilio call SID: {call_sid!r}")
        return await asyncio.to_thread(self._update_blocking, call_sid, changes)

    def _update_blocking(self, call_sid: str, changes: dict[str, str]) -> bool:
        try:
            self._client.calls(call_sid).update(**changes)
        except TwilioException as exc:
            status = getattr(exc, "status", None)
            code = getattr(exc, "code", None)
            if status == 404 or code == CALL_NOT_IN_PROGRESS:
                logger.info("call %s already ended (status %s, code %s)", call_sid, status, code)
                return False
            raise CallControlError(
                f"Twilio refused to update call {call_sid}: {exc}", status, code
            ) from exc
        except requests.RequestException as exc:
            raise CallControlError(
                f"could not reach Twilio to update call {call_sid}: {exc}"
            ) from exc
        return True
