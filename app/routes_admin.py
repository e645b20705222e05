"""The admin dashboard: static files under ``/admin`` and the public config it boots from.

The dashboard is plain HTML, CSS and ES modules in ``web/admin`` (no build step), served from
the repository checkout the app runs from. Only files with a known extension inside that folder
are served, each with an explicit content type (browsers refuse ES modules served with a
generic one) and ``nosniff``; anything that resolves outside the folder, hidden files and
unknown types are 404, so the route cannot be used to read the rest of the checkout.

``/admin/config.json`` is public on purpose: it tells the sign-in page whether to use Supabase
Auth (the anon key is designed to be public) and which time zone the office keeps. Secrets
(JWT secret, service-role key) never appear there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse

from app.settings import Settings

ADMIN_DIR = Path(__file__).resolve().parent.parent / "web" / "admin"

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}

MSG_NOT_FOUND = "No se encontró el archivo."


def _origin(url: str | None) -> str:
    """``scheme://host[:port]`` of ``url``, or "" when it is not an http(s) URL."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


def _settings(request: Request) -> Settings | None:
    services = getattr(request.app.state, "services", None)
    return getattr(services, "settings", None)


def content_security_policy(supabase_url: str | None) -> str:
    """Scripts and styles from this origin only; the Supabase project (when configured) is the
    one other place the page may talk to (sign-in) or play audio from (stored recordings)."""
    extra = _origin(supabase_url)
    extra = f" {extra}" if extra else ""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"media-src 'self' blob:{extra}",
            f"connect-src 'self'{extra}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def resolve_asset(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names inside ``root``, or None when it must not be served."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    base = root.resolve()
    try:
        path = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    if path.suffix.lower() not in CONTENT_TYPES:
        return None
    return path


def _etag(path: Path) -> str:
    stat = path.stat()
    raw = f"{stat.st_mtime_ns}-{stat.st_size}".encode()
    return '"' + hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:20] + '"'


def make_router(root: Path = ADMIN_DIR) -> APIRouter:
    """A router serving the dashboard from ``root`` (tests may point it elsewhere)."""
    router = APIRouter(tags=["admin dashboard"], include_in_schema=False)

    def serve(request: Request, path: Path) -> Response:
        settings = _settings(request)
        headers = {
            "Cache-Control": "no-cache",  # revalidate: a deploy must reach open dashboards
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "ETag": _etag(path),
        }
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = content_security_policy(
                settings.supabase_url if settings else None
            )
            headers["X-Frame-Options"] = "DENY"
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
        return FileResponse(path, media_type=CONTENT_TYPES[path.suffix.lower()], headers=headers)

    @router.get("/admin", response_model=None)
    @router.get("/admin/", response_model=None)
    async def admin_index(request: Request) -> Response:
        # The page links its assets by absolute path, so both URLs work as is.
        index = resolve_asset(root, "index.html")
        if index is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MSG_NOT_FOUND)
        return serve(request, index)

    @router.get("/admin/config.json")
    async def admin_config(request: Request) -> JSONResponse:
        settings = _settings(request)
        supabase_url = settings.supabase_url if settings else None
        anon_key = settings.supabase_anon_key if settings else None
        body: dict[str, Any] = {
            # Supabase sign-in needs both; with only one of them the local form is used.
            "supabase_url": supabase_url if supabase_url and anon_key else None,
            "supabase_anon_key": anon_key if supabase_url and anon_key else None,
            "timezone": settings.timezone if settings else None,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @router.get("/web/config.json")
    async def visitor_config(request: Request) -> JSONResponse:
        """What the visitor page may try: with no LiveKit configured it goes straight to its
        own WebSocket instead of asking ``POST /api/livekit/token`` for a 404 every call."""
        from app.routes_livekit import livekit_configured

        settings = _settings(request)
        body = {"livekit": bool(settings and livekit_configured(settings))}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @router.get("/favicon.ico", response_model=None)
    async def favicon(request: Request) -> Response:
        """Browsers ask for it on every page that names no icon (Swagger's /docs)."""
        icon = resolve_asset(root, "favicon.svg")
        if icon is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MSG_NOT_FOUND)
        return serve(request, icon)

    @router.get("/admin/{asset:path}", response_model=None)
    async def admin_asset(asset: str, request: Request) -> Response:
        path = resolve_asset(root, asset)
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MSG_NOT_FOUND)
        return serve(request, path)

    return router


router = make_router()
