"""The offline dialogue engine: Spanish intents, slot filling and retrieval, no network.

It is the default brain without an LLM key and the LLM brain's fallback mid-call, so it must
do the whole job with the same tools: answer questions from the knowledge base, and book,
move, cancel or look up appointments. It speaks in short sentences, asks one thing at a time,
reads everything back before acting, and hands over to a person on request or when it keeps
failing to understand.

Design: a frame per task (:class:`~pipeline.brain.dialogue_state.Draft`) and one handler per
task, each asking for the first missing field or acting when nothing is missing:

- :mod:`~pipeline.brain.dialogue_booking` books (service, office, day, name, cédula, phone);
- :mod:`~pipeline.brain.dialogue_slots` finds and offers free slots (booking and moving);
- :mod:`~pipeline.brain.dialogue_confirm` is the last yes/no before booking or moving;
- :mod:`~pipeline.brain.dialogue_changes` finds, moves and cancels existing appointments;
- :mod:`~pipeline.brain.dialogue_questions` answers from the knowledge base;
- :mod:`~pipeline.brain.dialogue_menu` says goodbye, hands over (only when a person can take
  the call) and copes with misses outside a task;
- :mod:`~pipeline.brain.dialogue_recovery` re-asks a question that was not understood:
  shorter, then as choices the caller can say or key, then moves on — never a third time.

This core routes each turn. It repairs what Whisper heard for the pending question
(:func:`~pipeline.brain.heard.repair_transcript`), keeps any name, cédula or phone the caller
volunteers (:mod:`~pipeline.brain.dialogue_facts`), then reads the utterance as the answer to
the pending question (``state.awaiting``, owned by one handler), else as a new goal, else as a
question for the knowledge base, else as a miss. Replies stream out as they are produced; each
tool call is also reported as a ``ToolEvent`` for the call record. Every fixed sentence lives
in :mod:`~pipeline.brain.phrases`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from pipeline.brain import phrases
from pipeline.brain.base import BrainOutput, CallContext, UserInput
from pipeline.brain.catalog import Catalog
from pipeline.brain.dialogue_booking import BOOKING_STEPS, BookingHandler
from pipeline.brain.dialogue_changes import CHANGE_STEPS, ChangesHandler
from pipeline.brain.dialogue_confirm import CONFIRM_STEPS, ConfirmHandler
from pipeline.brain.dialogue_facts import (
    absorb,
    capture_personal,
    restates_booking,
    starts_booking_by_date,
    starts_booking_by_details,
)
from pipeline.brain.dialogue_kit import SHORT_AGAIN, Kit, Turn
from pipeline.brain.dialogue_menu import MENU_STEPS, MenuHandler
from pipeline.brain.dialogue_questions import QUESTION_STEPS, QuestionsHandler
from pipeline.brain.dialogue_recovery import RecoveryHandler
from pipeline.brain.dialogue_slots import SLOT_STEPS, SlotsHandler
from pipeline.brain.dialogue_state import DialogueState
from pipeline.brain.heard import repair_transcript
from pipeline.brain.intents import Intent, asks_question, detect_intent, is_only_thanks
from pipeline.brain.spanish_text import is_affirmative, normalize
from pipeline.brain.spoken import parse_booking_code
from pipeline.brain.tools import Tools

__all__ = ["OfflineDialogueBrain"]

MAX_MISSES = 3
_GREETING_ONLY = re.compile(
    r"^(?:(?:hola|alo|aló|buenas|buenos|buenas tardes|buenos dias|buenas noches|dias|tardes|"
    r"noches|que tal|como esta|como estas|saludos|senorita|señorita|oiga|mire)\s*)+$"
)
# "Buenas, es para una cita…" heard as "Lunes, es para una cita…": a weekday alone before a
# pause, opening the call's first utterance, with a booking request after it, is a greeting.
_OPENING_WEEKDAY = re.compile(
    r"^\s*(?:lunes|martes|mi[eé]rcoles|jueves|viernes|s[aá]bado|domingo)\s*[,.]\s*(?P<rest>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_BOOKING_REQUEST = re.compile(r"\b(?:cita|citas|turno|reservar|agendar|sacar|renovar)\b")
# "Lunes, a las diez…": the weekday goes with a time, so it is a date after all.
_TIME_NEXT = re.compile(r"^(?:a las|a la|en la|por la|de la|temprano|tempranito|\d)")
_DONE = object()
# Questions where "sí, adiós" style answers are a yes, not a goodbye.
_FINAL_STEPS = frozenset(
    {"confirm_booking", "confirm_reschedule", "confirm_cancel", "confirm_target", "phone_confirm"}
)
# Questions a 1 (yes) or 2 (no) on the keypad answers.
_YES_NO_STEPS = _FINAL_STEPS | {"offer_booking", "offer_transfer", "anything_else", "slot_single"}
_DIGIT_STEPS = frozenset({"cedula", "lookup_cedula", "phone", "code_or_cedula"})
# What each pending question expects, for repairing what Whisper heard.
_EXPECT = {
    "service": "service",
    "office": "office",
    "when": "date",
    "slot_choice": "time",
    "name": "name",
    "surname": "name",
    "cedula": "cedula",
    "lookup_cedula": "cedula",
    "phone": "phone",
    "code_or_cedula": "code",
    "pick_booking": "choice",
    "clarify": "choice",
} | {step: "confirm" for step in _YES_NO_STEPS}
# "Eso es todo" to "¿Qué desea cambiar?" means nothing to change, not goodbye.
_FAREWELL = re.compile(r"\b(?:adios|chao|chau|bye|hasta luego|hasta pronto)\b")


class OfflineDialogueBrain:
    """Rule-based Spanish dialogue over :class:`~pipeline.brain.tools.Tools`.

    ``tools=None`` keeps the old behaviour (greeting, a few answers by heart, transfer and
    goodbye), which is what the session tests rely on.
    """

    name = "offline"

    def __init__(
        self,
        tools: Tools | None = None,
        office_name: str = "Punto Ciudadano",
        timezone: str = "America/Santo_Domingo",
        clock: Callable[[], datetime] | None = None,
        *,
        catalog: Catalog | None = None,
        max_misses: int = MAX_MISSES,
        can_transfer: bool = True,
    ) -> None:
        kit = Kit(tools, office_name, timezone, clock, catalog, max_misses, can_transfer)
        kit.booking = BookingHandler(kit)
        kit.changes = ChangesHandler(kit)
        kit.confirm = ConfirmHandler(kit)
        kit.menu = MenuHandler(kit)
        kit.questions = QuestionsHandler(kit)
        kit.recovery = RecoveryHandler(kit)
        kit.slots = SlotsHandler(kit)
        self._kit = kit
        self._steps: list[tuple[frozenset[str], Callable[[Turn], Awaitable[bool]]]] = [
            (MENU_STEPS, kit.menu.fill),
            (BOOKING_STEPS, kit.booking.fill),
            (SLOT_STEPS, kit.slots.fill),
            (CONFIRM_STEPS, kit.confirm.fill),
            (CHANGE_STEPS, kit.changes.fill),
            (QUESTION_STEPS, kit.questions.fill),
        ]

    # --- Brain interface --------------------------------------------------------------------
    async def greeting(self, ctx: CallContext) -> str:
        hour = self._kit.now().hour
        salute = phrases.SALUTES[0 if hour < 12 else 1 if hour < 19 else 2]
        text = phrases.greeting(salute, self._kit.office_name)
        DialogueState.of(ctx).last_prompt = text
        return text

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        state = DialogueState.of(ctx)
        text = user.text or ""
        if state.turns == 0:
            text = _drop_opening_weekday(text)
        if text.strip() and self._kit.catalog.services:
            text = repair_transcript(text, self._kit.catalog, _EXPECT.get(state.awaiting or ""))
        turn = Turn(ctx, state, text, user.dtmf or "")
        worker = asyncio.create_task(self._run(turn), name=f"offline-brain-{ctx.call_id}")
        worker.add_done_callback(lambda _t: turn.queue.put_nowait(_DONE))
        try:
            while (item := await turn.queue.get()) is not _DONE:
                yield item
            await worker  # re-raise a failure for the session to handle
        finally:
            if not worker.done():
                worker.cancel()

    def fixed_phrases(self) -> list[str]:
        """Every sentence this engine says verbatim, for the voice to pre-render."""
        return phrases.fixed_phrases(self._kit.catalog, self._kit.office_name)

    # --- the turn ---------------------------------------------------------------------------
    async def _run(self, t: Turn) -> None:
        st = t.st
        st.turns += 1
        asked = st.awaiting
        await self._dispatch(t)
        if st.awaiting != asked and asked:
            st.step_misses.pop(asked, None)  # that question is behind us
            st.choices = []
        if not t.said and not t.acted:  # never leave the caller in silence
            t.say(st.resume_prompt or phrases.HOW_CAN_I_HELP)
        if t.progress:
            st.misses = 0
        if t.said:
            st.last_prompt = " ".join(t.said)

    async def _dispatch(self, t: Turn) -> None:
        st, kit = t.st, self._kit
        if t.dtmf == "0":
            await kit.menu.transfer(t, "caller-request")
            return
        if t.dtmf and not t.raw:
            await self._on_dtmf(t)
            return
        if not t.norm:
            if st.awaiting:  # speech without words: the pending question, shorter, then keys
                await kit.recovery.reprompt(t, phrases.NOT_HEARD)
            else:
                await kit.menu.miss(t, phrases.STILL_THERE)
            return
        t.intent = intent = detect_intent(t.norm)
        captured = capture_personal(t) if kit.tools is not None else set()
        if intent.name == "human":
            await kit.menu.transfer(t, "caller-request")
            return
        if intent.name == "repeat":
            t.progress = True
            t.say(st.last_prompt or phrases.HOW_CAN_I_HELP)
            return
        if intent.name == "goodbye" and not (
            (st.awaiting in _FINAL_STEPS and is_affirmative(t.raw) is True)
            or (st.awaiting == "change_what" and not _FAREWELL.search(t.norm))
        ):
            await kit.menu.goodbye(t)
            return
        if st.awaiting and await self._fill(t):
            return
        if t.goal and await self._switch_task(t, intent):
            return
        if intent.name == "no_more" or (is_only_thanks(t.norm) and st.task is None):
            await kit.menu.goodbye(t)
            return
        if starts_booking_by_details(kit, t):
            await self._switch_task(t, Intent("book"))
            return
        if captured and not asks_question(t.norm, t.raw) and not self._mentions_more(t):
            t.progress = True
            if st.awaiting in SHORT_AGAIN:
                t.say(t.pending_question())
            elif st.task:
                await kit.advance(t)
            else:
                t.say(f"{phrases.NICE_TO_MEET} {phrases.HOW_CAN_I_HELP}")
            return
        if _GREETING_ONLY.fullmatch(t.norm):
            t.progress = True
            t.say(phrases.HELLO)
            t.say(t.pending_question() if st.task else phrases.HOW_CAN_I_HELP)
            return
        if is_only_thanks(t.norm):  # "gracias" in the middle of a booking goes on with it
            t.progress = True
            t.say(phrases.YOU_ARE_WELCOME)
            if st.resume_prompt:
                t.say(t.pending_question())
            return
        if st.task == "book" and kit.catalog.services and absorb(kit, t):
            t.progress = True
            await kit.advance(t)
            return
        if st.task is None and starts_booking_by_date(kit, t):
            t.progress = True
            st.start("book")
            st.draft.service = st.offer_service
            absorb(kit, t, service=True)
            t.say(phrases.BOOKING_START)
            await kit.advance(t)
            return
        if restates_booking(kit, t):
            await self._restated(t)
            return
        if st.task and st.awaiting and not asks_question(t.norm, t.raw):
            # A garbled answer on a bad line ("el toxi molaume") is not a question for the
            # knowledge base: reading out an unrelated passage would only lose the caller.
            await kit.menu.not_understood(t)
            return
        if await kit.questions.answer(t):
            return
        await kit.menu.not_understood(t)

    async def _restated(self, t: Turn) -> None:
        """The request said again instead of an answer: the caller lost track of the question
        (or did not hear it). Say where we are, then re-ask through the recovery ladder, so the
        same question is never put a third time in the same words."""
        st, kit = t.st, self._kit
        service = kit.catalog.service(st.draft.service)
        lead = phrases.booking_under_way(service.spoken) if service else phrases.NOT_CAUGHT
        if st.awaiting:
            await kit.recovery.restated(t, lead)
            return
        t.progress = True
        t.say(lead)
        t.say(t.pending_question())

    def _mentions_more(self, t: Turn) -> bool:
        """Does the turn say more than who the caller is (a service, an office, a day)?"""
        catalog = self._kit.catalog
        return bool(catalog.find_services(t.norm) or catalog.find_offices(t.norm))

    async def _fill(self, t: Turn) -> bool:
        """Read the utterance as the answer to ``state.awaiting``; False if it is not one."""
        for steps, fill in self._steps:
            if t.st.awaiting in steps:
                return await fill(t)
        return False

    async def _on_dtmf(self, t: Turn) -> None:
        st, kit = t.st, self._kit
        digits = t.dtmf.replace("*", "")
        if st.awaiting in _DIGIT_STEPS or (st.awaiting == "phone_confirm" and len(digits) >= 10):
            if not await self._fill(t):
                await kit.recovery.reprompt(t, phrases.BAD_DIGITS)
            return
        if st.awaiting in _YES_NO_STEPS and digits in ("1", "2"):
            t.forced_yes = digits == "1"
            await self._fill(t)
            return
        for on_key in (
            kit.booking.on_key,
            kit.slots.on_key,
            kit.changes.on_key,
            kit.confirm.on_key,
        ):
            if await on_key(t, digits):
                return
        if await kit.questions.on_key(t, digits):
            return
        if st.awaiting:
            await kit.recovery.reprompt(t, phrases.BAD_KEY)
        else:
            await kit.menu.miss(t, f"{phrases.BAD_KEY} {phrases.HOW_CAN_I_HELP}")

    async def _switch_task(self, t: Turn, intent: Intent) -> bool:
        st, kit = t.st, self._kit
        if kit.tools is None:
            t.progress = True
            if kit.can_transfer:
                st.awaiting = "offer_transfer"
                t.ask(phrases.CANNOT_BOOK_HERE)
            else:
                t.say(phrases.CANNOT_BOOK_NO_AGENT)
                kit.menu.offer_agent(t)
            return True
        name = intent.name
        if st.task == "book" and name == "cancel" and not intent.mine:
            t.progress = True
            st.finish()
            t.say(f"{phrases.NOT_BOOKING} {phrases.ANYTHING_ELSE}")
            return True
        if st.task == "book" and name in ("reschedule", "book") and not intent.mine:
            # "cámbiela para el jueves" while booking: a correction of the draft.
            changed = absorb(kit, t)
            if changed or name == "book":
                t.progress = True
                if not changed and st.awaiting:
                    await self._restated(t)
                    return True
                await kit.advance(t)
                return True
        t.progress = True
        # "Quiero la cita" right after a question about a service: the booking is for it.
        asked_about = st.offer_service if st.awaiting in ("offer_booking", "clarify") else None
        st.start(name)
        if name == "book":
            absorb(kit, t, service=True)
            st.draft.service = st.draft.service or asked_about
            t.say(phrases.BOOKING_START)
        else:
            absorb(kit, t, service=False)
            code = parse_booking_code(t.raw)
            if code is not None:
                await kit.changes.lookup(t, code=code)
                return True
        await kit.advance(t)
        return True


def _drop_opening_weekday(text: str) -> str:
    """The first utterance without a weekday that is probably a misheard greeting: asking
    "¿Para qué día?" costs one turn, booking a day never said costs the appointment."""
    m = _OPENING_WEEKDAY.match(text)
    if m is None:
        return text
    rest = m.group("rest")
    said = normalize(rest)
    if not _BOOKING_REQUEST.search(said) or len(rest.split()) < 3 or _TIME_NEXT.match(said):
        return text
    return rest
