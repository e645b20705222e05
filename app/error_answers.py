"""Clear answers for failures of the server's own storage, instead of a bare 500.

A full disk (SQLite's "database or disk is full"), a database that went away or refuses to
write: the request was fine, the server cannot keep its data right now. The client gets 503
with ``Retry-After`` and a Spanish ``detail`` like every other API error, and the log gets one
line saying what happened (not a traceback per request, which would fill the disk faster).

The other way round, a value the database cannot hold (PostgreSQL refuses a NUL character in
any text, SQLSTATE class 22 "data exception") is the client's input: 422, on every route,
however the value got to the query (a sign-in e-mail, a search, a path parameter).
"""

from __future__ import annotations

import errno
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

log = logging.getLogger("taina.storage")

MSG_UNSTORABLE = "Los datos enviados contienen caracteres o valores no admitidos."
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


def _sqlstate(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return ""


async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DataError) or _sqlstate(exc).startswith("22"):
        log.warning(
            "refused a value the database cannot hold on %s %s: %s",
            request.method,
            request.url.path,
            str(getattr(exc, "orig", exc)).splitlines()[0][:200],
        )
        return JSONResponse({"detail": MSG_UNSTORABLE}, status_code=422)
    raise exc  # any other database error is a bug: let it be a logged 500


async def _os_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return storage_unavailable(request, f"{exc.strerror} ({exc.filename or '-'})")
    raise exc  # any other OSError is a bug: let it be a logged 500


def install(app: FastAPI) -> None:
    """Register the handlers (only exceptions escaping a route reach them)."""
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(DBAPIError, _unstorable_value)
    app.add_exception_handler(OSError, _os_error)
