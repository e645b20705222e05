"""One-time per-call tokens: defence in depth for the media stream.

The voice webhook (signature-checked) mints a token bound to the CallSid and hands it to Twilio in
a ``<Parameter>``; the stream's ``start`` message must bring it back with the same CallSid before
any audio is bridged. Someone who merely knows the stream URL cannot open a conversation.

The token is stateless (HMAC-SHA256 over call SID, expiry and a random nonce with the
deployment's signing key), so any process of one deployment can verify it. One-time use is
enforced deployment-wide when a shared replay store is given (Redis, ``app/shared_state.py``:
the first process to record a token wins, every other process refuses it) and per process
otherwise (each process remembers the tokens it accepted until they expire; with several
processes and no Redis a replay could be accepted once by each other process within the TTL).

Format: ``base64url(call_sid ":" expiry ":" nonce) "." base64url(mac)``, without padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.shared_state import ReplayStore

DEFAULT_TTL_S = 120
MAX_TOKEN_CHARS = 512  # a real token is ~110 chars; anything longer is not worth decoding
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_DOMAIN = b"taina-call-token-v1\x00"  # separates these MACs from any other use of the key


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """``reason``: "ok", "missing", "malformed", "bad-signature", "expired", "wrong-call" or
    "replayed" (for logs; never tell the caller which)."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


class CallTokens:
    def __init__(
        self,
        key: bytes,
        ttl_s: int = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
        replay: ReplayStore | None = None,
    ) -> None:
        if not key:
            raise ValueError("call tokens need a non-empty signing key")
        if ttl_s <= 0:
            raise ValueError("call token TTL must be positive")
        self._key = bytes(key)
        self._ttl_s = int(ttl_s)
        self._clock = clock
        self._replay = replay  # deployment-wide one-time use (None: this process only)
        self._lock = threading.Lock()
        self._used: dict[bytes, int] = {}  # mac -> expiry of tokens already accepted
        self._expiries: list[tuple[int, bytes]] = []  # min-heap over the same entries

    def mint(self, call_sid: str) -> str:
        if not call_sid:
            raise ValueError("a call SID is required to mint a call token")
        expiry = math.ceil(self._clock()) + self._ttl_s
        nonce = secrets.token_urlsafe(12)
        body = f"{call_sid}:{expiry}:{nonce}".encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def verify(self, token: str | None, call_sid: str) -> TokenCheck:
        """Accepts a token once in this process; never raises on whatever the stream sent."""
        checked = self._check(token, call_sid)
        if isinstance(checked, TokenCheck):
            return checked
        return self._first_here(*checked)

    async def verify_shared(self, token: str | None, call_sid: str) -> TokenCheck:
        """Accepts a token once in the whole deployment (the shared replay store), or once in
        this process when there is none or it cannot be reached."""
        checked = self._check(token, call_sid)
        if isinstance(checked, TokenCheck):
            return checked
        mac, expiry = checked
        if self._replay is not None:
            first = await self._replay.first_use(mac, expiry)
            if first is False:
                return TokenCheck(False, "replayed")
        return self._first_here(mac, expiry)

    @property
    def shared(self) -> bool:
        return self._replay is not None

    def _check(self, token: str | None, call_sid: str) -> TokenCheck | tuple[bytes, int]:
        """Everything but one-time use: a refusal, or the token's (mac, expiry)."""
        if not token:
            return TokenCheck(False, "missing")
        parsed = _parse(token)
        if parsed is None:
            return TokenCheck(False, "malformed")
        body, mac, token_sid, expiry = parsed
        if not hmac.compare_digest(mac, self._mac(body)):
            return TokenCheck(False, "bad-signature")
        if self._clock() > expiry:
            return TokenCheck(False, "expired")
        if not isinstance(call_sid, str) or not hmac.compare_digest(
            token_sid.encode(), call_sid.encode("utf-8", "surrogatepass")
        ):
            return TokenCheck(False, "wrong-call")
        return mac, expiry

    def _first_here(self, mac: bytes, expiry: int) -> TokenCheck:
        now = self._clock()
        with self._lock:
            self._prune(now)
            if mac in self._used:
                return TokenCheck(False, "replayed")
            self._used[mac] = expiry
            heapq.heappush(self._expiries, (expiry, mac))
        return TokenCheck(True, "ok")

    @property
    def remembered(self) -> int:
        """How many accepted tokens are still held to refuse replays (for tests and metrics)."""
        return len(self._used)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + body, hashlib.sha256).digest()

    def _prune(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] < now:
            _, mac = heapq.heappop(self._expiries)
            self._used.pop(mac, None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict inverse of ``_b64``: one token has exactly one spelling (no ignored characters,
    no padding, no non-canonical trailing bits)."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def _parse(token: object) -> tuple[bytes, bytes, str, int] | None:
    """Splits a token into (body, mac, call_sid, expiry), or None if it is not shaped like one."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return None
    body_text, sep, mac_text = token.partition(".")
    if not sep or not body_text or not mac_text:
        return None
    try:
        body = _unb64(body_text)
        mac = _unb64(mac_text)
        call_sid, expiry_text, nonce = body.decode("utf-8").rsplit(":", 2)
    except (binascii.Error, ValueError):  # bad base64, bad UTF-8, too few fields
        return None
    if len(mac) != hashlib.sha256().digest_size or not call_sid or not nonce:
        return None
    if not expiry_text.isascii() or not expiry_text.isdigit() or len(expiry_text) > 12:
        return None
    return body, mac, call_sid, int(expiry_text)
