"""The conversation around the tasks: "¿algo más?", offers (a booking after an answer, a
person), saying goodbye, handing over, and what to say when nothing was understood."""

from __future__ import annotations

from pipeline.brain import phrases
from pipeline.brain.base import EndCall, Transfer
from pipeline.brain.dialogue_facts import absorb, answers_booking
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.intents import asks_question
from pipeline.brain.tools import END_CALL, TRANSFER_TO_HUMAN

__all__ = ["MENU_STEPS", "MenuHandler"]

MENU_STEPS = frozenset({"anything_else", "offer_transfer", "offer_booking"})


class MenuHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def fill(self, t: Turn) -> bool:
        st = t.st
        step = st.awaiting
        yes = t.yes
        if step == "anything_else":
            if t.goal or asks_question(t.norm, t.raw):
                return False
            if yes is True:
                t.progress = True
                st.awaiting = None
                t.say(phrases.GO_AHEAD)
                return True
            if yes is False:
                await self.goodbye(t)
                return True
            return False
        if step == "offer_transfer":
            if yes is True:
                await self.transfer(t, "caller-accepted")
                return True
            if yes is False:
                t.progress = True
                t.say(f"{phrases.OK} {phrases.ANYTHING_ELSE}")
                st.awaiting = "anything_else"
                return True
            return False
        if step == "offer_booking":
            return await self._fill_offer_booking(t)
        return False

    async def _fill_offer_booking(self, t: Turn) -> bool:
        st = t.st
        service = st.offer_service
        yes = t.yes
        # "Quiero la cita" or a bare "En Santiago" / "el lunes a las diez": an implicit yes
        # that already answers the first questions of the booking.
        plain_yes = yes is True and not t.goal
        implicit = yes is None and not t.goal and answers_booking(self.kit, t)
        if plain_yes or implicit or (t.intent.name == "book" and not t.intent.mine):
            st.start("book")
            st.draft.service = service
            t.progress = True
            absorb(self.kit, t, service=not plain_yes)
            await self.kit.advance(t)
            return True
        if yes is False and not t.goal:
            t.progress = True
            st.offer_service = None
            st.awaiting = "anything_else"
            t.say(f"{phrases.VERY_WELL} {phrases.ANYTHING_ELSE}")
            return True
        return False

    async def goodbye(self, t: Turn) -> None:
        t.progress = True
        t.say(phrases.goodbye(self.kit.office_name))
        if self.kit.tools is not None:
            await self.kit.tool(t, END_CALL, {"reason": "completed"})
        t.st.awaiting = None
        t.emit(EndCall(reason="completed"))

    async def transfer(self, t: Turn, reason: str) -> None:
        t.progress = True
        if reason == "misunderstanding":
            t.say(phrases.TRANSFERRING_LOST)
        else:
            t.say(phrases.TRANSFERRING)
        if self.kit.tools is not None:
            await self.kit.tool(t, TRANSFER_TO_HUMAN, {"reason": reason})
        t.st.awaiting = None
        t.emit(Transfer(reason=reason))

    async def not_understood(self, t: Turn) -> None:
        st = t.st
        if st.task and st.resume_prompt:
            await self.miss(t, f"{phrases.NOT_UNDERSTOOD} {st.resume_prompt}")
            return
        await self.miss(
            t,
            f"{phrases.CANNOT_HELP_WITH_THAT} {phrases.CAPABILITIES} {phrases.WHAT_DO_YOU_NEED}",
        )

    async def miss(self, t: Turn, text: str) -> None:
        st = t.st
        st.misses += 1
        if st.misses >= self.kit.max_misses:
            st.misses = 0
            await self.transfer(t, "misunderstanding")
            return
        t.say(text)
