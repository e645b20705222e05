"""Who may try a password now: sign-in limits per account, per client address and in total.

Each failed sign-in costs the server an argon2 hash (~0.1 s of CPU, 64 MiB), so sign-in is
the cheapest way to make the server work hard. Three sliding windows
(``TAINA_LOGIN_RATE_WINDOW_S``, 60 s by default) bound it:

* per account (``TAINA_LOGIN_RATE_LIMIT``, 5): password guessing against one e-mail, from any
  number of addresses;
* per client address (``TAINA_LOGIN_IP_RATE_LIMIT``, 20): one client trying many e-mails
  (the flood that a per address-and-e-mail key never stopped);
* in total (``TAINA_LOGIN_GLOBAL_RATE_LIMIT``, 200): many addresses at once. When it is hit
  every sign-in waits for the window, staff included: the price of keeping the server's CPU
  for the calls; existing sessions are not affected.

All three are checked before anything is counted or any work is done, so a refused attempt
costs a dictionary lookup: no database query, no hash, no record. An attempt is counted
before its password is checked (parallel guesses cannot slip past a limit) and taken back
when it succeeds, so only failures accumulate. The client address is the one
:mod:`app.forwarded` settled (``X-Forwarded-For`` only from ``TAINA_TRUSTED_PROXIES``).

Refusals are logged at most once per :data:`LOG_EVERY_S` with their count, so a flood cannot
fill the log either.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from fastapi import FastAPI, HTTPException, status

from app.auth import LoginRateLimiter

log = logging.getLogger("taina.auth")

LOG_EVERY_S = 10.0
TOTAL_KEY = "*"


def too_many(seconds: float) -> HTTPException:
    wait = max(1, math.ceil(seconds))
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"Demasiados intentos de inicio de sesión. Intente de nuevo en {wait} segundos.",
        headers={"Retry-After": str(wait)},
    )


class SignInGuard:
    """The three limits of one server process."""

    def __init__(
        self,
        per_account: int,
        per_address: int,
        total: int,
        window_s: float,
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.per_account = LoginRateLimiter(per_account, window_s, clock=clock)
        self.per_address = LoginRateLimiter(per_address, window_s, clock=clock)
        self.total = LoginRateLimiter(total, window_s, clock=clock)
        self._clock = clock
        self._refused = 0
        self._last_log = -math.inf

    def _keys(self, ip: str, email: str) -> tuple[tuple[LoginRateLimiter, str], ...]:
        return (
            (self.per_account, email),
            (self.per_address, ip),
            (self.total, TOTAL_KEY),
        )

    def admit(self, ip: str, email: str) -> None:
        """Count one attempt, or raise a 429 (``Retry-After``) having counted nothing."""
        keys = self._keys(ip, email)
        wait = max(limiter.wait(key) for limiter, key in keys)
        if wait > 0:
            self._note_refusal(ip)
            raise too_many(wait)
        for limiter, key in keys:
            limiter.attempt(key)

    def succeeded(self, ip: str, email: str) -> None:
        """The password was right: this attempt does not count against anyone."""
        self.per_account.reset(email)
        self.per_address.refund(ip)
        self.total.refund(TOTAL_KEY)

    def _note_refusal(self, ip: str) -> None:
        self._refused += 1
        now = self._clock()
        if now - self._last_log >= LOG_EVERY_S:
            log.warning(
                "sign-in attempts refused by the rate limits: %d since the last notice "
                "(latest from %s)",
                self._refused,
                ip,
            )
            self._refused = 0
            self._last_log = now


def sign_in_guard(app: FastAPI) -> SignInGuard:
    """The app's guard, built from its settings on first use."""
    guard: SignInGuard | None = getattr(app.state, "sign_in_guard", None)
    if guard is None:
        s = app.state.services.settings
        guard = SignInGuard(
            s.login_rate_limit,
            s.login_ip_rate_limit,
            s.login_global_rate_limit,
            s.login_rate_window_s,
        )
        app.state.sign_in_guard = guard
    return guard
