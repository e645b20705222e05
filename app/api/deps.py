"""Shared dependencies and helpers of the admin API."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.csv_export import Page, csv_response
from app.services import Services
from app.storage import OFFICE_TZ


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def office_tz(services: Services) -> tzinfo:
    """The office's time zone: days in filters and charts are the office's days."""
    try:
        return ZoneInfo(services.settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return OFFICE_TZ


def office_csv(
    services: Services, stem: str, header: Sequence[str], page: Page, *, total: int
) -> StreamingResponse:
    """A streamed CSV export named ``<stem>-<today>.csv`` (the office's today), its times in
    office time, cut at ``export_max_rows``: one rule for every list's export."""
    tz = office_tz(services)
    today = datetime.now(tz).date().isoformat()
    return csv_response(
        f"{stem}-{today}.csv",
        header,
        page,
        total=total,
        max_rows=services.settings.export_max_rows,
        tz=tz,
    )


def aware(value: datetime | None, tz: tzinfo) -> datetime | None:
    """A time typed without a zone ("2025-03-01T08:00") means office time, not UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=tz)


def client_ip(request: Request) -> str:
    """The client's address as ``app.forwarded`` settled it (X-Forwarded-For is applied only
    from ``TAINA_TRUSTED_PROXIES``, so a client cannot pick its own key)."""
    return request.client.host if request.client else "unknown"


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One Spanish sentence naming the fields that failed validation."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return "El cuerpo de la solicitud no es JSON válido."
    fields: list[str] = []
    for error in errors:
        names = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        name = ".".join(names) or "cuerpo de la solicitud"
        if name not in fields:
            fields.append(name)
    return f"Datos no válidos en: {', '.join(fields)}."


MSG_UNREADABLE_BODY = "El cuerpo de la solicitud no es JSON válido."


def _bytes_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _json_safe(value: Any) -> Any:
    """What a client sent, echoed back as valid JSON: NaN / Infinity (which Python's JSON
    parser accepts) become text, lone surrogates (unencodable as UTF-8) become escapes."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class ApiRoute(APIRoute):
    """Answers validation errors with a Spanish ``detail`` string (the dashboard shows
    ``detail`` as is) and keeps Pydantic's list under ``errors`` for developers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except StarletteHTTPException as exc:
                # FastAPI's own English answer to a body it cannot decode (not UTF-8).
                if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
                    raise HTTPException(400, detail=MSG_UNREADABLE_BODY) from None
                raise
            except RequestValidationError as exc:
                # A body that is not JSON is echoed back as ``input``: bytes, maybe not UTF-8.
                errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: _bytes_text})
                errors = _json_safe(errors)
                return JSONResponse(
                    status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                    content={"detail": validation_message(errors), "errors": errors},
                )

        return route_handler
