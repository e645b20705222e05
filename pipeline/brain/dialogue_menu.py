"""The conversation around the tasks: "¿algo más?", offers (a booking after an answer, a
person), saying goodbye, handing over, and what to say when nothing was understood.

A transfer is promised only when one can be made: without a transfer number (or when the
transfer tool refuses) the caller hears once that no agent is available, with the office's
phone and hours, and the assistant keeps helping.
"""

from __future__ import annotations

from pipeline.brain import phrases
from pipeline.brain.base import EndCall, Transfer
from pipeline.brain.dialogue_facts import absorb, answers_booking
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.intents import asks_question, is_thanks_closing
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
            if is_thanks_closing(t.norm) and "si" not in t.norm.split():
                await self.goodbye(t)  # "ok, muchas gracias" to "¿algo más?": done
                return True
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
            if self.kit.catalog.says_any_office(t.norm) and not st.draft.office:
                st.draft.any_office = True  # "donde sea": the first free slot anywhere
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

    # --- people -----------------------------------------------------------------------------
    async def transfer(self, t: Turn, reason: str) -> None:
        """Hand over to a person, or, when none can take the call, say so and keep helping."""
        t.progress = True
        if not self.kit.can_transfer:
            self.no_agent(t, reason)
            return
        if self.kit.tools is not None:
            result = await self.kit.tool(t, TRANSFER_TO_HUMAN, {"reason": reason})
            if result.get("ok") is False or "error" in result:
                self.no_agent(t, reason)
                return
        t.say(phrases.TRANSFERRING_LOST if reason == "misunderstanding" else phrases.TRANSFERRING)
        t.st.awaiting = None
        t.emit(Transfer(reason=reason))

    def offer_agent(self, t: Turn) -> None:
        """After a dead end: offer a person if one can take the call, else the office."""
        st = t.st
        if self.kit.can_transfer:
            st.awaiting = "offer_transfer"
            t.ask(phrases.OFFER_AGENT)
            return
        t.say(self.contact(t))
        st.awaiting = "anything_else"
        t.ask(phrases.ANYTHING_ELSE, resume=False)

    def no_agent(self, t: Turn, reason: str) -> None:
        st = t.st
        if reason == "misunderstanding":
            t.say(phrases.LINE_UNCLEAR)
        if not st.told_no_agent:
            st.told_no_agent = True
            t.say(phrases.NO_AGENT)
        t.say(self.contact(t))
        lost = reason == "misunderstanding"
        if st.awaiting:
            if lost:
                # The re-ask ladder goes on from where it was, it does not start over: the
                # next miss moves on (a second dead end ends the task politely).
                st.step_misses[st.awaiting] = self.kit.max_misses - 1
            else:
                st.step_misses.pop(st.awaiting, None)
        if st.task and st.awaiting and not (lost and st.handovers):
            # The booking is not dropped: the caller may still give the answer (the line
            # may clear up); a second dead end on a task ends it.
            st.handovers += lost
            t.say(phrases.KEEP_HELPING)
            if lost:  # the keypad or the choices, never the question already asked twice
                t.say(self.kit.recovery.last_try(t, st.awaiting))
            else:
                t.say(phrases.SHORT_QUESTIONS.get(st.awaiting) or st.resume_prompt)
            return
        if st.task:
            st.finish()
        st.awaiting = "anything_else"
        t.ask(phrases.ANYTHING_ELSE, resume=False)

    def contact(self, t: Turn) -> str:
        """The phone and hours of the office the caller is dealing with (else the first)."""
        catalog = self.kit.catalog
        code = t.st.draft.office or (t.st.target or {}).get("office")
        office = catalog.office(code) or (catalog.offices[0] if catalog.offices else None)
        if office is None or not office.phone:
            return phrases.CALL_BACK
        return phrases.office_contact(office)

    # --- not understanding ------------------------------------------------------------------
    async def not_understood(self, t: Turn) -> None:
        st = t.st
        if st.awaiting and (st.task or not asks_question(t.norm, t.raw)):
            await self.kit.recovery.reprompt(t)
            return
        await self.miss(t)

    async def miss(self, t: Turn, text: str | None = None) -> None:
        """Nothing understood and no question pending: say what the assistant can do (shorter
        the second time), then hand over."""
        st = t.st
        st.misses += 1
        if st.misses >= self.kit.max_misses:
            st.misses = 0
            await self.transfer(t, "misunderstanding")
            return
        if text is not None:
            t.say(text)
        elif st.misses == 1:
            t.say(
                f"{phrases.CANNOT_HELP_WITH_THAT} {phrases.CAPABILITIES} {phrases.WHAT_DO_YOU_NEED}"
            )
        else:
            t.say(f"{phrases.NOT_UNDERSTOOD} {phrases.SHORT_CAPABILITIES}")
            t.say(phrases.WHAT_DO_YOU_NEED)
