"""The offline dialogue engine: Spanish intents, slot filling and retrieval, no network.

It is the default brain without an LLM key and the LLM brain's fallback mid-call, so it must
do the whole job with the same tools: answer questions from the knowledge base, and book,
move, cancel or look up appointments. It speaks in short sentences, asks one thing at a time,
reads everything back before acting, and hands over to a person on request or when it keeps
failing to understand.

Design: a frame per task (:class:`~pipeline.brain.dialogue_state.Draft`) and a single
``_advance`` step that asks for the first missing field or acts when nothing is missing.
Every turn first tries to read the utterance as the answer to the pending question
(``state.awaiting``), then as a correction, then as a new goal, then as a question for the
knowledge base. Replies stream out as they are produced; each tool call is also reported as a
``ToolEvent`` for the call record.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.brain.base import (
    BrainOutput,
    CallContext,
    EndCall,
    TextChunk,
    ToolEvent,
    Transfer,
    UserInput,
)
from pipeline.brain.catalog import Catalog, join_es
from pipeline.brain.dialogue_state import DialogueState, Draft
from pipeline.brain.faq import faq_answer
from pipeline.brain.intents import (
    Intent,
    asks_question,
    choice_index,
    detect_intent,
    extract_cedula_digits,
    extract_name,
    extract_phone_digits,
    is_only_thanks,
    knowledge_topic,
    question_facet,
    wants_other_day,
)
from pipeline.brain.spanish_dates import (
    When,
    is_correction,
    parse_when,
    speak_date,
    speak_datetime,
    speak_time,
)
from pipeline.brain.spanish_text import is_affirmative, normalize, number_to_words
from pipeline.brain.spoken import parse_booking_code, speak_cedula, speak_phone_end
from pipeline.brain.tools import (
    BOOK_APPOINTMENT,
    CANCEL_APPOINTMENT,
    CHECK_AVAILABILITY,
    END_CALL,
    FIND_MY_APPOINTMENTS,
    RESCHEDULE_APPOINTMENT,
    SEARCH_KNOWLEDGE,
    TRANSFER_TO_HUMAN,
    Tools,
)

log = logging.getLogger("taina.brain.offline")

__all__ = ["OfflineDialogueBrain"]

MAX_MISSES = 3
ANYTHING_ELSE = "¿Le puedo ayudar en algo más?"
CAPABILITIES = (
    "Puedo darle información sobre trámites, requisitos, costos, horarios y oficinas, y "
    "reservar, cambiar o cancelar citas."
)
_SOONEST = re.compile(
    r"\b(?:lo mas pronto|lo antes posible|la mas pronta|lo mas rapido|cuanto antes|"
    r"el primer(?:o)? (?:dia|turno|horario|espacio|cupo)|cuando haya|la primera disponible|"
    r"el mas cercano|la mas cercana|lo mas cercano|cualquier dia)\b"
)
_CHANGE_TIME = re.compile(r"\b(?:dia|fecha|hora|horario|turno|cuando)\b")
_CHANGE_HOUR_ONLY = re.compile(r"^(?:(?:la|el|solo|solamente|nada mas)\s+)*(?:hora|horario)\b")
_CHANGE_OFFICE = re.compile(r"\b(?:oficina|lugar|sitio|sucursal|sede)\b")
_CHANGE_NAME = re.compile(r"\bnombre\b")
_CHANGE_CEDULA = re.compile(r"\bcedula\b")
_CHANGE_SERVICE = re.compile(r"\b(?:tramite|servicio)\b")
_NO_CODE = re.compile(
    r"\b(?:no lo tengo|no tengo (?:el|ese|ningun) codigo|no (?:lo )?tengo a mano|lo perdi|"
    r"no me acuerdo|no recuerdo|no se cual es|no lo se|no lo encuentro|no tengo codigo)\b"
)
_MINOR = re.compile(r"\b(?:menor|mi hij[oa]|el nino|la nina|no tiene cedula|no tengo cedula)\b")
_NO_PHONE = re.compile(r"\b(?:no tengo|ninguno|sin telefono|no hace falta|no importa)\b")
_GREETING_ONLY = re.compile(
    r"^(?:(?:hola|alo|aló|buenas|buenos|buenas tardes|buenos dias|buenas noches|dias|tardes|"
    r"noches|que tal|como esta|como estas|saludos|senorita|señorita|oiga|mire)\s*)+$"
)
_PERIOD = re.compile(r" (de la mañana|de la tarde|de la noche|de la madrugada|del mediodía)$")
_DONE = object()
_WEEKDAY_INDEX = {
    "lunes": 0,
    "martes": 1,
    "miercoles": 2,
    "jueves": 3,
    "viernes": 4,
    "sabado": 5,
    "domingo": 6,
}
_RELATIVE_WEEKDAY = re.compile(
    r"\b(?:pasado\s+)?(?:mañana|manana|hoy)\s+(?:el\s+)?(?P<wd>lunes|martes|miercoles|jueves|"
    r"viernes|sabado|domingo)\b(?:\s+\d+)?"
)
_GLUED_ARTICLE = re.compile(r"\ba(las|la)(?=\s+(?:\d|[a-z]))")
# How Whisper writes a short "sí" said alone on a phone line.
_MISHEARD_YES = frozenset({"c", "ce", "si si", "sii", "see"})
_PLACE_NAMES = re.compile(r"\bsanto domingo\b|\bavenida 27 de febrero\b")
# Words of a question that say nothing about what is asked, for the relevance check.
# Words that put a question in the office's domain even when the documents say little about
# its other words ("¿Me van a castigar si falto a la cita?").
_ANCHOR_WORDS = (
    "cita turno horario hora abren cierran direccion telefono correo costo cuesta precio "
    "tarjeta efectivo dolares requisitos documento papeles queja reclamacion agente feriado "
    "sabado domingo parqueo parquear accesibilidad embarazada preferencial fila visa multa "
    "traduccion traducen estafa gestor recibo denuncia duplicado renovar renovacion vencida "
    "menor interprete senas extranjero tramite certificado"
).split()
_GENERIC_WORDS = (
    "oficina oficinas punto ciudadano puedo pueden puede hacer hacen tener tienen "
    "dia dias saber quiero necesito favor usted ustedes ahi alli donde cuando como cuanto"
).split()
# Prompts whose answer is a day or a time.
_WHEN_STEPS = frozenset({"when", "slot_choice", "slot_single"})
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
_CONFIRM_STEPS = frozenset(
    {"confirm_booking", "confirm_cancel", "confirm_reschedule", "confirm_target", "phone_confirm"}
)


class _Turn:
    """One reply in the making: what is said and done goes to the caller immediately."""

    def __init__(self, ctx: CallContext, state: DialogueState, user: UserInput) -> None:
        self.ctx = ctx
        self.st = state
        self.raw = (user.text or "").strip()
        self.norm = normalize(self.raw)
        self.dtmf = re.sub(r"[^0-9*]", "", user.dtmf or "")
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.said: list[str] = []
        self.progress = False  # something was understood this turn
        self.ambiguous_office = False  # "Santo Domingo" without Centro or Este
        self.acted = False  # an EndCall or Transfer was emitted

    def say(self, text: str) -> None:
        text = text.strip()
        if text:
            self.said.append(text)
            self.queue.put_nowait(TextChunk(text + " "))

    def emit(self, out: BrainOutput) -> None:
        self.acted = self.acted or isinstance(out, EndCall | Transfer)
        self.queue.put_nowait(out)


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
    ) -> None:
        self._tools = tools
        self._office = office_name
        self._tz = ZoneInfo(timezone)
        tools_now = getattr(tools, "now", None)
        self._clock = clock or (lambda: datetime.now(self._tz))
        self._tools_clock = clock is None and callable(tools_now)
        self._catalog = catalog or getattr(tools, "catalog", None) or Catalog((), ())
        self._max_misses = max_misses
        self._speakable: Callable[..., str] | None = None
        self._analyzer: Any = None
        self._generic_terms: set[str] = set()
        self._anchor_terms: set[str] = set()
        if tools is not None:
            self._load_text_tools()

    def _load_text_tools(self) -> None:
        """Import the knowledge package's text helpers now, not during a caller's turn."""
        try:
            from knowledge.speech import speakable_answer
            from knowledge.text import default_analyzer
        except ImportError:  # a deployment without the knowledge package
            return
        self._speakable = speakable_answer
        self._analyzer = default_analyzer()
        self._generic_terms = set(self._analyzer.tokenize(" ".join(_GENERIC_WORDS)))
        self._anchor_terms = set(self._analyzer.tokenize(" ".join(_ANCHOR_WORDS)))

    # --- Brain interface --------------------------------------------------------------------
    async def greeting(self, ctx: CallContext) -> str:
        hour = self._now().hour
        salute = "Buenos días" if hour < 12 else "Buenas tardes" if hour < 19 else "Buenas noches"
        text = (
            f"{salute}, gracias por llamar a {self._office}. Le habla Taína, su asistente "
            "virtual. ¿En qué le puedo ayudar?"
        )
        DialogueState.of(ctx).last_prompt = text
        return text

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        turn = _Turn(ctx, DialogueState.of(ctx), user)
        worker = asyncio.create_task(self._run(turn), name=f"offline-brain-{ctx.call_id}")
        worker.add_done_callback(lambda _t: turn.queue.put_nowait(_DONE))
        try:
            while (item := await turn.queue.get()) is not _DONE:
                yield item
            await worker  # re-raise a failure for the session to handle
        finally:
            if not worker.done():
                worker.cancel()

    # --- the turn ---------------------------------------------------------------------------
    async def _run(self, t: _Turn) -> None:
        st = t.st
        st.turns += 1
        await self._dispatch(t)
        if not t.said and not t.acted:  # never leave the caller in silence
            t.say(st.resume_prompt or "¿En qué le puedo ayudar?")
        if t.progress:
            st.misses = 0
        if t.said:
            st.last_prompt = " ".join(t.said)

    async def _dispatch(self, t: _Turn) -> None:
        st = t.st
        if t.dtmf == "0":
            await self._transfer(t, "caller-request")
            return
        if t.dtmf and not t.raw:
            await self._on_dtmf(t)
            return
        if not t.norm:
            await self._miss(t, "¿Sigue ahí? Dígame en qué le puedo ayudar.")
            return
        intent = detect_intent(t.norm)
        if intent.name == "human":
            await self._transfer(t, "caller-request")
            return
        if intent.name == "repeat":
            t.progress = True
            t.say(st.last_prompt or "¿En qué le puedo ayudar?")
            return
        if intent.name == "goodbye" and not (
            st.awaiting in _CONFIRM_STEPS and is_affirmative(t.raw) is True
        ):
            await self._goodbye(t)
            return
        if st.awaiting and await self._fill(t, intent):
            return
        if intent.name in ("book", "reschedule", "cancel", "find"):
            if await self._switch_task(t, intent):
                return
        if intent.name == "no_more" or (is_only_thanks(t.norm) and st.task is None):
            await self._goodbye(t)
            return
        if _GREETING_ONLY.fullmatch(t.norm):
            t.progress = True
            t.say("Hola, con gusto le atiendo.")
            t.say(st.resume_prompt if st.task else "¿En qué le puedo ayudar?")
            return
        if is_only_thanks(t.norm):
            t.progress = True
            t.say("Con gusto.")
            if st.resume_prompt:
                t.say(st.resume_prompt)
            return
        if st.task == "book" and self._catalog.services and self._absorb(t):
            t.progress = True
            await self._advance(t)
            return
        if st.task is None and self._starts_booking_by_date(t):
            t.progress = True
            st.start("book")
            st.draft.service = st.offer_service
            self._absorb(t, service=True)
            t.say("Con gusto le ayudo con la cita.")
            await self._advance(t)
            return
        if st.task and st.awaiting in _WHEN_STEPS and not asks_question(t.norm, t.raw):
            # A garbled date on a bad line ("el toxi molaume") is not a question for the
            # knowledge base: reading out an unrelated passage would only lose the caller.
            await self._not_understood(t)
            return
        if await self._answer_question(t):
            return
        await self._not_understood(t)

    # --- DTMF -------------------------------------------------------------------------------
    async def _on_dtmf(self, t: _Turn) -> None:
        st = t.st
        digits = t.dtmf.replace("*", "")
        if st.awaiting in ("cedula", "lookup_cedula", "phone", "code_or_cedula") or (
            st.awaiting == "phone_confirm" and len(digits) >= 10
        ):
            if not await self._fill(t, Intent("none")):
                await self._miss(t, "No reconocí esos números. " + st.resume_prompt)
            return
        yes_no_steps = (
            "confirm_booking",
            "phone_confirm",
            "confirm_cancel",
            "confirm_reschedule",
            "confirm_target",
            "offer_booking",
            "offer_transfer",
            "anything_else",
            "slot_single",
        )
        if st.awaiting in yes_no_steps and digits in ("1", "2"):
            await self._fill(t, Intent("none"), forced_yes=digits == "1")
            return
        if st.awaiting == "office" and digits.isdigit():
            # The position of an office in the list just read out ("…, Santiago o La Romana").
            choices = st.draft.office_choices
            if 1 <= int(digits) <= len(choices):
                t.progress = True
                st.draft.office, st.draft.any_office = choices[int(digits) - 1], False
                st.draft.offered, st.draft.slot = [], None
                office = self._catalog.office(st.draft.office)
                if office is not None:
                    t.say(f"Muy bien, en {office.short}.")
                await self._advance(t)
                return
        if st.awaiting == "slot_choice" and digits.isdigit() and 1 <= int(digits) <= 3:
            index = int(digits) - 1
            if index < len(st.draft.offered):
                t.progress = True
                await self._choose(t, st.draft.offered[index])
                return
        await self._miss(
            t, "No reconocí esa tecla. " + (st.resume_prompt or "¿En qué le puedo ayudar?")
        )

    # --- answering the pending question -----------------------------------------------------
    async def _fill(self, t: _Turn, intent: Intent, forced_yes: bool | None = None) -> bool:
        """Read the utterance as the answer to ``state.awaiting``; False if it is not one."""
        st = t.st
        d = st.draft
        step = st.awaiting
        yes = forced_yes if forced_yes is not None else is_affirmative(t.raw)
        if yes is None and t.norm in _MISHEARD_YES:
            yes = True
        correction = bool(t.raw) and is_correction(t.raw)
        goal = intent.name in ("book", "reschedule", "cancel", "find")

        if step == "anything_else":
            if yes is True and not goal and not asks_question(t.norm, t.raw):
                t.progress = True
                st.awaiting = None
                t.say("Claro, dígame.")
                return True
            if yes is False and not goal and not asks_question(t.norm, t.raw):
                await self._goodbye(t)
                return True
            return False

        if step == "offer_transfer":
            if yes is True:
                await self._transfer(t, "caller-accepted")
                return True
            if yes is False:
                t.progress = True
                st.awaiting = None
                t.say("De acuerdo. " + ANYTHING_ELSE)
                st.awaiting = "anything_else"
                return True
            return False

        if step == "offer_booking":
            service = st.offer_service
            if yes is True and not goal:
                st.start("book")
                st.draft.service = service
                t.progress = True
                self._absorb(t, service=False)
                await self._advance(t)
                return True
            # "Quiero la cita" or a bare "En Santiago" / "el lunes a las diez": an implicit
            # yes that already answers the first questions of the booking.
            implicit = yes is None and not goal and self._answers_booking(t)
            if implicit or (intent.name == "book" and not intent.mine):
                st.start("book")
                st.draft.service = service
                t.progress = True
                self._absorb(t, service=True)
                await self._advance(t)
                return True
            if yes is False and not goal:
                t.progress = True
                st.offer_service = None
                st.awaiting = "anything_else"
                t.say("Muy bien. " + ANYTHING_ELSE)
                return True
            return False

        if step in ("service", "office", "when", "slot_choice", "slot_single", "change_what"):
            if goal and not (intent.name == "book" or (st.task == "book" and not intent.mine)):
                return False
            if step == "slot_choice" or step == "slot_single":
                return await self._fill_slot_choice(t, yes)
            if step == "change_what":
                return await self._fill_change_what(t)
            changed = self._absorb(t, service=True)
            if step == "office" and not d.office and self._catalog.says_any_office(t.norm):
                d.any_office = True
                changed.add("office")
            if step == "when" and _SOONEST.search(t.norm):
                d.soonest = True
                changed.add("when")
            if changed or t.ambiguous_office:
                t.progress = True
                await self._advance(t)
                return True
            return False

        if step == "name":
            if goal or (asks_question(t.norm, t.raw) and not correction):
                return False
            if (correction or self._parse_when(t.raw) is not None) and self._absorb(t):
                t.progress = True
                await self._advance(t)
                return True
            name = extract_name(t.raw)
            if name is None:
                return False
            d.name = name
            t.progress = True
            await self._advance(t)
            return True

        if step in ("cedula", "lookup_cedula", "code_or_cedula"):
            return await self._fill_cedula(t, step, goal)

        if step == "phone_confirm":
            digits = extract_phone_digits(t.raw, "" if forced_yes is not None else t.dtmf)
            if len(digits) == 10:
                d.phone, d.phone_done = digits, True
            elif yes is True:
                d.phone, d.phone_done = t.ctx.caller_number, True
            elif yes is False:
                t.progress = True
                st.awaiting = "phone"
                self._ask(t, "¿A qué número de teléfono le podemos contactar?")
                return True
            else:
                return False
            t.progress = True
            await self._advance(t)
            return True

        if step == "phone":
            digits = extract_phone_digits(t.raw, t.dtmf)
            if len(digits) == 10:
                d.phone, d.phone_done = digits, True
            elif _NO_PHONE.search(t.norm) or yes is False:
                d.phone, d.phone_done = None, True
            elif digits:
                t.progress = True
                self._ask(
                    t,
                    "El número debe tener diez dígitos, con el código de área. "
                    "¿Me lo repite, por favor?",
                )
                return True
            else:
                return False
            t.progress = True
            await self._advance(t)
            return True

        if step == "confirm_booking":
            if goal and intent.name != "book" and intent.mine:
                return False
            if correction or (yes is not True and self._has_new_values(t)):
                if self._absorb(t, service=True) or self._absorb_personal(t):
                    t.progress = True
                    await self._advance(t)
                    return True
            if yes is True:
                t.progress = True
                await self._book(t)
                return True
            if yes is False:
                t.progress = True
                st.awaiting = "change_what"
                self._ask(
                    t, "¿Qué desea cambiar: el día y la hora, la oficina, el nombre o la cédula?"
                )
                return True
            return False

        if step == "confirm_reschedule":
            if correction or (yes is not True and self._has_new_values(t)):
                if self._absorb(t, service=False):
                    t.progress = True
                    await self._advance(t)
                    return True
            if yes is True:
                t.progress = True
                await self._reschedule(t)
                return True
            if yes is False:
                t.progress = True
                d.clear_time()
                st.awaiting = "when"
                self._ask(t, "De acuerdo. ¿Para qué otro día y hora la quiere?")
                return True
            return False

        if step == "confirm_cancel":
            if yes is True:
                t.progress = True
                await self._cancel(t)
                return True
            if yes is False:
                t.progress = True
                st.finish()
                t.say("De acuerdo, su cita sigue en pie. " + ANYTHING_ELSE)
                return True
            return False

        if step == "confirm_target":
            if yes is True:
                t.progress = True
                st.candidates = []
                await self._advance(t)
                return True
            if yes is False:
                t.progress = True
                st.target = None
                st.lookup_tried.add("phone")
                st.awaiting = "code_or_cedula"
                self._ask(
                    t,
                    "Entonces, ¿me dice el código de confirmación de la cita? Si no lo tiene, "
                    "dígame su número de cédula.",
                )
                return True
            return False

        if step == "pick_booking":
            picked = self._pick_candidate(t)
            if picked is None:
                return False
            t.progress = True
            st.target = picked
            st.candidates = []
            await self._advance(t)
            return True

        return False

    async def _fill_slot_choice(self, t: _Turn, yes: bool | None) -> bool:
        st, d = t.st, t.st.draft
        offered = d.offered
        index = choice_index(t.norm, len(offered))
        when = self._parse_when(t.raw, expect="time")
        offices = self._catalog.find_offices(t.norm)
        if len(offices) == 1 and offices[0] != d.office:
            d.office, d.any_office = offices[0], False
            d.offered, d.slot = [], None
            if when is not None:
                d.when = d.when.merge(when) if d.when else when
            t.progress = True
            await self._advance(t)
            return True
        if when is not None and (
            when.date is not None or when.time is not None or when.part_of_day
        ):
            if when.time is not None and when.date is None:
                match = [r for r in offered if r["time"] == when.time.strftime("%H:%M")]
                if match:
                    t.progress = True
                    await self._choose(t, match[0])
                    return True
            offered_days = {r["date"] for r in offered}
            if when.date is None and len(offered_days) == 1:
                # A time for the day on offer (which may not be the day first asked for).
                d.when = When(date=date.fromisoformat(offered_days.pop())).merge(when)
            else:
                d.when = d.when.merge(when) if d.when else when
            d.offered, d.slot = [], None
            d.soonest = False
            t.progress = True
            await self._advance(t)
            return True
        if index is not None:
            t.progress = True
            await self._choose(t, offered[index])
            return True
        if yes is True and offered:
            t.progress = True
            await self._choose(t, offered[0])
            return True
        if yes is False or wants_other_day(t.norm):
            t.progress = True
            d.clear_time()
            st.awaiting = "when"
            self._ask(t, "De acuerdo. ¿Qué otro día le conviene?")
            return True
        return False

    async def _fill_change_what(self, t: _Turn) -> bool:
        st, d = t.st, t.st.draft
        if self._absorb(t, service=True) or self._absorb_personal(t):
            t.progress = True
            await self._advance(t)
            return True
        if _CHANGE_HOUR_ONLY.search(t.norm) and d.slot is not None:
            day = date.fromisoformat(d.slot["date"])
            d.clear_time()
            d.when = When(date=day)
            t.progress = True
            st.awaiting = "when"
            self._ask(t, "¿A qué hora le conviene?")
            return True
        if _CHANGE_TIME.search(t.norm):
            d.clear_time()
        elif _CHANGE_OFFICE.search(t.norm):
            d.office, d.any_office = None, False
            d.offered, d.slot = [], None
        elif _CHANGE_NAME.search(t.norm):
            d.name = None
        elif _CHANGE_CEDULA.search(t.norm):
            d.cedula, d.cedula_partial = None, ""
        elif _CHANGE_SERVICE.search(t.norm):
            d.service = None
            d.offered, d.slot = [], None
        elif is_affirmative(t.raw) is False or re.search(r"\b(?:nada|esta bien)\b", t.norm):
            st.awaiting = None
        else:
            return False
        t.progress = True
        st.awaiting = None
        await self._advance(t)
        return True

    async def _fill_cedula(self, t: _Turn, step: str, goal: bool) -> bool:
        d = t.st.draft
        if step == "code_or_cedula":
            code = parse_booking_code(t.raw) if t.raw else None
            if code is not None:
                t.progress = True
                await self._lookup(t, code=code)
                return True
            if _NO_CODE.search(t.norm) and not extract_cedula_digits(t.raw, t.dtmf):
                t.progress = True
                self._ask(
                    t, "No se preocupe. Dígame su número de cédula, o márquelo en el teclado."
                )
                return True
        if goal or (t.raw and asks_question(t.norm, t.raw) and not re.search(r"\d", t.raw)):
            return False
        digits = extract_cedula_digits(t.raw, t.dtmf)
        if not digits:
            if step == "cedula" and _MINOR.search(t.norm):
                t.progress = True
                self._ask(
                    t,
                    "Si la cita es para un menor de edad, se reserva con la cédula del padre, "
                    "la madre o el tutor. ¿Me dice ese número?",
                )
                return True
            return False
        partial = (d.cedula_partial if step == "cedula" else "") + digits
        if len(digits) == 11:
            partial = digits
        if len(partial) < 11:
            t.progress = True
            if step == "cedula":
                d.cedula_partial = partial
            have = number_to_words(len(partial), apocope=True)
            missing = number_to_words(11 - len(partial), apocope=True)
            plural = "s" if len(partial) > 1 else ""
            if step == "cedula":
                self._ask(
                    t,
                    f"Llevo {have} dígito{plural} de once; me falta{'n' if missing != 'un' else ''}"
                    f" {missing}. Continúe, por favor.",
                )
            else:
                self._ask(t, "La cédula tiene once dígitos. ¿Me la repite completa, por favor?")
            return True
        if len(partial) > 11:
            t.progress = True
            d.cedula_partial = ""
            self._ask(t, "Escuché más de once dígitos. ¿Me repite la cédula, por favor?")
            return True
        t.progress = True
        if step == "cedula":
            d.cedula, d.cedula_partial = partial, ""
            await self._advance(t)
        else:
            await self._lookup(t, cedula=partial)
        return True

    # --- goals ------------------------------------------------------------------------------
    async def _switch_task(self, t: _Turn, intent: Intent) -> bool:
        st = t.st
        if self._tools is None:
            t.progress = True
            st.awaiting = "offer_transfer"
            self._ask(
                t,
                "En este momento no puedo gestionar citas por esta vía. "
                "¿Desea que le comunique con un agente?",
            )
            return True
        name = intent.name
        if st.task == "book" and name == "cancel" and not intent.mine:
            t.progress = True
            st.finish()
            t.say("De acuerdo, no hago la reserva. " + ANYTHING_ELSE)
            return True
        if st.task == "book" and name in ("reschedule", "book") and not intent.mine:
            # "cámbiela para el jueves" while booking: a correction of the draft.
            if self._absorb(t):
                t.progress = True
                await self._advance(t)
                return True
            if name == "book":
                t.progress = True
                await self._advance(t)
                return True
        t.progress = True
        st.start(name)
        if name == "book":
            self._absorb(t, service=True)
            t.say("Con gusto le ayudo con la cita.")
        elif name in ("reschedule", "cancel", "find"):
            self._absorb(t, service=False)
            code = parse_booking_code(t.raw)
            if code is not None:
                await self._lookup(t, code=code)
                return True
        await self._advance(t)
        return True

    async def _advance(self, t: _Turn) -> None:
        """Ask for the first missing field of the task, or act when nothing is missing."""
        st, d = t.st, t.st.draft
        if st.task == "book":
            if not d.service:
                st.awaiting = "service"
                names = [s.spoken for s in self._catalog.services[:4]]
                self._ask(t, f"¿Para qué trámite es la cita? Por ejemplo: {join_es(names, 'o')}.")
                return
            if not await self._ensure_office(t):
                return
            if d.slot is None:
                await self._ensure_slot(t)
                return
            if not d.name:
                st.awaiting = "name"
                self._ask(t, "¿A nombre de quién hago la cita? Dígame el nombre completo.")
                return
            if not d.cedula:
                st.awaiting = "cedula"
                self._ask(
                    t,
                    "¿Cuál es el número de cédula? Puede decirlo o marcarlo en el teclado.",
                )
                return
            if not d.phone_done:
                if t.ctx.caller_number:
                    st.awaiting = "phone_confirm"
                    self._ask(
                        t,
                        "¿Le podemos contactar al número desde el que llama, que termina en "
                        f"{speak_phone_end(t.ctx.caller_number)}?",
                    )
                else:
                    st.awaiting = "phone"
                    self._ask(t, "¿A qué número de teléfono le podemos contactar?")
                return
            st.awaiting = "confirm_booking"
            self._ask(t, self._summary(d))
            return
        if st.task in ("reschedule", "cancel", "find"):
            if st.target is None:
                await self._identify(t)
                return
            if st.task == "find":
                return
            if st.task == "cancel":
                st.awaiting = "confirm_cancel"
                self._ask(
                    t,
                    f"¿Confirma que desea cancelar su cita de {self._service_name(st.target)} "
                    f"{_of(st.target['spoken_datetime'])}?",
                )
                return
            d.service = st.target["service"]
            if not d.office:
                d.office = st.target["office"]
            if d.slot is None:
                await self._ensure_slot(t)
                return
            st.awaiting = "confirm_reschedule"
            office = self._catalog.office(d.slot["office"])
            where = f" en {office.short}" if office else ""
            self._ask(t, f"¿Cambio su cita para {d.slot['spoken']}{where}?")
            return
        st.awaiting = None
        self._ask(t, "¿En qué más le puedo ayudar?")

    async def _ensure_office(self, t: _Turn) -> bool:
        st, d = t.st, t.st.draft
        assert d.service is not None
        options = self._catalog.offices_for(d.service)
        if t.ambiguous_office and not d.office:
            both = [o for o in options if o.code in ("SDC", "SDE")]
            if len(both) == 1:
                d.office = both[0].code
            elif both:
                st.awaiting = "office"
                d.office_choices = [o.code for o in both]
                self._ask(t, "¿En Santo Domingo Centro o en Santo Domingo Este?")
                return False
        if d.office and not self._catalog.offers(d.office, d.service):
            t.say(self._catalog.not_offered_sentence(d.office, d.service))
            d.office = None
            d.offered, d.slot = [], None
        if d.office or d.any_office:
            return True
        if len(options) == 1:
            d.office = options[0].code
            service = self._catalog.service(d.service)
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
        self._ask(t, f"¿En qué oficina le queda mejor: {join_es([o.short for o in options], 'o')}?")
        return False

    # --- slots ------------------------------------------------------------------------------
    async def _ensure_slot(self, t: _Turn) -> None:
        st, d = t.st, t.st.draft
        when = d.when
        if (when is None or when.date is None) and not d.soonest:
            st.awaiting = "when"
            if when is not None and (when.time is not None or when.part_of_day):
                self._ask(t, "¿Para qué día?")
            elif st.task == "reschedule":
                self._ask(t, "¿Para qué día y a qué hora la quiere cambiar?")
            else:
                self._ask(t, "¿Para qué día y a qué hora le gustaría?")
            return
        args: dict[str, Any] = {"service": d.service}
        if d.office and not d.any_office:
            args["office"] = d.office
        if when is not None and when.date is not None:
            args["date"] = when.date.isoformat()
            args["limit"] = 50
        else:
            args["limit"] = 3
        result = await self._tool(t, CHECK_AVAILABILITY, args)
        if "error" in result:
            if result.get("reason") == "not_offered" and d.office:
                t.say(result["error"])
                d.office = None
                await self._advance(t)
                return
            st.awaiting = "when"
            t.say(result["error"])
            self._ask(t, "¿Qué otro día le conviene?")
            return
        rows: list[dict[str, Any]] = result.get("slots") or []
        if not rows:
            alternatives = result.get("alternatives") or []
            self._offer(t, alternatives, result.get("notice"))
            return
        if when is None or when.date is None:
            self._offer(t, rows[:3], None)
            return
        if when.date_end is not None and when.time is None and not when.part_of_day:
            self._offer(t, rows[:3], None)
            return
        await self._pick_from_day(t, rows, when)

    async def _pick_from_day(self, t: _Turn, rows: list[dict[str, Any]], when: When) -> None:
        in_part = rows
        if when.part_of_day:
            in_part = [r for r in rows if _part_of(r["time"]) == when.part_of_day]
            if when.part_of_day == "tarde":  # "en la tarde" is after lunch when possible
                in_part = [r for r in in_part if r["time"] >= "13:00"] or in_part
        if when.time is None:
            if in_part:
                self._offer(t, in_part[:3], None)
            else:
                part = when.part_of_day or ""
                self._offer(
                    t,
                    _nearest(rows, _part_anchor(part), 2),
                    f"En la {part} ya no me queda espacio ese día.",
                )
            return
        wanted = when.time.strftime("%H:%M")
        if when.relation in ("after", "before"):
            picked = [
                r
                for r in rows
                if (r["time"] >= wanted if when.relation == "after" else r["time"] <= wanted)
            ]
            if picked:
                chosen = picked[:3] if when.relation == "after" else picked[-3:]
                self._offer(t, chosen, None)
                return
        exact = [r for r in rows if r["time"] == wanted]
        if exact:
            await self._choose(t, exact[0])
            return
        last = rows[-1]["time"]
        spoken = speak_time(when.time)
        if wanted < "08:00":
            notice = "Las citas empiezan a las ocho de la mañana."
        elif wanted > "15:30" and last <= "15:30":
            notice = "Las citas son hasta las tres y media de la tarde."
        elif wanted > last and last <= "11:30" and _date(rows[0]).weekday() == 5:
            notice = "Los sábados las citas son hasta las once y media de la mañana."
        else:
            notice = f"{spoken[:1].upper()}{spoken[1:]} no me queda espacio."
        self._offer(t, _nearest(rows, wanted, 2), notice)

    def _offer(self, t: _Turn, rows: list[dict[str, Any]], notice: str | None) -> None:
        st, d = t.st, t.st.draft
        if notice:
            t.say(notice)
        if not rows:
            d.clear_time()
            st.awaiting = "when"
            self._ask(t, "No encontré horarios disponibles. ¿Quiere probar con otro día?")
            return
        rows = sorted(rows, key=lambda r: r["starts_at"])
        d.offered = rows
        d.slot = None
        with_office = d.any_office or len({r["office"] for r in rows}) > 1
        today = self._today()
        if len(rows) == 1:
            st.awaiting = "slot_single"
            lead = "Lo más cercano que tengo es" if notice else "Tengo disponible"
            self._ask(t, f"{lead} {self._slot_phrase(rows[0], today, with_office)}. ¿Le sirve?")
            return
        st.awaiting = "slot_choice"
        dates = {r["date"] for r in rows}
        if len(dates) == 1 and not with_office:
            day = date.fromisoformat(rows[0]["date"])
            times = _times_phrase([_time(r) for r in rows])
            lead = "Lo más cercano que tengo es" if notice else "Tengo"
            self._ask(
                t,
                f"Para {speak_date(day, today)} tengo {times}. ¿Cuál prefiere?"
                if not notice
                else f"{lead} {speak_date(day, today)} {times}. ¿Cuál prefiere?",
            )
            return
        phrases = [self._slot_phrase(r, today, with_office) for r in rows]
        lead = "Lo más cercano que tengo es" if notice else "Tengo"
        self._ask(t, f"{lead} {join_es(phrases, 'o')}. ¿Cuál prefiere?")

    def _slot_phrase(self, row: dict[str, Any], today: date, with_office: bool) -> str:
        text = speak_datetime(datetime.fromisoformat(row["starts_at"]), today)
        if with_office:
            office = self._catalog.office(row["office"])
            text += f" en {office.short if office else row['office_name']}"
        return text

    async def _choose(self, t: _Turn, row: dict[str, Any]) -> None:
        d = t.st.draft
        d.slot = row
        d.offered = []
        d.office = row["office"]
        t.st.awaiting = None
        if t.st.task == "book" and not (d.name and d.cedula and d.phone_done):
            office = self._catalog.office(row["office"])
            where = f" en {office.short}" if office else ""
            t.say(f"Perfecto, {row['spoken']}{where}.")
        await self._advance(t)

    # --- acting -----------------------------------------------------------------------------
    async def _book(self, t: _Turn) -> None:
        st, d = t.st, t.st.draft
        assert d.slot is not None
        args = {
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
                st.last_prompt = f"{result.get('confirmation', '')} {ANYTHING_ELSE}"

        result = await self._commit(t, BOOK_APPOINTMENT, args, apply)
        if result.get("ok"):
            t.say(result["confirmation"])
            t.say("Llegue unos diez minutos antes, con su cédula. " + ANYTHING_ELSE)
            return
        reason = result.get("reason")
        if reason == "duplicate" and result.get("existing_code"):
            found = await self._tool(t, FIND_MY_APPOINTMENTS, {"code": result["existing_code"]})
            existing = (found.get("appointments") or [None])[0]
            t.say(result["error"])
            if existing:
                st.task = "reschedule"
                st.target = existing
                st.awaiting = "confirm_reschedule"
                self._ask(
                    t,
                    f"Ya tiene una para {existing['spoken_datetime']}. ¿Quiere que la cambie "
                    f"para {d.slot['spoken']}?",
                )
                return
            st.finish()
            t.say(ANYTHING_ELSE)
            return
        if reason == "slot_full":
            t.say(result["error"])
            self._offer(t, result.get("alternatives") or [], None)
            return
        t.say(result.get("error", "No pude completar la reserva."))
        if reason in ("timeout", "internal"):
            st.awaiting = "confirm_booking"
            self._ask(t, "¿Lo intento de nuevo?")
            return
        d.clear_time()
        await self._advance(t)

    async def _reschedule(self, t: _Turn) -> None:
        st, d = t.st, t.st.draft
        assert st.target is not None and d.slot is not None
        args = {"code": st.target["code"], "slot_id": d.slot["slot_id"]}

        def apply(result: dict[str, Any]) -> None:
            if result.get("ok"):
                st.done.append(f"rescheduled {result.get('code')}")
                st.finish()
                st.last_prompt = f"{result.get('confirmation', '')} {ANYTHING_ELSE}"

        result = await self._commit(t, RESCHEDULE_APPOINTMENT, args, apply)
        if result.get("ok"):
            t.say(result["confirmation"])
            t.say(ANYTHING_ELSE)
            return
        t.say(result.get("error", "No pude cambiar la cita."))
        if result.get("reason") == "slot_full":
            self._offer(t, result.get("alternatives") or [], None)
            return
        if result.get("reason") in ("cutoff", "not_active", "not_found"):
            st.finish()
            t.say(ANYTHING_ELSE)
            return
        d.clear_time()
        await self._advance(t)

    async def _cancel(self, t: _Turn) -> None:
        st = t.st
        assert st.target is not None

        def apply(result: dict[str, Any]) -> None:
            if result.get("ok"):
                st.done.append(f"cancelled {result.get('code')}")
                st.finish()
                st.last_prompt = f"{result.get('confirmation', '')} {ANYTHING_ELSE}"

        result = await self._commit(t, CANCEL_APPOINTMENT, {"code": st.target["code"]}, apply)
        if result.get("ok"):
            t.say(result["confirmation"])
            t.say(ANYTHING_ELSE)
            return
        t.say(result.get("error", "No pude cancelar la cita."))
        st.finish()
        t.say(ANYTHING_ELSE)

    # --- finding the caller's appointment ---------------------------------------------------
    async def _identify(self, t: _Turn) -> None:
        st = t.st
        if "phone" not in st.lookup_tried and t.ctx.caller_number:
            st.lookup_tried.add("phone")
            await self._lookup(t, phone=t.ctx.caller_number)
            return
        st.awaiting = "code_or_cedula" if st.task != "find" else "lookup_cedula"
        if st.task == "find":
            self._ask(t, "¿Me dice su número de cédula para buscar sus citas?")
        else:
            self._ask(
                t,
                "¿Me dice el código de confirmación de la cita? Si no lo tiene, dígame su "
                "número de cédula.",
            )

    async def _lookup(
        self,
        t: _Turn,
        *,
        code: str | None = None,
        cedula: str | None = None,
        phone: str | None = None,
    ) -> None:
        st = t.st
        args: dict[str, Any] = {}
        if code:
            args["code"] = code
            st.lookup_tried.add("code")
        elif cedula:
            args["cedula"] = cedula
            st.lookup_tried.add("cedula")
        elif phone:
            args["phone"] = phone
        result = await self._tool(t, FIND_MY_APPOINTMENTS, args)
        if "error" in result:
            t.say(result["error"])
            st.awaiting = "code_or_cedula"
            self._ask(t, "¿Me dice el código de la cita o su número de cédula?")
            return
        found: list[dict[str, Any]] = result.get("appointments") or []
        if st.task == "find":
            if found or phone is None:
                st.finish()
                t.say(result.get("spoken") or "No encontré citas activas.")
                t.say(ANYTHING_ELSE)
                return
            await self._identify(t)
            return
        if not found:
            if phone is not None:
                await self._identify(t)
                return
            what = "con ese código" if code else "con esa cédula"
            t.say(f"No encontré citas activas {what}.")
            if "cedula" in st.lookup_tried and "code" in st.lookup_tried:
                st.finish()
                st.awaiting = "offer_transfer"
                self._ask(t, "¿Desea que le comunique con un agente?")
                return
            st.awaiting = "code_or_cedula"
            self._ask(t, "¿Me lo repite, por favor? Puede darme el código o la cédula.")
            return
        if st.draft.service:
            same = [a for a in found if a["service"] == st.draft.service]
            found = same or found
        if len(found) == 1:
            st.target = found[0]
            if code or cedula:
                await self._advance(t)
                return
            if st.task == "cancel":
                st.awaiting = "confirm_cancel"
                self._ask(
                    t,
                    f"Veo una cita de {self._service_name(found[0])} para "
                    f"{found[0]['spoken_datetime']} en {found[0]['office_name']}. ¿Confirma que "
                    "desea cancelarla?",
                )
                return
            st.awaiting = "confirm_target"
            verb = {"cancel": "cancelar", "reschedule": "cambiar"}.get(st.task or "", "ver")
            self._ask(
                t,
                f"Veo una cita de {self._service_name(found[0])} para "
                f"{found[0]['spoken_datetime']} en {found[0]['office_name']}. ¿Es esa la que "
                f"desea {verb}?",
            )
            return
        st.candidates = found[:3]
        st.awaiting = "pick_booking"
        items = [
            f"una de {self._service_name(a)} para {a['spoken_datetime']}" for a in st.candidates
        ]
        self._ask(t, f"Tiene {join_es(items)}. ¿Cuál de ellas?")

    def _pick_candidate(self, t: _Turn) -> dict[str, Any] | None:
        st = t.st
        services = self._catalog.find_services(t.norm)
        for a in st.candidates:
            if a["service"] in services:
                return a
        when = self._parse_when(t.raw)
        if when is not None and when.date is not None:
            for a in st.candidates:
                if a["starts_at"][:10] == when.date.isoformat():
                    return a
        index = choice_index(t.norm, len(st.candidates))
        if index is not None:
            return st.candidates[index]
        return None

    # --- questions --------------------------------------------------------------------------
    async def _answer_question(self, t: _Turn) -> bool:
        if self._tools is None:
            faq = faq_answer(t.norm)
            if faq is None:
                return False
            t.progress = True
            t.st.sources.append(faq.source)
            t.say(faq.text)
            self._after_answer(t, None)
            return True
        query, prefer = self._knowledge_query(t)
        facet = question_facet(t.norm) if not prefer else ()
        args: dict[str, Any] = {"query": query}
        if prefer or facet:
            args["k"] = 5
        result = await self._tool(t, SEARCH_KNOWLEDGE, args)
        hits = result.get("hits") or []
        if "error" in result or not hits:
            return False
        hit = hits[0]
        if prefer:
            hit = next((h for h in hits if h["heading"].endswith(prefer)), hit)
        elif facet:
            hit = next((h for h in hits if _answers_facet(h, hits[0], facet)), hit)
        if query == t.raw and not self._relevant(t, hits, hit):
            return False
        answer = result.get("answer") if hit is hits[0] else None
        if not answer and self._speakable is not None:
            answer = self._speakable(hit["text"], query=query)
        if not answer:
            return False
        answer = _naturalize(answer)
        t.progress = True
        t.st.sources.append(
            f"{hit['source']} — {hit['heading']}" if hit["heading"] else hit["source"]
        )
        t.say(answer)
        services = self._catalog.find_services(t.norm)
        self._after_answer(t, services[0] if services else None)
        return True

    def _knowledge_query(self, t: _Turn) -> tuple[str, str | None]:
        topic = knowledge_topic(t.norm)
        offices = self._catalog.find_offices(t.norm)
        services = self._catalog.find_services(t.norm)
        if topic and len(offices) == 1:
            office = self._catalog.office(offices[0])
            if office is not None:
                words = {
                    "hours": "horario",
                    "hours_saturday": "horario sábados",
                    "address": "dirección",
                    "phone": "teléfono",
                }[topic]
                return f"{words} {office.name}", office.name
        if topic in ("hours", "hours_saturday") and not offices and not services:
            if topic == "hours_saturday":
                return "¿Qué oficinas abren los sábados y a qué hora abren y cierran?", None
            return "¿A qué hora abren y cierran las oficinas?", None
        return t.raw, None

    def _after_answer(self, t: _Turn, service: str | None) -> None:
        st = t.st
        if st.task and st.resume_prompt:
            t.say("Volviendo a su cita: " + st.resume_prompt)
            return
        if service and self._tools is not None and self._catalog.service(service):
            st.offer_service = service
            st.awaiting = "offer_booking"
            self._ask(t, "¿Desea que le reserve una cita?")
            return
        st.awaiting = "anything_else"
        self._ask(t, ANYTHING_ELSE, resume=False)

    # --- ending, handing over, not understanding ---------------------------------------------
    async def _goodbye(self, t: _Turn) -> None:
        t.progress = True
        t.say(f"Gracias por llamar a {self._office}. ¡Que tenga un buen día!")
        if self._tools is not None:
            await self._tool(t, END_CALL, {"reason": "completed"})
        t.st.awaiting = None
        t.emit(EndCall(reason="completed"))

    async def _transfer(self, t: _Turn, reason: str) -> None:
        t.progress = True
        if reason == "misunderstanding":
            t.say(
                "Disculpe, no le estoy entendiendo bien. Le comunico con un agente, por favor "
                "espere un momento."
            )
        else:
            t.say("Con gusto. Le comunico con un agente, por favor espere un momento.")
        if self._tools is not None:
            await self._tool(t, TRANSFER_TO_HUMAN, {"reason": reason})
        t.st.awaiting = None
        t.emit(Transfer(reason=reason))

    async def _not_understood(self, t: _Turn) -> None:
        st = t.st
        if st.task and st.resume_prompt:
            await self._miss(t, "Disculpe, no le entendí. " + st.resume_prompt)
            return
        await self._miss(t, f"Disculpe, con eso no le puedo ayudar. {CAPABILITIES} ¿Qué necesita?")

    async def _miss(self, t: _Turn, text: str) -> None:
        st = t.st
        st.misses += 1
        if st.misses >= self._max_misses:
            st.misses = 0
            await self._transfer(t, "misunderstanding")
            return
        t.say(text)

    # --- helpers ----------------------------------------------------------------------------
    def _ask(self, t: _Turn, text: str, *, resume: bool = True) -> None:
        t.say(text)
        if resume:
            t.st.resume_prompt = text

    async def _tool(self, t: _Turn, name: str, args: dict[str, Any]) -> dict[str, Any]:
        assert self._tools is not None
        try:
            result = await self._tools.call(name, args, t.ctx)
        except Exception:  # the Tools contract says never, but a brain must not die of it
            log.exception("tool %s raised", name)
            result = {"error": "Tuve un problema con el sistema.", "reason": "internal"}
        t.emit(ToolEvent(name=name, arguments=dict(args), result=result))
        return result

    async def _commit(
        self,
        t: _Turn,
        name: str,
        args: dict[str, Any],
        apply: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """A tool call that changes a booking: finished (and remembered) even if the caller
        barges in meanwhile, so the dialogue never forgets what it did."""
        assert self._tools is not None
        tools = self._tools

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

    def _absorb(self, t: _Turn, *, service: bool = True) -> set[str]:
        """Take service, office and date/time from the utterance into the draft."""
        d = t.st.draft
        changed: set[str] = set()
        if service:
            found = self._catalog.find_services(t.norm)
            if found and found[-1] != d.service:
                d.service = found[-1]
                changed.add("service")
        offices = self._catalog.find_offices(t.norm)
        if len(offices) == 1 and offices[0] != d.office:
            d.office, d.any_office = offices[0], False
            changed.add("office")
        elif len(offices) > 1 and not d.office:
            t.ambiguous_office = True
        if t.st.awaiting == "office" and self._catalog.says_any_office(t.norm) and not offices:
            if not d.any_office:
                d.any_office, d.office = True, None
                changed.add("office")
        expect = "date" if d.when is None or d.when.date is None else None
        if t.st.awaiting in ("slot_choice", "slot_single"):
            expect = "time"
        when = self._parse_when(t.raw, expect=expect)
        if when is not None:
            merged = d.when.merge(when) if d.when else when
            if merged != d.when:
                d.when = merged
                changed.add("when")
        if _SOONEST.search(t.norm) and not (when and when.date):
            d.soonest = True
            changed.add("when")
        if changed & {"service", "office", "when"}:
            d.offered, d.slot = [], None
        return changed

    def _answers_booking(self, t: _Turn) -> bool:
        """Does a non-question utterance give a booking detail (office, service, day, time)?
        Said right after "¿Desea que le reserve una cita?" it is an implicit yes."""
        if asks_question(t.norm, t.raw):
            return False
        return bool(
            self._catalog.find_offices(t.norm)
            or self._catalog.find_services(t.norm)
            or _SOONEST.search(t.norm)
            or self._bare_when(t) is not None
        )

    def _starts_booking_by_date(self, t: _Turn) -> bool:
        """A bare "el lunes a las diez" with no task under way: the caller wants a booking
        (their request was probably misheard), not information about Mondays."""
        if self._tools is None or not self._catalog.services or t.st.last_booking is not None:
            return False
        return not asks_question(t.norm, t.raw) and self._bare_when(t) is not None

    def _bare_when(self, t: _Turn) -> When | None:
        """The date or time an utterance consists of, allowing one unknown (misheard) word;
        None when it says more than a date ("abren el sábado" is a question)."""
        when = self._parse_when(t.raw)
        if when is None or (when.date is None and when.time is None and not when.part_of_day):
            return None
        unknown = [w for w in t.norm.split() if w not in _WHEN_WORDS and not w.isdigit()]
        return when if len(unknown) <= 1 else None

    def _absorb_personal(self, t: _Turn) -> bool:
        """A corrected name or cédula in a correction ("no, mi nombre es Juana")."""
        d = t.st.draft
        digits = extract_cedula_digits(t.raw)
        if len(digits) == 11:
            d.cedula = digits
            return True
        if re.search(r"\b(?:nombre|llamo)\b", t.norm):
            name = extract_name(re.sub(r"^\W*(?:no|perdon|disculpe)\b\W*", "", t.raw, flags=re.I))
            if name:
                d.name = name
                return True
        return False

    def _has_new_values(self, t: _Turn) -> bool:
        if self._catalog.find_offices(t.norm) or self._parse_when(t.raw) is not None:
            return True
        return len(extract_cedula_digits(t.raw)) == 11 or bool(
            re.search(r"\b(?:nombre|llamo)\b", t.norm)
        )

    def _summary(self, d: Draft) -> str:
        service = self._catalog.service(d.service)
        office = self._catalog.office(d.slot["office"] if d.slot else d.office)
        assert d.slot is not None
        return (
            f"Le confirmo: cita de {service.spoken if service else d.service} en "
            f"{office.name if office else d.slot['office_name']}, {d.slot['spoken']}, a nombre "
            f"de {d.name}, cédula {speak_cedula(d.cedula or '')}. ¿Está correcto?"
        )

    def _relevant(self, t: _Turn, hits: list[dict[str, Any]], hit: dict[str, Any]) -> bool:
        """Is the best passage an answer, or only a lexical accident? BM25 finds something for
        "quiero pagar la luz" ("pagar" is in the documents). A question is out of scope when
        half or more of its meaningful words appear in none of the passages found and it names
        nothing the office deals with; and the chosen passage must share a meaningful word."""
        if self._analyzer is None:
            return True
        terms = set(self._analyzer.tokenize(t.raw)) - self._generic_terms
        if not terms:
            return float(hit.get("score", 0)) > 0
        found: set[str] = set()
        for h in hits:
            found |= set(self._analyzer.tokenize(h["heading"] + " " + h["text"]))
        unmatched = terms - found
        anchored = bool(
            terms & self._anchor_terms
            or self._catalog.find_services(t.norm)
            or self._catalog.find_offices(t.norm)
        )
        if 2 * len(unmatched) >= len(terms) and not anchored:
            return False
        expanded = set(self._analyzer.query_terms(t.raw)) - self._generic_terms
        own = set(self._analyzer.tokenize(hit["heading"] + " " + hit["text"]))
        return bool(expanded & own)

    def _service_name(self, row: dict[str, Any]) -> str:
        service = self._catalog.service(row.get("service"))
        return service.spoken if service else str(row.get("service_name", "")).lower()

    def _now(self) -> datetime:
        if self._tools_clock:
            now = self._tools.now()  # type: ignore[union-attr]
            if now is not None:
                return now.astimezone(self._tz)
        now = self._clock()
        return now.astimezone(self._tz) if now.tzinfo else now.replace(tzinfo=self._tz)

    def _today(self) -> date:
        return self._now().date()

    def _parse_when(self, raw: str, expect: str | None = None) -> When | None:
        if not raw:
            return None
        # "Santo Domingo" is a place, not a Sunday; Whisper often writes "alas" for "a las".
        text = _PLACE_NAMES.sub(" ", normalize(raw))
        text = _GLUED_ARTICLE.sub(lambda m: "a " + m.group(1), text)
        if not text.strip():
            return None
        now = self._now().replace(tzinfo=None)
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


# --- small pure helpers -----------------------------------------------------------------------


_LABELS = {
    "direccion": "La dirección es",
    "telefono": "El teléfono es",
    "horario": "El horario es",
    "servicios": "Los servicios son",
    "parqueo": "En cuanto al parqueo,",
}
_LABEL = re.compile(r"(?:(?<=^)|(?<=[.!?] ))([A-ZÁÉÍÓÚÑ][a-záéíóúñ]+): ")


def _naturalize(answer: str) -> str:
    """ "Dirección: calle Duarte 45." → "La dirección es calle Duarte 45.": a list item's
    label reads like a form on the phone."""

    def label(m: re.Match[str]) -> str:
        lead = _LABELS.get(normalize(m.group(1)))
        return f"{lead} " if lead else m.group(0)

    return _LABEL.sub(label, answer)


def _answers_facet(hit: dict[str, Any], top: dict[str, Any], words: tuple[str, ...]) -> bool:
    """A section of the best document whose own heading names the facet asked about."""
    if hit["source"] != top["source"]:
        return False
    last = normalize(hit["heading"].rsplit(">", 1)[-1])
    return any(re.search(rf"\b{w}\b", last) for w in words)


def _of(phrase: str) -> str:
    """ "de" + "el lunes 23…" is "del lunes 23…"."""
    return "del " + phrase[3:] if phrase.startswith("el ") else "de " + phrase


def _time(row: dict[str, Any]) -> time:
    hours, minutes = row["time"].split(":")
    return time(int(hours), int(minutes))


def _date(row: dict[str, Any]) -> date:
    return date.fromisoformat(row["date"])


def _part_of(hhmm: str) -> str:
    hour = int(hhmm[:2])
    return "mañana" if hour < 12 else "tarde" if hour < 19 else "noche"


def _part_anchor(part: str) -> str:
    return {"mañana": "10:00", "tarde": "14:00", "noche": "19:00"}.get(part, "10:00")


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:5])


def _nearest(rows: list[dict[str, Any]], hhmm: str, n: int) -> list[dict[str, Any]]:
    target = _minutes(hhmm)
    unique: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (abs(_minutes(r["time"]) - target), r["time"])):
        unique.setdefault(r["time"], r)
        if len(unique) == n:
            break
    return sorted(unique.values(), key=lambda r: r["time"])


def _times_phrase(times: list[time]) -> str:
    """ "a las ocho, a las ocho y media o a las nueve de la mañana": the period said once per
    run of times that share it."""
    spoken = [speak_time(x) for x in times]
    parts: list[str] = []
    for i, text in enumerate(spoken):
        m = _PERIOD.search(text)
        nxt = _PERIOD.search(spoken[i + 1]) if i + 1 < len(spoken) else None
        if m and nxt and m.group(1) == nxt.group(1):
            text = text[: m.start()]
        parts.append(text)
    return join_es(parts, "o")
