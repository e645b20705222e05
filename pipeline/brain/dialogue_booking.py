"""Booking a new appointment: service, office, day and time, name, cédula, phone, then one
read-back and the booking itself."""

from __future__ import annotations

import re
from typing import Any

from pipeline.brain import phrases
from pipeline.brain.dialogue_facts import SOONEST, absorb
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.dialogue_state import Draft
from pipeline.brain.intents import (
    asks_question,
    choice_index,
    extract_cedula_digits,
    extract_phone_digits,
)
from pipeline.brain.names import given_name_only, name_in_answer
from pipeline.brain.spanish_text import number_to_words
from pipeline.brain.spoken import speak_cedula, speak_phone_end
from pipeline.brain.tools import BOOK_APPOINTMENT, FIND_MY_APPOINTMENTS

__all__ = ["BOOKING_STEPS", "BookingHandler"]

BOOKING_STEPS = frozenset(
    {"service", "office", "when", "name", "surname", "cedula", "phone", "phone_confirm"}
)
_MINOR = re.compile(r"\b(?:menor|mi hij[oa]|el nino|la nina|no tiene cedula|no tengo cedula)\b")
# "¿Le llamamos a ese mismo número?" answered by naming it ("a ese mismo", "al mismo", "ahí
# mismo", "a este número"; on the line "Para ese mismo", "RIS, mismo") or another one.
# "mismo" also glued to what the line made of "a ese" ("riasemismo", "aexemismo").
_SAME_NUMBER = re.compile(
    r"mism[oa]\b|\b(?:(?:a|al|en)\s+(?:ese|este|esa|esta)\b|(?:ese|este)\s+numero|ahi|alli)\b"
)
_OTHER_NUMBER = re.compile(r"\b(?:otro|otra|diferente|distinto)\b")
_NOT_A_NAME = re.compile(r"^(?:en|para|el|la|los|las|a|al|mejor|no|por)\b")
_BEFORE_NUMBERS = re.compile(r"\d|\b(?:c[eé]dula|tel[eé]fono|n[uú]mero)\b", re.IGNORECASE)
_NO_PHONE = re.compile(r"\b(?:no tengo|ninguno|sin telefono|no hace falta|no importa)\b")


class BookingHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    # --- what to ask next -------------------------------------------------------------------
    async def advance(self, t: Turn) -> None:
        st, d = t.st, t.st.draft
        if not d.service:
            st.awaiting = "service"
            t.ask(phrases.ask_service(self.kit.catalog))
            return
        if not await self._ensure_office(t):
            return
        if d.slot is None:
            await self.kit.slots.ensure_slot(t)
            return
        if not d.name:
            st.awaiting = "name"
            t.ask(phrases.ASK_NAME)
            return
        if not d.cedula:
            st.awaiting = "cedula"
            t.ask(phrases.ASK_CEDULA)
            return
        if not d.phone_done:
            if t.ctx.caller_number:
                st.awaiting = "phone_confirm"
                t.ask(
                    "¿Le podemos contactar al número desde el que llama, que termina en "
                    f"{speak_phone_end(t.ctx.caller_number)}?",
                )
            else:
                st.awaiting = "phone"
                t.ask(phrases.ASK_PHONE)
            return
        st.awaiting = "confirm_booking"
        again = any(q.startswith("Le confirmo") for q in st.asked)
        t.ask(self.summary(d, again=again))

    async def _ensure_office(self, t: Turn) -> bool:
        st, d = t.st, t.st.draft
        catalog = self.kit.catalog
        assert d.service is not None
        options = catalog.offices_for(d.service)
        narrowed = [o for o in options if o.code in d.office_choices]
        if not d.office and 1 < len(narrowed) < len(options):
            t.ambiguous_office = True  # still "Santo Domingo", still Centro or Este
        if t.ambiguous_office and not d.office:
            both = narrowed if 1 < len(narrowed) < len(options) else []
            both = both or [o for o in options if o.code in ("SDC", "SDE")]
            if len(both) == 1:
                d.office = both[0].code
            elif both:
                st.awaiting = "office"
                d.office_choices = [o.code for o in both]
                t.ask(
                    phrases.ASK_SANTO_DOMINGO, short=phrases.short_choice([o.short for o in both])
                )
                return False
        if d.office and not catalog.offers(d.office, d.service):
            t.say(catalog.not_offered_sentence(d.office, d.service))
            d.office = None
            d.offered, d.slot = [], None
        if d.office or d.any_office:
            return True
        if len(options) == 1:
            d.office = options[0].code
            service = catalog.service(d.service)
            t.say(
                f"El trámite de {service.spoken if service else d.service} se hace en "
                f"{options[0].name}."
            )
            return True
        if not options:
            d.any_office = True
            return True
        st.awaiting = "office"
        d.office_choices = [o.code for o in options]
        t.ask(phrases.ask_office([o.short for o in options]))
        return False

    def summary(self, d: Draft, *, again: bool = False) -> str:
        """The one read-back before booking: service, office, day and time, name, cédula."""
        service = self.kit.catalog.service(d.service)
        office = self.kit.catalog.office(d.slot["office"] if d.slot else d.office)
        assert d.slot is not None
        where = f"la oficina de {office.short}" if office else d.slot["office_name"]
        # Short sentences: the phone voice is clearer one fact group at a time.
        return (
            f"Le confirmo: cita de {service.spoken if service else d.service} en {where}, "
            f"{d.slot['spoken']}. A nombre de {d.name}, cédula "
            f"{speak_cedula(d.cedula or '')}. "
            f"{phrases.IS_IT_RIGHT_NOW if again else phrases.IS_IT_RIGHT}"
        )

    # --- answers to its questions -----------------------------------------------------------
    async def fill(self, t: Turn) -> bool:
        step = t.st.awaiting
        if step in ("service", "office", "when"):
            if t.names_other_task():
                return False
            return await self._fill_details(t, step)
        if step == "name":
            return await self._fill_name(t)
        if step == "surname":
            return await self._fill_surname(t)
        if step == "cedula":
            return await self.take_cedula(t, step)
        if step in ("phone", "phone_confirm"):
            return await self._fill_phone(t, step)
        return False

    async def _fill_details(self, t: Turn, step: str) -> bool:
        d = t.st.draft
        changed = absorb(self.kit, t, service=True)
        listed = self._listed(t, step)
        if not changed and listed:
            index = choice_index(t.norm, len(listed))  # "la segunda", "la dos" from the list
            if index is not None:
                return await self._pick(t, step, listed[index])
        if step == "office" and not d.office and self.kit.catalog.says_any_office(t.norm):
            d.any_office = True
            changed.add("office")
        if step == "when" and SOONEST.search(t.norm):
            d.soonest = True
            changed.add("when")
        if changed or t.ambiguous_office:
            t.progress = True
            await self.kit.advance(t)
            return True
        return False

    async def _fill_name(self, t: Turn) -> bool:
        correction = t.correction
        if t.goal or (asks_question(t.norm, t.raw) and not correction):
            return False
        other_fact = correction or _NOT_A_NAME.match(t.norm) or self.kit.parse_when(t.raw)
        if other_fact and absorb(self.kit, t):
            t.progress = True
            await self.kit.advance(t)
            return True
        # "María Gómez, cédula cero cero uno…": the name is what comes before the numbers.
        name = name_in_answer(_BEFORE_NUMBERS.split(t.raw)[0].strip(" ,.;"))
        if name is None:
            return False
        if given_name_only(name) and not t.st.step_misses.get("name"):
            # "María": the full name is what goes on the appointment; ask for the rest once —
            # unless the name was already asked twice: a third question about it would lose
            # the caller; the read-back shows what was heard and can still be corrected.
            t.st.draft.name = name
            t.progress = True
            t.st.awaiting = "surname"
            t.ask(phrases.ASK_SURNAME)
            return True
        t.st.draft.name = name
        t.progress = True
        await self.kit.advance(t)
        return True

    async def _fill_surname(self, t: Turn) -> bool:
        d = t.st.draft
        if t.goal or asks_question(t.norm, t.raw) or len(t.norm.split()) > 4:
            return False  # a whole sentence is not a surname: go on with the given name
        said = name_in_answer(_BEFORE_NUMBERS.split(t.raw)[0].strip(" ,.;"))
        if said is not None:
            given = d.name or ""
            # The whole name said again ("María Fernández") or only the surname.
            d.name = said if said.split()[0] == given else f"{given} {said}".strip()
        elif t.yes is not False:
            return False
        t.progress = True  # a "no" keeps the given name alone
        await self.kit.advance(t)
        return True

    async def take_cedula(self, t: Turn, step: str) -> bool:
        """Digits of a cédula, said or keyed, possibly in several turns; for a lookup
        (``lookup_cedula``, ``code_or_cedula``) the whole number finds the appointments."""
        d = t.st.draft
        if t.goal or (t.raw and asks_question(t.norm, t.raw) and not re.search(r"\d", t.raw)):
            return False
        digits = extract_cedula_digits(t.raw, t.dtmf)
        if not digits:
            if step == "cedula" and _MINOR.search(t.norm):
                t.progress = True
                t.ask(phrases.CEDULA_MINOR)
                return True
            return False
        partial = (d.cedula_partial if step == "cedula" else "") + digits
        if len(digits) == 11 or (d.cedula_partial and len(digits) >= 9):
            partial = digits  # the whole number said again, not the rest of it
        if len(partial) < 11:
            t.progress = True
            if step == "cedula":
                d.cedula_partial = partial
                have = number_to_words(len(partial), apocope=True)
                missing = number_to_words(11 - len(partial), apocope=True)
                plural = "s" if len(partial) > 1 else ""
                t.ask(
                    f"Llevo {have} dígito{plural} de once; me falta{'n' if missing != 'un' else ''}"
                    f" {missing}. Continúe, por favor.",
                )
            else:
                t.ask(phrases.CEDULA_ELEVEN)
            return True
        if len(partial) > 11:
            t.progress = True
            d.cedula_partial = ""
            t.ask(phrases.CEDULA_TOO_LONG)
            return True
        t.progress = True
        if step == "cedula":
            d.cedula, d.cedula_partial = partial, ""
            await self.kit.advance(t)
        else:
            await self.kit.changes.lookup(t, cedula=partial)
        return True

    async def _fill_phone(self, t: Turn, step: str) -> bool:
        st, d = t.st, t.st.draft
        yes = t.yes
        if step == "phone_confirm" and t.forced_yes is None:
            yes = same_number_answer(t.norm, yes)
        if step == "phone_confirm":
            digits = extract_phone_digits(t.raw, "" if t.forced_yes is not None else t.dtmf)
            if len(digits) == 10:
                d.phone, d.phone_done = digits, True
            elif yes is True:
                d.phone, d.phone_done = t.ctx.caller_number, True
            elif yes is False:
                t.progress = True
                st.awaiting = "phone"
                t.ask(phrases.ASK_PHONE)
                return True
            else:
                return False
        else:
            digits = extract_phone_digits(t.raw, t.dtmf)
            if len(digits) == 10:
                d.phone, d.phone_done = digits, True
            elif _NO_PHONE.search(t.norm) or yes is False:
                d.phone, d.phone_done = None, True
            elif digits:
                t.progress = True
                t.ask(phrases.PHONE_TEN_DIGITS)
                return True
            else:
                return False
        t.progress = True
        await self.kit.advance(t)
        return True

    async def on_key(self, t: Turn, digits: str) -> bool:
        """A service or office picked by its position in the list just read out."""
        st = t.st
        if not digits.isdigit() or st.awaiting not in ("service", "office"):
            return False
        index = int(digits) - 1
        choices = self._listed(t, st.awaiting)
        if not 0 <= index < len(choices):
            return False
        return await self._pick(t, st.awaiting, choices[index])

    def _listed(self, t: Turn, step: str) -> list[str]:
        """The options in the order the last question or menu read them out."""
        if t.st.choices:
            return t.st.choices
        if step == "office":
            return t.st.draft.office_choices
        if step == "service":
            return [s.code for s in self.kit.catalog.services]
        return []

    async def _pick(self, t: Turn, step: str, code: str) -> bool:
        d = t.st.draft
        t.progress = True
        if step == "service":
            d.service = code
        else:
            d.office, d.any_office = code, False
            office = self.kit.catalog.office(code)
            if office is not None:
                t.say(f"Muy bien, en {office.short}.")
        d.offered, d.slot = [], None
        await self.kit.advance(t)
        return True

    # --- acting -----------------------------------------------------------------------------
    async def book(self, t: Turn) -> None:
        st, d = t.st, t.st.draft
        assert d.slot is not None
        args: dict[str, Any] = {
            "slot_id": d.slot["slot_id"],
            "service": d.service,
            "citizen_name": d.name,
            "cedula": d.cedula,
        }
        if d.phone:
            args["phone"] = d.phone

        def apply(result: dict[str, Any]) -> None:
            if result.get("ok"):
                st.last_booking = result
                st.done.append(f"booked {result.get('code')}")
                st.finish()
                st.last_prompt = f"{result.get('confirmation', '')} {phrases.ANYTHING_ELSE}"

        result = await self.kit.commit(t, BOOK_APPOINTMENT, args, apply)
        if result.get("ok"):
            t.say(result["confirmation"])
            t.say(f"{phrases.ARRIVE_EARLY} {phrases.ANYTHING_ELSE}")
            return
        reason = result.get("reason")
        if reason == "duplicate" and result.get("existing_code"):
            found = await self.kit.tool(t, FIND_MY_APPOINTMENTS, {"code": result["existing_code"]})
            existing = (found.get("appointments") or [None])[0]
            t.say(result["error"])
            if existing:
                st.task = "reschedule"
                st.target = existing
                st.awaiting = "confirm_reschedule"
                t.ask(
                    f"Ya tiene una para {existing['spoken_datetime']}. ¿Quiere que la cambie "
                    f"para {d.slot['spoken']}?",
                )
                return
            st.finish()
            t.say(phrases.ANYTHING_ELSE)
            return
        if reason == "slot_full":
            t.say(result["error"])
            self.kit.slots.offer(t, result.get("alternatives") or [], None)
            return
        t.say(result.get("error", "No pude completar la reserva."))
        if reason in ("timeout", "internal"):
            st.awaiting = "confirm_booking"
            t.ask(phrases.TRY_AGAIN)
            return
        d.clear_time()
        await self.kit.advance(t)


def same_number_answer(norm: str, yes: bool | None) -> bool | None:
    """The answer to "¿a ese mismo número?": another number is a no even after "sí" ("sí, a
    otro"); naming the same one is a yes even after a filler "no" ("no, al mismo")."""
    if _OTHER_NUMBER.search(norm) and not _SAME_NUMBER.search(norm):
        return False
    if _SAME_NUMBER.search(norm) and not _OTHER_NUMBER.search(norm):
        return True
    return yes
