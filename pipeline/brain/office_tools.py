"""The brain's tools for the office: knowledge search and appointments.

One implementation serves both brains: the LLM sees ``TOOL_SCHEMAS`` and gets these results
as JSON; the offline dialogue engine calls :meth:`OfficeTools.call` directly. Results are
plain JSON with Spanish sentences ready to be spoken (``spoken``, ``confirmation``,
``notice``, ``error``), so a brain never has to format a date or spell a code itself.
Every call is bounded by a timeout and never raises: failures come back as
``{"error": "<Spanish sentence>"}``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

from pipeline.brain.base import CallContext
from pipeline.brain.booking_api import BookingBackend, BookingRefused
from pipeline.brain.catalog import Catalog
from pipeline.brain.spanish_dates import speak_date, speak_datetime, speak_time
from pipeline.brain.spoken import speak_code
from pipeline.brain.tools import (
    BOOK_APPOINTMENT,
    CANCEL_APPOINTMENT,
    CHECK_AVAILABILITY,
    END_CALL,
    FIND_MY_APPOINTMENTS,
    RESCHEDULE_APPOINTMENT,
    SEARCH_KNOWLEDGE,
    TRANSFER_TO_HUMAN,
)

log = logging.getLogger("taina.tools")

__all__ = ["KnowledgeSearch", "OfficeTools"]

GENERIC_ERROR = "Tuve un problema consultando el sistema. ¿Me permite intentarlo de nuevo?"
TIMEOUT_ERROR = "El sistema está tardando en responder. ¿Me permite intentarlo de nuevo?"
NO_BOOKINGS = "El sistema de citas no está disponible en este momento."
NO_KNOWLEDGE = "La información de la oficina no está disponible en este momento."


class KnowledgeSearch(Protocol):
    """What ``knowledge.KnowledgeBase`` offers; hits have text, source, heading and score."""

    async def asearch(self, query: str, k: int = 3) -> list[Any]: ...


Speaker = Callable[[Any, str], str]


def _default_speakable(hit: Any, query: str) -> str:
    from knowledge.speech import phone_answer

    return phone_answer(hit, query=query)


# Passages looked at to tell variants apart ("primera vez", "renovación", "menores"); the
# caller still gets ``k`` of them.
VARIANT_POOL = 8


def _default_citation(hit: Any) -> str:
    return f"{hit.source} — {hit.heading}" if getattr(hit, "heading", "") else str(hit.source)


class OfficeTools:
    """``Tools`` for one office. ``knowledge`` and ``bookings`` are optional so that a
    deployment without one still answers what it can."""

    def __init__(
        self,
        knowledge: KnowledgeSearch | None,
        bookings: BookingBackend | None,
        *,
        timeout_s: float = 5.0,
        search_k: int = 3,
        speakable: Speaker | None = None,
    ) -> None:
        self.knowledge = knowledge
        self.bookings = bookings
        self.timeout_s = timeout_s
        self.search_k = search_k
        self._speakable = speakable or _default_speakable
        self._outline_cache: tuple[str, Any] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any], CallContext], Awaitable[dict]]] = {
            SEARCH_KNOWLEDGE: self._search_knowledge,
            CHECK_AVAILABILITY: self._check_availability,
            BOOK_APPOINTMENT: self._book,
            CANCEL_APPOINTMENT: self._cancel,
            RESCHEDULE_APPOINTMENT: self._reschedule,
            FIND_MY_APPOINTMENTS: self._find,
            TRANSFER_TO_HUMAN: self._ok,
            END_CALL: self._ok,
        }

    @property
    def catalog(self) -> Catalog | None:
        return self.bookings.catalog if self.bookings is not None else None

    def now(self) -> datetime | None:
        return self.bookings.now() if self.bookings is not None else None

    async def call(self, name: str, arguments: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        handler = self._handlers.get(name)
        if handler is None:
            return {"error": f"No conozco la herramienta {name}."}
        args = arguments if isinstance(arguments, dict) else {}
        try:
            return await asyncio.wait_for(handler(args, ctx), self.timeout_s)
        except BookingRefused as exc:
            return {"error": exc.message, "reason": exc.reason, **_jsonable(exc.details)}
        except TimeoutError:
            log.warning("tool %s timed out after %.1f s", name, self.timeout_s)
            return {"error": TIMEOUT_ERROR, "reason": "timeout"}
        except _BadArgument as exc:
            return {"error": str(exc), "reason": "invalid"}
        except Exception:
            log.exception("tool %s failed", name)
            return {"error": GENERIC_ERROR, "reason": "internal"}

    # --- knowledge ------------------------------------------------------------------------
    async def _search_knowledge(self, args: dict[str, Any], _ctx: CallContext) -> dict[str, Any]:
        query = str(args.get("query") or "").strip()
        if not query:
            raise _BadArgument("¿Qué desea saber?")
        if self.knowledge is None:
            return {"error": NO_KNOWLEDGE, "reason": "unavailable"}
        k = _int(args.get("k"), self.search_k, 1, 10) or self.search_k
        hits = await self.knowledge.asearch(query, max(k, VARIANT_POOL))
        return self._knowledge_result(query, hits, k)

    def _knowledge_result(self, query: str, hits: list[Any], k: int) -> dict[str, Any]:
        """Hits with the passage that answers first, its phone answer, or a question back.

        ``clarify`` is present only when the question leaves open a variant that changes the
        answer ("¿qué necesito para el pasaporte?"); ``answer`` is then that question, so a
        brain that only reads ``answer`` still asks it. Searching again with the chosen option
        appended to the query lands on that variant.
        """
        from knowledge.variants import choose, facet_by_name

        correct = getattr(self.knowledge, "correct", None)
        heard = correct(query) if callable(correct) else query
        choice = choose(heard, hits, self._outline(hits)) if hits else None
        ordered = list(hits)
        if choice is not None and choice.source is not None:  # asking back: its document first
            ordered.sort(key=lambda h: h.source != choice.source)
        if choice is not None and choice.section is not None:
            section = choice.section
            same = [h for h in hits if (h.source, h.heading) == (section.source, section.heading)]
            first = same[0] if same else section
            ordered = [first, *(h for h in hits if h is not first)]
        ordered = ordered[:k]
        rows = [
            {
                "text": hit.text,
                "source": hit.source,
                "heading": hit.heading,
                "score": round(float(getattr(hit, "score", 0.0)), 4),
                "citation": _default_citation(hit),
            }
            for hit in ordered
        ]
        result: dict[str, Any] = {"query": query, "hits": rows}
        if choice is not None and choice.clarify is not None:
            result["answer"] = choice.clarify.question
            result["clarify"] = choice.clarify.as_json()
        else:
            # The facet's own words point the answer at the sentence that states it.
            hint = facet_by_name(choice.facet).hint if choice and choice.facet else ""
            answer = self._speakable(ordered[0], f"{heard} {hint}".strip()) if ordered else None
            result["answer"] = answer or None
            if choice is not None and choice.variant:
                result["variant"] = choice.variant
        if choice is not None and choice.facet:
            result["facet"] = choice.facet
        result["source"] = rows[0]["source"] if rows else None
        result["heading"] = rows[0]["heading"] if rows else None
        return result

    def _outline(self, hits: list[Any]) -> Any:
        """The knowledge base's structure (variants, facets), rebuilt when it is reindexed;
        from the hits alone for a knowledge source that cannot list its sections."""
        from knowledge.variants import Outline, Section

        info = getattr(self.knowledge, "info", None)
        nodes = getattr(self.knowledge, "nodes", None)
        key = getattr(info, "fingerprint", None)
        if nodes is None or key is None:
            return Outline(Section(h.source, h.heading, h.text) for h in hits)
        if self._outline_cache is None or self._outline_cache[0] != key:
            self._outline_cache = (key, Outline.from_nodes(nodes))
        return self._outline_cache[1]

    # --- appointments ---------------------------------------------------------------------
    def _backend(self) -> BookingBackend:
        if self.bookings is None:
            raise BookingRefused("unavailable", NO_BOOKINGS)
        return self.bookings

    async def _check_availability(self, args: dict[str, Any], _ctx: CallContext) -> dict:
        b = self._backend()
        service = _required(args, "service", "¿Para qué trámite es la cita?")
        office = _optional_str(args.get("office"))
        day = _parse_date(args.get("date"))
        after_t = _parse_time(args.get("after_time"))
        limit = _int(args.get("limit"), 10, 1, 50)
        today = b.now().date()
        first, last = b.booking_window()

        after: datetime | None = None
        if day is not None and after_t is not None:
            after = datetime.combine(day, after_t, tzinfo=b.now().tzinfo)
        slots = await b.available(service, office, day, after, limit)
        status = "open"
        notice: str | None = None
        alternatives: list[Any] = []
        if day is not None and not slots:
            if day < first:
                status = "too_soon"
                notice = (
                    "Esa fecha ya pasó."
                    if day < today
                    else "No se dan citas para el mismo día; puede reservar desde mañana."
                )
            elif day > last:
                status = "too_late"
                notice = (
                    f"Las citas se dan con un máximo de {(last - today).days} días de anticipación."
                )
            elif not b.is_open(office, day):
                status = "closed"
                notice = _closed_notice(day, office, b)
            elif after_t is not None:
                status = "full_after"
                notice = f"Para {speak_date(day, today)} no me quedan horarios desde esa hora."
            else:
                status = "full"
                notice = f"Para {speak_date(day, today)} ya no quedan horarios disponibles."
            if status != "too_late":
                start = first if status == "too_soon" else max(day + timedelta(days=1), first)
                from_dt = datetime.combine(start, time(0), tzinfo=b.now().tzinfo)
                alternatives = await b.available(service, office, None, from_dt, 3)
        rows = [_slot_row(s, today) for s in slots]
        alt_rows = [_slot_row(s, today) for s in alternatives]
        return {
            "service": b.catalog.resolve_service(service) or service,
            "office": (b.catalog.resolve_office(office) or office) if office else None,
            "date": day.isoformat() if day else None,
            "day_status": status,
            "slots": rows,
            "notice": notice,
            "alternatives": alt_rows,
            "spoken": _spoken_offer(rows or alt_rows, notice),
        }

    async def _book(self, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        b = self._backend()
        slot_id = _int(args.get("slot_id"), None, 1, None)
        if slot_id is None:
            raise _BadArgument("Necesito elegir primero un horario disponible.")
        service = _required(args, "service", "¿Para qué trámite es la cita?")
        name = _required(args, "citizen_name", "¿A nombre de quién hago la cita?")
        cedula = _required(args, "cedula", "¿Me dice su número de cédula?")
        phone = _optional_str(args.get("phone")) or ctx.caller_number
        digits = re.sub(r"\D", "", cedula)
        key = f"{ctx.call_id}:{slot_id}:{digits}:{service}"
        try:
            info = await b.book(slot_id, service, name, cedula, phone, ctx.call_id, key)
        except BookingRefused as exc:
            if exc.reason != "slot_full":
                raise
            # Offer what is still free around that time: the caller should not have to ask.
            alternatives = await self._near_slot(b, service, slot_id)
            return {
                "error": exc.message,
                "reason": exc.reason,
                "alternatives": alternatives,
                "spoken": _spoken_offer(alternatives, exc.message),
            }
        return {"ok": True, **_booking_row(info, b.now().date()), "confirmation": _confirm(info, b)}

    async def _cancel(self, args: dict[str, Any], _ctx: CallContext) -> dict[str, Any]:
        b = self._backend()
        code = _required(args, "code", "¿Me dice el código de su cita?")
        info = await b.cancel(code, actor="assistant")
        today = b.now().date()
        when = speak_datetime(info.starts_at, today)
        return {
            "ok": True,
            **_booking_row(info, today),
            "confirmation": f"Listo, su cita de {_service_spoken(b, info)} {_of(when)} quedó "
            "cancelada.",
        }

    async def _reschedule(self, args: dict[str, Any], _ctx: CallContext) -> dict[str, Any]:
        b = self._backend()
        code = _required(args, "code", "¿Me dice el código de su cita?")
        slot_id = _int(args.get("slot_id"), None, 1, None)
        if slot_id is None:
            raise _BadArgument("Necesito elegir primero el nuevo horario.")
        info = await b.reschedule(code, slot_id, actor="assistant")
        today = b.now().date()
        when = speak_datetime(info.starts_at, today)
        return {
            "ok": True,
            **_booking_row(info, today),
            "confirmation": f"Listo, su cita quedó cambiada para {when} en {info.office_name}. "
            f"Su código sigue siendo el mismo: {speak_code(info.code)}.",
        }

    async def _find(self, args: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        b = self._backend()
        cedula = _optional_str(args.get("cedula"))
        phone = _optional_str(args.get("phone"))
        code = _optional_str(args.get("code"))  # not in the LLM schema; the offline brain uses it
        today = b.now().date()
        if code:
            info = await b.get(code)
            found = (
                [info]
                if info is not None and info.status == "confirmed" and info.starts_at > b.now()
                else []
            )
        else:
            if not cedula and not phone:
                phone = ctx.caller_number
            if not cedula and not phone:
                raise _BadArgument("¿Me dice su número de cédula para buscar sus citas?")
            found = await b.find(phone=phone, cedula=cedula)
        rows = [_booking_row(info, today) for info in found]
        if not rows:
            spoken = "No encontré citas activas."
        else:
            parts = [
                f"una cita de {_service_spoken(b, info)} {speak_datetime(info.starts_at, today)} "
                f"en {info.office_name}, con el código {speak_code(info.code)}"
                for info in found
            ]
            many = "Tiene " + ("; y ".join(parts) if len(parts) > 1 else parts[0]) + "."
            spoken = many
        searched_by = "code" if code else "cedula" if cedula else "phone"
        return {"appointments": rows, "searched_by": searched_by, "spoken": spoken}

    async def _near_slot(
        self, b: BookingBackend, service: str, slot_id: int
    ) -> list[dict[str, Any]]:
        """Free slots closest to a slot that just filled up: same office, same day first."""
        try:
            today = b.now().date()
            slot = await b.slot(slot_id)
            if slot is None:
                return [
                    _slot_row(s, today) for s in await b.available(service, None, None, None, 3)
                ]
            same_day = await b.available(service, slot.office_code, slot.starts_at.date(), None, 50)
            near = sorted(
                same_day, key=lambda s: abs((s.starts_at - slot.starts_at).total_seconds())
            )
            if not near:
                after = datetime.combine(
                    slot.starts_at.date() + timedelta(days=1), time(0), tzinfo=slot.starts_at.tzinfo
                )
                near = await b.available(service, slot.office_code, None, after, 3)
            return [_slot_row(s, today) for s in sorted(near[:3], key=lambda s: s.starts_at)]
        except Exception:
            log.exception("could not look up alternatives")
            return []

    @staticmethod
    async def _ok(_args: dict[str, Any], _ctx: CallContext) -> dict[str, Any]:
        return {"ok": True}


# --- helpers ----------------------------------------------------------------------------------


class _BadArgument(ValueError):
    """An argument is missing or malformed; the message is a Spanish question."""


def _required(args: dict[str, Any], key: str, question: str) -> str:
    value = _optional_str(args.get(key))
    if not value:
        raise _BadArgument(question)
    return value


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any, default: int | None, lo: int, hi: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    number = max(lo, number)
    return min(hi, number) if hi is not None else number


def _parse_date(value: Any) -> date | None:
    text = _optional_str(value)
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise _BadArgument("No entendí la fecha. ¿Qué día le conviene?") from None


def _parse_time(value: Any) -> time | None:
    text = _optional_str(value)
    if not text:
        return None
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?(?::\d{2})?", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59:
        raise _BadArgument("No entendí la hora. ¿A qué hora le conviene?")
    return time(int(m.group(1)), int(m.group(2) or 0))


def _slot_row(slot: Any, today: date) -> dict[str, Any]:
    local = slot.starts_at
    return {
        "slot_id": slot.id,
        "office": slot.office_code,
        "office_name": slot.office_name,
        "starts_at": local.isoformat(),
        "date": local.date().isoformat(),
        "time": local.strftime("%H:%M"),
        "free": slot.capacity - slot.booked,
        "spoken": speak_datetime(local, today),
        "spoken_time": speak_time(local.time()),
    }


def _booking_row(info: Any, today: date) -> dict[str, Any]:
    return {
        "code": info.code,
        "code_spoken": speak_code(info.code),
        "status": info.status,
        "service": info.service_code,
        "service_name": info.service_name,
        "office": info.office_code,
        "office_name": info.office_name,
        "office_address": info.office_address,
        "starts_at": info.starts_at.isoformat(),
        "spoken_datetime": speak_datetime(info.starts_at, today),
        "citizen_name": info.citizen_name,
    }


def _of(phrase: str) -> str:
    """ "de" + "el lunes 23…" is "del lunes 23…"."""
    return "del " + phrase[3:] if phrase.startswith("el ") else "de " + phrase


def _service_spoken(b: BookingBackend, info: Any) -> str:
    svc = b.catalog.service(info.service_code)
    return svc.spoken if svc is not None else info.service_name.lower()


def _confirm(info: Any, b: BookingBackend) -> str:
    today = b.now().date()
    code = speak_code(info.code)
    return (
        f"Listo, su cita de {_service_spoken(b, info)} quedó reservada para "
        f"{speak_datetime(info.starts_at, today)} en {info.office_name}, {info.office_address}. "
        f"Su código de confirmación es: {code}. Le repito: {code}."
    )


def _closed_notice(day: date, office: str | None, b: BookingBackend) -> str:
    when = speak_date(day, b.now().date())
    if day.weekday() == 6:
        return f"Los domingos las oficinas están cerradas, así que para {when} no hay citas."
    if day.weekday() == 5:
        o = b.catalog.office(office) if office else None
        where = f"La oficina de {o.short}" if o else "Esa oficina"
        return f"{where} no abre los sábados, así que para {when} no hay citas."
    return f"Para {when} la oficina está cerrada."


def _spoken_offer(rows: list[dict[str, Any]], notice: str | None) -> str:
    """The first few options as one sentence (a phone caller cannot keep more in mind)."""
    rows = rows[:3]
    lead = f"{notice} " if notice else ""
    if not rows:
        return (lead + "No encontré horarios disponibles.").strip()
    if len(rows) == 1:
        return f"{lead}Tengo disponible {rows[0]['spoken']} en {rows[0]['office_name']}."
    items = [f"{r['spoken']} en {r['office_name']}" for r in rows]
    return f"{lead}Tengo disponible {', '.join(items[:-1])} y {items[-1]}."


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple):
            out[key] = [v if isinstance(v, str | int | float | bool) else str(v) for v in value]
        else:
            out[key] = str(value)
    return out
