"""Sign-in with a local account, and who am I."""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from app.api.deps import ApiRoute, ServicesDep, client_ip
from app.auth import (
    CurrentUser,
    Principal,
    issue_token,
    login_limiter,
    needs_rehash,
    verify_password_async,
)
from app.users import audit, get_by_email, normalize_email, set_password

log = logging.getLogger("taina.api.auth")
router = APIRouter(prefix="/auth", tags=["auth"], route_class=ApiRoute)

MSG_BAD_CREDENTIALS = "Correo o contraseña incorrectos."


class LoginRequest(BaseModel):
    email: str = Field(max_length=320, examples=["admin@example.org"])
    password: str = Field(max_length=1024)


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Segundos de validez del token")
    role: str
    email: str


class PrincipalOut(BaseModel):
    user_id: str
    email: str
    role: str
    source: str


class ErrorOut(BaseModel):
    detail: str


@router.post(
    "/login",
    response_model=LoginResponse,
    summary="Iniciar sesión con una cuenta local",
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
async def login(body: LoginRequest, request: Request, services: ServicesDep) -> LoginResponse:
    settings = services.settings
    email = normalize_email(body.email)
    key = f"{client_ip(request)}|{email}"
    limiter = login_limiter(request.app)
    wait = limiter.attempt(key)
    if wait > 0:
        seconds = math.ceil(wait)
        log.warning("sign-in rate limited for %s from %s", email, client_ip(request))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=(
                f"Demasiados intentos de inicio de sesión. Intente de nuevo en {seconds} segundos."
            ),
            headers={"Retry-After": str(seconds)},
        )
    user = await get_by_email(services.db, email)
    stored = user.password_hash if user is not None else None
    if not await verify_password_async(stored, body.password) or user is None:
        log.info("failed sign-in for %s from %s", email, client_ip(request))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=MSG_BAD_CREDENTIALS)
    limiter.reset(key)
    if stored is not None and needs_rehash(stored):
        await set_password(services.db, email, body.password)
    principal = Principal(user_id=str(user.id), email=user.email, role=user.role, source="local")
    token = issue_token(principal, settings.signing_key, settings.admin_jwt_ttl_s)
    await audit(services.db, user.email, "auth.login", user.email, {"ip": client_ip(request)})
    return LoginResponse(
        access_token=token,
        expires_in=settings.admin_jwt_ttl_s,
        role=user.role,
        email=user.email,
    )


@router.get("/me", response_model=PrincipalOut, summary="Usuario de la sesión actual")
async def me(principal: CurrentUser) -> PrincipalOut:
    return PrincipalOut(
        user_id=principal.user_id,
        email=principal.email,
        role=principal.role,
        source=principal.source,
    )
