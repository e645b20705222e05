"""Refresh tokens: how a dashboard session outlives its short access token, and how it ends.

The access token (a 15-minute JWT, see :mod:`app.auth`) stays short so a stolen one is worth
little. Beside it, sign-in sets a refresh token in an httpOnly cookie (JavaScript never sees
it) scoped to ``/api/auth``. ``POST /api/auth/refresh`` trades it for a new access token and a
new refresh token (rotation); the old one is spent. Each use pushes the idle deadline
(``admin_idle_timeout_s``) forward, so a session in use never expires under its user, while a
forgotten one ends; no session outlives ``admin_session_max_s`` after its sign-in.

Stored server-side as SHA-256 hashes (the token is 256 random bits, so a plain hash is enough:
nothing to brute-force). A spent token presented again means two parties hold it: the whole
family (every token of that sign-in) is revoked. Sign-out revokes the family; a password
change revokes every family of the user.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from app.storage.database import Database
from app.storage.models import RefreshToken, utcnow

COOKIE_NAME = "taina_refresh"
COOKIE_PATH = "/api/auth"

MSG_NO_SESSION = "La sesión no es válida. Inicie sesión de nuevo."
MSG_IDLE = "La sesión se cerró por inactividad. Inicie sesión de nuevo."
MSG_MAX_AGE = "La sesión llegó a su duración máxima. Inicie sesión de nuevo."


class RefreshRejected(Exception):
    """The refresh token cannot renew the session; ``detail`` (Spanish) says why."""

    def __init__(self, detail: str = MSG_NO_SESSION) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Renewal:
    user_id: int
    token: str  # the new raw refresh token, for the cookie
    expires_at: datetime


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


async def issue(
    db: Database,
    user_id: int,
    *,
    idle_s: int,
    max_s: int,
    family: str | None = None,
    family_expires_at: datetime | None = None,
) -> tuple[str, datetime]:
    """A new raw token for ``user_id`` (a new family unless one is given) and its expiry."""
    now = utcnow()
    family_expires_at = family_expires_at or now + timedelta(seconds=max_s)
    expires_at = min(now + timedelta(seconds=idle_s), family_expires_at)
    raw = secrets.token_urlsafe(32)
    async with db.session(write=True) as s:
        s.add(
            RefreshToken(
                user_id=user_id,
                family=family or str(uuid.uuid4()),
                token_hash=hash_token(raw),
                created_at=now,
                expires_at=expires_at,
                family_expires_at=family_expires_at,
            )
        )
    return raw, expires_at


async def rotate(db: Database, raw: str, *, idle_s: int) -> Renewal:
    """Spend ``raw`` and return its successor; :class:`RefreshRejected` when it cannot be.

    The spend is one conditional UPDATE, so two requests racing with the same token cannot
    both win: the loser sees a spent token and revokes the family.
    """
    if not raw or len(raw) > 200:
        raise RefreshRejected()
    token_hash = hash_token(raw)
    now = utcnow()
    rejected: str | None = None
    async with db.session(write=True) as s:
        spent = await s.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(used_at=now)
        )
        row = await s.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
        if row is None:
            rejected = MSG_NO_SESSION
        elif spent.rowcount != 1:
            rejected = MSG_NO_SESSION
            if row.revoked_at is None and row.used_at is not None:
                # Replayed: whoever holds the newer token and whoever replays this one cannot
                # be told apart, so neither keeps the session. (Committed before refusing.)
                await s.execute(
                    update(RefreshToken)
                    .where(RefreshToken.family == row.family, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
            elif row.revoked_at is None:
                rejected = MSG_MAX_AGE if row.family_expires_at <= now else MSG_IDLE
        else:
            user_id, family, family_expires_at = row.user_id, row.family, row.family_expires_at
    if rejected is not None:
        raise RefreshRejected(rejected)
    new_raw, expires_at = await issue(
        db,
        user_id,
        idle_s=idle_s,
        max_s=0,
        family=family,
        family_expires_at=family_expires_at,
    )
    return Renewal(user_id=user_id, token=new_raw, expires_at=expires_at)


async def revoke_family(db: Database, raw: str) -> bool:
    """Sign-out: revoke every token of the sign-in ``raw`` belongs to. True if it was known."""
    if not raw or len(raw) > 200:
        return False
    async with db.session(write=True) as s:
        family = await s.scalar(
            select(RefreshToken.family).where(RefreshToken.token_hash == hash_token(raw))
        )
        if family is None:
            return False
        await s.execute(
            update(RefreshToken)
            .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return True


async def revoke_user(db: Database, user_id: int) -> int:
    """A password change (or a removed account): end every session of the user."""
    async with db.session(write=True) as s:
        result = await s.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return int(result.rowcount or 0)
