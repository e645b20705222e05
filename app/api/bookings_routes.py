"""Appointments booked by phone (or by the web assistant), for staff."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Select, func, select

from app.api.deps import ApiRoute, ServicesDep, office_csv, office_tz
from app.auth import AgentUser, Principal
from app.personal_data import Redactor, mask_number
from app.services import Services
from app.storage.models import Booking, Office, Service, Slot

router = APIRouter(prefix="/bookings", tags=["bookings"], route_class=ApiRoute)


class BookingItem(BaseModel):
    code: str
    service: str  # service code, e.g. "pasaporte"
    service_name: str
    office: str  # office code, e.g. "SDC"
    office_name: str
    starts_at: datetime  # office local time, with offset
    citizen_name: str
    cedula: str  # masked except the last 4 digits unless the reader is an admin
    phone: str | None  # masked like the cédula (app/personal_data.py)
    status: str
    call_sid: str | None
    created_at: datetime


class BookingPage(BaseModel):
    items: list[BookingItem]
    total: int


def mask_cedula(cedula: str) -> str:
    """Agents identify a citizen by the last digits; the full number stays with admins."""
    return mask_number(cedula)


async def query_bookings(
    services: Services,
    principal: Principal,
    *,
    day: date | None = None,
    office: str | None = None,
    service: str | None = None,
    status: str | None = None,
    call_sid: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[BookingItem], int]:
    """One page of bookings plus the total under the same filters. With ``day`` the page is
    that day's agenda (by start time); otherwise the newest bookings come first."""
    tz = office_tz(services)
    stmt: Select[Any] = (
        select(Booking, Service, Office, Slot)
        .join(Service, Booking.service_id == Service.id)
        .join(Office, Booking.office_id == Office.id)
        .join(Slot, Booking.slot_id == Slot.id)
    )
    conditions: list[Any] = []
    if day is not None:
        start = datetime.combine(day, time(0), tzinfo=tz)
        conditions += [Slot.starts_at >= start, Slot.starts_at < start + timedelta(days=1)]
    if office:
        conditions.append(Office.code == office)
    if service:
        conditions.append(Service.code == service)
    if status:
        conditions.append(Booking.status == status)
    if call_sid:
        conditions.append(Booking.call_sid == call_sid)
    stmt = stmt.where(*conditions)
    if day is not None:
        stmt = stmt.order_by(Slot.starts_at, Booking.id)
    else:
        stmt = stmt.order_by(Booking.created_at.desc(), Booking.id.desc())
    count = (
        select(func.count(Booking.id))
        .join(Service, Booking.service_id == Service.id)
        .join(Office, Booking.office_id == Office.id)
        .join(Slot, Booking.slot_id == Slot.id)
        .where(*conditions)
    )
    async with services.db.session() as s:
        rows = (await s.execute(stmt.limit(limit).offset(offset))).all()
        total = int((await s.execute(count)).scalar_one())
    redact = Redactor.for_principal(principal)
    return [_item(*row, tz=tz, redact=redact) for row in rows], total


def _item(
    b: Booking, svc: Service, office: Office, slot: Slot, *, tz: tzinfo, redact: Redactor
) -> BookingItem:
    return BookingItem(
        code=b.code,
        service=svc.code,
        service_name=svc.name,
        office=office.code,
        office_name=office.name,
        starts_at=slot.starts_at.astimezone(tz),
        citizen_name=b.citizen_name,
        cedula=redact.number(b.cedula) or "",
        phone=redact.number(b.phone),
        status=b.status,
        call_sid=b.call_sid,
        created_at=b.created_at,
    )


class NamedCode(BaseModel):
    code: str
    name: str


class BookingOptions(BaseModel):
    offices: list[NamedCode]
    services: list[NamedCode]


@router.get(
    "/options",
    response_model=BookingOptions,
    summary="Oficinas y trámites con su nombre, para los filtros de la lista",
)
async def booking_options(services: ServicesDep, _: AgentUser) -> BookingOptions:
    """Staff pick an office or a service by name; the filters still send the code."""
    async with services.db.session() as s:
        offices = (await s.execute(select(Office.code, Office.name).order_by(Office.name))).all()
        kinds = (await s.execute(select(Service.code, Service.name).order_by(Service.name))).all()
    return BookingOptions(
        offices=[NamedCode(code=c, name=n) for c, n in offices],
        services=[NamedCode(code=c, name=n) for c, n in kinds],
    )


@router.get("", response_model=BookingPage, summary="Citas (filtros: día, oficina, trámite)")
async def list_bookings(
    services: ServicesDep,
    principal: AgentUser,
    date: Annotated[date | None, Query(description="Día de la cita (hora de la oficina)")] = None,
    office: Annotated[str | None, Query(max_length=32, description="Código de oficina")] = None,
    service: Annotated[str | None, Query(max_length=32, description="Código de trámite")] = None,
    status: Annotated[str | None, Query(pattern="^(confirmed|cancelled|rescheduled)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BookingPage:
    items, total = await query_bookings(
        services,
        principal,
        day=date,
        office=office,
        service=service,
        status=status,
        limit=limit,
        offset=offset,
    )
    return BookingPage(items=items, total=total)


EXPORT_HEADER = (
    "codigo",
    "fecha_hora",
    "tramite",
    "oficina",
    "nombre",
    "cedula",
    "telefono",
    "estado",
    "llamada",
    "creada",
)


@router.get(
    "/export.csv",
    summary="Citas en CSV, con los mismos filtros que la lista (cédula y teléfono enmascarados "
    "para agentes)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_bookings(
    services: ServicesDep,
    principal: AgentUser,
    date: Annotated[date | None, Query(description="Día de la cita (hora de la oficina)")] = None,
    office: Annotated[str | None, Query(max_length=32, description="Código de oficina")] = None,
    service: Annotated[str | None, Query(max_length=32, description="Código de trámite")] = None,
    status: Annotated[str | None, Query(pattern="^(confirmed|cancelled|rescheduled)$")] = None,
) -> StreamingResponse:
    """Streamed page by page (``export_max_rows`` at most); masking as in the list, since the
    rows come from the same ``query_bookings``."""
    filters: dict[str, Any] = {"day": date, "office": office, "service": service, "status": status}
    _, total = await query_bookings(services, principal, limit=1, **filters)

    async def page(offset: int, limit: int) -> list[tuple[Any, ...]]:
        items, _ = await query_bookings(services, principal, limit=limit, offset=offset, **filters)
        return [
            (
                b.code,
                b.starts_at,
                b.service_name,
                b.office_name,
                b.citizen_name,
                b.cedula,
                b.phone,
                b.status,
                b.call_sid,
                b.created_at,
            )
            for b in items
        ]

    return office_csv(services, "citas", EXPORT_HEADER, page, total=total)
