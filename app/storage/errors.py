"""Domain errors of the storage layer: callers branch on these, never on driver exceptions."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for errors the storage layer raises on purpose."""


class UnknownCall(StorageError, LookupError):
    def __init__(self, call_sid: str) -> None:
        super().__init__(f"no call with call_sid {call_sid!r}")
        self.call_sid = call_sid


class BookingError(StorageError):
    """Base for booking refusals a dialogue can explain to the caller."""


class UnknownService(BookingError, LookupError):
    def __init__(self, code: str) -> None:
        super().__init__(f"no service with code {code!r}")
        self.code = code


class UnknownOffice(BookingError, LookupError):
    def __init__(self, code: str) -> None:
        super().__init__(f"no office with code {code!r}")
        self.code = code


class SlotNotFound(BookingError, LookupError):
    def __init__(self, slot_id: int) -> None:
        super().__init__(f"no slot with id {slot_id}")
        self.slot_id = slot_id


class SlotUnavailable(BookingError):
    """The slot exists but cannot take this booking (past, or reserved for another service)."""


class SlotFull(BookingError):
    def __init__(self, slot_id: int) -> None:
        super().__init__(f"slot {slot_id} is fully booked")
        self.slot_id = slot_id


class DuplicateBooking(BookingError):
    """This cédula already holds a confirmed booking for the service."""

    def __init__(self, cedula: str, service_code: str, existing_code: str | None) -> None:
        super().__init__(
            f"cédula {cedula} already has confirmed booking {existing_code} for {service_code}"
        )
        self.cedula = cedula
        self.service_code = service_code
        self.existing_code = existing_code


class BookingNotFound(BookingError, LookupError):
    def __init__(self, ref: str | int) -> None:
        super().__init__(f"no booking {ref!r}")
        self.ref = ref


class BookingNotActive(BookingError):
    """The booking was cancelled; it cannot be moved."""

    def __init__(self, code: str, status: str) -> None:
        super().__init__(f"booking {code} is {status}")
        self.code = code
        self.status = status
