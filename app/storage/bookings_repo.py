"""Offices, services, slots and bookings.

Double booking is impossible at the database level, not just in this code:

* a booking claims a seat with one conditional ``UPDATE slots SET booked = booked + 1
  WHERE id = :id AND booked < capacity`` whose row count says whether it won — the row lock
  (Postgres) or the write lock (SQLite) serializes concurrent claimers;
* ``CHECK (booked >= 0 AND booked <= capacity)`` refuses any write that would overfill a slot;
* a partial unique index keeps one confirmed booking per cédula and service.

Everything that moves seats (book, cancel, reschedule) happens in one transaction, so a
failure part-way leaves no seat claimed.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.storage._sql import upsert
from app.storage.calls_repo import phone_filter
from app.storage.database import Database
from app.storage.errors import (
    BookingNotActive,
    BookingNotFound,
    DuplicateBooking,
    SlotFull,
    SlotNotFound,
    SlotUnavailable,
    UnknownOffice,
    UnknownService,
)
from app.storage.models import AuditLog, Booking, Office, Service, Slot, utcnow
from app.storage.records import (
    BookingInfo,
    OfficeInfo,
    OfficeSpec,
    ServiceInfo,
    ServiceSpec,
    SlotInfo,
)

log = logging.getLogger(__name__)

try:
    OFFICE_TZ: tzinfo = ZoneInfo("America/Santo_Domingo")
except ZoneInfoNotFoundError:  # no tz database on the host: the DR has no DST, UTC-4 all year
    OFFICE_TZ = timezone(timedelta(hours=-4), "AST")

# No 0/O, 1/I/L: a confirmation code is read aloud and typed back by people.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_PREFIX = "TA-"
CODE_LENGTH = 5


def new_booking_code() -> str:
    return CODE_PREFIX + "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_booking_code(code: str) -> str:
    """Accept what people say or type: "ta 7k3p9", "7K3P9", "TA-7K3P9"."""
    compact = re.sub(r"[^0-9A-Za-z]", "", code).upper()
    if compact.startswith("TA") and len(compact) == len("TA") + CODE_LENGTH:
        compact = compact[2:]
    return CODE_PREFIX + compact


def normalize_cedula(cedula: str) -> str:
    """Store cédulas without separators, so "001-1234567-8" and "00112345678" are the same
    person for the uniqueness rule."""
    value = re.sub(r"[^0-9A-Za-z]", "", cedula).upper()
    if not value:
        raise ValueError("empty cédula")
    return value


@dataclass(frozen=True, slots=True)
class SlotSchedule:
    """When slots exist: first and last start time per weekday (0 = Monday), step, capacity."""

    weekday_hours: Mapping[int, tuple[time, time]]
    step_min: int = 30
    capacity: int = 2

    @classmethod
    def default(cls) -> SlotSchedule:
        """Mon–Fri 8:00–15:30, Sat 8:00–11:30, every 30 minutes, two people per slot."""
        weekdays = {d: (time(8, 0), time(15, 30)) for d in range(5)}
        return cls(weekday_hours={**weekdays, 5: (time(8, 0), time(11, 30))})

    def starts_on(self, day: date, tz: tzinfo) -> list[datetime]:
        hours = self.weekday_hours.get(day.weekday())
        if hours is None:
            return []
        first, last = hours
        current = datetime.combine(day, first, tzinfo=tz)
        end = datetime.combine(day, last, tzinfo=tz)
        out: list[datetime] = []
        while current <= end:
            out.append(current.astimezone(UTC))
            current += timedelta(minutes=self.step_min)
        return out


class BookingRepository:
    def __init__(
        self,
        db: Database,
        tz: tzinfo = OFFICE_TZ,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.tz = tz
        self.clock = clock

    # --- catalog ------------------------------------------------------------------------------

    async def seed_catalog(
        self,
        offices: Iterable[OfficeSpec | Mapping[str, Any]],
        services: Iterable[ServiceSpec | Mapping[str, Any]],
    ) -> None:
        """Insert or update offices and services by code; safe to run at every start."""
        office_rows = [_as_dict(o, OfficeSpec) for o in offices]
        service_rows = [_as_dict(s, ServiceSpec) for s in services]
        async with self.db.session(write=True) as s:
            for table, rows in ((Office, office_rows), (Service, service_rows)):
                if not rows:
                    continue
                for row in rows:
                    stmt = upsert(self.db, table).values(**row)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["code"],
                        set_={k: stmt.excluded[k] for k in row if k != "code"},
                    )
                    await s.execute(stmt)

    async def list_offices(self) -> list[OfficeInfo]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(Office).order_by(Office.id))).all()
        return [
            OfficeInfo(o.id, o.code, o.name, o.address, o.city, o.phone, dict(o.hours or {}))
            for o in rows
        ]

    async def list_services(self) -> list[ServiceInfo]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(Service).order_by(Service.id))).all()
        return [
            ServiceInfo(v.id, v.code, v.name, v.duration_min, v.fee_text, v.description)
            for v in rows
        ]

    async def ensure_slots(
        self,
        days_ahead: int = 14,
        start_date: date | None = None,
        schedule: SlotSchedule | None = None,
        office_codes: Iterable[str] | None = None,
        closed_days: Iterable[date] = (),
    ) -> int:
        """Create the missing "any service" slots from ``start_date`` (default: today, office
        time) for ``days_ahead`` days. Idempotent; returns how many slots were created."""
        schedule = schedule or SlotSchedule.default()
        start = start_date or self.clock().astimezone(self.tz).date()
        closed = set(closed_days)
        starts = [
            t
            for i in range(days_ahead)
            if (day := start + timedelta(days=i)) not in closed
            for t in schedule.starts_on(day, self.tz)
        ]
        if not starts:
            return 0
        created = 0
        async with self.db.session(write=True) as s:
            stmt_offices = select(Office.id)
            if office_codes is not None:
                codes = list(office_codes)
                stmt_offices = stmt_offices.where(Office.code.in_(codes))
            office_ids = list((await s.scalars(stmt_offices.order_by(Office.id))).all())
            for office_id in office_ids:
                existing = set(
                    (
                        await s.scalars(
                            select(Slot.starts_at).where(
                                Slot.office_id == office_id,
                                Slot.service_id.is_(None),
                                Slot.starts_at >= starts[0],
                                Slot.starts_at <= starts[-1],
                            )
                        )
                    ).all()
                )
                missing = [t for t in starts if t not in existing]
                if not missing:
                    continue
                rows = [
                    {
                        "office_id": office_id,
                        "service_id": None,
                        "starts_at": t,
                        "capacity": schedule.capacity,
                        "booked": 0,
                    }
                    for t in missing
                ]
                # DO NOTHING covers a concurrent generator in another process.
                await s.execute(upsert(self.db, Slot).on_conflict_do_nothing(), rows)
                created += len(missing)
        return created

    # --- availability -------------------------------------------------------------------------

    async def available_slots(
        self,
        service_code: str,
        office_code: str | None = None,
        day: date | None = None,
        after: datetime | None = None,
        limit: int = 10,
    ) -> list[SlotInfo]:
        """Free slots for a service, soonest first; ``day`` is a calendar day in office time."""
        now = self.clock()
        lower = max(after, now) if after is not None else now
        async with self.db.session() as s:
            service = await self._service(s, service_code)
            stmt = (
                select(Slot, Office, Service.code)
                .join(Office, Slot.office_id == Office.id)
                .outerjoin(Service, Slot.service_id == Service.id)
                .where(
                    or_(Slot.service_id.is_(None), Slot.service_id == service.id),
                    Slot.booked < Slot.capacity,
                    Slot.starts_at > lower,
                )
            )
            if office_code:
                office_id = await s.scalar(select(Office.id).where(Office.code == office_code))
                if office_id is None:
                    raise UnknownOffice(office_code)
                stmt = stmt.where(Slot.office_id == office_id)
            if day is not None:
                day_start = datetime.combine(day, time(0), tzinfo=self.tz)
                stmt = stmt.where(
                    Slot.starts_at >= day_start, Slot.starts_at < day_start + timedelta(days=1)
                )
            stmt = stmt.order_by(Slot.starts_at, Office.id, Slot.id).limit(limit)
            rows = (await s.execute(stmt)).all()
        return [self._slot_info(slot, office, svc_code) for slot, office, svc_code in rows]

    async def get_slot(self, slot_id: int) -> SlotInfo | None:
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(Slot, Office, Service.code)
                    .join(Office, Slot.office_id == Office.id)
                    .outerjoin(Service, Slot.service_id == Service.id)
                    .where(Slot.id == slot_id)
                )
            ).first()
        return None if row is None else self._slot_info(*row)

    # --- bookings -----------------------------------------------------------------------------

    async def book(
        self,
        slot_id: int,
        service_code: str,
        citizen_name: str,
        cedula: str,
        phone: str | None = None,
        call_sid: str | None = None,
        idempotency_key: str | None = None,
    ) -> BookingInfo:
        """Claim a seat in the slot and create a confirmed booking.

        Raises ``SlotFull``, ``SlotNotFound``, ``SlotUnavailable``, ``UnknownService`` or
        ``DuplicateBooking``. With an ``idempotency_key`` a retried request returns the
        booking the first attempt made instead of booking twice.
        """
        cedula = normalize_cedula(cedula)
        if idempotency_key and (existing := await self._by_idempotency_key(idempotency_key)):
            return existing
        for _attempt in range(5):
            code = new_booking_code()
            try:
                return await self._book_once(
                    code,
                    slot_id,
                    service_code,
                    citizen_name,
                    cedula,
                    phone,
                    call_sid,
                    idempotency_key,
                )
            except IntegrityError:
                # The transaction rolled back (seat released). Find out which rule fired.
                if idempotency_key and (
                    existing := await self._by_idempotency_key(idempotency_key)
                ):
                    return existing
                holder = await self._confirmed_code_for(cedula, service_code)
                if holder is not None:
                    raise DuplicateBooking(cedula, service_code, holder) from None
                if not await self._code_taken(code):
                    raise
                log.info("booking code %s already taken, drawing another", code)
        raise RuntimeError("could not draw a free booking code after 5 attempts")

    async def _book_once(
        self,
        code: str,
        slot_id: int,
        service_code: str,
        citizen_name: str,
        cedula: str,
        phone: str | None,
        call_sid: str | None,
        idempotency_key: str | None,
    ) -> BookingInfo:
        async with self.db.session(write=True) as s:
            service = await self._service(s, service_code)
            slot = await self._usable_slot(s, slot_id, service.id)
            holder = await s.scalar(
                select(Booking.code).where(
                    Booking.cedula == cedula,
                    Booking.service_id == service.id,
                    Booking.status == "confirmed",
                )
            )
            if holder is not None:
                raise DuplicateBooking(cedula, service_code, holder)
            await self._claim_seat(s, slot_id)
            now = utcnow()
            booking = Booking(
                code=code,
                slot_id=slot_id,
                service_id=service.id,
                office_id=slot.office_id,
                citizen_name=citizen_name.strip(),
                cedula=cedula,
                phone=phone,
                status="confirmed",
                created_at=now,
                updated_at=now,
                call_sid=call_sid,
                idempotency_key=idempotency_key,
            )
            s.add(booking)
            await s.flush()
            return await self._info(s, booking.id)

    async def cancel(self, code_or_id: str | int, actor: str | None = None) -> BookingInfo:
        """Cancel and free the seat. Cancelling an already cancelled booking is a no-op."""
        async with self.db.session(write=True) as s:
            booking = await self._booking(s, code_or_id)
            changed = await s.execute(
                update(Booking)
                .where(Booking.id == booking.id, Booking.status == "confirmed")
                .values(status="cancelled", updated_at=utcnow())
            )
            if changed.rowcount == 1:
                await s.execute(
                    update(Slot)
                    .where(Slot.id == booking.slot_id, Slot.booked > 0)
                    .values(booked=Slot.booked - 1)
                )
                s.add(
                    AuditLog(
                        actor=actor,
                        action="booking.cancelled",
                        target=booking.code,
                        details={"slot_id": booking.slot_id},
                    )
                )
            return await self._info(s, booking.id)

    async def reschedule(
        self, code: str, new_slot_id: int, actor: str | None = None
    ) -> BookingInfo:
        """Move a confirmed booking to another slot, keeping its code.

        One transaction: the new seat is claimed and the old one released together, or
        neither (``SlotFull`` leaves the booking where it was).
        """
        async with self.db.session(write=True) as s:
            booking = await self._booking(s, code)
            if booking.status != "confirmed":
                raise BookingNotActive(booking.code, booking.status)
            if booking.slot_id == new_slot_id:
                return await self._info(s, booking.id)
            await self._usable_slot(s, new_slot_id, booking.service_id)
            await self._claim_seat(s, new_slot_id)
            old_slot_id = booking.slot_id
            moved = await s.execute(
                update(Booking)
                .where(
                    Booking.id == booking.id,
                    Booking.status == "confirmed",
                    Booking.slot_id == old_slot_id,
                )
                .values(slot_id=new_slot_id, updated_at=utcnow())
            )
            if moved.rowcount != 1:
                # Someone cancelled or moved it between our read and write: undo everything.
                raise BookingNotActive(booking.code, "changed concurrently")
            await s.execute(
                update(Slot)
                .where(Slot.id == old_slot_id, Slot.booked > 0)
                .values(booked=Slot.booked - 1)
            )
            new_office_id = await s.scalar(select(Slot.office_id).where(Slot.id == new_slot_id))
            await s.execute(
                update(Booking).where(Booking.id == booking.id).values(office_id=new_office_id)
            )
            s.add(
                AuditLog(
                    actor=actor,
                    action="booking.rescheduled",
                    target=booking.code,
                    details={"from_slot_id": old_slot_id, "to_slot_id": new_slot_id},
                )
            )
            return await self._info(s, booking.id)

    async def get_by_code(self, code: str) -> BookingInfo | None:
        async with self.db.session() as s:
            booking_id = await s.scalar(
                select(Booking.id).where(Booking.code == normalize_booking_code(code))
            )
            return None if booking_id is None else await self._info(s, booking_id)

    async def find_by_phone(self, phone: str, active_only: bool = True) -> list[BookingInfo]:
        return await self._find(phone_filter(Booking.phone, phone), active_only)

    async def find_by_cedula(self, cedula: str, active_only: bool = True) -> list[BookingInfo]:
        return await self._find(Booking.cedula == normalize_cedula(cedula), active_only)

    async def list_bookings(
        self, limit: int = 100, offset: int = 0, status: str | None = None
    ) -> list[BookingInfo]:
        stmt = self._info_query()
        if status:
            stmt = stmt.where(Booking.status == status)
        stmt = stmt.order_by(Booking.created_at.desc(), Booking.id.desc()).limit(limit)
        async with self.db.session() as s:
            rows = (await s.execute(stmt.offset(offset))).all()
        return [self._to_info(*r) for r in rows]

    # --- internals ----------------------------------------------------------------------------

    async def _find(self, condition: Any, active_only: bool) -> list[BookingInfo]:
        stmt = self._info_query().where(condition)
        if active_only:
            stmt = stmt.where(Booking.status == "confirmed")
        async with self.db.session() as s:
            rows = (await s.execute(stmt.order_by(Slot.starts_at, Booking.id))).all()
        return [self._to_info(*r) for r in rows]

    async def _service(self, s: AsyncSession, code: str) -> Service:
        service = await s.scalar(select(Service).where(Service.code == code))
        if service is None:
            raise UnknownService(code)
        return service

    async def _usable_slot(self, s: AsyncSession, slot_id: int, service_id: int) -> Slot:
        slot = await s.get(Slot, slot_id)
        if slot is None:
            raise SlotNotFound(slot_id)
        if slot.service_id is not None and slot.service_id != service_id:
            raise SlotUnavailable(f"slot {slot_id} is reserved for another service")
        if slot.starts_at <= self.clock():
            raise SlotUnavailable(f"slot {slot_id} is in the past")
        return slot

    async def _claim_seat(self, s: AsyncSession, slot_id: int) -> None:
        claimed = await s.execute(
            update(Slot)
            .where(Slot.id == slot_id, Slot.booked < Slot.capacity)
            .values(booked=Slot.booked + 1)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            raise SlotFull(slot_id)

    async def _booking(self, s: AsyncSession, code_or_id: str | int) -> Booking:
        if isinstance(code_or_id, int):
            booking = await s.get(Booking, code_or_id)
        else:
            booking = await s.scalar(
                select(Booking).where(Booking.code == normalize_booking_code(code_or_id))
            )
        if booking is None:
            raise BookingNotFound(code_or_id)
        return booking

    async def _by_idempotency_key(self, key: str) -> BookingInfo | None:
        async with self.db.session() as s:
            booking_id = await s.scalar(select(Booking.id).where(Booking.idempotency_key == key))
            return None if booking_id is None else await self._info(s, booking_id)

    async def _code_taken(self, code: str) -> bool:
        async with self.db.session() as s:
            return await s.scalar(select(Booking.id).where(Booking.code == code)) is not None

    async def _confirmed_code_for(self, cedula: str, service_code: str) -> str | None:
        async with self.db.session() as s:
            return await s.scalar(
                select(Booking.code)
                .join(Service, Booking.service_id == Service.id)
                .where(
                    Booking.cedula == cedula,
                    Service.code == service_code,
                    Booking.status == "confirmed",
                )
            )

    def _info_query(self) -> Select[Any]:
        return (
            select(Booking, Service, Office, Slot)
            .join(Service, Booking.service_id == Service.id)
            .join(Office, Booking.office_id == Office.id)
            .join(Slot, Booking.slot_id == Slot.id)
        )

    async def _info(self, s: AsyncSession, booking_id: int) -> BookingInfo:
        # populate_existing: rows updated by Core UPDATEs in this transaction must be re-read.
        row = (
            await s.execute(
                self._info_query()
                .where(Booking.id == booking_id)
                .execution_options(populate_existing=True)
            )
        ).one()
        return self._to_info(*row)

    def _to_info(self, b: Booking, svc: Service, office: Office, slot: Slot) -> BookingInfo:
        return BookingInfo(
            id=b.id,
            code=b.code,
            status=b.status,
            citizen_name=b.citizen_name,
            cedula=b.cedula,
            phone=b.phone,
            service_code=svc.code,
            service_name=svc.name,
            office_code=office.code,
            office_name=office.name,
            office_address=office.address,
            slot_id=slot.id,
            starts_at=slot.starts_at.astimezone(self.tz),
            created_at=b.created_at,
            updated_at=b.updated_at,
            call_sid=b.call_sid,
            idempotency_key=b.idempotency_key,
        )

    def _slot_info(self, slot: Slot, office: Office, service_code: str | None) -> SlotInfo:
        return SlotInfo(
            id=slot.id,
            office_code=office.code,
            office_name=office.name,
            service_code=service_code,
            starts_at=slot.starts_at.astimezone(self.tz),
            capacity=slot.capacity,
            booked=slot.booked,
        )


def _as_dict(item: Any, spec: type) -> dict[str, Any]:
    if isinstance(item, Mapping):
        item = spec(**item)
    return {f: getattr(item, f) for f in spec.__dataclass_fields__}
