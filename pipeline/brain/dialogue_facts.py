"""Taking the facts of an appointment out of what the caller said, into the draft.

A caller gives service, office, day and time (and their name and cédula) in any order and
often several in one breath; these functions read all of them from one utterance so that the
dialogue only asks for what is still missing.
"""

from __future__ import annotations

import re

from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.intents import (
    asks_question,
    extract_cedula_digits,
    extract_phone_digits,
)
from pipeline.brain.names import extract_name, find_name
from pipeline.brain.spanish_dates import When

__all__ = [
    "SOONEST",
    "absorb",
    "absorb_personal",
    "answers_booking",
    "bare_when",
    "capture_personal",
    "has_new_values",
    "starts_booking_by_date",
    "starts_booking_by_details",
]

SOONEST = re.compile(
    r"\b(?:lo mas pronto|lo antes posible|la mas pronta|lo mas rapido|cuanto antes|"
    r"el primer(?:o)? (?:dia|turno|horario|espacio|cupo)|cuando haya|la primera disponible|"
    r"el mas cercano|la mas cercana|lo mas cercano|cualquier dia)\b"
)
# Words a bare date or time answer is made of ("el próximo lunes a las diez y media").
_WHEN_WORDS = frozenset(
    (
        "lunes martes miercoles jueves viernes sabado sabados domingo enero febrero marzo "
        "abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre "
        "uno una dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce "
        "quince dieciseis diecisiete dieciocho diecinueve veinte veintiuno veintidos "
        "veintitres veinticuatro veinticinco veintiseis veintisiete veintiocho veintinueve "
        "treinta primero y media cuarto medio mediodia manana mañana tarde noche temprano hoy "
        "pasado proximo proxima siguiente que viene esta este semana dia mes de del el la las "
        "los a al en por para como eso alrededor despues antes desde hasta si bueno mejor "
        "entonces pues eh ok puede ser seria sea dale"
    ).split()
)
_ASKS = re.compile(
    r"\b(?:que|cual|cuales|cuanto|cuanta|cuantos|cuando|como|donde|requisitos?|cuesta|precio|"
    r"costo|informacion|se puede|hay que)\b"
)
_NAME_WORDS = re.compile(r"\b(?:nombre|llamo)\b")
_CEDULA_WORD = re.compile(r"\bcedula\b")
_PHONE_WORDS = re.compile(r"\b(?:telefono|celular|whatsapp|contacto|llamar(?:me)? al)\b")
# Questions whose own handler reads digits (a cédula or a phone number being dictated).
_DIGIT_STEPS = frozenset({"cedula", "lookup_cedula", "code_or_cedula", "phone", "phone_confirm"})


def capture_personal(t: Turn) -> set[str]:
    """Keep a name, cédula or phone the caller volunteers (or corrects) at any point, even
    while another question is pending or before the task is known: "Soy María Gómez,
    quiero sacar el pasaporte…". The field names taken."""
    st, d = t.st, t.st.draft
    got: set[str] = set()
    if st.awaiting not in ("name", "surname"):
        name = find_name(t.raw)
        if name and name != d.name:
            d.name = name
            got.add("name")
    if st.awaiting not in _DIGIT_STEPS:
        # Digits belong to the word that introduces them ("mi teléfono es…", "cédula…"), so
        # a day or an hour said in the same breath is not read as part of the number.
        phone_word = _PHONE_WORDS.search(t.norm)
        cedula_word = _CEDULA_WORD.search(t.norm)
        if phone_word:
            after = _until(t.norm[phone_word.end() :], cedula_word, phone_word)
            phone = extract_phone_digits(after)
            if len(phone) == 10 and phone != d.phone:
                d.phone, d.phone_done = phone, True
                got.add("phone")
        if cedula_word:
            tail = _until(t.norm[cedula_word.end() :], phone_word, cedula_word)
            digits = extract_cedula_digits(tail)
        else:
            digits = "" if phone_word else extract_cedula_digits(t.raw)
        if len(digits) == 11 and digits != d.cedula:
            d.cedula, d.cedula_partial = digits, ""
            got.add("cedula")
    return got


def _until(tail: str, other: re.Match[str] | None, this: re.Match[str]) -> str:
    """The text after ``this`` keyword, cut where the ``other`` one begins."""
    if other is not None and other.start() > this.end():
        return tail[: other.start() - this.end()]
    return tail


def absorb(kit: Kit, t: Turn, *, service: bool = True) -> set[str]:
    """Take service, office and date/time from the utterance into the draft; the names of
    the fields that changed."""
    d = t.st.draft
    changed: set[str] = set()
    if service:
        found = kit.catalog.find_services(t.norm)
        if found and found[-1] != d.service:
            d.service = found[-1]
            changed.add("service")
    offices = kit.catalog.find_offices(t.norm)
    if len(offices) == 1 and offices[0] != d.office:
        d.office, d.any_office = offices[0], False
        changed.add("office")
    elif len(offices) > 1 and not d.office:
        t.ambiguous_office = True
    if t.st.awaiting == "office" and kit.catalog.says_any_office(t.norm) and not offices:
        if not d.any_office:
            d.any_office, d.office = True, None
            changed.add("office")
    expect = "date" if d.when is None or d.when.date is None else None
    if t.st.awaiting in ("slot_choice", "slot_single"):
        expect = "time"
    when = kit.parse_when(t.raw, expect=expect)
    if when is not None:
        merged = d.when.merge(when) if d.when else when
        if merged != d.when:
            d.when = merged
            changed.add("when")
    if SOONEST.search(t.norm) and not (when and when.date):
        d.soonest = True
        changed.add("when")
    if changed & {"service", "office", "when"}:
        d.offered, d.slot = [], None
    return changed


def absorb_personal(t: Turn) -> bool:
    """A corrected name or cédula in a correction ("no, mi nombre es Juana")."""
    d = t.st.draft
    digits = extract_cedula_digits(t.raw)
    if len(digits) == 11:
        d.cedula = digits
        return True
    if _NAME_WORDS.search(t.norm):
        name = extract_name(re.sub(r"^\W*(?:no|perdon|disculpe)\b\W*", "", t.raw, flags=re.I))
        if name:
            d.name = name
            return True
    return False


def has_new_values(kit: Kit, t: Turn) -> bool:
    if kit.catalog.find_offices(t.norm) or kit.parse_when(t.raw) is not None:
        return True
    return len(extract_cedula_digits(t.raw)) == 11 or bool(_NAME_WORDS.search(t.norm))


def answers_booking(kit: Kit, t: Turn) -> bool:
    """Does a non-question utterance give a booking detail (office, service, day, time)?
    Said right after "¿Desea que le reserve una cita?" it is an implicit yes."""
    if kit.catalog.says_any_office(t.norm) and "?" not in t.raw:
        return True  # "donde sea" names no place but is no question either
    if asks_question(t.norm, t.raw):
        return False
    return bool(
        kit.catalog.find_offices(t.norm)
        or kit.catalog.find_services(t.norm)
        or SOONEST.search(t.norm)
        or bare_when(kit, t) is not None
    )


def starts_booking_by_date(kit: Kit, t: Turn) -> bool:
    """A bare "el lunes a las diez" with no task under way: the caller wants a booking
    (their request was probably misheard), not information about Mondays."""
    if kit.tools is None or not kit.catalog.services or t.st.last_booking is not None:
        return False
    return not asks_question(t.norm, t.raw) and bare_when(kit, t) is not None


def starts_booking_by_details(kit: Kit, t: Turn) -> bool:
    """ "Quiero sacar el pasaporte en Santiago el jueves en la tarde": a service with an office
    or a day, and no question word, is a booking request even without the word "cita"."""
    if kit.tools is None or t.st.task is not None or _ASKS.search(t.norm) or "?" in t.raw:
        return False
    if not kit.catalog.find_services(t.norm):
        return False
    when = kit.parse_when(t.raw)
    has_when = when is not None and (when.date or when.time or when.part_of_day)
    return bool(kit.catalog.find_offices(t.norm) or has_when or SOONEST.search(t.norm))


# A booking asked for again in other words ("necesito un casita para sacar la cédula"): a
# verb or noun of booking. A real question about the service has a question word (a "que"
# only near the start: "les digo que necesito…" is no question).
_BOOKING_WORDS = re.compile(
    r"\b(?:cita|citas|casita|sita|turno|sacar|sacarme|saco|hacer|hacerme|renovar|renovarla|"
    r"renovacion|tramitar|agendar|reservar|programar|solicitar)\b"
)
_REAL_QUESTION = re.compile(
    r"^(?:\w+\s+)?que\b|\b(?:cual|cuales|cuanto|cuanta|cuantos|cuantas|cuando|como|donde|"
    r"requisitos?|documentos?|papeles|cuesta|precio|costo|informacion|saber|se puede|hay que|"
    r"llevar|traer|horario)\b"
)


def restates_booking(kit: Kit, t: Turn) -> bool:
    """While a booking is under way and a question is pending, a sentence with a booking
    word and the same service is the request said again (the caller lost track), not a
    question for the knowledge base: "necesito un casita para sacar la cédula por primera vez"
    must not be answered with the cédula's requirements."""
    st = t.st
    if st.task != "book" or not st.awaiting or not st.draft.service or "?" in t.raw:
        return False
    if not _BOOKING_WORDS.search(t.norm) or _REAL_QUESTION.search(t.norm):
        return False
    return st.draft.service in kit.catalog.find_services(t.norm)


def bare_when(kit: Kit, t: Turn) -> When | None:
    """The date or time an utterance consists of, allowing one unknown (misheard) word;
    None when it says more than a date ("abren el sábado" is a question)."""
    when = kit.parse_when(t.raw)
    if when is None or (when.date is None and when.time is None and not when.part_of_day):
        return None
    unknown = [w for w in t.norm.split() if w not in _WHEN_WORDS and not w.isdigit()]
    return when if len(unknown) <= 1 else None
