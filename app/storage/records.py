"""Plain data returned by the repositories.

Callers (CallSession, brain tools, admin API) get these instead of ORM objects, so nothing
outside a repository can trigger lazy loads on a closed session or hold a row across awaits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class TurnRecord:
    """One turn as the CallSession saw it. ``seq`` is assigned by the caller and makes the
    write idempotent: writing the same (call, seq) twice updates instead of duplicating."""

    seq: int
    speaker: str  # "caller" | "bot"
    text: str  # bot: the full intended text
    heard_text: str | None = None  # bot: what the caller actually heard; caller: same as text
    interrupted: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage → ms
    tools: list[dict[str, Any]] = field(default_factory=list)
    dtmf: str | None = None

    def __post_init__(self) -> None:
        if self.speaker not in ("caller", "bot"):
            raise ValueError(f"speaker must be 'caller' or 'bot', not {self.speaker!r}")
        if self.speaker == "caller" and self.heard_text is None:
            self.heard_text = self.text


@dataclass(slots=True)
class CallSummary:
    id: int
    call_sid: str
    ingress: str
    caller_number: str | None
    called_number: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    outcome: str | None
    greeting_ms: float | None
    turn_count: int = 0

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(slots=True)
class CallDetail(CallSummary):
    stream_sid: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    turns: list[TurnRecord] = field(default_factory=list)


@dataclass(slots=True)
class StreamEventRecord:
    id: int
    call_sid: str | None
    stream_sid: str | None
    event: str
    error: str | None
    received_at: datetime
    payload: dict[str, Any]


@dataclass(slots=True, frozen=True)
class OfficeSpec:
    """Catalog input for ``BookingRepository.seed_catalog``."""

    code: str
    name: str
    address: str = ""
    city: str = ""
    phone: str | None = None
    hours: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ServiceSpec:
    code: str
    name: str
    duration_min: int = 30
    fee_text: str | None = None
    description: str | None = None


@dataclass(slots=True, frozen=True)
class OfficeInfo:
    id: int
    code: str
    name: str
    address: str
    city: str
    phone: str | None
    hours: dict[str, Any]


@dataclass(slots=True, frozen=True)
class ServiceInfo:
    id: int
    code: str
    name: str
    duration_min: int
    fee_text: str | None
    description: str | None


@dataclass(slots=True, frozen=True)
class SlotInfo:
    """A bookable time. ``starts_at`` is aware, in the office's local time zone."""

    id: int
    office_code: str
    office_name: str
    service_code: str | None  # None: any service
    starts_at: datetime
    capacity: int
    booked: int

    @property
    def available(self) -> int:
        return self.capacity - self.booked


@dataclass(slots=True, frozen=True)
class BookingInfo:
    id: int
    code: str
    status: str  # confirmed | cancelled | rescheduled
    citizen_name: str
    cedula: str
    phone: str | None
    service_code: str
    service_name: str
    office_code: str
    office_name: str
    office_address: str
    slot_id: int
    starts_at: datetime  # aware, office local time
    created_at: datetime
    updated_at: datetime
    call_sid: str | None
    idempotency_key: str | None
