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

from pipeline.brain.spanish_text import extract_digits_sequence, extract_numbers, normalize

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


# --- names ------------------------------------------------------------------------------------

_NAME_LEAD = _rx(
    r"^(?:(?:si|bueno|ok|claro|pues|este|eh|ah|mire|perdon|dale)\s+)*(?:(?:mi\s+nombre\s+(?:completo\s+)?"
    r"(?:es|seria)|me\s+llamo|yo\s+me\s+llamo|soy|yo\s+soy|el\s+nombre\s+(?:es|seria)|"
    r"a\s+nombre\s+de|ponga(?:la|lo)?\s+a\s+nombre\s+de|es\s+a\s+nombre\s+de|es\s+para|"
    r"para|es|seria|se\s+llama|no\s+(?:mi\s+nombre\s+es|me\s+llamo|es)|mejor\s+dicho)\s+)*"
)
_NOT_NAME_WORDS = frozenset(
    "cita cedula pasaporte licencia acta oficina hora dia manana tarde lunes martes miercoles "
    "jueves viernes sabado domingo numero telefono codigo cancelar cambiar quiero necesito "
    "gracias agente persona operador si no claro correcto ok bueno favor aja aha eh em mm mmm "
    "este pues mire oiga hola alo digo okey vale listo perdon disculpe como que nada algo "
    "nombre apellido yo usted mi mis su sus tu menor mayor edad residente extranjero extranjera "
    "dominicano dominicana".split()
)
_PARTICLES = frozenset({"de", "del", "la", "las", "los", "y", "san", "santa"})


def extract_name(text: str) -> str | None:
    """The person's name in "mi nombre es juan perez" / "Juan Pérez" / "soy María de la Cruz",
    title-cased as Whisper's accents left it; None for anything that is not a plausible name."""
    raw = re.sub(r"[^\w\s'-]", " ", text).strip()
    if not raw or re.search(r"\d", raw) or extract_numbers(raw, articles=False):
        return None
    norm = normalize(raw)
    lead = _NAME_LEAD.match(norm + " ")
    words_raw = raw.split()
    if lead:
        words_raw = words_raw[len(lead.group(0).split()) :]
    # Trailing courtesy words are not part of the name.
    while words_raw and normalize(words_raw[-1]) in {"gracias", "porfavor", "favor", "por"}:
        words_raw.pop()
    if not words_raw or len(words_raw) > 7:
        return None
    folded = [normalize(w) for w in words_raw]
    if any(w in _NOT_NAME_WORDS for w in folded):
        return None
    content = [w for w in folded if w not in _PARTICLES]
    if not content or any(len(w) < 2 for w in content):
        return None
    out = []
    for w, f in zip(words_raw, folded, strict=True):
        out.append(f if f in _PARTICLES and out else w[:1].upper() + w[1:].lower())
    return " ".join(out)


_NAME_INTRO = re.compile(
    r"(?i)(?:^|[\s,.;¡¿])(?P<lead>me llamo|mi nombre es|mi nombre completo es|"
    r"el nombre es|a nombre de|le habla|habla|soy)\s+(?P<rest>[^\d,.;:!?¡¿]+)"
)
# Leads that are also ordinary words ("soy de Santiago", "habla muy bajo"): only followed by
# a capitalised word, as Whisper writes names.
_WEAK_LEADS = frozenset({"soy", "habla", "le habla"})
_NAME_STOP = frozenset(
    "y e que quiero quisiera necesito queria deseo vengo llamo llamaba para por en con a al el "
    "mi me le tengo busco porque pero o u ya si no es".split()
)


def find_name(text: str) -> str | None:
    """A name the caller introduces inside a longer turn: "Soy María Gómez, quiero sacar el
    pasaporte…", "buenas, le habla José Peña", "…a nombre de Ana de la Cruz"."""
    for m in _NAME_INTRO.finditer(text):
        words = m.group("rest").split()
        if not words:
            continue
        lead = m.group("lead").lower()
        taken = _leading_name_words(words)
        # "soy"/"habla" are ordinary words too: a name after them is capitalised, as
        # Whisper writes names, or at least two words long ("soy maría gómez").
        content = [w for w in taken if normalize(w) not in _PARTICLES]
        if lead in _WEAK_LEADS and not words[0][:1].isupper() and len(content) < 2:
            continue
        name = extract_name(" ".join(taken)) if taken else None
        if name:
            return name
    return None


def name_in_answer(text: str) -> str | None:
    """The name in an answer to "¿A nombre de quién…?", also when more follows it: "Sí,
    María Pérez, para servirle" → "María Pérez"."""
    for clause in [c for c in re.split(r"[,.;:!?¡¿]", text) if c.strip()][:3]:
        lead = _NAME_LEAD.match(normalize(clause) + " ")
        words = clause.split()[len(lead.group(0).split()) if lead else 0 :]
        taken = _leading_name_words(words)
        name = (extract_name(" ".join(taken)) if taken else None) or extract_name(clause)
        if name:
            return name
    return find_name(text)


def name_as_heard(text: str) -> str | None:
    """The words of a turn that could be a name, title-cased, when nothing better was found
    after several tries; None when only fillers were said ("ajá, sí, pues")."""
    words = [w for w in re.findall(r"[^\W\d_]+", text) if len(w) > 1]
    kept = [w for w in words if normalize(w) not in _NAME_STOP | _NOT_NAME_WORDS]
    if not 1 <= len(kept) <= 5:
        return None
    return " ".join(w[:1].upper() + w[1:].lower() for w in kept)


def _leading_name_words(words: list[str]) -> list[str]:
    """The words a name is made of, up to the first word that cannot be part of one."""
    taken: list[str] = []
    for i, w in enumerate(words[:6]):
        folded = normalize(w)
        if folded in _NAME_STOP or folded in _NOT_NAME_WORDS:
            break
        if folded in _PARTICLES and (not taken or i + 1 >= len(words)):
            break
        taken.append(w)
    while taken and normalize(taken[-1]) in _PARTICLES:
        taken.pop()
    return taken


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
