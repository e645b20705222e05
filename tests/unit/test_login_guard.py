"""``app.login_guard.SignInGuard``: three windows, nothing counted for a refusal, successes free."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from app.login_guard import SignInGuard


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def refused(guard: SignInGuard, ip: str, email: str) -> int | None:
    """The Retry-After seconds of a refusal, or None when admitted."""
    try:
        guard.admit(ip, email)
    except HTTPException as exc:
        assert exc.status_code == 429
        return int(exc.headers["Retry-After"])
    return None


def test_per_address_limit_ignores_the_email() -> None:
    clock = Clock()
    guard = SignInGuard(per_account=3, per_address=4, total=100, window_s=60, clock=clock)
    for i in range(4):
        assert refused(guard, "1.1.1.1", f"u{i}@x.org") is None
    assert refused(guard, "1.1.1.1", "otra@x.org") == 60
    assert refused(guard, "2.2.2.2", "otra@x.org") is None
    clock.t += 30
    assert refused(guard, "1.1.1.1", "otra@x.org") == 30
    clock.t += 30.5
    assert refused(guard, "1.1.1.1", "otra@x.org") is None


def test_refusals_count_nowhere_and_successes_are_refunded() -> None:
    guard = SignInGuard(per_account=2, per_address=2, total=3, window_s=60, clock=Clock())
    assert refused(guard, "1.1.1.1", "a@x.org") is None
    guard.succeeded("1.1.1.1", "a@x.org")
    assert refused(guard, "1.1.1.1", "a@x.org") is None
    assert refused(guard, "1.1.1.1", "a@x.org") is None
    for _ in range(50):  # refused: the other limits must not fill up because of these
        assert refused(guard, "1.1.1.1", "a@x.org") is not None
    assert refused(guard, "9.9.9.9", "b@x.org") is None  # total: 3rd failure
    assert refused(guard, "8.8.8.8", "c@x.org") is not None  # total reached


@pytest.mark.parametrize("limit", [0])
def test_zero_disables_a_limit(limit: int) -> None:
    guard = SignInGuard(per_account=limit, per_address=limit, total=limit, window_s=60)
    for _ in range(100):
        assert refused(guard, "1.1.1.1", "a@x.org") is None
