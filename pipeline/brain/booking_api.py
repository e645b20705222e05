"""What the brain's tools need from a booking system, and how it says no.

``app.booking.BookingService`` implements :class:`BookingBackend` over the database; tests can
use any object of the same shape. Keeping the contract here lets the tools (in ``pipeline``)
depend on an interface rather than on the app and its storage.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol

from pipeline.brain.catalog import Catalog

__all__ = ["BookingBackend", "BookingLike", "BookingRefused", "SlotLike"]


class BookingRefused(Exception):
    """A booking rule said no. ``message`` is a Spanish sentence a caller may hear; ``reason``
    is a stable code the dialogue branches on (``slot_full``, ``duplicate``, ``not_found``,
    ``not_offered``, ``too_soon``, ``too_late``, ``cutoff``, ``not_active``,
    ``unknown_service``, ``unknown_office``, ``invalid``)."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details


class SlotLike(Protocol):
    id: int
    office_code: str
    office_name: str
    starts_at: datetime  # aware, office time
    capacity: int
    booked: int


class BookingLike(Protocol):
    code: str
    status: str
    citizen_name: str
    cedula: str
    phone: str | None
    service_code: str
    service_name: str
    office_code: str
    office_name: str
    office_address: str
    slot_id: int
    starts_at: datetime  # aware, office time


class BookingBackend(Protocol):
    catalog: Catalog

    def now(self) -> datetime:
        """Aware "now" in office time (the clock everything agrees on)."""
        ...

    def booking_window(self) -> tuple[date, date]:
        """First and last day that can be booked today."""
        ...

    def is_open(self, office_code: str | None, day: date) -> bool:
        """Does the office (any office when None) give appointments that day?"""
        ...

    async def available(
        self,
        service: str,
        office: str | None = None,
        day: date | None = None,
        after: datetime | None = None,
        limit: int = 10,
    ) -> list[Any]:  # list[SlotLike]
        ...

    async def slot(self, slot_id: int) -> Any | None:  # SlotLike
        ...

    async def book(
        self,
        slot_id: int,
        service: str,
        citizen_name: str,
        cedula: str,
        phone: str | None = None,
        call_sid: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:  # BookingLike
        ...

    async def cancel(self, code: str, actor: str | None = None) -> Any: ...

    async def reschedule(self, code: str, slot_id: int, actor: str | None = None) -> Any: ...

    async def find(self, phone: str | None = None, cedula: str | None = None) -> list[Any]: ...

    async def get(self, code: str) -> Any | None: ...
