"""Supabase Auth access tokens: HS256 with the project secret, RS256/ES256 through the JWKS.

Tokens are minted here with the same claims Supabase Auth puts in them; the JWKS is served by
a local HTTP server, so PyJWT's ``PyJWKClient`` does a real HTTP fetch.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, HTTPException
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from app.auth import AuthError, LocalTokenVerifier, Principal, TokenExpired, authenticate
from app.settings import Settings
from app.supabase_auth import (
    SupabaseVerifier,
    issuer_for,
    jwks_url_for,
    role_from_claims,
    supabase_verifier_from_settings,
)

SUPABASE_URL = "https://abcdefghijkl.supabase.co"
SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
USER = str(uuid.uuid4())


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": issuer_for(SUPABASE_URL),
        "aud": "authenticated",
        "sub": USER,
        "email": "ana@example.do",
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
        "app_metadata": {"provider": "email", "providers": ["email"], "role": "admin"},
        "user_metadata": {},
        "is_anonymous": False,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


class JwksServer:
    """A Supabase ``/auth/v1/.well-known/jwks.json`` endpoint whose keys the test controls."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/auth/v1/.well-known/jwks.json":
                    self.send_error(404)
                    return
                outer.hits += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def publish(self, public_key: Any, kid: str, alg: str) -> None:
        algo = ECAlgorithm if alg == "ES256" else RSAAlgorithm
        jwk = json.loads(algo.to_jwk(public_key))
        jwk.update(kid=kid, alg=alg, use="sig")
        self.keys.append(jwk)


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def asymmetric(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signed(private_key: Any, alg: str, kid: str, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), private_key, algorithm=alg, headers={"kid": kid})


def verifier_for(server: JwksServer, **kw: Any) -> SupabaseVerifier:
    """Issuer of the fake project, keys from the local JWKS server."""
    return SupabaseVerifier(SUPABASE_URL, jwks_url=jwks_url_for(server.url), **kw)


# --- HS256 (legacy project secret) ------------------------------------------------------------


async def test_hs256_admin_token_becomes_a_supabase_principal() -> None:
    v = SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False)
    principal = await v.verify(hs256())
    assert principal == Principal(
        user_id=USER, email="ana@example.do", role="admin", source="supabase"
    )


@pytest.mark.parametrize(
    ("extra", "role"),
    [
        ({"app_metadata": {"role": "agent"}}, "agent"),
        ({"app_metadata": {}, "user_role": "admin"}, "admin"),  # custom access-token hook
        ({"app_metadata": {}}, "citizen"),
        ({"app_metadata": {"role": "superuser"}}, "citizen"),  # unknown roles grant nothing
        ({"app_metadata": None, "user_metadata": {"role": "admin"}}, "citizen"),  # user-editable
    ],
)
async def test_role_comes_from_app_metadata_or_user_role(extra: dict, role: str) -> None:
    v = SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False)
    principal = await v.verify(hs256(**extra))
    assert principal is not None and principal.role == role


def test_role_from_claims_ignores_the_postgres_role_claim() -> None:
    assert role_from_claims({"role": "service_role"}) == "citizen"


@pytest.mark.parametrize(
    "token_kw",
    [
        {"aud": "anon"},
        {"aud": None},
        {"sub": None},
        {"exp": None},
        {"is_anonymous": True},
    ],
)
async def test_own_tokens_with_bad_claims_are_refused(token_kw: dict) -> None:
    v = SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False)
    with pytest.raises(AuthError):
        await v.verify(hs256(**token_kw))


async def test_expired_token_says_so() -> None:
    v = SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False, leeway_s=0)
    with pytest.raises(TokenExpired):
        await v.verify(hs256(exp=int(time.time()) - 10))


async def test_wrong_secret_is_refused() -> None:
    v = SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False)
    forged = jwt.encode(claims(), "another-secret-another-secret-another-secret", "HS256")
    with pytest.raises(AuthError):
        await v.verify(forged)


async def test_other_issuers_and_garbage_are_not_ours() -> None:
    v = SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False)
    assert await v.verify(hs256(iss="https://other.supabase.co/auth/v1")) is None
    assert await v.verify("not-a-jwt") is None
    local = jwt.encode({"iss": "taina", "sub": "1"}, "k" * 32, "HS256")
    assert await v.verify(local) is None


async def test_alg_none_is_refused() -> None:
    v = SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False)
    unsigned = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(AuthError):
        await v.verify(unsigned)


async def test_hs256_without_a_configured_secret_is_refused(jwks: JwksServer) -> None:
    """Algorithm confusion: an HMAC signed with the (public) JWKS key must not pass."""
    key = asymmetric("RS256")
    jwks.publish(key.public_key(), "k1", "RS256")
    v = verifier_for(jwks)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    confused = _hmac_token(claims(), pem, kid="k1")
    with pytest.raises(AuthError):
        await v.verify(confused)


def _hmac_token(payload: dict[str, Any], key: bytes, kid: str) -> str:
    """PyJWT refuses to HMAC with a PEM key, so an attacker's token is assembled by hand."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(sig)}"


# --- asymmetric keys through the JWKS ---------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
async def test_jwks_signed_token_is_accepted(jwks: JwksServer, alg: str) -> None:
    key = asymmetric(alg)
    jwks.publish(key.public_key(), f"{alg}-1", alg)
    v = verifier_for(jwks)
    await v.start()
    assert jwks.hits == 1
    principal = await v.verify(signed(key, alg, f"{alg}-1", app_metadata={"role": "agent"}))
    assert principal is not None
    assert (principal.user_id, principal.role, principal.source) == (USER, "agent", "supabase")
    await v.verify(signed(key, alg, f"{alg}-1"))
    assert jwks.hits == 1  # keys are cached


async def test_signature_by_an_unpublished_key_is_refused(jwks: JwksServer) -> None:
    published, attacker = asymmetric("ES256"), asymmetric("ES256")
    jwks.publish(published.public_key(), "k1", "ES256")
    v = verifier_for(jwks)
    with pytest.raises(AuthError):
        await v.verify(signed(attacker, "ES256", "k1"))


async def test_key_rotation_fetches_the_new_key_once(jwks: JwksServer) -> None:
    old, new = asymmetric("ES256"), asymmetric("ES256")
    jwks.publish(old.public_key(), "old", "ES256")
    v = verifier_for(jwks, min_refresh_s=0)
    await v.start()
    jwks.publish(new.public_key(), "new", "ES256")  # the project rotates its signing key
    assert await v.verify(signed(new, "ES256", "new")) is not None
    assert jwks.hits == 2
    assert await v.verify(signed(old, "ES256", "old")) is not None  # still published
    assert jwks.hits == 2


async def test_unknown_kids_cannot_hammer_the_jwks_endpoint(jwks: JwksServer) -> None:
    key = asymmetric("ES256")
    jwks.publish(key.public_key(), "k1", "ES256")
    v = verifier_for(jwks, min_refresh_s=3600)
    await v.start()
    for i in range(5):
        with pytest.raises(AuthError):
            await v.verify(signed(key, "ES256", f"made-up-{i}"))
    assert jwks.hits == 1


async def test_jwks_down_at_start_is_not_fatal_and_recovers(jwks: JwksServer) -> None:
    key = asymmetric("ES256")
    v = SupabaseVerifier(SUPABASE_URL, jwks_url="http://127.0.0.1:9/nothing", min_refresh_s=0)
    await v.start()  # logs, does not raise
    with pytest.raises(AuthError):
        await v.verify(signed(key, "ES256", "k1"))
    jwks.publish(key.public_key(), "k1", "ES256")
    v2 = verifier_for(jwks, min_refresh_s=0)
    assert await v2.verify(signed(key, "ES256", "k1")) is not None  # fetched on demand


# --- in the app's verifier chain --------------------------------------------------------------


async def test_chain_local_first_then_supabase() -> None:
    app = FastAPI()
    local_key = b"local-signing-key-local-signing-key"
    app.state.token_verifiers = [
        LocalTokenVerifier(local_key),
        SupabaseVerifier(SUPABASE_URL, jwt_secret=SECRET, use_jwks=False),
    ]
    principal = await authenticate(app, hs256(app_metadata={"role": "agent"}))
    assert principal.source == "supabase" and principal.role == "agent"
    with pytest.raises(HTTPException) as refused:
        await authenticate(app, hs256(exp=int(time.time()) - 3600))
    assert refused.value.status_code == 401
    assert "expir" in str(refused.value.detail)
    with pytest.raises(HTTPException):
        await authenticate(app, hs256(iss="https://evil.example/auth/v1"))


def test_verifier_from_settings(tmp_path: Any) -> None:
    assert supabase_verifier_from_settings(Settings(data_dir=tmp_path)) is None
    v = supabase_verifier_from_settings(
        Settings(data_dir=tmp_path, supabase_url=SUPABASE_URL + "/", supabase_jwt_secret=SECRET)
    )
    assert isinstance(v, SupabaseVerifier)
    assert v.issuer == "https://abcdefghijkl.supabase.co/auth/v1"
