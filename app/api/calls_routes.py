"""Calls and their transcripts, for staff review."""

from __future__ import annotations

import time
import weakref
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.api.bookings_routes import BookingItem, query_bookings
from app.api.deps import ApiRoute, ServicesDep, aware, office_csv, office_tz
from app.auth import AgentUser, Principal
from app.personal_data import Redactor
from app.storage import CallSummary

router = APIRouter(prefix="/calls", tags=["calls"], route_class=ApiRoute)


class CallItem(BaseModel):
    call_sid: str
    ingress: str
    caller_number: str | None
    called_number: str | None
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    end_reason: str | None
    outcome: str | None
    turn_count: int
    greeting_ms: float | None
    # With a transcript search: the first matching line (accent-insensitive), shortened.
    match: dict[str, Any] | None = None


class CallPage(BaseModel):
    items: list[CallItem]
    total: int


class TurnItem(BaseModel):
    seq: int
    speaker: str  # "caller" | "bot"
    text: str  # bot: everything it meant to say
    heard_text: str | None  # bot: what the caller actually heard before interrupting
    interrupted: bool
    started_at: datetime | None
    ended_at: datetime | None
    timings: dict[str, float]  # stage → milliseconds (stt_ms, first_byte_ms, …)
    tools: list[dict[str, Any]]
    dtmf: str | None


class CallDetailOut(CallItem):
    answered_at: datetime | None
    stream_sid: str | None
    turns: list[TurnItem]
    bookings: list[BookingItem]
    recording_url: str | None = None  # recordings are off by default


def _item(c: CallSummary, redact: Redactor) -> dict[str, Any]:
    """A call's list fields; the caller's number masked unless ``redact`` shows it in full."""
    return {
        "call_sid": c.call_sid,
        "ingress": c.ingress,
        "caller_number": redact.number(c.caller_number),
        "called_number": c.called_number,
        "started_at": c.started_at,
        "ended_at": c.ended_at,
        "duration_s": c.duration_s,
        "end_reason": c.end_reason,
        "outcome": c.outcome,
        "turn_count": c.turn_count,
        "greeting_ms": c.greeting_ms,
    }


def _filters(
    services: ServicesDep,
    principal: Principal,
    since: datetime | None,
    until: datetime | None,
    outcome: str | None,
    ingress: str | None,
    phone: str | None,
    q: str | None,
) -> tuple[dict[str, Any], Redactor]:
    """The repository's filters for the list and its CSV export (one rule, so the export is
    always what the list shows), and the viewer's redactor; 422 for a search an agent may not
    make (part of a number)."""
    tz = office_tz(services)
    filters: dict[str, Any] = {
        "since": aware(since, tz),
        "until": aware(until, tz),
        "outcome": outcome or None,
        "ingress": ingress or None,
        "phone": phone or None,
        "text": q or None,
    }
    redact = Redactor.for_principal(principal)
    if refusal := redact.search_refusal(q, phone):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=refusal)
    return filters, redact


@router.get("", response_model=CallPage, summary="Llamadas, las más recientes primero")
async def list_calls(
    services: ServicesDep,
    principal: AgentUser,
    since: Annotated[
        datetime | None, Query(description="Desde (inclusive); sin zona = hora local")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Hasta (exclusivo); sin zona = hora local")
    ] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    ingress: Annotated[
        str | None, Query(max_length=32, description="twilio, web, livekit…")
    ] = None,
    phone: Annotated[
        str | None, Query(max_length=64, description="Número que llamó o fue llamado")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Texto dicho en la conversación")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CallPage:
    filters, redact = _filters(services, principal, since, until, outcome, ingress, phone, q)
    await close_abandoned(services)
    calls = await services.calls.list_calls(limit=limit, offset=offset, **filters)
    total = await services.calls.count_calls(**filters)
    items = [CallItem(**_item(c, redact)) for c in calls]
    if q and q.strip():
        view = None if redact.full else (lambda text: redact.text(text) or "")
        found = await services.calls.search_snippets([c.call_sid for c in calls], q, view)
        for item in items:
            hit = found.get(item.call_sid)
            if hit is not None:
                item.match = hit
    return CallPage(items=items, total=total)


async def close_abandoned(services: ServicesDep) -> None:
    """Calls open for longer than any call may last lost their process (issue 14: a crashed
    call stayed "En curso" forever): record them as ended before staff read the list."""
    now = time.monotonic()
    if now - _last_sweep.get(services.calls, float("-inf")) < SWEEP_EVERY_S:
        return  # a write per list request would contend with live calls' writes (SQLite)
    _last_sweep[services.calls] = now
    limit_s = float(getattr(services.settings, "max_call_seconds", 1800.0) or 1800.0)
    cutoff = datetime.now().astimezone() - timedelta(seconds=limit_s + 300)
    await services.calls.close_abandoned(cutoff)


SWEEP_EVERY_S = 30.0
# Per repository (one per app), so each server in a process keeps its own pace.
_last_sweep: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


EXPORT_HEADER = (
    "llamada",
    "canal",
    "numero_que_llamo",
    "numero_llamado",
    "inicio",
    "fin",
    "duracion_s",
    "motivo_fin",
    "resultado",
    "turnos",
)


# Declared before "/{call_sid}", which would otherwise take "export.csv" for a call id.
@router.get(
    "/export.csv",
    summary="Llamadas en CSV, con los filtros de la lista (números enmascarados para agentes)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_calls(
    services: ServicesDep,
    principal: AgentUser,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    ingress: Annotated[str | None, Query(max_length=32)] = None,
    phone: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    """The list's filters, every matching row (up to ``export_max_rows``), streamed."""
    filters, redact = _filters(services, principal, since, until, outcome, ingress, phone, q)
    await close_abandoned(services)  # as the list does: a crashed call is not "in progress"
    total = await services.calls.count_calls(**filters)

    async def page(offset: int, limit: int) -> list[tuple[Any, ...]]:
        calls = await services.calls.list_calls(limit=limit, offset=offset, **filters)
        return [
            (
                c.call_sid,
                c.ingress,
                redact.number(c.caller_number),
                c.called_number,
                c.started_at,
                c.ended_at,
                round(c.duration_s, 1) if c.duration_s is not None else None,
                c.end_reason,
                c.outcome,
                c.turn_count,
            )
            for c in calls
        ]

    return office_csv(services, "llamadas", EXPORT_HEADER, page, total=total)


@router.get(
    "/{call_sid}",
    response_model=CallDetailOut,
    summary="Una llamada con su transcripción y las citas que se hicieron en ella",
    responses={404: {"description": "Llamada desconocida"}},
)
async def get_call(call_sid: str, services: ServicesDep, principal: AgentUser) -> CallDetailOut:
    await close_abandoned(services)
    call = await services.calls.get_call(call_sid)
    if call is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No se encontró la llamada.")
    bookings, _ = await query_bookings(services, principal, call_sid=call_sid, limit=100)
    redact = Redactor.for_principal(principal)
    return CallDetailOut(
        **_item(call, redact),
        answered_at=call.answered_at,
        stream_sid=call.stream_sid,
        turns=[
            TurnItem(
                seq=t.seq,
                speaker=t.speaker,
                text=redact.text(t.text) or "",
                heard_text=redact.heard(t.heard_text, t.text),
                interrupted=t.interrupted,
                started_at=t.started_at,
                ended_at=t.ended_at,
                timings=dict(t.timings),
                tools=redact.data(list(t.tools)),
                dtmf=redact.dtmf(t.dtmf),
            )
            for t in call.turns
        ],
        bookings=bookings,
        recording_url=(
            f"/api/calls/{call.call_sid}/recording" if call.meta.get("recording") else None
        ),
    )


@router.get(
    "/{call_sid}/recording",
    summary="La grabación de una llamada (WAV estéreo: quien llama a la izquierda)",
    responses={404: {"description": "Sin grabación"}, 200: {"content": {"audio/wav": {}}}},
    response_class=Response,
)
async def get_recording(call_sid: str, services: ServicesDep, principal: AgentUser) -> Response:
    recordings = services.recordings
    audio = await recordings.fetch(call_sid) if recordings is not None else None
    if audio is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Esta llamada no tiene grabación.")
    return Response(content=audio, media_type="audio/wav")
