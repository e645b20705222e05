from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony.call_tokens import CallTokens

KEY = b"0123456789abcdef0123456789abcdef"
SID = "CA" + "a" * 32
OTHER_SID = "CA" + "b" * 32


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tokens(clock: FakeClock) -> CallTokens:
    return CallTokens(KEY, ttl_s=120, clock=clock)


def test_mint_then_verify(tokens: CallTokens) -> None:
    token = tokens.mint(SID)
    assert len(token) < 200
    assert all(ch.isalnum() or ch in "-_." for ch in token)  # url-safe, fits a <Parameter>
    result = tokens.verify(token, SID)
    assert result.ok and result.reason == "ok"


def test_tokens_are_unique_per_mint(tokens: CallTokens) -> None:
    assert tokens.mint(SID) != tokens.mint(SID)


def test_second_use_is_replayed(tokens: CallTokens) -> None:
    token = tokens.mint(SID)
    assert tokens.verify(token, SID).ok
    again = tokens.verify(token, SID)
    assert not again.ok and again.reason == "replayed"
    # A fresh token for the same call is still accepted.
    assert tokens.verify(tokens.mint(SID), SID).ok


def test_failed_checks_do_not_consume_the_token(tokens: CallTokens) -> None:
    token = tokens.mint(SID)
    assert tokens.verify(token, OTHER_SID).reason == "wrong-call"
    assert tokens.verify(token, SID).ok


def test_expiry(tokens: CallTokens, clock: FakeClock) -> None:
    token = tokens.mint(SID)
    clock.now += 119
    assert tokens.verify(token, SID).ok
    late = tokens.mint(SID)
    clock.now += 122
    result = tokens.verify(late, SID)
    assert not result.ok and result.reason == "expired"


def test_ttl_is_configurable(clock: FakeClock) -> None:
    short = CallTokens(KEY, ttl_s=5, clock=clock)
    token = short.mint(SID)
    clock.now += 10
    assert short.verify(token, SID).reason == "expired"


def test_wrong_call(tokens: CallTokens) -> None:
    result = tokens.verify(tokens.mint(SID), OTHER_SID)
    assert not result.ok and result.reason == "wrong-call"
    assert tokens.verify(tokens.mint(SID), "").reason == "wrong-call"


def test_other_key_is_bad_signature(clock: FakeClock) -> None:
    token = CallTokens(b"another key", 120, clock=clock).mint(SID)
    result = CallTokens(KEY, 120, clock=clock).verify(token, SID)
    assert not result.ok and result.reason == "bad-signature"


def test_valid_across_instances_sharing_the_key(clock: FakeClock) -> None:
    """Stateless: another process of the same deployment accepts it (one-time is per process)."""
    token = CallTokens(KEY, 120, clock=clock).mint(SID)
    assert CallTokens(KEY, 120, clock=clock).verify(token, SID).ok


def test_forged_body_is_bad_signature(tokens: CallTokens) -> None:
    token = tokens.mint(SID)
    body_b64, mac_b64 = token.split(".")
    body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4))
    sid, expiry, nonce = body.decode().rsplit(":", 2)
    for forged in (
        f"{OTHER_SID}:{expiry}:{nonce}",  # move the token to another call
        f"{sid}:{int(expiry) + 3600}:{nonce}",  # extend its life
    ):
        forged_b64 = base64.urlsafe_b64encode(forged.encode()).rstrip(b"=").decode()
        result = tokens.verify(f"{forged_b64}.{mac_b64}", sid)
        assert not result.ok and result.reason == "bad-signature"


def test_non_canonical_spellings_are_malformed(tokens: CallTokens) -> None:
    token = tokens.mint(SID)
    body_b64, mac_b64 = token.split(".")
    for variant in (token + "=", token + "!", f"{body_b64}=.{mac_b64}", " " + token):
        assert tokens.verify(variant, SID).reason == "malformed"
    assert tokens.verify(token, SID).ok


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("no-dot", "malformed"),
        (".", "malformed"),
        ("abc.", "malformed"),
        (".abc", "malformed"),
        ("a.b.c", "malformed"),
        ("ñandú.xyz", "malformed"),
        ("x" * 10_000 + ".y", "malformed"),
        ("Q0E6MTIzOjA.AAAA", "malformed"),  # body "CA:123:0" but a 3-byte mac
    ],
)
def test_garbage(tokens: CallTokens, token: str | None, reason: str) -> None:
    result = tokens.verify(token, SID)
    assert not result.ok and result.reason == reason


def test_replay_memory_is_pruned_after_expiry(tokens: CallTokens, clock: FakeClock) -> None:
    for _ in range(50):
        assert tokens.verify(tokens.mint(SID), SID).ok
    assert tokens.remembered == 50
    clock.now += 121
    assert tokens.verify(tokens.mint(SID), SID).ok  # pruning happens on verify
    assert tokens.remembered == 1


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        CallTokens(b"", 120)
    with pytest.raises(ValueError):
        CallTokens(KEY, 0)
    with pytest.raises(ValueError):
        CallTokens(KEY, 120).mint("")


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=600), call_sid=st.text(max_size=40))
def test_arbitrary_text_never_raises_never_verifies(token: str, call_sid: str) -> None:
    result = CallTokens(KEY, 120).verify(token, call_sid)
    assert result.ok is False
    assert result.reason in {"missing", "malformed", "bad-signature"}


@settings(max_examples=200, deadline=None)
@given(sid=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60))
def test_any_call_sid_round_trips(sid: str) -> None:
    tokens = CallTokens(KEY, 120)
    assert tokens.verify(tokens.mint(sid), sid).ok
