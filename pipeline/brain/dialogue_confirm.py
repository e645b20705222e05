"""The last question before acting, for a new booking and for a move alike.

"¿Está correcto?" / "¿Cambio su cita para…?": a yes acts, a no asks what to change, and a
correction ("no, mejor el martes", "mi nombre es Juana") updates the draft and reads it back.
"""

from __future__ import annotations

from pipeline.brain import phrases
from pipeline.brain.dialogue_facts import absorb, absorb_personal, has_new_values
from pipeline.brain.dialogue_kit import Kit, Turn

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
            if absorb(self.kit, t, service=booking) or (booking and absorb_personal(t)):
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
            if booking:
                st.awaiting = "change_what"
                t.ask(phrases.ASK_WHAT_TO_CHANGE)
            else:
                st.draft.clear_time()
                st.awaiting = "when"
                t.ask(f"{phrases.OK} {phrases.ASK_OTHER_DAY_AND_TIME}")
            return True
        return False
