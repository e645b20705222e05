"""What every part of the offline dialogue shares: one turn in the making, and the kit.

:class:`Turn` is one reply being produced: what is said and done goes to the caller at once,
and it carries the reading of the utterance (intent, yes/no, correction) that every handler
needs. :class:`Kit` holds the call-independent services (tools, catalog, clock, date parsing)
and the task handlers, so a handler can ask another for help (the booking handler offers slots
through the slots handler) without importing it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pipeline.brain import phrases
from pipeline.brain.base import BrainOutput, CallContext, EndCall, TextChunk, ToolEvent, Transfer
from pipeline.brain.catalog import Catalog
from pipeline.brain.dialogue_state import DialogueState
from pipeline.brain.intents import Intent
from pipeline.brain.spanish_dates import WEEKDAY_NAMES, When, is_correction, parse_when
from pipeline.brain.spanish_text import is_affirmative, normalize
from pipeline.brain.tools import Tools

if TYPE_CHECKING:
    from pipeline.brain.dialogue_booking import BookingHandler
    from pipeline.brain.dialogue_changes import ChangesHandler
    from pipeline.brain.dialogue_confirm import ConfirmHandler
    from pipeline.brain.dialogue_menu import MenuHandler
    from pipeline.brain.dialogue_questions import QuestionsHandler
    from pipeline.brain.dialogue_recovery import RecoveryHandler
    from pipeline.brain.dialogue_slots import SlotsHandler

log = logging.getLogger("taina.brain.offline")

__all__ = ["GOALS", "KEYPAD_FORMS", "SHORT_AGAIN", "Kit", "Turn"]

GOALS = frozenset({"book", "reschedule", "cancel", "find"})
# Questions asked again in their short form after a digression (a read-back or a list of
# times is said whole: the caller needs it).
SHORT_AGAIN = frozenset({"service", "office", "when", "name", "cedula", "phone"})
# A number's question already said twice in the call (after digressions: "gracias", a greeting,
# the request said again): the third time it is the keypad, in words not yet said twice.
KEYPAD_FORMS = {
    "cedula": (phrases.PRESS_CEDULA, phrases.PRESS_CEDULA_AGAIN),
    "lookup_cedula": (phrases.PRESS_CEDULA, phrases.PRESS_CEDULA_AGAIN),
    "code_or_cedula": (phrases.PRESS_CODE_OR_CEDULA, phrases.PRESS_CEDULA_AGAIN),
    "phone": (phrases.PRESS_PHONE, phrases.PRESS_PHONE_AGAIN),
}
# How Whisper writes a short "sí" said alone on a phone line.
_MISHEARD_YES = frozenset({"c", "ce", "si si", "sii", "see"})
_PLACE_NAMES = re.compile(r"\bsanto domingo\b|\bavenida 27 de febrero\b")
_GLUED_ARTICLE = re.compile(r"\ba(las|la)(?=\s+(?:\d|[a-z]))")
# How Whisper writes an hour word on a phone line ("a las nueva", "a las ojo y media").
_HOUR_WORDS = {
    "nueva": "nueve",
    "nuevo": "nueve",
    "mueve": "nueve",
    "ojo": "ocho",
    "oche": "ocho",
    "osho": "ocho",
    "dies": "diez",
    "dié": "diez",
    "onse": "once",
    "dose": "doce",
    "sinco": "cinco",
    "sei": "seis",
    "tre": "tres",
    "siente": "siete",
}
_HOUR_SLIP = re.compile(r"\b(a las |a la |las )(" + "|".join(_HOUR_WORDS) + r")\b")
# "el jueves a las viernes": the hour bent into a weekday by the line (and the recogniser's
# office vocabulary); the day was the first one said, the hour is lost.
_WEEKDAY_WORDS = "|".join(normalize(name) for name in WEEKDAY_NAMES)
_WEEKDAY_AS_HOUR = re.compile(
    rf"\b(?P<day>{_WEEKDAY_WORDS})\b(?P<mid>[^.;]{{0,12}}?)\ba las? (?:{_WEEKDAY_WORDS})\b"
)
# "el viernes a once": "las" lost on the line.
_BARE_HOUR = re.compile(r"\ba (una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce)\b")
_WEEKDAY_INDEX = {normalize(name): i for i, name in enumerate(WEEKDAY_NAMES)}
_RELATIVE_WEEKDAY = re.compile(
    r"\b(?:pasado\s+)?(?:mañana|manana|hoy)\s+(?:el\s+)?(?P<wd>lunes|martes|miercoles|jueves|"
    r"viernes|sabado|domingo)\b(?:\s+\d+)?"
)


class Turn:
    """One reply in the making: what is said and done goes to the caller immediately."""

    def __init__(self, ctx: CallContext, state: DialogueState, text: str, dtmf: str) -> None:
        self.ctx = ctx
        self.st = state
        self.raw = text.strip()
        self.norm = normalize(self.raw)
        self.dtmf = re.sub(r"[^0-9*]", "", dtmf)
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.said: list[str] = []
        self.intent = Intent("none")
        self.forced_yes: bool | None = None  # a 1 or 2 keyed at a yes/no question
        self.progress = False  # something was understood this turn
        self.ambiguous_office = False  # "Santo Domingo" without Centro or Este
        self.acted = False  # an EndCall or Transfer was emitted

    @property
    def yes(self) -> bool | None:
        """The caller's yes or no to the pending question (a key wins over words)."""
        if self.forced_yes is not None:
            return self.forced_yes
        verdict = is_affirmative(self.raw)
        if verdict is None and self.norm in _MISHEARD_YES:
            return True
        return verdict

    @property
    def goal(self) -> bool:
        """The utterance names a task (book, move, cancel, find an appointment)."""
        return self.intent.name in GOALS

    def names_other_task(self) -> bool:
        """Instead of answering a booking question, the caller asks for another task (a new
        booking request, or any request while booking, still counts as an answer)."""
        intent = self.intent
        return self.goal and not (
            intent.name == "book" or (self.st.task == "book" and not intent.mine)
        )

    @property
    def correction(self) -> bool:
        return bool(self.raw) and is_correction(self.raw)

    def say(self, text: str) -> None:
        text = text.strip()
        if text:
            self.said.append(text)
            counts = self.st.said_count
            for sentence in {*_question_sentences(text), text}:
                counts[sentence] = counts.get(sentence, 0) + 1
            self.queue.put_nowait(TextChunk(text + " "))

    def ask(
        self, text: str, *, resume: bool = True, short: str | None = None, whole: bool = False
    ) -> None:
        """Say a question; ``resume`` makes it the one to come back to after a digression.
        The same question asked again right away is said in its short form (``short``, else
        the step's), never verbatim: the caller gave something else, or the line dropped a
        word. ``whole``: the text carries information (the times on offer) and is read whole
        even when it was read before."""
        short = short or phrases.SHORT_QUESTIONS.get(self.st.awaiting or "")
        asked = self.st.asked
        if resume and short and asked.get(text) and not whole:
            step = self.st.awaiting or ""
            twice = self.times_said(short) >= 2 and step in KEYPAD_FORMS
            self.say(self.keypad_prompt(step) if twice else short)
            self.st.resume_prompt = text
            return
        self.say(text)
        if resume:
            asked[text] = asked.get(text, 0) + 1
            self.st.resume_prompt = text

    def pending_question(self) -> str:
        """The question still open, to come back to: short when it has a short form."""
        step = self.st.awaiting or ""
        if step in SHORT_AGAIN:
            short = phrases.SHORT_QUESTIONS[step]
            if self.times_said(short) >= 2 and step in KEYPAD_FORMS:
                return self.keypad_prompt(step)
            return short
        return self.st.resume_prompt

    def keypad_prompt(self, step: str) -> str:
        """The keypad offer for a number, in the wording said least often so far."""
        forms = KEYPAD_FORMS[step]
        return min(forms, key=self.times_said)

    def times_said(self, question: str) -> int:
        """How often this question was said in the call (any turn, any reason)."""
        return self.st.said_count.get(question, 0)

    def emit(self, out: BrainOutput) -> None:
        self.acted = self.acted or isinstance(out, EndCall | Transfer)
        self.queue.put_nowait(out)


class Kit:
    """Services shared by the handlers, and the handlers themselves (set by the brain)."""

    booking: BookingHandler
    changes: ChangesHandler
    confirm: ConfirmHandler
    menu: MenuHandler
    questions: QuestionsHandler
    recovery: RecoveryHandler
    slots: SlotsHandler

    def __init__(
        self,
        tools: Tools | None,
        office_name: str,
        timezone: str,
        clock: Callable[[], datetime] | None,
        catalog: Catalog | None,
        max_misses: int,
        can_transfer: bool = True,
    ) -> None:
        self.tools = tools
        self.office_name = office_name
        self.tz = ZoneInfo(timezone)
        self._clock = clock or (lambda: datetime.now(self.tz))
        self._tools_clock = clock is None and callable(getattr(tools, "now", None))
        self.catalog = catalog or getattr(tools, "catalog", None) or Catalog((), ())
        self.max_misses = max_misses
        self.can_transfer = can_transfer  # a person can take the call (a transfer number)

    # --- the next step of the task --------------------------------------------------------
    async def advance(self, t: Turn) -> None:
        """Ask for the first missing field of the task, or act when nothing is missing."""
        if t.st.task == "book":
            await self.booking.advance(t)
        elif t.st.task in ("reschedule", "cancel", "find"):
            await self.changes.advance(t)
        else:
            t.st.awaiting = None
            t.ask(phrases.WHAT_ELSE)

    # --- tools ----------------------------------------------------------------------------
    async def tool(self, t: Turn, name: str, args: dict[str, Any]) -> dict[str, Any]:
        assert self.tools is not None
        try:
            result = await self.tools.call(name, args, t.ctx)
        except Exception:  # the Tools contract says never, but a brain must not die of it
            log.exception("tool %s raised", name)
            result = {"error": "Tuve un problema con el sistema.", "reason": "internal"}
        t.emit(ToolEvent(name=name, arguments=dict(args), result=result))
        return result

    async def commit(
        self,
        t: Turn,
        name: str,
        args: dict[str, Any],
        apply: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """A tool call that changes a booking: finished (and remembered) even if the caller
        barges in meanwhile, so the dialogue never forgets what it did."""
        assert self.tools is not None
        tools = self.tools

        async def run() -> dict[str, Any]:
            try:
                result = await tools.call(name, args, t.ctx)
            except Exception:
                log.exception("tool %s raised", name)
                result = {"error": "Tuve un problema con el sistema.", "reason": "internal"}
            apply(result)
            return result

        result = await asyncio.shield(asyncio.ensure_future(run()))
        t.emit(ToolEvent(name=name, arguments=dict(args), result=result))
        return result

    # --- time -----------------------------------------------------------------------------
    def now(self) -> datetime:
        if self._tools_clock:
            now = self.tools.now()  # type: ignore[union-attr]
            if now is not None:
                return now.astimezone(self.tz)
        now = self._clock()
        return now.astimezone(self.tz) if now.tzinfo else now.replace(tzinfo=self.tz)

    def today(self) -> date:
        return self.now().date()

    def parse_when(self, raw: str, expect: str | None = None) -> When | None:
        if not raw:
            return None
        # "Santo Domingo" is a place, not a Sunday; Whisper often writes "alas" for "a las".
        text = _PLACE_NAMES.sub(" ", normalize(raw))
        text = _GLUED_ARTICLE.sub(lambda m: "a " + m.group(1), text)
        text = _HOUR_SLIP.sub(lambda m: m.group(1) + _HOUR_WORDS[m.group(2)], text)
        text = _WEEKDAY_AS_HOUR.sub(lambda m: m.group("day") + m.group("mid"), text)
        text = _BARE_HOUR.sub(
            lambda m: ("a la " if m.group(1) == "una" else "a las ") + m.group(1), text
        )
        if not text.strip():
            return None
        now = self.now().replace(tzinfo=None)
        when = parse_when(text, now, expect=expect)  # type: ignore[arg-type]
        if when is not None and when.conflict and when.date is not None:
            # "mañana lunes" said on a Saturday: the caller names the day they mean and is
            # wrong about "mañana"; a day number, when given, wins instead ("el lunes 24").
            m = _RELATIVE_WEEKDAY.search(text)
            if m and not re.search(r"\d", m.group(0)):
                weekday = _WEEKDAY_INDEX[m.group("wd")]
                ahead = (weekday - now.weekday()) % 7 or 7
                when = replace(when, date=now.date() + timedelta(days=ahead), conflict=False)
        return when

    def service_name(self, row: dict[str, Any]) -> str:
        service = self.catalog.service(row.get("service"))
        return service.spoken if service else str(row.get("service_name", "")).lower()


def _question_sentences(text: str) -> list[str]:
    """What a reply asks, to count: each "¿…?" in it, and the reply itself when it is one
    sentence ("Puede marcar su cédula en el teclado…")."""
    questions = re.findall(r"¿[^?¿]*\?", text)
    return questions if text not in questions else [text]
