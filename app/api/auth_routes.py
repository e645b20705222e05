"""Sign-in with a local account, session renewal (refresh token), sign-out, and who am I.

Sign-in answers with a short-lived access token (the ``Authorization: Bearer`` of every API
call) and sets the refresh token as an httpOnly, SameSite=Strict cookie limited to
``/api/auth`` (see :mod:`app.refresh_tokens`): the dashboard trades it for a new access token
when the old one nears its end, so an active session never expires under its user.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Cookie, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from app import refresh_tokens
from app.api.deps import ApiRoute, ServicesDep, client_ip
from app.auth import (
    CurrentUser,
    Principal,
    check_password_policy,
    issue_token,
    needs_rehash,
    verify_password_async,
)
from app.login_guard import sign_in_guard
from app.refresh_tokens import COOKIE_NAME, COOKIE_PATH, RefreshRejected
from app.services import Services
from app.storage.models import User
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
    idle_timeout_s: int = Field(description="La sesión se cierra tras este tiempo sin uso")


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


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
async def login(
    body: LoginRequest, request: Request, response: Response, services: ServicesDep
) -> LoginResponse:
    settings = services.settings
    email = normalize_email(body.email)
    ip = client_ip(request)
    guard = sign_in_guard(request.app)
    guard.admit(ip, email)  # 429 before any query or hash (app/login_guard.py)
    user = await get_by_email(services.db, email)
    stored = user.password_hash if user is not None else None
    if not await verify_password_async(stored, body.password) or user is None:
        log.info("failed sign-in for %r from %s", email[:80], ip)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=MSG_BAD_CREDENTIALS)
    guard.succeeded(ip, email)
    if stored is not None and needs_rehash(stored):
        await set_password(services.db, email, body.password, end_sessions=False)
    raw, _ = await refresh_tokens.issue(
        services.db,
        user.id,
        idle_s=settings.admin_idle_timeout_s,
        max_s=settings.admin_session_max_s,
    )
    _set_cookie(response, request, raw, settings.admin_session_max_s)
    await audit(services.db, user.email, "auth.login", user.email, {"ip": client_ip(request)})
    return _login_response(services, user.id, user.email, user.role)


def _login_response(services: Services, user_id: int, email: str, role: str) -> LoginResponse:
    settings = services.settings
    principal = Principal(user_id=str(user_id), email=email, role=role, source="local")
    return LoginResponse(
        access_token=issue_token(principal, settings.signing_key, settings.admin_jwt_ttl_s),
        expires_in=settings.admin_jwt_ttl_s,
        role=role,
        email=email,
        idle_timeout_s=settings.admin_idle_timeout_s,
    )


def _set_cookie(response: Response, request: Request, raw: str, max_age: int) -> None:
    """httpOnly (page scripts never read it), SameSite=Strict (no cross-site request carries
    it), sent only to /api/auth; Secure whenever the page is served over HTTPS."""
    response.set_cookie(
        COOKIE_NAME,
        raw,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.post(
    "/refresh",
    response_model=LoginResponse,
    summary="Renovar la sesión con el token de renovación (cookie httpOnly)",
    responses={401: {"model": ErrorOut}},
)
async def refresh(
    request: Request,
    response: Response,
    services: ServicesDep,
    taina_refresh: Annotated[str | None, Cookie()] = None,
) -> LoginResponse:
    """Spend the cookie's refresh token for a new one and a new access token. A token that
    was already spent revokes its whole sign-in (it was copied)."""
    settings = services.settings
    try:
        renewal = await refresh_tokens.rotate(
            services.db, taina_refresh or "", idle_s=settings.admin_idle_timeout_s
        )
    except RefreshRejected as exc:
        _clear_cookie(response, request)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=exc.detail,
            headers={"set-cookie": response.headers.get("set-cookie", "")},
        ) from None
    async with services.db.session() as s:
        user = await s.scalar(select(User).where(User.id == renewal.user_id))
        email, role = (user.email, user.role) if user is not None else (None, None)
    if email is None or role is None or role == "citizen":
        await refresh_tokens.revoke_family(services.db, renewal.token)
        _clear_cookie(response, request)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=refresh_tokens.MSG_NO_SESSION)
    _set_cookie(response, request, renewal.token, settings.admin_session_max_s)
    # The role is read again: a changed role takes effect at the next renewal.
    return _login_response(services, renewal.user_id, email, role)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Cerrar la sesión: el token de renovación deja de servir",
)
async def logout(
    request: Request,
    services: ServicesDep,
    taina_refresh: Annotated[str | None, Cookie()] = None,
) -> Response:
    if taina_refresh:
        await refresh_tokens.revoke_family(services.db, taina_refresh)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_cookie(response, request)
    return response


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Cambiar la propia contraseña (cierra todas las sesiones de la cuenta)",
    responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
async def change_password(
    body: PasswordChange, request: Request, services: ServicesDep, principal: CurrentUser
) -> Response:
    if principal.source != "local":
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="Esta cuenta cambia su contraseña en su proveedor de identidad.",
        )
    user = await get_by_email(services.db, principal.email)
    stored = user.password_hash if user is not None else None
    if not await verify_password_async(stored, body.current_password) or user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=MSG_BAD_CREDENTIALS)
    problem = check_password_policy(body.new_password)
    if problem:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problem)
    await set_password(services.db, user.email, body.new_password, actor=user.email)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_cookie(response, request)
    return response


@router.get("/me", response_model=PrincipalOut, summary="Usuario de la sesión actual")
async def me(principal: CurrentUser) -> PrincipalOut:
    return PrincipalOut(
        user_id=principal.user_id,
        email=principal.email,
        role=principal.role,
        source=principal.source,
    )
