"""What a caller wants, from what Whisper wrote: intents and the small entities the offline
dialogue fills slots with (names, cédulas, phone numbers, choices among offered options).

Everything works on :func:`~pipeline.brain.spanish_text.normalize`-d text (lower case, no
accents except ñ, no punctuation) with plain regular expressions: microseconds per turn, and
every accepted phrase is visible here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz

from pipeline.brain.names import extract_name, find_name, name_as_heard, name_in_answer
from pipeline.brain.spanish_text import extract_digits_sequence

__all__ = [
    "Intent",
    "asks_question",
    "choice_index",
    "detect_intent",
    "extract_cedula_digits",
    "extract_name",
    "extract_phone_digits",
    "find_name",
    "is_only_thanks",
    "is_thanks_closing",
    "knowledge_topic",
    "name_as_heard",
    "name_in_answer",
    "question_facet",
    "wants_other_day",
]


@dataclass(frozen=True, slots=True)
class Intent:
    name: str  # human | goodbye | no_more | repeat | cancel | reschedule | find | book | none
    mine: bool = False  # the caller speaks of an appointment they already have ("mi cita")


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_HUMAN_WORDS = (
    r"(?:agente|agentes|operador|operadora|humano|humana|representante|asesor|asesora|"
    r"empleado|empleada|supervisor|supervisora|una persona|persona real|alguien)"
)
_HUMAN = _rx(
    r"\b(?:hablar|hable|comunicar\w*|comuniqu\w*|pas\w*|transfer\w*|comunique|ponga\w*|pon\w*|"
    r"conect\w*|atender|atienda)\b(?:\s+\w+){0,5}?\s+(?:con\s+)?(?:un|una|el|la|algun|alguna)?\s*"
    + _HUMAN_WORDS
    + r"\b"
)
_HUMAN_SHORT = _rx(r"^(?:\w+\s+){0,3}" + _HUMAN_WORDS + r"(?:\s+\w+){0,3}$")
_NOT_A_MACHINE = _rx(
    r"\b(?:no quiero hablar con|no me gusta hablar con)\s+(?:una\s+)?"
    r"(?:maquina|robot|grabacion|contestadora)\b"
)
_HUMAN_EXCLUDE = _rx(r"\b(?:otra persona|tercera persona|por persona|cada persona|en persona)\b")

_GOODBYE = _rx(
    r"\b(?:adios|hasta luego|hasta pronto|hasta la proxima|ta luego|chao|chau|chaito|bye|"
    r"bai|goodbye|good bye|nos vemos|nos hablamos|eso es todo|eso seria todo|seria todo|es todo|"
    r"ya termine|cuelgo|voy a colgar|bendiciones|dios le bendiga|que dios (?:la|lo|me la|me lo)"
    r" bendiga|cuidese|que le vaya bien|gracias por todo|"
    r"que tenga (?:un )?buen dia|que tenga (?:una )?buena tarde|que tenga (?:una )?buena noche)\b"
    # "ya, gracias" / "ya está, gracias": done.
    r"|^(?:ok |bueno |pues )?ya(?: esta| estaria| seria)?(?: muchas)? gracias\b"
)
# "Gracias. ¡Amiós!": Whisper's slips for a short "adiós" said after thanks.
_FAREWELL_WORDS = ("adios",)
_THANKS_CLOSING = _rx(
    r"^(?:(?:ok|okey|listo|bueno|perfecto|excelente|esta bien|vale)\s+)+"
    r"(?:muchas\s+|muy\s+amable\s+)?gracias(?:\s+(?:muy amable|por todo))?$"
)
_NO_MORE = _rx(
    r"^(?:no|nop|nada|ninguna|ningun|no gracias|no muchas gracias)"
    r"(?:\s+(?:gracias|muchas gracias|senor|senora|señor|señora|mi amor|seria todo|eso es todo|"
    r"por ahora|nada mas|mas|estoy bien|esta bien))*$"
)
_THANKS_ONLY = frozenset(
    ("gracias", "muchas", "muy", "amable", "ok", "bien", "perfecto", "excelente", "listo", "vale")
)

_REPEAT = _rx(
    r"^(?:(?:perdon|disculpe|como|que|mande|eh|senorita)\s*)+$|\b(?:repita\w*|repite|"
    r"repetir|puede repetir|me repite|no le (?:entendi|escuche|oi)|no (?:entendi|escuche|oi)|"
    r"otra vez por favor|mas despacio)\b"
    # "¿Qué dijo?" is a request to repeat; "la primera que dijo" is a choice.
    r"|^(?:(?:perdon|disculpe|eh|senorita|y|pero)\s+)*(?:que|como|que fue lo que) dijo\b"
)

_APPT = r"(?:cita|citas|sita|sitas|turno|turnos|reserva|reservacion|reservas)"
_MINE = _rx(
    r"\b(?:mi|mis|la|una)\s+(?:\w+\s+)?" + _APPT + r"\s+(?:que\s+(?:yo\s+)?tengo|que\s+hice|"
    r"que\s+saque|que\s+reserve|que\s+agende)\b|\bmi\s+" + _APPT + r"\b|\bmis\s+" + _APPT + r"\b"
    r"|\btengo\s+(?:una\s+)?" + _APPT + r"\b|\bya\s+tengo\b"
)
_CANCEL = _rx(
    r"\b(?:cancel\w*|cansel\w*|anul\w*|elimin\w*|borr\w*|desisti\w*|dar de baja)\b"
    r"|\bya no (?:voy a|puedo|podre|me hace falta|necesito)\b|\bno (?:voy a|podre) (?:poder )?ir\b"
)
_RESCHEDULE = _rx(
    r"\b(?:cambi\w*|mov\w*|muev\w*|reprogram\w*|reagend\w*|pospon\w*|posterg\w*|aplaz\w*|"
    r"adelant\w*|rod\w*|pasar|pasarla|pasarlo)\b(?:\s+\w+){0,5}?\s+(?:" + _APPT + r"|fecha|hora|"
    r"dia|horario)\b|\b(?:" + _APPT + r")\b(?:\s+\w+){0,4}?\s+(?:para otro dia|para otra fecha|"
    r"para otra hora|de fecha|de dia|de hora)\b|\breprogram\w*\b|\breagend\w*\b"
)
_FIND = _rx(
    r"\b(?:cuando|que dia|a que hora|donde)\s+(?:es|era|sera|tengo|me toca)\s+(?:mi|la)\s+"
    + _APPT
    + r"|\b(?:confirmar|consultar|verificar|revisar|saber|buscar|ver)\s+(?:\w+\s+){0,2}"
    r"(?:mi|mis)\s+"
    + _APPT
    + r"|\b(?:tengo|tenia)\s+(?:alguna\s+|una\s+)?"
    + _APPT
    + r"\s+(?:pendiente|activa|reservada|agendada|hecha)|\bolvid\w*\s+(?:\w+\s+){0,4}"
    + _APPT
    + r"|\bmis\s+"
    + _APPT
    + r"\b|\bmi\s+codigo\b|\btengo\s+(?:alguna\s+)?"
    + _APPT
    + r"\s*$"
)
_BOOK = _rx(
    r"\b(?:reserv\w*|agend\w*|apart\w*|separ\w*)\b|\b(?:sacar|hacer|coger|pedir|tomar|"
    r"solicitar|quiero|quisiera|necesito|necesitaria|deseo|me gustaria|me da|dame|deme|"
    r"busco|buscando|para|una|otra|nueva)\s+(?:\w+\s+){0,2}?" + _APPT + r"\b"
    # Whisper garbles the start of a request on a bad line ("¿Qué onda cita para renovar…?"
    # for "Quiero una cita para renovar…"); "cita para <something>" is a request by itself.
    r"|\b" + _APPT + r"\s+para\s+\w+"
    # A bare "la cita" / "una cita" answer.
    r"|^(?:(?:si|bueno|eh|este|pues|ok)\s+)*(?:la|una)\s+" + _APPT + r"(?:\s+por favor)?$"
)
_INFO_ONLY = _rx(
    r"\b(?:cuanto|cuanta|cuando|como|donde|que pasa|hasta que|hasta cuando|se puede|puedo|"
    r"es posible|cuesta|sale|tiene costo|hay que|que necesito|que se necesita|requisito\w*)\b"
)
_WANT = _rx(
    r"\b(?:quiero|quisiera|necesito|deseo|me gustaria|vengo|llamo|llamaba|voy a|queria|"
    r"ayudeme|ayudame|podria|puede|puedes|hagame|hazme|favor)\b"
)
_QUESTION_WORDS = _rx(
    r"\b(?:que|cual|cuales|cuanto|cuanta|cuantos|cuantas|cuando|como|donde|quien|quienes|"
    r"por que|se puede|puedo|hay|tienen|hacen|dan|aceptan|necesito|debo|tengo que|es cierto|"
    r"informacion|requisitos|horario|direccion|telefono|costo|precio)\b"
)


def detect_intent(norm: str) -> Intent:
    """The caller's goal in one normalised utterance; ``Intent("none")`` when it is only an
    answer, a question, or something the engine does not recognise."""
    if not norm:
        return Intent("none")
    if (_HUMAN.search(norm) or _HUMAN_SHORT.search(norm) or _NOT_A_MACHINE.search(norm)) and not (
        _HUMAN_EXCLUDE.search(norm)
    ):
        return Intent("human")
    mine = bool(_MINE.search(norm))
    info = bool(_INFO_ONLY.search(norm)) and not _WANT.search(norm)
    if _CANCEL.search(norm) and not info:
        return Intent("cancel", mine)
    if _RESCHEDULE.search(norm) and not info:
        return Intent("reschedule", mine)
    if _FIND.search(norm) and not (info and not mine):
        return Intent("find", True)
    if _BOOK.search(norm) and not (info and not _WANT.search(norm)):
        if mine and not re.search(r"\b(?:otra|nueva|reserv\w*|agend\w*)\b", norm):
            return Intent("find", True)
        return Intent("book")
    if _REPEAT.search(norm):
        return Intent("repeat")
    if _GOODBYE.search(norm) or _misheard_farewell(norm):
        return Intent("goodbye")
    if _NO_MORE.fullmatch(norm):
        return Intent("no_more")
    return Intent("none")


def _misheard_farewell(norm: str) -> bool:
    """A short turn with thanks and a word that sounds like "adiós" ("gracias amios")."""
    words = norm.split()
    if not words or len(words) > 4 or (len(words) > 1 and "gracias" not in words):
        return False
    return any(
        4 <= len(w) <= 7 and w not in ("gracias", "dios", "dias") and fuzz.ratio(w, f) >= 75
        for w in words
        for f in _FAREWELL_WORDS
    )


def is_thanks_closing(norm: str) -> bool:
    """ "Ok, muchas gracias" / "listo, gracias": said to "¿algo más?", the caller is done."""
    return bool(_THANKS_CLOSING.fullmatch(norm)) or is_only_thanks(norm)


def is_only_thanks(norm: str) -> bool:
    words = norm.split()
    return bool(words) and "gracias" in words and all(w in _THANKS_ONLY for w in words)


def asks_question(norm: str, raw: str = "") -> bool:
    return "?" in raw or "¿" in raw or bool(_QUESTION_WORDS.search(norm))


# --- digits -----------------------------------------------------------------------------------


def extract_cedula_digits(text: str, dtmf: str = "") -> str:
    """The digits dictated or keyed for a cédula (possibly incomplete); "" if none."""
    keyed = re.sub(r"\D", "", dtmf)
    if keyed:
        return keyed
    return extract_digits_sequence(text)


def extract_phone_digits(text: str, dtmf: str = "") -> str:
    digits = extract_cedula_digits(text, dtmf)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits


# --- choosing among offered options -----------------------------------------------------------

_ORDINALS = (
    (r"\b(?:la|el)?\s*primer[oa]?\b|\bla 1\b|\bopcion 1\b|\buno\b", 0),
    (r"\b(?:la|el)?\s*segund[oa]\b|\bla 2\b|\bopcion 2\b|\bdos\b", 1),
    (r"\b(?:la|el)?\s*tercer[oa]?\b|\bla 3\b|\bopcion 3\b|\btres\b", 2),
)
_LAST = _rx(r"\b(?:la|el)\s+ultim[oa]\b|\bultim[oa]\s+(?:opcion|hora)\b")
_FIRST_PREFS = _rx(r"\b(?:la mas temprano|lo mas temprano|la mas pronto|lo antes posible)\b")
_LATEST_PREFS = _rx(r"\b(?:la mas tarde|lo mas tarde)\b")


def choice_index(norm: str, count: int) -> int | None:
    """Which offered option the caller picked by position ("la primera", "la última")."""
    if count <= 0:
        return None
    if _LAST.search(norm) or _LATEST_PREFS.search(norm):
        return count - 1
    if _FIRST_PREFS.search(norm):
        return 0
    # Bare numbers are hours, not positions, unless the text is just the number word.
    for pattern, index in _ORDINALS:
        if index < count and re.search(pattern, norm):
            if re.search(r"\b(?:uno|dos|tres)\b", norm) and not re.fullmatch(
                r"(?:la |el |opcion )?(?:uno|dos|tres)", norm
            ):
                continue
            return index
    return None


_OTHER_DAY = _rx(
    r"\b(?:otro dia|otra fecha|otro horario|otra hora|otro momento|otros dias|otras horas|"
    r"no me sirve|no me conviene|no puedo|ninguna|ninguno|mas tarde|mas temprano)\b"
)


def wants_other_day(norm: str) -> bool:
    return bool(_OTHER_DAY.search(norm))


# --- topics for knowledge questions -----------------------------------------------------------

_HOURS = _rx(r"\b(?:hora|horas|horario|horarios|abren|abre|cierran|cierra|atienden|trabajan)\b")
# Over a phone line Whisper often hears "¿a qué hora…?" as "¿a qué ahora…?" / "que ahora…";
# with an office word nearby it is still the opening-hours question.
_HOURS_MISHEARD = _rx(r"\bque ahora\b(?=.*\b(?:s?ofic\w*|abr\w*|ven\w*|atiend\w*)\b)")
_ADDRESS = _rx(r"\b(?:donde|direccion|ubicad\w*|ubicacion|queda|quedan|llego|llegar|estan)\b")
_PHONE_Q = _rx(r"\b(?:telefono|numero de telefono|llamar)\b")
_SATURDAY = _rx(r"\bsabados?\b")
_APPOINTMENT_WORDS = _rx(r"\b" + _APPT + r"\b")


_FACETS: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...] = (
    (
        "cost",
        _rx(
            r"\b(?:cuanto (?:cuesta|cuestan|vale|valen|cobran|sale|es|se paga|hay que pagar)|"
            r"precio|costo|tarifa|se paga|es gratis|hay que pagar)\b"
        ),
        ("costo", "costos"),
    ),
    (
        "requirements",
        _rx(
            r"\b(?:que necesito|que se necesita|que necesita|requisito\w*|que papeles|"
            r"que documentos|que llevo|que tengo que llevar|que hay que llevar|que me piden)\b"
        ),
        ("requisitos",),
    ),
    (
        "duration",
        _rx(
            r"\b(?:cuanto (?:tarda|dura|demora|tiempo)|en cuanto tiempo|en cuantos dias|"
            r"cuando (?:esta|estara) listo|cuantos dias|que tiempo)\b"
        ),
        ("duracion", "tiempo", "entrega"),
    ),
)


def question_facet(norm: str) -> tuple[str, ...]:
    """Heading words of the section that answers this kind of question ("¿cuánto cuesta…?"
    → a "Costo …" section), so the brain can prefer it among the passages found."""
    for _name, pattern, words in _FACETS:
        if pattern.search(norm):
            return words
    return ()


def knowledge_topic(norm: str) -> str | None:
    """ "hours", "address" or "phone" for questions about the offices themselves; these are
    asked in many ways and deserve a focused query."""
    if _APPOINTMENT_WORDS.search(norm):
        return None
    if _HOURS_MISHEARD.search(norm) or (
        _HOURS.search(norm) and not re.search(r"\b(?:cuantas horas|cuanto tiempo)\b", norm)
    ):
        return "hours_saturday" if _SATURDAY.search(norm) else "hours"
    if _PHONE_Q.search(norm):
        return "phone"
    if _ADDRESS.search(norm):
        return "address"
    return None
