"""Bookings as staff use them: a day or week calendar per office with each slot's capacity,
and the actions on one booking (cancel, reschedule, mark attended or no-show).

Roles: agents and admins alike. Agents run the front desk and the phone, where citizens ask to
cancel or move an appointment and where attendance is known, so the actions are theirs; every
action is in the audit log under the staff member's e-mail. Cédulas are masked for agents as in
the booking list.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import select

from app.api.deps import ApiRoute, ServicesDep, office_tz
from app.auth import AgentUser, Principal
from app.personal_data import Redactor
from app.services import Services
from app.staff_bookings import ActionRefused, cancel, mark_attendance, reschedule
from app.storage.models import Booking, Office, Service, Slot
from app.storage.records import BookingInfo

router = APIRouter(tags=["calendar"], route_class=ApiRoute)


class OfficeOut(BaseModel):
    code: str
    name: str


class CalendarBooking(BaseModel):
    code: str
    service: str
    service_name: str
    citizen_name: str
    cedula: str  # masked for agents
    phone: str | None
    attendance: str | None  # attended | no_show | None
    call_sid: str | None


class CalendarSlot(BaseModel):
    id: int
    starts_at: datetime  # office local time, with offset
    capacity: int
    booked: int
    service: str | None  # None: any service
    past: bool
    bookings: list[CalendarBooking]


class CalendarDay(BaseModel):
    day: date
    capacity: int
    booked: int
    slots: list[CalendarSlot]


class CalendarOut(BaseModel):
    office: OfficeOut
    offices: list[OfficeOut]
    start: date
    days: list[CalendarDay]


class ActionOut(BaseModel):
    code: str
    status: str
    attendance: str | None
    starts_at: datetime
    office: str
    office_name: str
    slot_id: int


class RescheduleIn(BaseModel):
    slot_id: int


class AttendanceIn(BaseModel):
    attendance: Literal["attended", "no_show"] | None


@router.get(
    "/calendar",
    response_model=CalendarOut,
    summary="Calendario de una oficina: horarios con su capacidad y las citas de cada uno",
    responses={404: {"description": "Oficina desconocida"}},
)
async def calendar(
    services: ServicesDep,
    principal: AgentUser,
    office: Annotated[str | None, Query(max_length=32, description="Código de oficina")] = None,
    start: Annotated[date | None, Query(description="Primer día (hora de la oficina)")] = None,
    days: Annotated[int, Query(ge=1, le=14, description="1: un día; 7: una semana")] = 1,
) -> CalendarOut:
    tz = office_tz(services)
    now = datetime.now(tz)
    first = start or now.date()
    lower = datetime.combine(first, time(0), tzinfo=tz)
    upper = lower + timedelta(days=days)
    async with services.db.session() as s:
        offices = (await s.scalars(select(Office).order_by(Office.id))).all()
        if not offices:
            raise HTTPException(404, detail="No hay oficinas configuradas.")
        chosen = next((o for o in offices if o.code == office), None) if office else offices[0]
        if chosen is None:
            raise HTTPException(404, detail="No se encontró esa oficina.")
        slot_rows = (
            await s.execute(
                select(Slot, Service.code)
                .outerjoin(Service, Slot.service_id == Service.id)
                .where(Slot.office_id == chosen.id, Slot.starts_at >= lower, Slot.starts_at < upper)
                .order_by(Slot.starts_at, Slot.id)
            )
        ).all()
        slot_ids = [slot.id for slot, _ in slot_rows]
        booking_rows = (
            (
                await s.execute(
                    select(Booking, Service)
                    .join(Service, Booking.service_id == Service.id)
                    .where(Booking.slot_id.in_(slot_ids), Booking.status == "confirmed")
                    .order_by(Booking.id)
                )
            ).all()
            if slot_ids
            else []
        )
    redact = Redactor.for_principal(principal)
    by_slot: dict[int, list[CalendarBooking]] = defaultdict(list)
    for b, svc in booking_rows:
        by_slot[b.slot_id].append(
            CalendarBooking(
                code=b.code,
                service=svc.code,
                service_name=svc.name,
                citizen_name=b.citizen_name,
                cedula=redact.number(b.cedula) or "",
                phone=redact.number(b.phone),
                attendance=b.attendance,
                call_sid=b.call_sid,
            )
        )
    per_day: dict[date, list[CalendarSlot]] = defaultdict(list)
    for slot, svc_code in slot_rows:
        local = slot.starts_at.astimezone(tz)
        per_day[local.date()].append(
            CalendarSlot(
                id=slot.id,
                starts_at=local,
                capacity=slot.capacity,
                booked=slot.booked,
                service=svc_code,
                past=slot.starts_at <= now,
                bookings=by_slot.get(slot.id, []),
            )
        )
    out_days = []
    for i in range(days):
        day = first + timedelta(days=i)
        slots = per_day.get(day, [])
        out_days.append(
            CalendarDay(
                day=day,
                capacity=sum(x.capacity for x in slots),
                booked=sum(x.booked for x in slots),
                slots=slots,
            )
        )
    return CalendarOut(
        office=OfficeOut(code=chosen.code, name=chosen.name),
        offices=[OfficeOut(code=o.code, name=o.name) for o in offices],
        start=first,
        days=out_days,
    )


async def _attendance_of(services: Services, booking_id: int) -> str | None:
    async with services.db.session() as s:
        return await s.scalar(select(Booking.attendance).where(Booking.id == booking_id))


async def _out(services: Services, info: BookingInfo, attendance: Any = ...) -> ActionOut:
    if attendance is ...:
        attendance = await _attendance_of(services, info.id)
    return ActionOut(
        code=info.code,
        status=info.status,
        attendance=attendance,
        starts_at=info.starts_at.astimezone(office_tz(services)),
        office=info.office_code,
        office_name=info.office_name,
        slot_id=info.slot_id,
    )


@contextmanager
def _refusal_as_http() -> Iterator[None]:
    """A booking rule's refusal (Spanish message, its status) becomes the HTTP answer."""
    try:
        yield
    except ActionRefused as exc:
        raise HTTPException(exc.status, detail=exc.message) from None


_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "Cita u horario desconocido"},
    409: {"description": "La cita no admite ese cambio (mensaje en español en detail)"},
}


@router.post(
    "/bookings/{code}/cancel",
    response_model=ActionOut,
    summary="Cancelar una cita (libera el cupo; queda en la auditoría y se notifica)",
    responses=_ACTION_RESPONSES,
)
async def cancel_booking(code: str, services: ServicesDep, principal: AgentUser) -> ActionOut:
    with _refusal_as_http():
        info = await cancel(services.booking_service, code, _actor(principal))
    return await _out(services, info)


@router.post(
    "/bookings/{code}/reschedule",
    response_model=ActionOut,
    summary="Cambiar una cita de horario (mismo código; queda en la auditoría y se notifica)",
    responses=_ACTION_RESPONSES,
)
async def reschedule_booking(
    code: str, body: RescheduleIn, services: ServicesDep, principal: AgentUser
) -> ActionOut:
    with _refusal_as_http():
        info = await reschedule(services.booking_service, code, body.slot_id, _actor(principal))
    return await _out(services, info)


@router.post(
    "/bookings/{code}/attendance",
    response_model=ActionOut,
    summary="Marcar si la persona asistió (attended), no asistió (no_show) o quitar la marca",
    responses=_ACTION_RESPONSES,
)
async def booking_attendance(
    code: str, body: AttendanceIn, services: ServicesDep, principal: AgentUser
) -> ActionOut:
    with _refusal_as_http():
        info, value = await mark_attendance(
            services.booking_service, code, body.attendance, _actor(principal)
        )
    return await _out(services, info, value)


def _actor(principal: Principal) -> str:
    return principal.email
