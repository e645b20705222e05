"""Accept Supabase Auth access tokens at the admin API (when ``SUPABASE_URL`` is set).

A Supabase project signs its users' access tokens either with the legacy shared secret
(HS256, ``SUPABASE_JWT_SECRET``) or with asymmetric signing keys (RS256/ES256) published at
``{SUPABASE_URL}/auth/v1/.well-known/jwks.json``. Both are accepted here; the token's header
picks the branch, but each branch only ever allows its own algorithms, so a token cannot talk
us into checking an HMAC against a public key (algorithm confusion) or into ``none``.

Tokens from another issuer are not ours: ``verify`` returns None and the next verifier in
``app.state.token_verifiers`` is asked. A token that *is* this project's but fails (expired,
bad signature, wrong audience) raises :class:`~app.auth.AuthError`, so the API answers 401
with a useful message.

The TAINA role comes from ``app_metadata.role`` (only the service role can write
``app_metadata``, users cannot change their own) or a ``user_role`` claim added by a custom
access-token hook; anything else is a citizen. Supabase's own ``role`` claim
("authenticated") is the Postgres role for RLS, not ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from app.auth import ROLES, AuthError, Principal, TokenExpired

log = logging.getLogger("taina.supabase_auth")

AUDIENCE = "authenticated"
HMAC_ALGORITHMS = ("HS256",)
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
DEFAULT_ROLE = "citizen"  # least privilege when a token carries no TAINA role


def jwks_url_for(supabase_url: str) -> str:
    return f"{supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json"


def issuer_for(supabase_url: str) -> str:
    return f"{supabase_url.rstrip('/')}/auth/v1"


def role_from_claims(claims: Mapping[str, Any]) -> str:
    app_meta = claims.get("app_metadata")
    candidates = [
        app_meta.get("role") if isinstance(app_meta, Mapping) else None,
        claims.get("user_role"),
    ]
    for role in candidates:
        if isinstance(role, str) and role in ROLES:
            return role
    return DEFAULT_ROLE


class SupabaseVerifier:
    """A :class:`~app.auth.TokenVerifier` for one Supabase project.

    ``verify`` is async: fetching the JWKS is network I/O, done by PyJWT's ``PyJWKClient`` in a
    worker thread. Keys are cached by ``kid``; an unknown ``kid`` (key rotation) triggers one
    refresh, at most every ``min_refresh_s`` so random ``kid`` values cannot make us hammer
    the project.
    """

    def __init__(
        self,
        supabase_url: str,
        *,
        jwt_secret: str | None = None,
        jwks_url: str | None = None,
        use_jwks: bool = True,
        audience: str = AUDIENCE,
        leeway_s: float = 30.0,
        min_refresh_s: float = 30.0,
        http_timeout_s: float = 5.0,
    ) -> None:
        self.issuer = issuer_for(supabase_url)
        self.audience = audience
        self._secret = jwt_secret or None
        self._leeway = leeway_s
        self._min_refresh_s = min_refresh_s
        self._jwks: PyJWKClient | None = None
        if use_jwks:
            self._jwks = PyJWKClient(
                jwks_url or jwks_url_for(supabase_url),
                cache_jwk_set=False,  # we keep our own cache keyed by kid
                timeout=http_timeout_s,
            )
        self._keys: dict[str, PyJWK] = {}
        self._last_refresh = float("-inf")
        self._refresh_lock = asyncio.Lock()

    # --- TokenVerifier --------------------------------------------------------------------------

    async def verify(self, token: str) -> Principal | None:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return None
        if unverified.get("iss") != self.issuer:
            return None  # not this project's token
        alg = header.get("alg")
        key: Any
        if alg in HMAC_ALGORITHMS and self._secret:
            key = self._secret
        elif alg in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            key = await self._key_for(header.get("kid"))
            if key is None:
                log.info("Supabase token signed with an unknown key (kid=%r)", header.get("kid"))
                raise AuthError()
        else:
            log.info("Supabase token with unsupported algorithm %r", alg)
            raise AuthError()
        return self._decode(token, key, alg)

    # --- keys -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch the JWKS once at startup so the first sign-in does not wait on it. A failure
        is logged, not raised: HS256 tokens work without it and a later token retries."""
        if self._jwks is None:
            return
        try:
            await self.refresh_keys()
        except Exception as exc:
            log.warning("could not fetch the Supabase JWKS yet: %s", exc)

    async def refresh_keys(self) -> None:
        assert self._jwks is not None
        jwks = self._jwks
        self._last_refresh = time.monotonic()
        key_set = await asyncio.to_thread(jwks.get_jwk_set, True)
        keys = {k.key_id: k for k in key_set.keys if k.key_id and k.public_key_use in (None, "sig")}
        self._keys = keys
        log.info("Supabase JWKS loaded: %d signing key(s)", len(keys))

    async def _key_for(self, kid: str | None) -> PyJWK | None:
        if not kid:
            return None
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._refresh_lock:
            key = self._keys.get(kid)  # another request may have refreshed meanwhile
            if key is None and time.monotonic() - self._last_refresh >= self._min_refresh_s:
                try:
                    await self.refresh_keys()
                except Exception as exc:
                    log.warning("Supabase JWKS refresh failed: %s", exc)
                key = self._keys.get(kid)
        return key

    # --- claims ---------------------------------------------------------------------------------

    def _decode(self, token: str, key: Any, alg: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],  # already restricted to the branch's own algorithms
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.InvalidTokenError as exc:
            log.info("rejected Supabase token: %s", exc)
            raise AuthError() from None
        if claims.get("is_anonymous") is True:
            raise AuthError()  # Supabase anonymous sign-ins are nobody we know
        email = claims.get("email")
        return Principal(
            user_id=str(claims["sub"]),
            email=email if isinstance(email, str) else "",
            role=role_from_claims(claims),
            source="supabase",
        )


def supabase_verifier_from_settings(settings: Any) -> SupabaseVerifier | None:
    """The verifier for the configured project, or None when ``SUPABASE_URL`` is unset."""
    url = getattr(settings, "supabase_url", None)
    if not url:
        return None
    return SupabaseVerifier(
        url,
        jwt_secret=getattr(settings, "supabase_jwt_secret", None),
        jwks_url=getattr(settings, "supabase_jwks_url", None),
    )
