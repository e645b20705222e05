"""Local accounts: password hashing, admin tokens, the sign-in rate limit, roles, verifiers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import jwt
import pytest
from fastapi import FastAPI

from app.auth import (
    LEEWAY_S,
    AdminUser,
    AgentUser,
    AuthError,
    CurrentUser,
    LocalTokenVerifier,
    LoginRateLimiter,
    Principal,
    TokenExpired,
    check_password_policy,
    decode_token,
    has_role,
    hash_password,
    issue_token,
    needs_rehash,
    require_role,
    token_verifiers,
    verify_password,
    verify_password_async,
)
from app.knowledge_files import UploadRejected, validate_upload
from app.storage import Database
from app.users import (
    UserExists,
    audit,
    create_user,
    get_by_email,
    list_audit,
    list_users,
    set_password,
)

KEY = b"k" * 32
ADMIN = Principal(user_id="1", email="admin@example.org", role="admin")


# --- passwords --------------------------------------------------------------------------------


def test_password_hash_round_trip() -> None:
    stored = hash_password("clave-correcta")
    assert stored.startswith("$argon2id$")
    assert "clave-correcta" not in stored
    assert verify_password(stored, "clave-correcta")
    assert not verify_password(stored, "clave-incorrecta")
    assert not needs_rehash(stored)


def test_hashes_are_salted_and_bad_hashes_never_verify() -> None:
    assert hash_password("igual") != hash_password("igual")
    assert not verify_password("not-an-argon2-hash", "igual")
    assert needs_rehash("not-an-argon2-hash")


async def test_unknown_user_check_always_fails() -> None:
    assert await verify_password_async(None, "taina-no-such-user") is False
    assert await verify_password_async(hash_password("x" * 8), "x" * 8) is True


def test_password_policy() -> None:
    assert check_password_policy("corta") is not None
    assert check_password_policy(" " * 10) is not None
    assert check_password_policy("suficientemente-larga") is None


# --- tokens -----------------------------------------------------------------------------------


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def test_token_round_trip_carries_the_principal() -> None:
    token = issue_token(ADMIN, KEY, ttl_s=900, now=time.time())
    claims = _claims(token)
    assert claims["iss"] == "taina" and claims["sub"] == "1" and claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert decode_token(token, KEY) == ADMIN


def test_expired_token_is_rejected_as_expired() -> None:
    token = issue_token(ADMIN, KEY, ttl_s=900, now=time.time() - 900 - LEEWAY_S - 1)
    with pytest.raises(TokenExpired) as info:
        decode_token(token, KEY)
    assert "expiró" in info.value.detail
    fresh = issue_token(ADMIN, KEY, ttl_s=900, now=time.time() - 899)
    assert decode_token(fresh, KEY) == ADMIN


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_or_foreign_tokens_are_rejected() -> None:
    token = issue_token(Principal("2", "agente@example.org", "agent"), KEY, ttl_s=900)
    header, payload, signature = token.split(".")
    claims = _claims(token)
    promoted = f"{header}.{_b64({**claims, 'role': 'admin'})}.{signature}"
    with pytest.raises(AuthError):
        decode_token(promoted, KEY)
    with pytest.raises(AuthError):
        decode_token(token, b"x" * 32)  # another deployment's key
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    with pytest.raises(AuthError):
        decode_token(unsigned, KEY)
    other_audience = jwt.encode({**claims, "aud": "elsewhere"}, KEY, algorithm="HS256")
    with pytest.raises(AuthError):
        decode_token(other_audience, KEY)
    bad_role = jwt.encode({**claims, "role": "root"}, KEY, algorithm="HS256")
    with pytest.raises(AuthError):
        decode_token(bad_role, KEY)
    no_expiry = jwt.encode({k: v for k, v in claims.items() if k != "exp"}, KEY, "HS256")
    with pytest.raises(AuthError):
        decode_token(no_expiry, KEY)


def test_local_verifier_leaves_other_issuers_to_the_next_verifier() -> None:
    verifier = LocalTokenVerifier(lambda: KEY)
    assert verifier.verify(issue_token(ADMIN, KEY, ttl_s=60)) == ADMIN
    supabase_like = jwt.encode(
        {"iss": "https://x.supabase.co/auth/v1", "sub": "u", "exp": time.time() + 60},
        b"s" * 32,
        algorithm="HS256",
    )
    assert verifier.verify(supabase_like) is None
    assert verifier.verify("not a jwt") is None
    with pytest.raises(AuthError):  # ours, but forged
        verifier.verify(issue_token(ADMIN, b"f" * 32, ttl_s=60))


# --- rate limit -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_sliding_window() -> None:
    clock = Clock()
    limiter = LoginRateLimiter(3, 60.0, clock=clock)
    for _ in range(3):
        assert limiter.attempt("ip|a") == 0
        clock.now += 10  # attempts at 1000, 1010, 1020
    assert limiter.attempt("ip|a") == pytest.approx(1000 + 60 - 1030)
    assert limiter.attempt("ip|b") == 0  # another key is independent
    clock.now = 1060.5  # the first attempt left the window, the other two did not
    assert limiter.attempt("ip|a") == 0
    assert limiter.attempt("ip|a") > 0
    clock.now = 1200
    assert limiter.attempt("ip|a") == 0


def test_rate_limit_reset_and_refused_attempts_do_not_count() -> None:
    clock = Clock()
    limiter = LoginRateLimiter(2, 60.0, clock=clock)
    assert limiter.attempt("k") == 0 and limiter.attempt("k") == 0
    for _ in range(10):  # hammering while limited does not extend the lock-out
        assert limiter.attempt("k") > 0
    clock.now += 61
    assert limiter.attempt("k") == 0
    limiter.reset("k")  # a successful sign-in forgets earlier failures
    assert limiter.attempt("k") == 0 and limiter.attempt("k") == 0
    assert limiter.attempt("k") > 0


def test_rate_limit_memory_is_bounded() -> None:
    clock = Clock()
    limiter = LoginRateLimiter(5, 60.0, clock=clock, max_keys=100)
    for i in range(100):
        limiter.attempt(f"old{i}")
    clock.now += 120
    for i in range(50):
        limiter.attempt(f"new{i}")
    assert len(limiter._hits) <= 100


def test_rate_limit_zero_disables_it() -> None:
    limiter = LoginRateLimiter(0, 60.0)
    assert all(limiter.attempt("k") == 0 for _ in range(100))


# --- roles and the dependency chain -----------------------------------------------------------


def test_role_ranks() -> None:
    agent = Principal("2", "a@x.org", "agent")
    citizen = Principal("3", "c@x.org", "citizen")
    stranger = Principal("4", "s@x.org", "superuser")
    assert has_role(ADMIN, "admin") and has_role(ADMIN, "agent") and has_role(ADMIN, "citizen")
    assert has_role(agent, "agent") and not has_role(agent, "admin")
    assert has_role(citizen, "citizen") and not has_role(citizen, "agent")
    assert not has_role(stranger, "citizen")
    with pytest.raises(ValueError):
        require_role("owner")


def role_app() -> FastAPI:
    app = FastAPI()
    app.state.services = SimpleNamespace(settings=SimpleNamespace(signing_key=KEY))

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"email": user.email, "source": user.source}

    @app.get("/agent")
    async def agent_only(user: AgentUser) -> dict[str, str]:
        return {"role": user.role}

    @app.get("/admin")
    async def admin_only(user: AdminUser) -> dict[str, str]:
        return {"role": user.role}

    return app


@pytest.fixture
async def client() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = role_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield app, http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_role_checks(client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, http = client
    tokens = {
        role: issue_token(Principal("9", f"{role}@x.org", role), KEY, ttl_s=60)
        for role in ("citizen", "agent", "admin")
    }
    expected = {
        ("citizen", "/me"): 200,
        ("citizen", "/agent"): 403,
        ("citizen", "/admin"): 403,
        ("agent", "/me"): 200,
        ("agent", "/agent"): 200,
        ("agent", "/admin"): 403,
        ("admin", "/me"): 200,
        ("admin", "/agent"): 200,
        ("admin", "/admin"): 200,
    }
    for (role, path), code in expected.items():
        r = await http.get(path, headers=bearer(tokens[role]))
        assert r.status_code == code, (role, path, r.text)
    for path in ("/me", "/agent", "/admin"):
        r = await http.get(path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        assert (await http.get(path, headers={"Authorization": "Basic eDp5"})).status_code == 401
        assert (await http.get(path, headers=bearer("x" * 9000))).status_code == 401


class SupabaseLike:
    """What the Supabase verifier will look like: async, answers only for its tokens."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def verify(self, token: str) -> Principal | None:
        self.seen.append(token)
        await asyncio.sleep(0)
        if token == "sb-expired":
            raise TokenExpired()
        if token.startswith("sb-"):
            return Principal("uuid-1", "staff@x.org", token[3:], source="supabase")
        return None


class Broken:
    def verify(self, token: str) -> Principal | None:
        raise RuntimeError("provider down")


async def test_more_verifiers_plug_in_after_the_local_one(
    client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = client
    chain = token_verifiers(app)
    assert isinstance(chain[0], LocalTokenVerifier) and token_verifiers(app) is chain
    supabase = SupabaseLike()
    chain.extend([Broken(), supabase])

    r = await http.get("/admin", headers=bearer("sb-admin"))
    assert r.status_code == 200 and r.json() == {"role": "admin"}
    r = await http.get("/me", headers=bearer("sb-agent"))
    assert r.json() == {"email": "staff@x.org", "source": "supabase"}
    assert (await http.get("/admin", headers=bearer("sb-agent"))).status_code == 403
    r = await http.get("/me", headers=bearer("sb-expired"))
    assert r.status_code == 401 and "expiró" in r.json()["detail"]
    assert (await http.get("/me", headers=bearer("nobody"))).status_code == 401

    # A local token is settled by the local verifier; later verifiers never see it.
    local = issue_token(ADMIN, KEY, ttl_s=60)
    assert (await http.get("/admin", headers=bearer(local))).status_code == 200
    assert local not in supabase.seen


# --- accounts and audit -----------------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await database.migrate()
    yield database
    await database.dispose()


async def test_accounts(db: Database) -> None:
    user = await create_user(db, " Ana@Example.org ", "admin", "clave-segura", actor="cli")
    assert user.email == "ana@example.org" and user.role == "admin"
    assert "clave-segura" not in repr(user)
    with pytest.raises(UserExists):
        await create_user(db, "ANA@example.org", "agent", "otra-clave")
    with pytest.raises(ValueError):
        await create_user(db, "not-an-email", "agent", "clave-segura")
    with pytest.raises(ValueError):
        await create_user(db, "b@example.org", "root", "clave-segura")
    await create_user(db, "perfil@example.org", "citizen")  # e.g. a Supabase profile

    found = await get_by_email(db, "ANA@EXAMPLE.ORG")
    assert found is not None and found.password_hash is not None
    assert verify_password(found.password_hash, "clave-segura")
    await set_password(db, "ana@example.org", "nueva-clave", actor="cli")
    found = await get_by_email(db, "ana@example.org")
    assert found is not None and verify_password(found.password_hash or "", "nueva-clave")
    assert await get_by_email(db, "nadie@example.org") is None

    users = await list_users(db)
    assert [(u.email, u.role, u.password_hash is None) for u in users] == [
        ("ana@example.org", "admin", False),
        ("perfil@example.org", "citizen", True),
    ]
    await audit(db, "ana@example.org", "prompt.activated", "v3", {"from_version": 2})
    entries = await list_audit(db)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("ana@example.org", "prompt.activated", "v3"),
        ("cli", "user.password_set", "ana@example.org"),
        (None, "user.created", "perfil@example.org"),
        ("cli", "user.created", "ana@example.org"),
    ]
    assert entries[0].details == {"from_version": 2}


# --- knowledge uploads ------------------------------------------------------------------------


def test_upload_validation() -> None:
    doc = "# Título\n\nTexto del trámite.\n".encode()
    assert validate_upload("tramite_nuevo-2.md", doc, 1024).startswith("# Título")
    assert validate_upload("bom.md", b"\xef\xbb\xbf" + doc, 1024).startswith("# Título")
    # Accented names are the office's own words (issue 14): accepted, NFC-normalized.
    assert validate_upload("licencia_conducción.md", doc, 1024).startswith("# Título")
    assert validate_upload("n\u0303andu\u0301.md", doc, 1024).startswith("# Título")
    rejected = {
        "sub/dir.md": (doc, 422),
        "..md": (doc, 422),
        "con espacio.md": (doc, 422),
        "_oculto.md": (doc, 422),
        "a.md.exe": (doc, 422),
        "grande.md": (doc + b"x" * 1024, 413),
        "latin.md": ("# Título\n\nniño".encode("latin-1"), 415),
        "nul.md": (b"# T\n\nA\x00B", 415),
        "sin_titulo.md": (b"Solo texto.\n", 422),
        "titulo_vacio.md": (b"# Solo un titulo\n", 422),
    }
    for name, (data, code) in rejected.items():
        with pytest.raises(UploadRejected) as info:
            validate_upload(name, data, 1024)
        assert info.value.status_code == code, name
