"""Local accounts (``users``) and the audit log of admin actions (``audit_log``).

Functions take the :class:`~app.storage.Database` explicitly: the API, the CLI and tests share
them without building a repository object. Password hashing (argon2, deliberately slow) runs in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from app.auth import ROLES, hash_password_async
from app.storage.database import Database
from app.storage.models import AuditLog, RefreshToken, User, utcnow

log = logging.getLogger("taina.audit")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserExists(ValueError):
    """An account with that e-mail already exists."""


class UnknownUser(LookupError):
    """No account has that e-mail."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    email: str
    role: str
    created_at: datetime
    password_hash: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    details: dict[str, Any]


def normalize_email(email: str) -> str:
    """E-mails are compared case-insensitively: "Ana@Example.org" signs in as ana@example.org."""
    return email.strip().lower()


def validate_email(email: str) -> str:
    """The normalized e-mail, or ValueError when it cannot be one."""
    value = normalize_email(email)
    if not _EMAIL.match(value) or len(value) > 320:
        raise ValueError(f"not an e-mail address: {email!r}")
    return value


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


async def create_user(
    db: Database,
    email: str,
    role: str,
    password: str | None = None,
    *,
    actor: str | None = None,
) -> UserRecord:
    """Create an account (no password: it cannot sign in locally, e.g. a Supabase profile).

    Raises :class:`UserExists` or ValueError (bad e-mail or role).
    """
    email = validate_email(email)
    validate_role(role)
    password_hash = await hash_password_async(password) if password is not None else None
    try:
        async with db.session(write=True) as s:
            if await s.scalar(select(User.id).where(User.email == email)) is not None:
                raise UserExists(email)
            user = User(email=email, role=role, password_hash=password_hash, created_at=utcnow())
            s.add(user)
            await s.flush()
            s.add(
                AuditLog(
                    actor=actor,
                    action="user.created",
                    target=email,
                    details={"role": role, "user_id": user.id},
                )
            )
            return _record(user)
    except IntegrityError:
        raise UserExists(email) from None  # a concurrent create won the race


async def set_password(
    db: Database,
    email: str,
    password: str,
    *,
    actor: str | None = None,
    end_sessions: bool = True,
) -> None:
    """Replace an account's password (also used to upgrade an old hash after sign-in, with
    ``end_sessions=False``). A new password ends every dashboard session of the account: its
    refresh tokens are revoked, so a session opened with the old password cannot renew."""
    email = normalize_email(email)
    password_hash = await hash_password_async(password)
    async with db.session(write=True) as s:
        result = await s.execute(
            update(User).where(User.email == email).values(password_hash=password_hash)
        )
        if result.rowcount == 0:
            raise UnknownUser(email)
        if end_sessions:
            await s.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.user_id.in_(select(User.id).where(User.email == email)),
                    RefreshToken.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
        if actor is not None:
            s.add(AuditLog(actor=actor, action="user.password_set", target=email, details={}))


async def get_by_email(db: Database, email: str) -> UserRecord | None:
    async with db.session() as s:
        user = await s.scalar(select(User).where(User.email == normalize_email(email)))
        return None if user is None else _record(user)


async def list_users(db: Database) -> list[UserRecord]:
    """Every account, oldest first (password hashes included: never serialize them)."""
    async with db.session() as s:
        rows = (await s.scalars(select(User).order_by(User.id))).all()
    return [_record(u) for u in rows]


async def audit(
    db: Database,
    actor: str | None,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """Record an admin action ("prompt.activated", "knowledge.uploaded", …).

    The action itself has already happened when this runs: a database that cannot take the
    record (full disk, outage) must not turn it into a 500 the client would retry. The record
    then goes to the log, at ERROR, whole, and this returns False.
    """
    try:
        async with db.session(write=True) as s:
            s.add(AuditLog(actor=actor, action=action, target=target, details=details or {}))
        return True
    except (OperationalError, OSError) as exc:
        log.error(
            "audit record not stored (%s): actor=%r action=%r target=%r details=%r",
            str(getattr(exc, "orig", exc))[:200],
            actor,
            action,
            target,
            details,
        )
        return False


async def list_audit(db: Database, limit: int = 100, action: str | None = None) -> list[AuditEntry]:
    """Newest first."""
    stmt = select(AuditLog).order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(limit)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    async with db.session() as s:
        rows = (await s.scalars(stmt)).all()
    return [
        AuditEntry(
            id=r.id,
            at=r.at,
            actor=r.actor,
            action=r.action,
            target=r.target,
            details=dict(r.details or {}),
        )
        for r in rows
    ]


def _record(user: User) -> UserRecord:
    return UserRecord(
        id=user.id,
        email=user.email,
        role=user.role,
        created_at=user.created_at,
        password_hash=user.password_hash,
    )
