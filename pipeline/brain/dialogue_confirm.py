"""The last question before acting, for a new booking and for a move alike.

"¿Está correcto?" / "¿Cambio su cita para…?": a yes acts, a no asks what to change, and a
correction ("no, mejor el martes", "mi nombre es Juana") updates the draft and reads it back.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, time
from typing import Any

from pipeline.brain import phrases
from pipeline.brain.dialogue_facts import absorb, absorb_personal, has_new_values
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.dialogue_state import Draft
from pipeline.brain.names import given_name_only, name_in_answer
from pipeline.brain.spanish_dates import When, speak_date, speak_relative
from pipeline.brain.spanish_text import is_affirmative

__all__ = ["CONFIRM_STEPS", "ConfirmHandler"]

CONFIRM_STEPS = frozenset({"confirm_booking", "confirm_reschedule", "change_what"})
_CHANGE_TIME = re.compile(r"\b(?:dia|fecha|hora|horario|turno|cuando)\b")
_CHANGE_HOUR_ONLY = re.compile(r"^(?:(?:la|el|solo|solamente|nada mas)\s+)*(?:hora|horario)\b")
# What the caller wants to change, by the word they use for it (in this order).
_CHANGES = (
    ("when", _CHANGE_TIME),
    ("office", re.compile(r"\b(?:oficina|lugar|sitio|sucursal|sede)\b")),
    ("name", re.compile(r"\bnombre\b")),
    ("cedula", re.compile(r"\bcedula\b")),
    ("service", re.compile(r"\b(?:tramite|servicio)\b")),
)
_CHANGE_KEYS = ("when", "office", "name", "cedula")  # "Marque 1 para el día, 2 para…"


class ConfirmHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def fill(self, t: Turn) -> bool:
        st = t.st
        if st.awaiting == "change_what":
            return not t.names_other_task() and await self._fill_change_what(t)
        booking = st.awaiting == "confirm_booking"
        if booking and t.goal and t.intent.name != "book" and t.intent.mine:
            return False  # "quiero cancelar mi cita": another task, not an answer
        yes = t.yes
        if booking and yes is not True and await self._day_said_again(t):
            return True
        if t.correction or (yes is not True and has_new_values(self.kit, t)):
            slot = st.draft.slot
            changed = absorb(self.kit, t, service=booking)
            if changed or (booking and absorb_personal(t)):
                _keep_the_hour(st.draft, slot, changed)
                t.progress = True
                await self.kit.advance(t)
                return True
        if yes is True:
            t.progress = True
            if booking:
                await self.kit.booking.book(t)
            else:
                await self.kit.changes.reschedule(t)
            return True
        if yes is False:
            t.progress = True
            if booking and await self.change_named(t):
                return True
            if booking:
                st.awaiting = "change_what"
                t.ask(phrases.ASK_WHAT_TO_CHANGE)
            else:
                st.draft.clear_time()
                st.awaiting = "when"
                t.ask(f"{phrases.OK} {phrases.ASK_OTHER_DAY_AND_TIME}")
            return True
        return False

    async def _day_said_again(self, t: Turn) -> bool:
        """ "No, le dije mañana" at the read-back, naming the day the caller first asked for.
        When the slot is on that very day the caller misheard the read-back: say plainly that
        it is that day. When it is not (that day was closed or full), offer times again from
        that day, with the reason, instead of "¿Qué desea cambiar?"."""
        d = t.st.draft
        when = self.kit.parse_when(t.raw, expect="date")
        if d.slot is None or when is None or when.date is None or when.date_end is not None:
            return False
        asked = d.when.date if d.when is not None else None
        slot_day = date.fromisoformat(d.slot["date"])
        if when.date == slot_day:
            t.progress = True
            today = self.kit.today()
            day = speak_date(slot_day, today)
            near = speak_relative(slot_day, today)
            t.say(f"Sí, su cita es {day}" + (f", o sea, {near}." if near != day else "."))
            t.ask(phrases.SHORT_QUESTIONS["confirm_booking"])
            return True
        if when.date != asked:
            return False  # another day: an ordinary correction (below)
        t.progress = True
        d.offered, d.slot = [], None
        d.soonest = False
        t.st.awaiting = None
        await self.kit.advance(t)
        return True

    async def change_named(self, t: Turn) -> bool:
        """ "No, la cédula está mal" at the read-back: ask again for the field named."""
        for what, pattern in _CHANGES:
            if pattern.search(t.norm):
                if what == "when" and _CHANGE_HOUR_ONLY.search(t.norm):
                    return False  # the hour only: "¿Qué desea cambiar?" handles it
                t.progress = True
                self._forget(t, what)
                t.st.awaiting = None
                await self.kit.advance(t)
                return True
        return False

    async def _fill_change_what(self, t: Turn) -> bool:
        """The answer to "¿Qué desea cambiar…?": a new value, or the field to ask again."""
        st, d = t.st, t.st.draft
        if absorb(self.kit, t, service=True) or absorb_personal(t):
            t.progress = True
            await self.kit.advance(t)
            return True
        said = name_in_answer(t.raw)
        if said and not given_name_only(said) and not any(p.search(t.norm) for _, p in _CHANGES):
            # "Digamos, Carlos Gómez": the name as it should read.
            d.name = said
            t.progress = True
            st.awaiting = None
            await self.kit.advance(t)
            return True
        if _CHANGE_HOUR_ONLY.search(t.norm) and d.slot is not None:
            day = date.fromisoformat(d.slot["date"])
            d.clear_time()
            d.when = When(date=day)
            t.progress = True
            st.awaiting = "when"
            t.ask(phrases.ASK_HOUR)
            return True
        named = next((what for what, pattern in _CHANGES if pattern.search(t.norm)), None)
        if named is not None:
            self._forget(t, named)
            # "El día: mañana": the new value may come with the field's name.
            absorb(self.kit, t, service=False)
        elif is_affirmative(t.raw) is False or re.search(r"\b(?:nada|esta bien)\b", t.norm):
            st.awaiting = None
        else:
            return False
        t.progress = True
        st.awaiting = None
        await self.kit.advance(t)
        return True

    async def on_key(self, t: Turn, digits: str) -> bool:
        """What to change, from the keypad menu ("Marque 1 para el día…")."""
        if t.st.awaiting != "change_what" or not digits.isdigit():
            return False
        index = int(digits) - 1
        if not 0 <= index < len(_CHANGE_KEYS):
            return False
        t.progress = True
        self._forget(t, _CHANGE_KEYS[index])
        t.st.awaiting = None
        await self.kit.advance(t)
        return True

    @staticmethod
    def _forget(t: Turn, what: str) -> None:
        d = t.st.draft
        if what == "when":
            d.clear_time()
        elif what == "office":
            d.office, d.any_office = None, False
            d.offered, d.slot = [], None
        elif what == "name":
            d.name = None
        elif what == "cedula":
            d.cedula, d.cedula_partial = None, ""
        elif what == "service":
            d.service = None
            d.offered, d.slot = [], None


def _keep_the_hour(d: Draft, slot: dict[str, Any] | None, changed: set[str]) -> None:
    """ "No, el martes": only the day changes; the hour already chosen stays."""
    when = d.when
    if slot is None or "when" not in changed or when is None or d.soonest:
        return
    if when.date is not None and when.time is None and when.date_end is None:
        hours, minutes = (int(x) for x in slot["time"].split(":"))
        d.when = replace(when, time=time(hours, minutes), part_of_day=None)
