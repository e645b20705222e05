"""TAINA's storage: one schema for SQLite (embedded default) and PostgreSQL/Supabase.

Typical wiring::

    db = Database(settings.effective_database_url)
    await db.migrate()
    calls = CallRepository(db)
    recorder = CallRecorder(calls)
    recorder.start()
    ...
    await recorder.stop()
    await db.dispose()
"""

from app.storage.bookings_repo import (
    OFFICE_TZ,
    BookingRepository,
    SlotSchedule,
    normalize_booking_code,
    normalize_cedula,
)
from app.storage.calls_repo import CallRepository
from app.storage.database import Database, alembic_config, is_unavailable
from app.storage.errors import (
    BookingError,
    BookingNotActive,
    BookingNotFound,
    DuplicateBooking,
    SlotFull,
    SlotNotFound,
    SlotUnavailable,
    StorageError,
    UnknownCall,
    UnknownOffice,
    UnknownService,
)
from app.storage.recorder import CallRecorder
from app.storage.records import (
    BookingInfo,
    CallDetail,
    CallSummary,
    OfficeInfo,
    OfficeSpec,
    ServiceInfo,
    ServiceSpec,
    SlotInfo,
    StreamEventRecord,
    TurnRecord,
)

__all__ = [
    "OFFICE_TZ",
    "BookingError",
    "BookingInfo",
    "BookingNotActive",
    "BookingNotFound",
    "BookingRepository",
    "CallDetail",
    "CallRecorder",
    "CallRepository",
    "CallSummary",
    "Database",
    "DuplicateBooking",
    "OfficeInfo",
    "OfficeSpec",
    "ServiceInfo",
    "ServiceSpec",
    "SlotFull",
    "SlotInfo",
    "SlotNotFound",
    "SlotSchedule",
    "SlotUnavailable",
    "StorageError",
    "StreamEventRecord",
    "TurnRecord",
    "UnknownCall",
    "UnknownOffice",
    "UnknownService",
    "alembic_config",
    "is_unavailable",
    "normalize_booking_code",
    "normalize_cedula",
]
