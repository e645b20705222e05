"""Who is calling the admin API, and may they?

Local accounts (the default, no Supabase): passwords are stored as argon2id hashes, and a
successful sign-in returns a short-lived HS256 JWT signed with the deployment's signing key, so
every process of one deployment accepts it without shared session state. Tokens are not
revocable; their short life (``admin_jwt_ttl_s``, 15 minutes by default) is what bounds a
stolen one, and a role change takes effect at the next sign-in.

Other identity providers plug in as :class:`TokenVerifier` objects in
``app.state.token_verifiers`` (see :func:`token_verifiers`): the local verifier comes first and
answers only for tokens it issued (``iss == "taina"``), so a Supabase verifier appended after
it sees every other token.

Sign-in attempts are rate limited per account, per client address and in total, in memory
(:mod:`app.login_guard`), so the limits hold per server process: with N processes behind a
balancer an attacker gets at most N times each limit. Password hashing runs in its own small
bounded pool (:mod:`app.password_pool`), never in the default executor the calls use.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Protocol

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.password_pool import password_pool

log = logging.getLogger("taina.auth")

ISSUER = "taina"
AUDIENCE = "taina-admin"  # keeps these tokens apart from any other JWT signed with the key
ALGORITHM = "HS256"
ROLES = ("citizen", "agent", "admin")  # ascending privilege
_RANK = {role: rank for rank, role in enumerate(ROLES)}
MIN_PASSWORD_CHARS = 8
MAX_TOKEN_CHARS = 8192  # a real token is a few hundred characters
# Clock skew tolerated between the server that issued a token and the one checking it.
LEEWAY_S = 10

# User-facing messages (the dashboard shows ``detail`` as is).
MSG_LOGIN_REQUIRED = "Se requiere iniciar sesión."
MSG_INVALID_TOKEN = "La sesión no es válida. Inicie sesión de nuevo."
MSG_EXPIRED_TOKEN = "La sesión expiró. Inicie sesión de nuevo."
MSG_FORBIDDEN = "No tiene permiso para realizar esta acción."


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the API, whatever proved it (``source``: "local",
    "supabase", …)."""

    user_id: str
    email: str
    role: str
    source: str = "local"


class AuthError(Exception):
    """A verifier recognises the token as its own and rejects it; ``detail`` is shown."""

    def __init__(self, detail: str = MSG_INVALID_TOKEN) -> None:
        super().__init__(detail)
        self.detail = detail


class TokenExpired(AuthError):
    def __init__(self) -> None:
        super().__init__(MSG_EXPIRED_TOKEN)


class TokenVerifier(Protocol):
    """Turns a bearer token into a :class:`Principal`.

    Return None when the token is not yours (the next verifier is asked); raise
    :class:`AuthError` when it is yours but not acceptable (expired, bad signature). ``verify``
    may be a plain or an ``async`` method: one that fetches keys (JWKS) should be async, or
    run its blocking work in a thread, so the event loop never waits on the network.
    """

    def verify(self, token: str) -> Principal | Awaitable[Principal | None] | None: ...


# --- passwords --------------------------------------------------------------------------------

# argon2-cffi's defaults follow RFC 9106's low-memory profile (argon2id, 64 MiB, t=3, p=4):
# about 50-100 ms on a small server, which is why hashing always runs in the password pool.
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash (salt and parameters inside). Blocking: use the async variant."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on a mismatch or a malformed stored hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


async def hash_password_async(password: str) -> str:
    """Hash in the password pool; :class:`~app.password_pool.PasswordPoolBusy` when full."""
    return await password_pool().run(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    """Verify in the password pool. With no stored hash (unknown user) a dummy hash is
    checked anyway, so a response's timing does not tell whether an e-mail has an account.
    Raises :class:`~app.password_pool.PasswordPoolBusy` (429) when the pool is full."""
    if password_hash is None:
        await password_pool().run(_verify_dummy, password)
        return False
    return await password_pool().run(verify_password, password_hash, password)


def _verify_dummy(password: str) -> bool:
    return verify_password(_dummy_hash(), password)  # the first call also makes the hash


@cache
def _dummy_hash() -> str:
    return hash_password("taina-no-such-user")


def check_password_policy(password: str) -> str | None:
    """Why ``password`` is not acceptable (Spanish, for people), or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"La contraseña debe tener al menos {MIN_PASSWORD_CHARS} caracteres."
    if not password.strip():
        return "La contraseña no puede ser solo espacios."
    return None


# --- tokens -----------------------------------------------------------------------------------


def issue_token(principal: Principal, key: bytes, ttl_s: int, *, now: float | None = None) -> str:
    """A signed HS256 JWT for a local account; ``now`` (epoch seconds) exists for tests."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": principal.user_id,
        "email": principal.email,
        "role": principal.role,
        "iat": issued,
        "exp": issued + int(ttl_s),
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_token(token: str, key: bytes) -> Principal:
    """Verify signature, issuer, audience and expiry; raise :class:`AuthError` otherwise."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],  # never "none", never an algorithm the token picks
            issuer=ISSUER,
            audience=AUDIENCE,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except jwt.InvalidTokenError as exc:
        log.info("rejected admin token: %s", exc)
        raise AuthError() from None
    role, email = claims.get("role"), claims.get("email")
    if role not in _RANK or not isinstance(email, str):
        raise AuthError()
    return Principal(user_id=str(claims["sub"]), email=email, role=role, source="local")


class LocalTokenVerifier:
    """Accepts the tokens :func:`issue_token` made; ignores everyone else's."""

    def __init__(self, key: bytes | Callable[[], bytes]) -> None:
        # A callable lets the chain be built before the services (and the key) exist.
        self._key = key

    def verify(self, token: str) -> Principal | None:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return None
        if unverified.get("iss") != ISSUER:
            return None  # another provider's token: let the next verifier decide
        key = self._key() if callable(self._key) else self._key
        return decode_token(token, key)


def token_verifiers(app: FastAPI) -> list[TokenVerifier]:
    """The app's verifier chain, created on first use with the local verifier first.

    Add a provider with ``token_verifiers(app).append(verifier)`` (e.g. in the lifespan).
    """
    verifiers: list[TokenVerifier] | None = getattr(app.state, "token_verifiers", None)
    if verifiers is None:
        verifiers = [LocalTokenVerifier(lambda: app.state.services.settings.signing_key)]
        app.state.token_verifiers = verifiers
    return verifiers


# --- login rate limit -------------------------------------------------------------------------


class LoginRateLimiter:
    """Sliding-window limit on sign-in attempts per key (an e-mail, a client address, …).

    An attempt is counted *before* the password is checked (so parallel guesses cannot slip
    past the limit) and forgotten when the sign-in succeeds: only failures accumulate.
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def attempt(self, key: str) -> float:
        """Count an attempt and return 0, or return the seconds to wait (nothing counted)."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        hits = self._recent(key, now)
        if waiting := self._retry_after(hits, now):
            return waiting
        if len(self._hits) >= self._max_keys:
            self._prune(now)
        self._hits.setdefault(key, hits).append(now)
        return 0.0

    def wait(self, key: str) -> float:
        """The seconds before ``key`` may try again (0: now), counting nothing."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        return self._retry_after(self._recent(key, now), now)

    def _retry_after(self, hits: deque[float], now: float) -> float:
        """0 while ``hits`` (the key's recent attempts) are under the limit, else the seconds
        until the oldest leaves the window (never 0, so callers can test it as a bool)."""
        if len(hits) >= self.limit:
            return max(hits[0] + self.window_s - now, 0.001)
        return 0.0

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)

    def refund(self, key: str) -> None:
        """Take back the latest attempt of ``key`` (it succeeded: only failures count)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()
            if not hits:
                del self._hits[key]

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def _prune(self, now: float) -> None:
        """Bound memory under a flood of distinct keys: drop keys with no recent attempt."""
        for key in list(self._hits):
            if not self._recent(key, now):
                del self._hits[key]


# --- FastAPI dependencies ---------------------------------------------------------------------

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Token de `POST /api/auth/login` (o de Supabase Auth, si está configurado).",
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(app: FastAPI, token: str) -> Principal:
    """Ask each verifier in turn; raise a 401 HTTPException when none accepts the token."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise _unauthorized(MSG_INVALID_TOKEN)
    for verifier in list(token_verifiers(app)):
        try:
            result: Any = verifier.verify(token)
            if inspect.isawaitable(result):
                result = await result
        except AuthError as exc:
            raise _unauthorized(exc.detail) from None
        except Exception:
            # A broken provider must not turn every request into a 500 or lock staff out.
            log.exception("token verifier %r failed", verifier)
            continue
        if result is not None:
            return result
    raise _unauthorized(MSG_INVALID_TOKEN)


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The signed-in principal, or 401."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized(MSG_LOGIN_REQUIRED)
    principal = await authenticate(request.app, credentials.credentials)
    request.state.principal = principal
    return principal


def has_role(principal: Principal, role: str) -> bool:
    """Roles are ranked: admin can do what an agent can, an agent what a citizen can."""
    return _RANK.get(principal.role, -1) >= _RANK[role]


def require_role(role: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting ``role`` or any higher one; 401 without a valid token, else 403."""
    if role not in _RANK:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
        if not has_role(principal, role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=MSG_FORBIDDEN)
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


CurrentUser = Annotated[Principal, Depends(current_user)]
AgentUser = Annotated[Principal, Depends(require_role("agent"))]
AdminUser = Annotated[Principal, Depends(require_role("admin"))]
