"""Clear answers for failures of the server's own storage, instead of a bare 500.

A full disk (SQLite's "database or disk is full"), a database that went away or refuses to
write: the request was fine, the server cannot keep its data right now. The client gets 503
with ``Retry-After`` and a Spanish ``detail`` like every other API error, and the log gets one
line saying what happened (not a traceback per request, which would fill the disk faster).
"""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

log = logging.getLogger("taina.storage")

MSG_STORAGE_UNAVAILABLE = (
    "El servidor no puede guardar datos en este momento. Intente de nuevo en unos minutos."
)
RETRY_AFTER_S = 30


def storage_unavailable(request: Request, reason: str) -> JSONResponse:
    log.error("storage unavailable for %s %s: %s", request.method, request.url.path, reason)
    return JSONResponse(
        {"detail": MSG_STORAGE_UNAVAILABLE},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    return storage_unavailable(request, str(getattr(exc, "orig", exc))[:200])


async def _os_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return storage_unavailable(request, f"{exc.strerror} ({exc.filename or '-'})")
    raise exc  # any other OSError is a bug: let it be a logged 500


def install(app: FastAPI) -> None:
    """Register the handlers (only exceptions escaping a route reach them)."""
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(OSError, _os_error)
