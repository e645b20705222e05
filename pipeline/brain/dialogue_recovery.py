"""What a good agent does on a bad line when an answer was not understood.

The same question is never asked a third time. After the first miss it is asked again,
shorter (never verbatim); after the second the caller gets choices they can say or key
("¿Es para cédula, pasaporte o licencia? Diga el nombre o marque 1, 2 o 3"), or the keypad
for numbers; after the third the assistant moves on in the way that makes sense for that
question (any office, the earliest time on offer, no contact phone, the number they call
from, the name as heard) or,
when nothing sensible is left, offers a person or the office's phone.
"""

from __future__ import annotations

from pipeline.brain import phrases
from pipeline.brain.dialogue_kit import KEYPAD_FORMS, Kit, Turn
from pipeline.brain.names import name_as_heard

__all__ = ["RecoveryHandler"]

_YES_NO = frozenset(
    {
        "confirm_booking",
        "confirm_reschedule",
        "confirm_cancel",
        "confirm_target",
        "slot_single",
        "phone_confirm",
        "anything_else",
        "offer_booking",
        "offer_transfer",
    }
)
_NUMBER_STEPS = frozenset({"cedula", "lookup_cedula", "code_or_cedula", "phone"})
# Words a caller says before dictating a number ("sí, claro, mi cédula es…").
_PRELUDE_WORDS = frozenset(
    "si claro ok okey bueno pues este mire a ver cedula mi su el la es son numero de telefono "
    "celular codigo aqui lo tengo espere un momento deje ya voy".split()
)
_KEYPAD = {
    "cedula": phrases.PRESS_CEDULA,
    "lookup_cedula": phrases.PRESS_CEDULA,
    "code_or_cedula": phrases.PRESS_CODE_OR_CEDULA,
    "phone": phrases.PRESS_PHONE,
    "name": phrases.SAY_NAME_SLOWLY,
    "change_what": phrases.ASK_CHANGE_MENU,
}


class RecoveryHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def reprompt(self, t: Turn, lead: str = phrases.NOT_CAUGHT) -> None:
        """The answer to the pending question was not understood."""
        st = t.st
        step = st.awaiting or ""
        prelude = step in _NUMBER_STEPS and _is_prelude(t) and not st.draft.cedula_partial
        if prelude and not st.step_misses.get(step + "+"):
            # "Sí, mi cédula es…" cut off before the digits: the caller is about to go on.
            st.step_misses[step + "+"] = 1
            t.say(phrases.GO_ON_DIGITS)
            return
        misses = st.step_misses[step] = st.step_misses.get(step, 0) + 1
        if step == "name" and misses >= 2 and self._name_from_tries(t):
            # A third question about the name loses the caller: carry on with the words
            # heard, read back at the confirmation where "No, el nombre es …" fixes them.
            st.step_misses.pop(step, None)
            t.progress = True
            await self.kit.advance(t)
            return
        if step == "name" and t.raw:
            st.name_tries.append(t.raw)
        if misses >= 3 or step == "surname":
            await self._move_on(t, step)
            return
        t.say(lead)
        short = phrases.SHORT_QUESTIONS.get(step, "")
        if misses == 1 and not (short and t.times_said(short) >= 2):
            self._ask_shorter(t, step)
        else:
            await self._offer_choices(t, step)

    def _name_from_tries(self, t: Turn) -> bool:
        """The name as heard in this answer or an earlier one, when any word could be one."""
        for said in [t.raw, *reversed(t.st.name_tries)]:
            heard = name_as_heard(said) if said else None
            if heard:
                t.st.draft.name = heard
                t.st.name_tries.clear()
                return True
        return False

    def _ask_shorter(self, t: Turn, step: str) -> None:
        st = t.st
        if step == "when" and st.draft.when is not None and st.draft.when.time is not None:
            t.say(phrases.ASK_DAY)
        elif step == "slot_choice":
            t.say(phrases.PRESS_SLOT)
        elif step == "cedula" and st.draft.cedula_partial:
            t.say(phrases.CEDULA_AGAIN_FULL)  # a digit was lost: start over, not "continue"
        elif step == "office" and 1 < len(st.draft.office_choices) <= 3:
            t.say(
                phrases.short_choice(
                    phrases.office_labels(self.kit.catalog, st.draft.office_choices)
                )
            )
        elif step == "clarify" and st.clarify:
            t.say(st.clarify["question"])
        else:
            t.say(phrases.SHORT_QUESTIONS.get(step) or st.resume_prompt or phrases.HOW_CAN_I_HELP)

    async def _offer_choices(self, t: Turn, step: str) -> None:
        st, d = t.st, t.st.draft
        catalog = self.kit.catalog
        if step == "service" and catalog.services:
            st.choices = [s.code for s in catalog.services]
            t.say(phrases.choices_menu(phrases.service_labels(catalog), "para "))
        elif step == "office" and d.office_choices:
            labels = phrases.office_labels(catalog, d.office_choices)
            st.choices = list(d.office_choices)
            t.say(phrases.choices_menu(labels, "en "))
        elif step == "when" and d.service:
            d.clear_time()
            d.soonest = True
            t.say(phrases.FIRST_FREE_SLOTS)
            await self.kit.slots.ensure_slot(t)
            if st.awaiting == "slot_choice":
                t.say(phrases.PRESS_SLOT)
        elif step == "slot_choice":
            t.say(st.resume_prompt)
            t.say(phrases.PRESS_SLOT)
        elif step == "pick_booking":
            keys = [str(i + 1) for i in range(len(st.candidates))]
            t.say(f"{st.resume_prompt} Marque {', '.join(keys[:-1])} o {keys[-1]}.")
        elif step == "clarify" and st.clarify:
            st.choices = list(st.clarify["options"])
            t.say(phrases.choices_menu(st.choices))
        elif step in KEYPAD_FORMS:
            t.say(t.keypad_prompt(step))
        elif step in _KEYPAD:
            t.say(_KEYPAD[step])
        elif step in _YES_NO:
            t.say(phrases.SHORT_QUESTIONS[step])
            t.say(phrases.PRESS_YES_NO)
        else:
            t.say(st.resume_prompt or phrases.HOW_CAN_I_HELP)

    def last_try(self, t: Turn, step: str) -> str:
        """The question once more after the dead-end notice: in the form the caller can key
        or pick from (the keypad, the menu of choices), not the words already heard twice."""
        st = t.st
        if step in KEYPAD_FORMS:
            return t.keypad_prompt(step)
        if step in _KEYPAD:
            return _KEYPAD[step]
        if step in _YES_NO:
            return phrases.PRESS_YES_NO
        if st.choices and step in ("service", "office", "clarify"):
            lead = {"service": "para ", "office": "en "}.get(step, "")
            return phrases.choices_menu(self._choice_labels(t, step), lead)
        return phrases.SHORT_QUESTIONS.get(step) or st.resume_prompt or phrases.HOW_CAN_I_HELP

    def _choice_labels(self, t: Turn, step: str) -> list[str]:
        catalog = self.kit.catalog
        if step == "service":
            return phrases.service_labels(catalog)
        if step == "office":
            return phrases.office_labels(catalog, t.st.choices)
        return list(t.st.choices)

    async def restated(self, t: Turn, lead: str) -> None:
        """The caller said the request again instead of answering: they are still with us, so
        this never ends in a dead end. The ladder goes on (shorter, then choices or the
        keypad); past it, a sensible default where the task has one, else the keypad or the
        choices in words not yet heard twice."""
        st = t.st
        step = st.awaiting or ""
        if st.step_misses.get(step, 0) < 2:
            await self.reprompt(t, lead)
            return
        t.progress = True
        t.say(lead)
        # The request said again is no name: that default would take its words for one.
        if step != "name" and await self._default(t, step):
            st.step_misses.pop(step, None)
            return
        t.say(self.last_try(t, step))

    async def _move_on(self, t: Turn, step: str) -> None:
        """A third miss: carry on without this answer where the task allows it."""
        t.progress = True
        t.st.step_misses.pop(step, None)
        if await self._default(t, step):
            return
        st = t.st
        if step == "change_what":
            st.awaiting = None
            await self.kit.advance(t)
            return
        if step == "anything_else":
            await self.kit.menu.goodbye(t)
            return
        if step in ("offer_booking", "offer_transfer"):
            st.offer_service = None
            st.awaiting = "anything_else"
            t.ask(phrases.ANYTHING_ELSE, resume=False)
            return
        if step == "clarify" and st.clarify:
            await self.kit.questions.answer_variant(t, st.clarify["options"][0])
            return
        await self.kit.menu.transfer(t, "misunderstanding")

    async def _default(self, t: Turn, step: str) -> bool:
        """Carry on with the answer a good agent would assume, said so it can be corrected at
        the read-back; False when this question has no such answer."""
        st, d = t.st, t.st.draft
        kit = self.kit
        if step == "office" and st.task == "book":
            d.any_office = True  # the first free slot in any office that does it
            st.awaiting = None
            await kit.advance(t)
            return True
        if step == "surname":
            await kit.advance(t)  # the given name alone, read back at the confirmation
            return True
        if step == "phone":
            d.phone, d.phone_done = None, True
            await kit.advance(t)
            return True
        if step == "phone_confirm":
            d.phone, d.phone_done = t.ctx.caller_number, True
            await kit.advance(t)
            return True
        if step == "name" and (heard := name_as_heard(t.raw)):
            d.name = heard
            await kit.advance(t)  # read back at the confirmation, where it can be corrected
            return True
        if step in ("slot_choice", "slot_single") and d.offered and st.task == "book":
            # The earliest time on offer, said plainly; the read-back can still change it.
            t.say(phrases.TAKING_FIRST_SLOT)
            await kit.slots.choose(t, d.offered[0])
            return True
        return False


def _is_prelude(t: Turn) -> bool:
    """A short turn with no digits, made only of the words that come before a number."""
    words = t.norm.split()
    return 0 < len(words) <= 5 and not t.dtmf and all(w in _PRELUDE_WORDS for w in words)
