"""A simulated citizen on the phone: hears the bot, works out what it was asked, answers.

The citizen only knows what it *heard*: each bot turn is the audio the earpiece played, run
through the phone band and transcribed by Whisper (the citizen's ears). What was asked is
found by keywords in that transcript (as a person would latch onto "¿qué día…?"), and the
answer is drawn from several natural phrasings, seeded per scenario: sometimes facts come
early and several at once, sometimes the citizen corrects itself. It gives up after
``MAX_TURNS`` turns or when the bot asks the same thing a third time — a real caller would
hang up too.

Nothing here is tuned to the bot's exact wording; the keywords are the ones any Spanish
question about that fact would contain.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz

from app.spoken_eval_scenarios import OFFICE_SPOKEN, SERVICE_SPOKEN, WEEKDAYS, Scenario, fold
from telephony import caller_voices
from telephony.phone_band import DEFAULT as LINE
from telephony.phone_band import heard_from_ulaw, line_ulaw
from telephony.simulator import GREETING, BotHeard, Step

MAX_TURNS = 14
LISTEN_MORE_S = 2.5  # a bot turn without a question may be "un momento…": keep listening
Transcribe = Callable[[bytes, int], Awaitable[str]]  # PCM16, rate -> text

# What the bot may be asking, by keyword on the (folded) transcript of its last sentence.
_ASKS: list[tuple[str, re.Pattern[str]]] = [
    ("bye", re.compile(r"hasta luego|adios|que tenga (un )?buen|feliz (dia|tarde|noche)|"
                       r"gracias por (su )?llamad|hasta pronto")),
    ("repeat", re.compile(r"repite|repetir|no (le )?(entendi|escuche|logre)|no pude entender|"
                          r"puede decirlo de nuevo|otra vez|sigue ahi")),
    ("human_no", re.compile(r"no (puedo|es posible) (comunicar|transferir|pasar)|"
                            r"no hay (un )?agente")),
    ("change_what", re.compile(r"que (desea|quiere|hay que) cambiar|que dato|cual dato")),
    ("confirm", re.compile(r"correct|confirm|esta bien asi|todo bien|le parece bien|"
                           r"son correctos|esta de acuerdo|reserv\w* entonces")),
    ("choose_time", re.compile(r"cual prefiere|cual le (conviene|queda|sirve)|"
                               r"cual de (esos|estos|los) horarios|que horario|horario prefiere|"
                               r"tengo (disponible|a las|para)|hay (cupo|espacio|turnos?)|"
                               r"horarios? disponibles?")),
    ("service", re.compile(r"tramite|servicio|para que (es|seria|necesita|desea)|"
                           r"que (documento|necesita hacer)|que tipo de cita")),
    # A person knows "número de célula" on this call means the cédula; the ear does not.
    ("cedula", re.compile(r"cedula|sedula|(numero de|su) (celula|fedula)")),
    ("phone", re.compile(r"telefono|contactar|llamarl|numero (de contacto|desde|celular)|"
                         r"desde el que (nos )?llama|termina en|(mismo|ese) numero|"
                         r"le llamamos")),
    ("surname", re.compile(r"apellido")),
    ("name", re.compile(r"nombre|a nombre de|como se llama")),
    ("office", re.compile(r"oficina|donde|sucursal|sede|"
                          r"(santiago|romana|centro|este)\s*\?|"
                          r"(centro|este|santiago|romana)\W+o\W+(en )?(santo|santiago|la romana)")),
    ("datetime", re.compile(r"(que|cual) dia y (a )?que hora|dia y hora|fecha y hora|"
                            r"\bdia\b.*\bhora\b")),
    ("date", re.compile(r"que dia|cual dia|fecha|para cuando|otro dia|que dia le")),
    ("time", re.compile(r"que hora|hora le|de la manana o|en la manana o|"
                        r"manana o (de |en |por )?la tarde")),
    ("offer_ok", re.compile(r"le sirve|le conviene|le queda bien|le funciona")),
    ("book_offer", re.compile(r"desea (que le )?(reserv|hacer|agend|sacar)|"
                              r"quiere (reserv|hacer|agend)|le reservo|le hago (una|la) cita|"
                              r"le haga (una|la) cita")),
    ("more", re.compile(r"algo mas|otra cosa|en que mas|desea saber|quiere saber|otra pregunta|"
                        r"le puedo ayudar|puedo ayudarle|en que le (puedo )?(ayudar|servir)")),
]  # fmt: skip
SLOT_ASKS = ("service", "office", "date", "time", "datetime", "name", "surname", "cedula", "phone")
# Questions counted for "asked a third time" (slot questions, offers and the read-back).
COUNTED_ASKS = (*SLOT_ASKS, "choose_time", "confirm")
_BOOKED = re.compile(r"codigo|quedo (reservad|agendad|confirmad)|cita (esta|quedo) "
                     r"(reservad|confirmad|agendad)|ya tiene (su )?cita|le esperamos")  # fmt: skip
_UNAVAILABLE = re.compile(r"no (hay|tengo|tenemos|quedan) (cupo|espacio|turno|cita|horario)|"
                          r"cerrad|no (abre|atiende|trabaja)|no (se )?(dan|puede|hay) cita|"
                          r"no es posible|feriado|ya paso|no ofrece|no hace")  # fmt: skip


def classify(heard: str) -> str:
    """The kind of thing the bot asked in ``heard`` ("date", "confirm", ...; "statement")."""
    text = fold(heard)
    sentences = [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if s.strip()]
    questions = [s for s in sentences if "?" in s]
    focus = questions[-1] if questions else (sentences[-1] if sentences else "")
    for scope in (focus, text):
        for kind, pattern in _ASKS:
            if pattern.search(scope):
                return kind
    return "question" if questions else "statement"


def _pick(rng: random.Random, options: list[str]) -> str:
    return rng.choice(options)


@dataclass
class Exchange:
    bot_heard: str
    asked: str
    said: str = ""
    dtmf: str = ""
    ms_transcribe: float = 0.0
    t_s: float = 0.0  # when the citizen decided, seconds since it first heard the bot


@dataclass
class CitizenLog:
    exchanges: list[Exchange] = field(default_factory=list)
    gave_up: str | None = None  # why the citizen hung up early
    heard_booked: bool = False
    asks: Counter[str] = field(default_factory=Counter)
    final_date_phrase: str | None = None
    answers_heard: list[str] = field(default_factory=list)  # question scenarios


class Citizen:
    """One simulated caller; :meth:`respond` is the simulator's ``Responder``."""

    def __init__(self, scenario: Scenario, transcribe: Transcribe, today: dt.date,
                 cache_dir: Path | None = None) -> None:  # fmt: skip
        self.s = scenario
        self.rng = random.Random(f"{scenario.id}|{scenario.seed}")
        self.transcribe = transcribe
        self.today = today
        self.cache_dir = cache_dir
        self.voice = caller_voices.get_voice(scenario.voice)
        self.digits_voice = (
            caller_voices.get_voice(scenario.digits_voice) if scenario.digits_voice else None
        )
        self.log = CitizenLog()
        self.turns = 0
        self.said: dict[str, int] = Counter()  # facts given so far
        self.last_said = ""
        self.date_phrase = scenario.date
        self.correction_pending = False
        self.wrong_slot: str | None = None  # what the last read-back got wrong
        self.listened: set[int] = set()
        self.silent_turns = 0
        self.done = False  # the goal is reached (or given up): say goodbye next
        self.said_bye = False
        self.fixed = list(scenario.says)
        self.question_asked = 0
        self.utter_n = 0
        self._t0: float | None = None

    def _clock(self) -> float:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return round(now - self._t0, 2)

    # -- speaking -------------------------------------------------------------------------
    def _render(self, text: str, digits: str | None = None) -> bytes:
        """The phrase in this citizen's voice; ``digits`` spliced in from the human voice
        when the scenario has one. Then through the phone line, as 8 kHz mu-law."""
        self.utter_n += 1
        seed = f"{self.s.id}|{self.s.seed}|{self.utter_n}"
        parts: list[bytes] = []
        if text:
            parts.append(caller_voices.render(self.voice, text, 16000, seed, self.cache_dir))
        if digits:
            if self.digits_voice is not None:
                pcm = caller_voices.render(self.digits_voice, " ".join(digits), 16000, seed)
            else:
                pcm = caller_voices.render(self.voice, _digit_words(digits), 16000, seed,
                                           self.cache_dir)  # fmt: skip
            if parts:
                parts.append(b"\x00\x00" * int(16000 * self.rng.uniform(0.15, 0.35)))
            parts.append(pcm)
        return line_ulaw(b"".join(parts), 16000, seed, LINE)

    async def _say(self, text: str, digits: str | None = None) -> Step:
        audio = await asyncio.to_thread(self._render, text, digits)
        label = text if not digits else f"{text} {' '.join(digits)}".strip()
        self.last_said = label
        return Step("say", label, audio=audio)

    # -- the responder ------------------------------------------------------------------
    async def respond(self, heard: BotHeard) -> Step | None:
        text = ""
        t0 = time.monotonic()
        if heard.answered and heard.ulaw:
            pcm = await asyncio.to_thread(heard_from_ulaw, heard.ulaw, f"{self.s.id}|{heard.index}")
            text = (await self.transcribe(pcm, 8000)).strip()
        ms = (time.monotonic() - t0) * 1000
        asked = classify(text) if text else "silence"
        if heard.hung_up:
            if text:
                self.log.exchanges.append(Exchange(text, asked, ms_transcribe=round(ms, 1)))
            if not self.said_bye and self.s.kind == "booking" and _BOOKED.search(fold(text)):
                self.log.heard_booked = True
            if not self.log.gave_up and not self.said_bye:
                self.log.gave_up = "the bot hung up"
            return None
        # A bot turn without a question may continue ("un momento, por favor…").
        if (
            heard.answered
            and asked in ("statement",)
            and heard.index not in self.listened
            and not self.said_bye
        ):
            self.listened.add(heard.index)
            return Step("listen", str(LISTEN_MORE_S))
        ex = Exchange(text, asked, ms_transcribe=round(ms, 1), t_s=self._clock())
        self.log.exchanges.append(ex)
        step = await self._decide(heard, text, asked)
        if step is not None:
            if step.kind == "dtmf":
                ex.dtmf = step.value
            else:
                ex.said = step.value
            self.turns += 1
        return step

    async def _decide(self, heard: BotHeard, text: str, asked: str) -> Step | None:
        s = self.s
        folded = fold(text)
        if self.said_bye:
            return None  # we said goodbye and heard the answer: hang up
        if asked == "silence":
            self.silent_turns += 1
            if heard.index == GREETING and self.silent_turns == 1:
                return await self._say(_pick(self.rng, ["¿Aló?", "¿Hola? ¿Me escucha?"]))
            if self.silent_turns >= 2 or not self.last_said:
                self.log.gave_up = "the bot did not answer"
                return None
            return await self._say(self.last_said)
        self.silent_turns = 0
        if asked in COUNTED_ASKS:
            key = {"datetime": "date", "surname": "name"}.get(asked, asked)
            self.log.asks[key] += 1
            if self.log.asks[key] >= 3:
                self.log.gave_up = f"the bot asked for the {key} a third time"
                return None
        if self.turns >= MAX_TURNS:
            self.log.gave_up = f"no result after {MAX_TURNS} turns"
            return None
        if s.kind == "booking" and _BOOKED.search(folded) and self.said.get("confirm"):
            self.log.heard_booked = True
            self.done = True
        if s.kind == "booking":
            return await self._booking(heard, folded, asked)
        if s.kind == "question":
            return await self._question(heard, text, asked)
        return await self._scripted(heard, asked)

    # -- goodbye and human scenarios: fixed lines, then goodbye ---------------------------
    async def _scripted(self, heard: BotHeard, asked: str) -> Step | None:
        if self.fixed:
            line = self.fixed.pop(0)
            if not self.fixed and self.s.kind == "goodbye":
                self.said_bye = True
            return await self._say(line)
        if asked == "bye":
            return None
        return await self._goodbye()

    async def _goodbye(self) -> Step:
        self.said_bye = True
        return await self._say(
            _pick(
                self.rng,
                [
                    "No, gracias. Adiós.",
                    "No, eso es todo. Muchas gracias.",
                    "Nada más, gracias, hasta luego.",
                    "No, ya está. Gracias, adiós.",
                ],
            )
        )

    # -- questions ------------------------------------------------------------------------
    async def _question(self, heard: BotHeard, text: str, asked: str) -> Step | None:
        s = self.s
        if self.question_asked and text:
            self.log.answers_heard.append(text)
        if self.question_asked == 0:
            self.question_asked = 1
            return await self._say(s.question or "")
        if asked == "bye":
            return None
        if self.done or _facts_found(self.log.answers_heard, s.facts):
            return await self._goodbye()
        if self.question_asked >= 3:
            self.done = True
            return await self._goodbye()
        self.question_asked += 1
        # The bot offers a choice ("¿para adulto o para menor?") or answered another variant:
        # say which one. It did not understand: ask again. It answered something unclear:
        # ask it to repeat.
        focus = _last_question(text)
        if s.clarify and (re.search(r"\bo\b", focus) or (self.question_asked == 2 and text)):
            if asked not in ("repeat",) and not _CANT_HELP.search(fold(text)):
                return await self._say(s.clarify)
        if asked == "repeat" or _CANT_HELP.search(fold(text)) or not text:
            return await self._say(s.question or "")
        # An answer, but not to what was asked: ask again, a little differently.
        lead = _pick(self.rng, ["Sí, pero", "Perdone, pero", "Ya, pero"])
        question = s.question or ""
        return await self._say(f"{lead} {question[:1].lower()}{question[1:]}")

    # -- bookings -------------------------------------------------------------------------
    async def _booking(self, heard: BotHeard, folded: str, asked: str) -> Step | None:
        s = self.s
        if asked == "bye":
            return None
        if self.done:
            return await self._goodbye()
        if not self.said.get("opening"):
            self.said["opening"] += 1
            return await self._opening()
        if self.correction_pending:
            self.correction_pending = False
            slot = (s.correction or {}).get("slot", "date")
            fix = _pick(self.rng, ["No, perdone, mejor {x}.", "Espere, me equivoqué: {x}.",
                                   "No, no, {x}, mejor."])  # fmt: skip
            return await self._say(fix.format(x=self._fact(slot, correct=True)))
        if _UNAVAILABLE.search(folded) and s.alt_date and self.date_phrase != s.alt_date:
            self.date_phrase = s.alt_date
            self.said["date"] += 1
            return await self._say(
                _pick(
                    self.rng, ["Entonces {d}.", "Bueno, ¿y {d}?", "Está bien, {d} entonces."]
                ).format(d=s.alt_date)
            )
        if asked == "service":
            return await self._slot("service", folded)
        if asked == "office":
            return await self._slot("office", folded)
        if asked == "datetime":
            self.said["date"] += 1
            self.said["time"] += 1
            return await self._say(f"{self.date_phrase}, {s.time or 'en la mañana'}")
        if asked in ("date", "time", "name"):
            return await self._slot(asked, folded)
        if asked == "surname":
            self.said["name"] += 1
            surname = " ".join(s.name.split()[1:]) if s.name else ""
            return await self._say(f"{surname}." if surname else f"{s.name}.")
        if asked == "change_what":
            return await self._change_what()
        if asked == "cedula":
            return await self._cedula(folded)
        if asked == "phone":
            return await self._phone(folded)
        if asked == "choose_time":
            return await self._choose_time(folded)
        if asked == "offer_ok":
            self.said["offer"] += 1
            return await self._say(
                _pick(self.rng, ["Sí, está bien.", "Sí, me sirve.", "Perfecto, sí."])
            )
        if asked == "confirm":
            return await self._confirm(folded)
        if asked == "book_offer":
            return await self._say(_pick(self.rng, ["Sí, por favor.", "Sí."]))
        if asked in ("more", "question", "statement", "repeat", "human_no"):
            if asked == "repeat" and self.last_said:
                return await self._say(self.last_said)
            # Restate what the bot still lacks, as a person would: the main request.
            return await self._say(self._restate())
        return await self._say(self._restate())

    async def _opening(self) -> Step:
        s = self.s
        facts = [self._fact(f, first=True) for f in s.opening if f != "service"]
        svc = self._fact("service", first=True)
        for f in s.opening:
            self.said[f] += 1
        self.said["service"] += 1
        if s.correction and s.correction.get("slot") in s.opening:
            self.correction_pending = True
        lead = _pick(self.rng, [
            "Buenas, quiero hacer una cita para {svc}", "Hola, necesito una cita para {svc}",
            "Buenos días. Quisiera sacar una cita para {svc}",
            "Llamo para reservar una cita para {svc}",
            "Sí, buenas, es para una cita de {svc}",
        ])  # fmt: skip
        tail = (", " + ", ".join(facts)) if facts else ""
        return await self._say(lead.format(svc=svc) + tail + ".")

    def _fact(self, slot: str, *, first: bool = False, correct: bool = False) -> str:
        s = self.s
        wrong = (s.correction or {}).get("wrong") if s.correction else None
        is_corrected = bool(s.correction and s.correction.get("slot") == slot)
        if slot == "service":
            return s.say_service or SERVICE_SPOKEN.get(s.service or "", s.service or "")
        if slot == "office":
            if is_corrected and first and not correct and wrong:
                return wrong
            return s.say_office or f"en {OFFICE_SPOKEN.get(s.office or '', s.office or '')}"
        if slot == "date":
            if is_corrected and first and not correct and wrong:
                return wrong
            return self.date_phrase or ""
        if slot == "time":
            return s.time or "en la mañana"
        if slot == "name":
            return f"a nombre de {s.name}"
        return ""

    def _restate(self) -> str:
        """The request again, with a fact not yet given (as people add what seems missing)."""
        text = _pick(self.rng, [
            "Quiero una cita para {svc}", "Es para sacar una cita de {svc}",
            "Le decía que necesito una cita para {svc}",
        ]).format(svc=self._fact("service"))  # fmt: skip
        for slot in ("office", "date"):
            if not self.said.get(slot):
                self.said[slot] += 1
                return f"{text}, {self._fact(slot)}."
        return text + "."

    async def _slot(self, slot: str, folded: str) -> Step:
        s = self.s
        n = self.said[slot]
        self.said[slot] += 1
        first_time = n == 0
        if slot == "service":
            svc = self._fact("service")
            # On a second ask with choices offered, press the key if ours is listed.
            key = _option_key(folded, _service_words(s.service or ""))
            if key and n >= 1 and "marque" in folded and self.rng.random() < 0.5:
                return Step("dtmf", key)
            return await self._say(
                _pick(self.rng, ["Para {x}.", "Es para {x}.", "{x}.", "Quiero {x}."]).format(x=svc)
            )
        if slot == "office":
            office = self._fact("office", first=first_time)
            if s.correction and s.correction.get("slot") == "office" and first_time:
                self.correction_pending = True
            key = _option_key(folded, [fold(OFFICE_SPOKEN.get(s.office or "", ""))])
            if key and n >= 1 and "marque" in folded and self.rng.random() < 0.5:
                return Step("dtmf", key)
            return await self._say(
                _pick(
                    self.rng, ["{x}.", "Me queda mejor {x}.", "Prefiero {x}.", "{x}, por favor."]
                ).format(x=office)
            )
        if slot == "date":
            date = self._fact("date", first=first_time)
            if (
                s.correction
                and s.correction.get("slot") == "date"
                and first_time
                and "date" not in s.opening
            ):
                self.correction_pending = True
            if self.rng.random() < 0.4 and not self.said.get("time"):
                self.said["time"] += 1
                return await self._say(f"{_cap(date)}, {self._fact('time')}.")
            return await self._say(
                _pick(
                    self.rng,
                    ["{x}.", "Para {x}, si se puede.", "{x}, por favor.", "Me gustaría {x}."],
                ).format(x=date)
            )
        if slot == "time":
            return await self._say(
                _pick(self.rng, ["{x}.", "Mejor {x}.", "{x}, si puede ser."]).format(
                    x=self._fact("time")
                )
            )
        if slot == "name":
            return await self._say(
                _pick(
                    self.rng, ["{n}.", "Me llamo {n}.", "A nombre de {n}.", "Mi nombre es {n}."]
                ).format(n=s.name)
            )
        return await self._say(self._restate())

    async def _cedula(self, folded: str) -> Step:
        s = self.s
        n = self.said["cedula"]
        self.said["cedula"] += 1
        cedula = s.cedula or ""
        if s.cedula_by == "dtmf" or (n >= 1 and ("marc" in folded or "teclado" in folded)):
            return Step("dtmf", cedula + "#")
        lead = _pick(self.rng, ["Es el", "Mi cédula es", "Sí, es", ""])
        return await self._say(lead, digits=cedula)

    async def _phone(self, folded: str) -> Step:
        self.said["phone"] += 1
        if self.s.phone is None or "desde el que" in folded or "termina en" in folded:
            if self.s.phone is None:
                return await self._say(
                    _pick(self.rng, ["Sí, a ese mismo.", "Sí, a este número.", "Sí."])
                )
            return await self._say("No, mejor a otro número:", digits=self.s.phone)
        return await self._say(_pick(self.rng, ["Es el", "Al", ""]), digits=self.s.phone)

    async def _choose_time(self, folded: str) -> Step:
        self.said["time_choice"] += 1
        want = fold(self.s.time or "")
        m = re.search(r"a las (\w+)", want)
        if m and m.group(1) in folded:
            return await self._say(
                _pick(self.rng, ["A las {h}.", "Esa, a las {h}.", "La de las {h}."]).format(
                    h=m.group(1)
                )
            )
        if "marque" in folded and self.rng.random() < 0.5:
            return Step("dtmf", "1")
        return await self._say(
            _pick(self.rng, ["La primera.", "La primera que dijo.", "El primero está bien."])
        )

    async def _confirm(self, folded: str) -> Step:
        """Check the read-back against the goal; correct a wrong day or office."""
        s = self.s
        self.said["confirm"] += 1
        wrong_office = [
            code for code, name in OFFICE_SPOKEN.items()
            if code != s.office and fold(name) in folded
            and not (code == "SDE" and "santo domingo este" not in folded)
        ]  # fmt: skip
        if wrong_office and fold(OFFICE_SPOKEN.get(s.office or "", "")) not in folded:
            self.wrong_slot = "office"
            return await self._say(f"No, la oficina es {self._fact('office').removeprefix('en ')}.")
        days = [w for w in WEEKDAYS if re.search(rf"\b{w}\b", folded)]
        want = self._want_weekdays()
        if days and want and not set(days) & want:
            self.wrong_slot = "date"
            return await self._say(
                _pick(self.rng, ["No, es {d}.", "No, le dije {d}."]).format(d=self.date_phrase)
            )
        if s.name and not self.said.get("name_fix") and not _name_read_back(s.name, folded):
            # A person notices their own name read back wrong, and says it once more.
            self.said["name_fix"] += 1
            return await self._say(f"No, el nombre es {s.name}.")
        return await self._say(
            _pick(self.rng, ["Sí, correcto.", "Sí, está bien.", "Sí.", "Correcto, sí."])
        )

    async def _change_what(self) -> Step:
        """ "¿Qué desea cambiar?" after a wrong read-back: name the fact and its right value."""
        slot = self.wrong_slot or "date"
        if slot == "office":
            return await self._say(f"La oficina: {self._fact('office').removeprefix('en ')}.")
        return await self._say(f"El día: {self.date_phrase}.")

    def _want_weekdays(self) -> set[str]:
        from app.spoken_eval_scenarios import resolve_date

        return {WEEKDAYS[d.weekday()] for d in resolve_date(self.date_phrase or "", self.today)}

    def summary(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "gave_up": self.log.gave_up,
            "heard_booked": self.log.heard_booked,
            "date_phrase": self.date_phrase,
            "asks": dict(self.log.asks),
            "exchanges": [e.__dict__ for e in self.log.exchanges],
        }


_CANT_HELP = re.compile(r"no (le )?puedo ayudar|no (le )?entend|que necesita|en que le puedo")


def _name_read_back(name: str, folded: str) -> bool:
    """Was the caller's surname (or, failing that, given name) in the read-back as heard?
    Loose: a person forgives a letter or two ("Gomes" for "Gómez")."""
    words = fold(name).split()
    heard = folded.split()
    wanted = words[1:] or words
    return all(any(fuzz.ratio(w, h) >= 75 for h in heard) for w in wanted)


def _last_question(text: str) -> str:
    sentences = [x for x in re.split(r"(?<=[.?!])\s+", fold(text)) if "?" in x]
    return sentences[-1] if sentences else ""


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_DIGIT_NAMES = ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve")


def _digit_words(digits: str) -> str:
    """Digits said one by one in groups, as people read a cédula: "cero cero uno, dos…"."""
    words = [_DIGIT_NAMES[int(c)] for c in digits if c.isdigit()]
    groups = [words[:3], words[3:6], words[6:10], words[10:]]
    return ", ".join(" ".join(g) for g in groups if g)


def _service_words(code: str) -> list[str]:
    return {
        "cedula": ["cedula"], "pasaporte": ["pasaporte"], "licencia": ["licencia"],
        "actas": ["acta"], "no_antecedentes": ["antecedentes", "buena conducta"],
        "apostilla": ["apostilla", "legalizacion"],
    }.get(code, [code])  # fmt: skip


def _option_key(folded: str, words: list[str]) -> str | None:
    """The key for our choice when the bot lists options ("cédula, pasaporte o licencia…
    marque 1, 2 o 3"): the position of ours among the options named."""
    m = re.search(r"marque", folded)
    if not m:
        return None
    listed = folded[: m.start()]
    positions: list[tuple[int, str]] = []
    for word in words:
        i = listed.rfind(word)
        if i >= 0:
            positions.append((i, word))
    if not positions:
        return None
    # Options are the comma/"o"-separated items of the last sentence before "marque".
    tail = re.split(r"[.?!¿:]", listed)
    sentence = next((t for t in reversed(tail) if any(w in t for w in words)), "")
    items = [x.strip() for x in re.split(r",|\so\s|\sy\s", sentence) if x.strip()]
    for n, item in enumerate(items, 1):
        if any(w in item for w in words):
            return str(n)
    return None


def _facts_found(answers: list[str], facts: list[list[str]]) -> bool:
    return bool(facts) and all(fact_heard(" ".join(answers), f) for f in facts)


def fact_heard(text: str, spellings: list[str]) -> bool:
    """Whether one of the acceptable spellings of a fact is in ``text`` (accents, case,
    thousands separators and spacing ignored)."""
    norm = _norm_numbers(fold(text))
    return any(_norm_numbers(fold(sp)) in norm for sp in spellings)


def _norm_numbers(text: str) -> str:
    text = re.sub(r"(?<=\d)[.,](?=\d{3}\b)", "", text)
    text = re.sub(r"rd\$\s*", "", text)
    return re.sub(r"\s+", " ", text)
