"""The last question before acting, for a new booking and for a move alike.

"¿Está correcto?" / "¿Cambio su cita para…?": a yes acts, a no asks what to change, and a
correction ("no, mejor el martes", "mi nombre es Juana") updates the draft and reads it back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import time
from typing import Any

from pipeline.brain import phrases
from pipeline.brain.dialogue_facts import absorb, absorb_personal, has_new_values
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.dialogue_state import Draft

__all__ = ["CONFIRM_STEPS", "ConfirmHandler"]

CONFIRM_STEPS = frozenset({"confirm_booking", "confirm_reschedule"})


class ConfirmHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def fill(self, t: Turn) -> bool:
        st = t.st
        booking = st.awaiting == "confirm_booking"
        if booking and t.goal and t.intent.name != "book" and t.intent.mine:
            return False  # "quiero cancelar mi cita": another task, not an answer
        yes = t.yes
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
            if booking and await self.kit.booking.change_named(t):
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


def _keep_the_hour(d: Draft, slot: dict[str, Any] | None, changed: set[str]) -> None:
    """ "No, el martes": only the day changes; the hour already chosen stays."""
    when = d.when
    if slot is None or "when" not in changed or when is None or d.soonest:
        return
    if when.date is not None and when.time is None and when.date_end is None:
        hours, minutes = (int(x) for x in slot["time"].split(":"))
        d.when = replace(when, time=time(hours, minutes), part_of_day=None)
