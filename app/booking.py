"""Appointments for the sample office: its catalog, the booking rules, and the optional
outbound webhook to an external booking system.

The catalog restates facts of ``knowledge_data/`` (oficinas.md, servicios.md, citas.md and
each service's document) as data, so that what the assistant says and what it books agree;
``tests/unit/test_booking.py`` checks the two against each other.

The brain's tools talk to :class:`BookingService`, which adds the office's rules on top of the
repository (which offices provide which service, no same-day appointments, 30 days ahead at
most, changes up to two hours before) and reports refusals as
:class:`~pipeline.brain.booking_api.BookingRefused` with a Spanish sentence.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

import httpx

from app.storage import (
    BookingInfo,
    BookingNotActive,
    BookingNotFound,
    BookingRepository,
    DuplicateBooking,
    OfficeSpec,
    ServiceSpec,
    SlotFull,
    SlotInfo,
    SlotNotFound,
    SlotSchedule,
    SlotUnavailable,
    UnknownOffice,
    UnknownService,
)
from pipeline.brain.booking_api import BookingRefused
from pipeline.brain.catalog import Catalog, CatalogOffice, CatalogService, join_es

log = logging.getLogger("taina.booking")

__all__ = [
    "CATALOG",
    "FIXED_HOLIDAYS",
    "SATURDAY_SCHEDULE",
    "WEEKDAY_SCHEDULE",
    "BookingService",
    "BookingWebhook",
    "booking_payload",
    "build_booking_service",
    "ensure_catalog",
    "keep_slots_fresh",
    "office_specs",
    "service_specs",
    "sign_body",
    "verify_signature",
]

# --------------------------------------------------------------------------------------------
# The catalog (sample data, consistent with knowledge_data/)
# --------------------------------------------------------------------------------------------

_WEEK = "08:00-16:00"
_SATURDAY = "08:00-12:00"

CATALOG = Catalog(
    services=(
        CatalogService(
            code="cedula",
            name="Cédula de identidad y electoral",
            spoken="cédula",
            aliases=(
                "cedula",
                "cedulas",
                "sedula",
                "cedula de identidad",
                "cedula de identidad y electoral",
                "documento de identidad",
                "carnet de identidad",
            ),
            duration_min=20,
            fee_text="Primera vez gratis; renovación RD$200 (RD$300 con más de un año vencida); "
            "duplicado o cambio de datos RD$300",
            description="Primera vez, renovación, duplicado y cambio de datos.",
        ),
        CatalogService(
            code="pasaporte",
            name="Pasaporte",
            spoken="pasaporte",
            aliases=("pasaporte", "pasaportes", "pasa porte"),
            duration_min=30,
            fee_text="RD$3,500 adultos; RD$2,500 menores de 18 años; urgente RD$2,000 adicionales",
            description="Primera vez, renovación, menores de edad y pasaporte perdido.",
            offices=("SDC", "STI"),
        ),
        CatalogService(
            code="licencia",
            name="Licencia de conducir",
            spoken="licencia de conducir",
            aliases=(
                "licencia",
                "licencias",
                "licencia de conducir",
                "licencia de manejar",
                "licencia de conduccion",
                "carnet de conducir",
                "brevete",
                "permiso de aprendizaje",
            ),
            duration_min=45,
            fee_text="Primera licencia RD$1,200 (categorías 1 y 2) o RD$1,800 (3 y 4); "
            "renovación RD$1,000 o RD$1,500; duplicado RD$800",
            description="Permiso de aprendizaje, primera licencia, renovación y duplicado.",
            offices=("SDE", "STI", "LRO"),
        ),
        CatalogService(
            code="actas",
            name="Actas del estado civil",
            spoken="actas del estado civil",
            aliases=(
                "acta",
                "actas",
                "acta de nacimiento",
                "actas de nacimiento",
                "partida de nacimiento",
                "acta de matrimonio",
                "acta de defuncion",
                "acta del estado civil",
                "actas del estado civil",
            ),
            duration_min=15,
            fee_text="RD$150 por acta; urgente RD$150 adicionales",
            description="Copias certificadas de actas de nacimiento, matrimonio y defunción.",
        ),
        CatalogService(
            code="no_antecedentes",
            name="Certificado de no antecedentes penales",
            spoken="certificado de no antecedentes penales",
            aliases=(
                "no antecedentes",
                "antecedentes",
                "antecedentes penales",
                "certificado de no antecedentes",
                "buena conducta",
                "papel de buena conducta",
                "record policial",
                "certificado de no delincuencia",
            ),
            duration_min=15,
            fee_text="RD$250",
            description="También llamado papel de buena conducta.",
        ),
        CatalogService(
            code="apostilla",
            name="Legalización y apostilla de documentos",
            spoken="legalización y apostilla",
            aliases=(
                "apostilla",
                "apostillas",
                "apostillar",
                "apostillado",
                "legalizacion",
                "legalizaciones",
                "legalizar",
            ),
            duration_min=20,
            fee_text="RD$800 por documento; urgente RD$500 adicionales",
            description="Documentos para usar en el extranjero.",
            offices=("SDC",),
        ),
    ),
    offices=(
        CatalogOffice(
            code="SDC",
            name="Punto Ciudadano Santo Domingo Centro",
            short="Santo Domingo Centro",
            aliases=(
                "santo domingo centro",
                "santo domingo",
                "centro",
                "distrito nacional",
                "distrito",
                "naco",
                "ensanche naco",
                "principal",
                "la capital",
                "sdc",
            ),
            address="Avenida 27 de Febrero número 415, Ensanche Naco, Santo Domingo, "
            "Distrito Nacional",
            city="Santo Domingo",
            phone="809-555-0100",
            saturday=True,
            hours={"lunes a viernes": _WEEK, "sábado": _SATURDAY},
        ),
        CatalogOffice(
            code="SDE",
            name="Punto Ciudadano Santo Domingo Este",
            short="Santo Domingo Este",
            aliases=(
                "santo domingo este",
                "santo domingo",
                "san vicente",
                "san vicente de paul",
                "plaza oriental",
                "zona oriental",
                "sde",
            ),
            address="Avenida San Vicente de Paúl número 120, plaza Oriental, segundo nivel, "
            "Santo Domingo Este",
            city="Santo Domingo Este",
            phone="809-555-0120",
            saturday=False,
            hours={"lunes a viernes": _WEEK},
        ),
        CatalogOffice(
            code="STI",
            name="Punto Ciudadano Santiago",
            short="Santiago",
            aliases=("santiago", "santiago de los caballeros", "stgo", "cibao", "sti"),
            address="Avenida Juan Pablo Duarte número 88, Los Jardines Metropolitanos, "
            "Santiago de los Caballeros",
            city="Santiago de los Caballeros",
            phone="809-555-0140",
            saturday=True,
            hours={"lunes a viernes": _WEEK, "sábado": _SATURDAY},
        ),
        CatalogOffice(
            code="LRO",
            name="Punto Ciudadano La Romana",
            short="La Romana",
            aliases=("la romana", "romana", "lro"),
            address="Calle Duarte número 45, frente al parque central, La Romana",
            city="La Romana",
            phone="809-555-0160",
            saturday=False,
            hours={"lunes a viernes": _WEEK},
        ),
    ),
)

# First appointment 8:00, last 15:30 on weekdays and 11:30 on Saturdays (oficinas.md,
# "Horario de las citas"); two people per half hour.
WEEKDAY_SCHEDULE = SlotSchedule(weekday_hours={d: (time(8, 0), time(15, 30)) for d in range(5)})
SATURDAY_SCHEDULE = SlotSchedule(weekday_hours={5: (time(8, 0), time(11, 30))})

# National holidays that never move to a Monday (Ley 139-97); the movable ones and Holy Week
# are left to the operator (``closed_days``).
FIXED_HOLIDAYS: frozenset[tuple[int, int]] = frozenset(
    {(1, 1), (1, 21), (2, 27), (8, 16), (9, 24), (12, 25)}
)


def office_specs(catalog: Catalog = CATALOG) -> list[OfficeSpec]:
    return [
        OfficeSpec(
            code=o.code,
            name=o.name,
            address=o.address,
            city=o.city,
            phone=o.phone,
            hours=dict(o.hours),
        )
        for o in catalog.offices
    ]


def service_specs(catalog: Catalog = CATALOG) -> list[ServiceSpec]:
    return [
        ServiceSpec(
            code=s.code,
            name=s.name,
            duration_min=s.duration_min,
            fee_text=s.fee_text,
            description=s.description,
        )
        for s in catalog.services
    ]


def _holidays(start: date, days: int) -> list[date]:
    return [
        d for i in range(days) if ((d := start + timedelta(days=i)).month, d.day) in FIXED_HOLIDAYS
    ]


async def ensure_catalog(
    repo: BookingRepository,
    settings: Any = None,
    *,
    catalog: Catalog = CATALOG,
    days_ahead: int | None = None,
    start_date: date | None = None,
    capacity: int = 2,
    closed_days: Iterable[date] = (),
) -> int:
    """Seed offices and services and create the slots of the booking window; idempotent, so
    it runs at every start (and daily, to extend the window). Returns the slots created."""
    await repo.seed_catalog(office_specs(catalog), service_specs(catalog))
    days = days_ahead or int(getattr(settings, "booking_days_ahead", 0) or 30)
    days += 1  # today + N days: the last bookable day is N days away
    start = start_date or repo.clock().astimezone(repo.tz).date()
    closed = [*_holidays(start, days), *closed_days]
    weekday = SlotSchedule(WEEKDAY_SCHEDULE.weekday_hours, capacity=capacity)
    saturday = SlotSchedule(SATURDAY_SCHEDULE.weekday_hours, capacity=capacity)
    created = await repo.ensure_slots(
        days, start, weekday, office_codes=[o.code for o in catalog.offices], closed_days=closed
    )
    saturday_offices = [o.code for o in catalog.offices if o.saturday]
    if saturday_offices:
        created += await repo.ensure_slots(
            days, start, saturday, office_codes=saturday_offices, closed_days=closed
        )
    return created


async def keep_slots_fresh(
    repo: BookingRepository,
    settings: Any = None,
    *,
    interval_s: float = 6 * 3600,
    catalog: Catalog = CATALOG,
) -> None:
    """Run forever (as a background task): extend the booking window as days go by. Errors
    are logged and retried at the next round; cancel the task to stop."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            created = await ensure_catalog(repo, settings, catalog=catalog)
            if created:
                log.info("booking window extended: %d new slots", created)
        except Exception:
            log.exception("could not extend the booking window")


# --------------------------------------------------------------------------------------------
# Outbound webhook
# --------------------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Taina-Signature"


def sign_body(secret: str | bytes, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``, the value of ``X-Taina-Signature``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute over the raw body and compare in constant time."""
    return bool(header) and hmac.compare_digest(sign_body(secret, body), header or "")


class BookingWebhook:
    """Tells an external booking system about every booking change, without ever making a
    caller wait: :meth:`send` schedules delivery in the background and returns at once.

    Each event is serialised once, so retries carry byte-identical bodies, the same signature
    and the same ``Idempotency-Key``; the receiver can drop duplicates. 5xx, 429, timeouts and
    connection errors are retried with exponential backoff (``Retry-After`` respected); other
    4xx answers are final.
    """

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self._secret = secret
        self._timeout = timeout_s
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._client = client
        self._own_client = client is None
        self._sleep = sleep
        self._tasks: set[asyncio.Task[bool]] = set()
        if not secret:
            log.warning("booking webhook %s has no secret: requests will not be signed", url)

    @classmethod
    def from_settings(cls, settings: Any) -> BookingWebhook | None:
        url = getattr(settings, "booking_webhook_url", None)
        if not url:
            return None
        return cls(url, getattr(settings, "booking_webhook_secret", None))

    @property
    def pending(self) -> int:
        return len(self._tasks)

    @staticmethod
    def encode(event: str, data: dict[str, Any], idempotency_key: str) -> bytes:
        payload = {
            "event": event,
            "id": idempotency_key,
            "sent_by": "taina",
            "data": data,
        }
        return json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str).encode()

    def send(self, event: str, data: dict[str, Any], idempotency_key: str) -> asyncio.Task[bool]:
        """Schedule delivery; the task's result says whether the receiver accepted it."""
        body = self.encode(event, data, idempotency_key)
        task = asyncio.create_task(
            self.deliver(body, event, idempotency_key), name=f"webhook-{event}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def deliver(self, body: bytes, event: str, idempotency_key: str) -> bool:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "TAINA-booking-webhook/1",
            "X-Taina-Event": event,
            "Idempotency-Key": idempotency_key,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign_body(self._secret, body)
        client = self._http()
        for attempt in range(1, self._max_attempts + 1):
            retry_after: float | None = None
            try:
                response = await client.post(
                    self.url,
                    content=body,
                    headers={**headers, "X-Taina-Attempt": str(attempt)},
                    timeout=self._timeout,
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                log.warning("webhook %s attempt %d failed: %r", event, attempt, exc)
            else:
                if response.is_success:
                    log.info("webhook %s delivered (%s)", event, idempotency_key)
                    return True
                if response.status_code < 500 and response.status_code != 429:
                    log.error(
                        "webhook %s refused with %d; not retrying", event, response.status_code
                    )
                    return False
                retry_after = _retry_after(response.headers.get("Retry-After"))
                log.warning("webhook %s attempt %d: HTTP %d", event, attempt, response.status_code)
            if attempt < self._max_attempts:
                await self._sleep(self._delay(attempt, retry_after))
        log.error("webhook %s gave up after %d attempts", event, self._max_attempts)
        return False

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_backoff)
        base = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
        return base * random.uniform(0.8, 1.2)  # jitter: many calls must not retry in step

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Give pending deliveries a moment to finish, then stop."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def booking_payload(info: BookingInfo) -> dict[str, Any]:
    return {
        "code": info.code,
        "status": info.status,
        "service": info.service_code,
        "service_name": info.service_name,
        "office": info.office_code,
        "office_name": info.office_name,
        "starts_at": info.starts_at.isoformat(),
        "citizen_name": info.citizen_name,
        "cedula": info.cedula,
        "phone": info.phone,
        "call_sid": info.call_sid,
        "slot_id": info.slot_id,
        "updated_at": info.updated_at.isoformat() if info.updated_at else None,
    }


# --------------------------------------------------------------------------------------------
# The rules the brain's tools go through
# --------------------------------------------------------------------------------------------


class BookingService:
    """The booking system as the tools see it (implements ``BookingBackend``)."""

    def __init__(
        self,
        repo: BookingRepository,
        catalog: Catalog = CATALOG,
        *,
        webhook: BookingWebhook | None = None,
        clock: Callable[[], datetime] | None = None,
        tz: tzinfo | None = None,
        min_days_ahead: int = 1,
        max_days_ahead: int = 30,
        change_cutoff: timedelta = timedelta(hours=2),
        closed_days: Iterable[date] = (),
    ) -> None:
        self.repo = repo
        self.catalog = catalog
        self.webhook = webhook
        self.tz = tz or repo.tz
        self._clock = clock or repo.clock
        self.min_days_ahead = min_days_ahead
        self.max_days_ahead = max_days_ahead
        self.change_cutoff = change_cutoff
        self._closed = set(closed_days)

    # --- time and calendar ------------------------------------------------------------------
    def now(self) -> datetime:
        return self._clock().astimezone(self.tz)

    def booking_window(self) -> tuple[date, date]:
        today = self.now().date()
        return (
            today + timedelta(days=self.min_days_ahead),
            today + timedelta(days=self.max_days_ahead),
        )

    def is_open(self, office_code: str | None, day: date) -> bool:
        if day in self._closed or (day.month, day.day) in FIXED_HOLIDAYS or day.weekday() == 6:
            return False
        if day.weekday() < 5:
            return True
        offices = [self.catalog.office(office_code)] if office_code else self.catalog.offices
        return any(o is not None and o.saturday for o in offices)

    # --- queries ----------------------------------------------------------------------------
    async def available(
        self,
        service: str,
        office: str | None = None,
        day: date | None = None,
        after: datetime | None = None,
        limit: int = 10,
    ) -> list[SlotInfo]:
        """Free slots, soonest first, inside the booking window, only at offices that
        provide the service."""
        svc = self._service(service)
        office_code = self._office(office).code if office else None
        if office_code:
            self._check_offered(office_code, svc)
        first, last = self.booking_window()
        if day is not None and not first <= day <= last:
            return []
        lower = datetime.combine(first, time(0), tzinfo=self.tz) - timedelta(seconds=1)
        if after is not None:
            lower = max(lower, after.astimezone(self.tz) - timedelta(seconds=1))
        allowed = {o.code for o in self.catalog.offices_for(svc.code)}
        fetch = limit if office_code or len(allowed) == len(self.catalog.offices) else limit * 4
        try:
            slots = await self.repo.available_slots(svc.code, office_code, day, lower, fetch)
        except UnknownService:
            raise self._unknown_service(service) from None
        except UnknownOffice:
            raise self._unknown_office(office or "") from None
        out = [s for s in slots if s.office_code in allowed and s.starts_at.date() <= last]
        return out[:limit]

    async def slot(self, slot_id: int) -> SlotInfo | None:
        return await self.repo.get_slot(int(slot_id))

    async def get(self, code: str) -> BookingInfo | None:
        return await self.repo.get_by_code(code)

    async def find(self, phone: str | None = None, cedula: str | None = None) -> list[BookingInfo]:
        """Upcoming confirmed appointments by cédula and/or phone number."""
        found: dict[str, BookingInfo] = {}
        if cedula:
            digits = re.sub(r"\D", "", cedula)
            if len(digits) != 11:
                raise BookingRefused("invalid", "La cédula tiene once dígitos.")
            for b in await self.repo.find_by_cedula(digits):
                found[b.code] = b
        if phone:
            for b in await self.repo.find_by_phone(phone):
                found.setdefault(b.code, b)
        now = self.now()
        return sorted((b for b in found.values() if b.starts_at > now), key=lambda b: b.starts_at)

    # --- changes ----------------------------------------------------------------------------
    async def book(
        self,
        slot_id: int,
        service: str,
        citizen_name: str,
        cedula: str,
        phone: str | None = None,
        call_sid: str | None = None,
        idempotency_key: str | None = None,
    ) -> BookingInfo:
        svc = self._service(service)
        name = " ".join(citizen_name.split())
        if not name:
            raise BookingRefused("invalid", "Necesito el nombre de la persona para la cita.")
        digits = re.sub(r"\D", "", cedula)
        if len(digits) != 11:
            raise BookingRefused("invalid", "El número de cédula debe tener once dígitos.")
        slot = await self._bookable_slot(slot_id, svc)
        try:
            info = await self.repo.book(
                slot.id, svc.code, name, digits, phone, call_sid, idempotency_key
            )
        except SlotFull:
            raise BookingRefused("slot_full", "Ese horario se acaba de ocupar.") from None
        except DuplicateBooking as exc:
            raise BookingRefused(
                "duplicate",
                f"Esa cédula ya tiene una cita activa de {svc.spoken}. Cada persona puede tener "
                "una sola cita por servicio.",
                existing_code=exc.existing_code,
            ) from None
        except (SlotNotFound, SlotUnavailable):
            raise BookingRefused("slot_unavailable", "Ese horario ya no está disponible.") from None
        self._notify("booking.created", info, info.code)
        return info

    async def cancel(self, code: str, actor: str | None = None) -> BookingInfo:
        info = await self._changeable(code)
        try:
            info = await self.repo.cancel(info.code, actor=actor)
        except BookingNotFound:
            raise self._not_found() from None
        self._notify("booking.cancelled", info, info.code)
        return info

    async def reschedule(self, code: str, slot_id: int, actor: str | None = None) -> BookingInfo:
        info = await self._changeable(code)
        svc = self._service(info.service_code)
        slot = await self._bookable_slot(slot_id, svc)
        try:
            moved = await self.repo.reschedule(info.code, slot.id, actor=actor)
        except SlotFull:
            raise BookingRefused("slot_full", "Ese horario se acaba de ocupar.") from None
        except BookingNotActive:
            raise BookingRefused("not_active", "Esa cita ya no está activa.") from None
        except (SlotNotFound, SlotUnavailable):
            raise BookingRefused("slot_unavailable", "Ese horario ya no está disponible.") from None
        if moved.slot_id != info.slot_id:
            stamp = moved.updated_at.isoformat() if moved.updated_at else ""
            self._notify("booking.rescheduled", moved, f"{moved.code}:{slot.id}:{stamp}")
        return moved

    async def aclose(self) -> None:
        if self.webhook is not None:
            await self.webhook.aclose()

    # --- internals ----------------------------------------------------------------------------
    def _service(self, code: str) -> CatalogService:
        svc = self.catalog.service(self.catalog.resolve_service(code))
        if svc is None:
            raise self._unknown_service(code)
        return svc

    def _office(self, code: str) -> CatalogOffice:
        office = self.catalog.office(self.catalog.resolve_office(code))
        if office is None:
            raise self._unknown_office(code)
        return office

    def _unknown_service(self, code: str) -> BookingRefused:
        names = join_es([s.spoken for s in self.catalog.services])
        return BookingRefused(
            "unknown_service", f"No ofrecemos ese servicio. Damos citas para {names}.", value=code
        )

    def _unknown_office(self, code: str) -> BookingRefused:
        names = join_es([o.short for o in self.catalog.offices])
        return BookingRefused(
            "unknown_office", f"No tenemos esa oficina. Tenemos oficinas en {names}.", value=code
        )

    @staticmethod
    def _not_found() -> BookingRefused:
        return BookingRefused("not_found", "No encontré ninguna cita con ese código.")

    def _check_offered(self, office_code: str, svc: CatalogService) -> None:
        if not self.catalog.offers(office_code, svc.code):
            raise BookingRefused(
                "not_offered",
                self.catalog.not_offered_sentence(office_code, svc.code),
                offices=[o.code for o in self.catalog.offices_for(svc.code)],
            )

    async def _bookable_slot(self, slot_id: int, svc: CatalogService) -> SlotInfo:
        slot = await self.repo.get_slot(int(slot_id))
        if slot is None:
            raise BookingRefused("slot_unavailable", "Ese horario no existe.")
        self._check_offered(slot.office_code, svc)
        first, last = self.booking_window()
        day = slot.starts_at.astimezone(self.tz).date()
        if day < first:
            raise BookingRefused(
                "too_soon", "No se dan citas para el mismo día; puede reservar desde mañana."
            )
        if day > last:
            raise BookingRefused(
                "too_late",
                f"Las citas se dan con un máximo de {self.max_days_ahead} días de anticipación.",
            )
        return slot

    async def _changeable(self, code: str) -> BookingInfo:
        info = await self.repo.get_by_code(code)
        if info is None:
            raise self._not_found()
        if info.status != "confirmed":
            raise BookingRefused("not_active", "Esa cita ya estaba cancelada.", code=info.code)
        if info.starts_at - self.now() < self.change_cutoff:
            hours = int(self.change_cutoff.total_seconds() // 3600)
            raise BookingRefused(
                "cutoff",
                f"Las citas se pueden cambiar o cancelar hasta {hours} horas antes, y para esta "
                "ya no queda tiempo.",
                code=info.code,
            )
        return info

    def _notify(self, event: str, info: BookingInfo, discriminator: str) -> None:
        if self.webhook is None:
            return
        key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"taina:{event}:{discriminator}"))
        try:
            self.webhook.send(event, booking_payload(info), key)
        except Exception:  # the booking is made; a notification problem must not undo it
            log.exception("could not schedule webhook %s for %s", event, info.code)


def build_booking_service(
    repo: BookingRepository,
    settings: Any = None,
    *,
    catalog: Catalog = CATALOG,
    clock: Callable[[], datetime] | None = None,
) -> BookingService:
    """The service with the settings' webhook and booking window."""
    return BookingService(
        repo,
        catalog,
        webhook=BookingWebhook.from_settings(settings) if settings is not None else None,
        clock=clock,
        max_days_ahead=int(getattr(settings, "booking_days_ahead", 0) or 30),
    )
