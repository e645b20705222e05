"""What staff do to a booking at the desk or on the phone: cancel it, move it, and mark whether
the citizen came.

Staff are not bound by the rules the assistant applies to callers (no same-day bookings, a
cut-off two hours before): an agent with the citizen in front of them may move an appointment
to later today. What still holds: only a confirmed booking changes, the new time must be in the
future with a free seat at an office that provides the service (the repository's conditional
update keeps the capacity check atomic), a past appointment is not cancelled (it is marked
attended or no-show instead), and attendance is marked from the appointment's day on.

Every action writes the audit log with the staff member's e-mail and, when
``TAINA_BOOKING_WEBHOOK_URL`` is set, is posted to the external system the same way the
assistant's own changes are (signed, idempotent, retried in the background).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import update

from app.booking import BookingService, booking_payload
from app.storage.errors import (
    BookingNotActive,
    BookingNotFound,
    SlotFull,
    SlotNotFound,
    SlotUnavailable,
)
from app.storage.models import AuditLog, Booking, utcnow
from app.storage.records import BookingInfo

log = logging.getLogger("taina.staff_bookings")

Attendance = Literal["attended", "no_show"]
ATTENDANCE_EVENTS = {
    "attended": "booking.attended",
    "no_show": "booking.no_show",
    None: "booking.attendance_cleared",
}


class ActionRefused(Exception):
    """The action cannot be done; ``message`` is for staff (Spanish), ``status`` for HTTP."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _notify(
    service: BookingService, event: str, info: BookingInfo, extra: dict[str, Any], key: str
) -> None:
    webhook = service.webhook
    if webhook is None:
        return
    idem = str(uuid.uuid5(uuid.NAMESPACE_URL, f"taina:{event}:{key}"))
    try:
        webhook.send(event, {**booking_payload(info), **extra}, idem)
    except Exception:  # the change is made; a notification problem must not undo it
        log.exception("could not schedule webhook %s for %s", event, info.code)


async def _active(service: BookingService, code: str) -> BookingInfo:
    info = await service.repo.get_by_code(code)
    if info is None:
        raise ActionRefused(404, "No se encontró esa cita.")
    if info.status != "confirmed":
        raise ActionRefused(409, "Esa cita ya no está activa (fue cancelada).")
    return info


async def cancel(service: BookingService, code: str, actor: str) -> BookingInfo:
    info = await _active(service, code)
    if info.starts_at <= service.now():
        raise ActionRefused(
            409,
            "Esta cita ya pasó: márquela como asistida o como no asistida en lugar de cancelarla.",
        )
    try:
        done = await service.repo.cancel(info.code, actor=actor)
    except BookingNotFound:
        raise ActionRefused(404, "No se encontró esa cita.") from None
    _notify(service, "booking.cancelled", done, {"actor": actor, "by": "staff"}, done.code)
    return done


async def reschedule(service: BookingService, code: str, slot_id: int, actor: str) -> BookingInfo:
    info = await _active(service, code)
    slot = await service.repo.get_slot(slot_id)
    if slot is None:
        raise ActionRefused(404, "Ese horario no existe.")
    if not service.catalog.offers(slot.office_code, info.service_code):
        raise ActionRefused(
            409, service.catalog.not_offered_sentence(slot.office_code, info.service_code)
        )
    if slot.starts_at <= service.now():
        raise ActionRefused(409, "Ese horario ya pasó. Elija uno futuro.")
    try:
        moved = await service.repo.reschedule(info.code, slot.id, actor=actor)
    except SlotFull:
        raise ActionRefused(409, "Ese horario está completo. Elija otro.") from None
    except BookingNotActive:
        raise ActionRefused(409, "Esa cita ya no está activa.") from None
    except (SlotNotFound, SlotUnavailable):
        raise ActionRefused(409, "Ese horario no está disponible para este trámite.") from None
    if moved.slot_id != info.slot_id:
        stamp = moved.updated_at.isoformat() if moved.updated_at else ""
        _notify(
            service,
            "booking.rescheduled",
            moved,
            {"actor": actor, "by": "staff", "from_starts_at": info.starts_at.isoformat()},
            f"{moved.code}:{slot.id}:{stamp}",
        )
    return moved


async def mark_attendance(
    service: BookingService, code: str, attendance: Attendance | None, actor: str
) -> tuple[BookingInfo, str | None]:
    """Set (or clear, with None) whether the citizen came; returns the booking and the value."""
    info = await _active(service, code)
    if attendance is not None and info.starts_at.date() > service.now().date():
        raise ActionRefused(409, "La asistencia se marca el día de la cita o después, no antes.")
    repo = service.repo
    async with repo.db.session(write=True) as s:
        changed = await s.execute(
            update(Booking)
            .where(Booking.id == info.id, Booking.status == "confirmed")
            .values(attendance=attendance, updated_at=utcnow())
        )
        if changed.rowcount != 1:
            raise ActionRefused(409, "Esa cita ya no está activa.")
        s.add(
            AuditLog(
                actor=actor,
                action=ATTENDANCE_EVENTS[attendance],
                target=info.code,
                details={"attendance": attendance, "slot_id": info.slot_id},
            )
        )
    fresh = await repo.get_by_code(info.code) or info
    stamp = fresh.updated_at.isoformat() if isinstance(fresh.updated_at, datetime) else ""
    _notify(
        service,
        ATTENDANCE_EVENTS[attendance],
        fresh,
        {"actor": actor, "by": "staff", "attendance": attendance},
        f"{fresh.code}:{attendance}:{stamp}",
    )
    return fresh, attendance
