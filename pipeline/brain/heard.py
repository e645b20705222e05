"""What the caller meant, from what Whisper heard: repair misheard office words and numbers.

Whisper base on an 8 kHz phone line gets the shape of a word right more often than its
spelling: "sédula", "antesedentes", "apostila", "oficia principal", "licencia de conduci".
The dialogue's patterns and the catalog match exact (normalised) words, so one wrong letter
loses the fact. This module runs once per turn, before any of that, and rewrites the words
that are *near the office's vocabulary* (catalog names and aliases, weekdays, months) to
their canonical spelling. Nearness is judged on spelling (rapidfuzz) and on a Spanish sound
key (seseo, b/v, silent h, yeísmo, accents folded), with high thresholds so that ordinary
words pass through untouched. What the bot just asked for (``expect``) lowers the bar for
the words it expects, turns dictated numbers into one digit string when a cédula, phone or
code is expected, and switches repairs off while a name is being said.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rapidfuzz import fuzz

from pipeline.brain.spanish_text import extract_digits_sequence, normalize, strip_accents

if TYPE_CHECKING:
    from pipeline.brain.catalog import Catalog

__all__ = [
    "DIGITS_PROMPT",
    "EXPECTS",
    "Vocabulary",
    "build_vocabulary",
    "phonetic_key",
    "repair_for_matching",
    "repair_transcript",
    "repair_words",
    "spoken_digits",
    "whisper_prompt",
]

EXPECTS = frozenset(
    {"service", "office", "date", "time", "name", "cedula", "phone", "code", "confirm", "choice"}
)
_DIGIT_EXPECTS = frozenset({"cedula", "phone", "code"})

# ---------------------------------------------------------------------------------------------
# Sound key
# ---------------------------------------------------------------------------------------------

_KEY_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"[^a-zñ]", ""),
        (r"ñ", "ni"),
        (r"ch", "\x01"),
        (r"qu(?=[ei])", "k"),
        (r"gu(?=[ei])", "g"),
        (r"g(?=[ei])", "j"),
        (r"c(?=[ei])", "s"),
        (r"[cq]", "k"),
        (r"z", "s"),
        (r"x", "ks"),
        (r"h", ""),
        (r"ll", "y"),
        (r"[vw]", "b"),
        (r"y(?![aeiou])", "i"),
        (r"(.)\1+", r"\1"),
        (r"\x01", "ch"),
    )
)


def phonetic_key(text: str) -> str:
    """How a Dominican caller would *say* the word, as letters: "cédula", "sédula" and
    "zedula" all give "sedula"; "vienes"/"bienes", "hora"/"ora", "calle"/"caye" collide."""
    s = strip_accents(text.lower())
    for pattern, repl in _KEY_RULES:
        s = pattern.sub(repl, s)
    return s


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

# Words of the office that are not in the catalog's names, spelled as they should be written.
_OFFICE_WORDS = (
    "cédula cédulas pasaporte licencia conducir apostilla apostillar legalización legalizar "
    "antecedentes penales certificado nacimiento matrimonio defunción identidad electoral "
    "renovar renovación duplicado oficina oficinas cita citas Punto Ciudadano principal mañana "
    "lunes martes miércoles jueves viernes sábado domingo "
    "enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre "
    "diciembre"
).split()
_DATE_WORDS = frozenset(
    normalize(w)
    for w in (
        "lunes martes miércoles jueves viernes sábado domingo enero febrero marzo abril mayo "
        "junio julio agosto septiembre setiembre octubre noviembre diciembre"
    ).split()
)
_STOP = frozenset("de del la las los el y en para por con".split())
# Ordinary words that sit within one letter of an office word; never "corrected".
_PROTECTED = frozenset(
    normalize(w)
    for w in (
        "partes parte santos centros oficio oficios oficial oficiales pasar pasé pasa porte "
        "celular celulares tarde tardes mano mayor mayoría juntos junto marca marcar "
        "martillo mares mar mes meses domingos lunas luna dominio dominar penal penas cerca "
        "ciudad ciudades punto puntos nacimientos oficial licencias conducta conduce conducen "
        "cito citó citas sitio citado renové renovó certifico doce once este esta ese estas "
        "principio principales principe identidades antecedente matrimonios duplicar cédulas "
        "viene vienen viernes bienes abril abrir abrí julio julia junio mayo maya marzo marcos "
        "octavo octava agosto gusto disgusto enero entero marbete marbetes siempre policía "
        "policías vigente vigentes pérdida pérdidas"
    ).split()
)


@dataclass(frozen=True, slots=True)
class _Word:
    norm: str  # normalised spelling
    key: str  # sound key
    spelled: str  # how to write it back


@dataclass(frozen=True, eq=False)  # hashed by identity: one per catalog, cached
class Vocabulary:
    """The office's words with their spelling and sound keys, built once per catalog."""

    words: tuple[_Word, ...]
    by_norm: dict[str, _Word]
    by_key: dict[str, _Word]
    dates: frozenset[str]
    services: frozenset[str]
    offices: frozenset[str]


def _spellings(catalog: Catalog) -> list[str]:
    texts: list[str] = list(_OFFICE_WORDS)
    for s in catalog.services:
        texts += [s.name, s.spoken]
    for o in catalog.offices:
        texts += [o.name, o.short]
    return [w for t in texts for w in re.findall(r"[\wáéíóúñü]+", t)]


def _alias_words(aliases: list[str]) -> set[str]:
    """The words of the aliases, except the pieces of a word written apart ("pasa porte"
    is a way to hear "pasaporte"; "pasa" and "porte" are not office words)."""
    norms = [normalize(a) for a in aliases]
    single_keys = {phonetic_key(n) for n in norms if " " not in n}
    words: set[str] = set()
    for n in norms:
        if " " in n and phonetic_key(n) in single_keys:
            continue
        words.update(n.split())
    return words


def build_vocabulary(catalog: Catalog) -> Vocabulary:
    """All words of the catalog (names, aliases) and the calendar, spelled and keyed."""
    spelled: dict[str, str] = {}
    for word in _spellings(catalog):
        norm = normalize(word)
        proper = word[:1].isupper() and norm not in _DATE_WORDS
        # A lower-case spelling wins over a capitalised one ("Cédula de…" → "cédula"), except
        # for place names, which are never written in lower case.
        if norm not in spelled or (spelled[norm][:1].isupper() and not proper):
            spelled[norm] = word if proper else word.lower()
    service_words = _alias_words([a for s in catalog.services for a in (*s.aliases, s.name)])
    office_words = _alias_words([a for o in catalog.offices for a in (*o.aliases, o.name)])
    office_words.update({"oficina", "oficinas"})
    service_words.update({"cedula", "pasaporte", "licencia", "apostilla", "antecedentes"})
    by_key_spelled = {phonetic_key(w): s for w, s in spelled.items()}
    for w in service_words | office_words:
        if w not in spelled:
            # An alias spelled like a canonical word ("sedula") is written as that word.
            spelled[w] = by_key_spelled.get(phonetic_key(w), w)
    words = tuple(
        _Word(norm=n, key=phonetic_key(n), spelled=s)
        for n, s in spelled.items()
        if len(n) >= 4 and n not in _STOP
    )
    by_key: dict[str, _Word] = {}
    for w in sorted(words, key=lambda w: w.norm != normalize(w.spelled)):
        by_key.setdefault(w.key, w)
    return Vocabulary(
        words=words,
        by_norm={w.norm: w for w in words},
        by_key=by_key,
        dates=_DATE_WORDS,
        services=frozenset(service_words),
        offices=frozenset(office_words),
    )


def _vocabulary(catalog: Catalog) -> Vocabulary:
    vocab = getattr(catalog, "heard_vocabulary", None)
    return vocab if isinstance(vocab, Vocabulary) else build_vocabulary(catalog)


# ---------------------------------------------------------------------------------------------
# Word repairs
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-zÁÉÍÓÚÜÑáéíóúüñ]+")
_BASE_CUTOFF = 90.0
_EXPECTED_CUTOFF = 85.0


_ENDING = re.compile(r"(?:as|os|es|a|o|e|s)$")
_CLITIC = re.compile(r"(?:lo|la|los|las|le|les|me|se|nos)$")


def _is_inflection(word: str, target: str) -> bool:
    """Another form of an office word ("santos", "principales", "certificada",
    "legalizarlo") is left alone, while a dropped final s ("miércole", "marte", as many
    Dominicans say it) is repaired."""
    if target == word + "s":
        return False
    if word.startswith(target) and _CLITIC.fullmatch(word[len(target) :]):
        return True
    return _ENDING.sub("", word) == _ENDING.sub("", target)


_VOICING = str.maketrans("bdg", "ptk")


def _voiceless(key: str) -> str:
    """The sound key with b/p, d/t, g/k merged: the phone band blurs voicing ("abostilla")."""
    return key.translate(_VOICING)


def _match_word(norm: str, vocab: Vocabulary, cutoff: float) -> _Word | None:
    """The office word this (normalised, unknown) word was probably meant to be."""
    known = vocab.by_norm.get(norm)
    if known is not None:  # an alias written another way ("sedula") gets the usual spelling
        return known if normalize(known.spelled) != norm else None
    if norm in _PROTECTED or len(norm) < 4:
        return None
    key = phonetic_key(norm)
    same_sound = vocab.by_key.get(key)
    if same_sound is not None:
        return same_sound
    if len(key) < 5:
        return None
    coarse = _voiceless(key)
    best: tuple[float, _Word] | None = None
    for w in vocab.words:
        w_coarse = _voiceless(w.key)
        if w_coarse[:1] != coarse[:1] or len(w.key) < 5 or abs(len(w.key) - len(key)) > 2:
            continue
        score = max(fuzz.ratio(key, w.key), fuzz.ratio(norm, w.norm))
        if abs(len(w.key) - len(key)) <= 1:  # voicing only blurs a sound, it adds none
            score = max(score, fuzz.ratio(coarse, w_coarse))
        # One wrong sound in a long word ("aportilla", "conduzca") is still that word.
        needed = cutoff - 3 if min(len(key), len(w.key)) >= 8 else cutoff
        if score >= needed and (best is None or score > best[0]):
            best = (score, w)
    if best is None or _is_inflection(norm, best[1].norm):
        return None
    return best[1]


def _expected_group(expect: str | None, vocab: Vocabulary) -> frozenset[str]:
    if expect == "service":
        return vocab.services
    if expect == "office":
        return vocab.offices
    if expect == "date":
        return vocab.dates
    return frozenset()


def repair_words(text: str, vocab: Vocabulary, expect: str | None = None) -> str:
    """Rewrite words that sound or read like an office word as that word (one token, or two
    or three tokens that join into one: "pasa porte", "ante sedentes")."""
    matches = list(_TOKEN.finditer(text))
    expected = _expected_group(expect, vocab)
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(matches):
        replaced = False
        # Joined pieces first: "pasa porte" is one word said with a pause.
        for n in (3, 2):
            if i + n > len(matches):
                continue
            span = matches[i : i + n]
            if any(text[a.end() : b.start()].strip() for a, b in itertools.pairwise(span)):
                continue  # punctuation between the pieces: separate words
            pieces = [normalize(m.group(0)) for m in span]
            if any(len(p) < 2 or p in vocab.by_norm for p in pieces):
                continue  # "matrimonio o …" is two words, not a longer "matrimonio"
            joined = normalize("".join(m.group(0) for m in span))
            target = vocab.by_norm.get(joined) or vocab.by_key.get(phonetic_key(joined))
            if target is None or len(target.norm) < 7:
                continue
            out.append(text[pos : span[0].start()])
            out.append(_cased(target.spelled, span[0].group(0)))
            pos = span[-1].end()
            i += n
            replaced = True
            break
        if replaced:
            continue
        m = matches[i]
        norm = normalize(m.group(0))
        target = _match_word(norm, vocab, _BASE_CUTOFF)
        if target is None and expected:
            candidate = _match_word(norm, vocab, _EXPECTED_CUTOFF)
            if candidate is not None and candidate.norm in expected:
                target = candidate
        if target is not None and not _looks_like_a_name(text, m, target, vocab):
            out.append(text[pos : m.start()])
            out.append(_cased(target.spelled, m.group(0)))
            pos = m.end()
        i += 1
    out.append(text[pos:])
    return "".join(out)


def _looks_like_a_name(text: str, m: re.Match[str], target: _Word, vocab: Vocabulary) -> bool:
    """A capitalised word inside a sentence is a name ("Yolanda Marte", "Sonia Batista"):
    it is not turned into a common office word, only into (part of) a place name."""
    if not m.group(0)[:1].isupper() or target.spelled[:1].isupper() or target.norm in vocab.offices:
        return False
    before = text[: m.start()].rstrip()
    return bool(before) and before[-1] not in ".!?¿¡:"


def _cased(spelled: str, original: str) -> str:
    """Keep a sentence-initial capital; proper nouns keep theirs."""
    if original[:1].isupper() and spelled[:1].islower():
        return spelled[:1].upper() + spelled[1:]
    return spelled


# "renovar mi fe", "sacar la célula": a service word Whisper turned into an ordinary word, only
# where a service is plausible (after a verb of the trámite, in "cita para …", or when asked).
_SERVICE_SOUNDALIKES = {"fe": "cédula", "celula": "cédula", "cedro": "cédula", "sede": "cédula"}
_SERVICE_CONTEXT = re.compile(
    r"\b(?:renovar|renovacion|renueve|renuevo|sacar|sacarme|saco|hacer|hacerme|duplicado|"
    r"cambiar|perdi|perdio|vencio|vencida|vencido|nueva|primera|tramite|tramitar|"
    r"cita|sita|turno)\s+(?:de\s+|para\s+|por\s+)?(?:(?:mi|la|una|su|el)\s+)?"
    r"(fe|celula|cedro|sede)\b"
)
_SERVICE_ALONE = re.compile(r"^(?:(?:es|para|de)\s+)?(?:(?:la|mi|una|el)\s+)?(fe|celula)$")


# "la pasta de nacimiento", "el hacha de matrimonio": a short word that sounds like "acta"
# before the kind of record is the record, unless it is one of the usual nouns there.
_RECORD_KIND = re.compile(
    r"(?<![\wáéíóúñ])([A-Za-zÁÉÍÓÚÑáéíóúñ]{3,6})(\s+(?:de|del)\s+"
    r"(?:nacimiento|matrimonio|defunci[oó]n|divorcio))",
    re.IGNORECASE,
)
_RECORD_NOUNS = frozenset(
    "acta actas fecha lugar dia año ano ciudad pais copia hora libro nombre fiesta partida "
    "estado fe papel numero registro prueba torta regalo casa mes".split()
)


# "hasta venacimiento": "de" glued to the kind of record and bent.
_GLUED_DE = re.compile(r"(?i)\b[bvd]e(nacimiento|matrimonio|defunci[oó]n)\b")


def _record_soundalikes(text: str) -> str:
    def fix(m: re.Match[str]) -> str:
        word = normalize(m.group(1))
        # Heard for "acta" on phone lines: hasta, pasta, hacha, asa, alza (key "alsa": 50).
        sounds = max(fuzz.ratio(phonetic_key(word), "akta"), fuzz.ratio(word, "acta"))
        if word in _RECORD_NOUNS or sounds < 50:
            return m.group(0)
        return "acta" + m.group(2)

    return _RECORD_KIND.sub(fix, _GLUED_DE.sub(r"de \1", text))


def _service_soundalikes(text: str, expect: str | None) -> str:
    norm = normalize(text)
    found = [m.group(1) for m in _SERVICE_CONTEXT.finditer(norm)]
    alone = _SERVICE_ALONE.match(norm)
    if expect == "service" and alone:
        found.append(alone.group(1))
    for word in dict.fromkeys(found):
        text = re.sub(_accent_pattern(word), _SERVICE_SOUNDALIKES[word], text, count=1)
    text = _record_soundalikes(text)
    return text


def _accent_pattern(norm: str) -> str:
    """A regex matching ``norm`` written with or without accents, any case."""
    accents = {"a": "aá", "e": "eé", "i": "ií", "o": "oó", "u": "uúü"}
    body = "".join(f"[{accents[c]}]" if c in accents else re.escape(c) for c in norm)
    return rf"(?i)(?<![\wáéíóúñ]){body}(?![\wáéíóúñ])"


# A short answer to "¿qué día?" is nearly always a day or a month, so a looser match is safe
# there, except for the other words such answers are made of.
_DAY_ANSWER_WORDS = frozenset(
    normalize(w)
    for w in (
        "tarde mañana temprano semana semanas próximo próxima pasado viene cualquier cualquiera "
        "día días mes hoy ahora primero primera último última mediodía noche este esta otro "
        "otra mejor bueno claro puede pueda sea nada"
    ).split()
)
_DAY_ANSWER_CUTOFF = {1: 70.0, 2: 80.0, 3: 80.0}


def _short_date_answer(text: str, vocab: Vocabulary) -> str:
    """ "mardes" → "martes", "verenas" → "viernes" when the bot asked for a day."""
    matches = list(_TOKEN.finditer(text))
    cutoff = _DAY_ANSWER_CUTOFF.get(len(matches))
    if cutoff is None:
        return text
    out: list[str] = []
    pos = 0
    for m in matches:
        norm = normalize(m.group(0))
        if (
            len(norm) < 4
            or norm in vocab.by_norm
            or norm in _DAY_ANSWER_WORDS
            or norm in _PROTECTED
            or extract_digits_sequence(norm)
        ):
            continue
        key = phonetic_key(norm)
        best: tuple[float, str] | None = None
        for date_word in vocab.dates:
            w = vocab.by_norm.get(date_word)
            if w is None:
                continue
            score = max(fuzz.ratio(key, w.key), fuzz.ratio(norm, w.norm))
            if score >= cutoff and (best is None or score > best[0]):
                best = (score, w.spelled)
        if best is not None and not _looks_like_a_name(
            text, m, vocab.by_norm[normalize(best[1])], vocab
        ):
            out += [text[pos : m.start()], _cased(best[1], m.group(0))]
            pos = m.end()
    out.append(text[pos:])
    return "".join(out)


# "Para mañana" over a phone line: "Irla Magiana", "Vila Magiana", "Irramaniana". A word that
# sounds like "mañana" in a short answer to "¿qué día?" is that word; the date parser then
# reads it as tomorrow, or as the morning after "en/por/de la" (which is what was said then).
_TOMORROW = "mañana"
_TOMORROW_KEY = phonetic_key(_TOMORROW)  # "maniana"
_TOMORROW_CUTOFF = 80.0
_TOMORROW_MAX_WORDS = 6
_NOT_TOMORROW = frozenset(normalize(w) for w in "manzana semana mañanas mañanita banana".split())


def _sounds_like_tomorrow(norm: str) -> bool:
    if norm in _NOT_TOMORROW or norm in _PROTECTED or len(norm) < 5:
        return False
    key = phonetic_key(norm)
    return max(fuzz.ratio(key, _TOMORROW_KEY), fuzz.ratio(_voiceless(key), "maniana")) >= (
        _TOMORROW_CUTOFF
    )


def _tomorrow_soundalike(text: str) -> str:
    """ "Irla Magiana" → "Irla mañana"; a word glued to it ("Irramaniana") is split off."""
    matches = list(_TOKEN.finditer(text))
    if not matches or len(matches) > _TOMORROW_MAX_WORDS:
        return text
    for m in reversed(matches):  # from the end: earlier spans stay valid
        norm = normalize(m.group(0))
        if norm == "manana":
            continue
        if _sounds_like_tomorrow(norm):
            text = text[: m.start()] + _cased(_TOMORROW, m.group(0)) + text[m.end() :]
            continue
        if len(norm) >= 8 and m is matches[-1] and len(norm) == len(m.group(0)):
            for size in (7, 6, 8):  # "irra" + "maniana" / "manana" / "mañiana"
                if len(norm) - size >= 2 and _sounds_like_tomorrow(norm[-size:]):
                    head = m.group(0)[:-size]
                    text = f"{text[: m.start()]}{head} {_TOMORROW}{text[m.end() :]}"
                    break
    return text


# "Santo Domingo Este" over a phone line: "Santo Domingo, es sí", "tanto domingo es".
_ESTE_HEARD = re.compile(
    r"(?i)\b(santo\s+domingo)[\s,.]+es(?:[\s,.]+(?:s[ií]|te|ti|tes)(?![\wáéíóúñ])|(?=[\s,.]*$))"
)
_OFFICE_PHRASE_CUTOFF = 85.0


def _office_phrases(text: str, catalog: Catalog) -> str:
    """When the bot asked for the office, a group of words that sounds like a multi-word
    office name is that name ("tanto domingo" → "Santo Domingo"), and "Santo Domingo es (sí)"
    is Santo Domingo Este."""
    phrases: dict[str, str] = {}
    for office in catalog.offices:
        for alias in (office.short, *office.aliases):
            norm = normalize(alias)
            if " " in norm:
                phrases.setdefault(norm, alias if alias[:1].isupper() else alias.title())
    for norm, spelled in sorted(phrases.items(), key=lambda p: -len(p[0])):
        size = len(norm.split())
        target = phonetic_key(norm)
        matches = list(_TOKEN.finditer(text))
        for i in range(len(matches) - size, -1, -1):  # from the end: spans stay valid
            span = matches[i : i + size]
            words = normalize(" ".join(m.group(0) for m in span))
            if words == norm or words in phrases:
                continue
            each = zip(words.split(), norm.split(), strict=True)
            if fuzz.ratio(phonetic_key(words), target) >= _OFFICE_PHRASE_CUTOFF and all(
                fuzz.ratio(phonetic_key(a), phonetic_key(b)) >= 70 for a, b in each
            ):
                text = text[: span[0].start()] + spelled + text[span[-1].end() :]
    return _ESTE_HEARD.sub(lambda m: f"{m.group(1)} Este", text)


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

_DIGIT_WORDS = ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve")
_DIGIT_BY_KEY = {phonetic_key(w): w for w in _DIGIT_WORDS}
# How Whisper writes a digit said alone on a phone line, when it is not the word itself.
_DIGIT_MISHEARD = {
    "o": "cero",
    "sero": "cero",
    "zero": "cero",
    "ceros": "cero",
    "nuevo": "nueve",
    "mueve": "nueve",
    "nueva": "nueve",
    "sei": "seis",
    "seys": "seis",
    "tre": "tres",
    "do": "dos",
    "uno": "uno",
    "sinco": "cinco",
    "cuatros": "cuatro",
    "siente": "siete",
    "sietes": "siete",
    "ochos": "ocho",
    "ojo": "ocho",
    "oche": "ocho",
    "osho": "ocho",
}
_NUMBER_TOKEN = re.compile(r"\d+|[a-zñ]+|[,;.!?]")
# Tokens that may sit inside a dictated number without breaking it.
_NUMBER_GLUE = frozenset({"y", "doble", "triple"})


def _is_number_word(tok: str) -> bool:
    return tok.isdigit() or extract_digits_sequence(tok) != "" or tok in ("mil", "millon", "cien")


_PUNCT_TOKENS = frozenset(",;.!?")
_DIGIT_FUZZY_CUTOFF = 80.0


def _misheard_digit(tok: str) -> str | None:
    """The digit word a token next to other digits was meant to be ("pocho" → "ocho")."""
    if tok in _DIGIT_MISHEARD:
        return _DIGIT_MISHEARD[tok]
    if len(tok) < 4:
        return None
    key = phonetic_key(tok)
    if key in _DIGIT_BY_KEY:
        return _DIGIT_BY_KEY[key]
    scored = [(fuzz.ratio(key, k), w) for k, w in _DIGIT_BY_KEY.items() if len(k) >= 4]
    score, word = max(scored)
    return word if score >= _DIGIT_FUZZY_CUTOFF else None


def _digit_tokens(tokens: list[str]) -> list[tuple[str, bool]]:
    """Normalised tokens (words, figures, punctuation) with the misheard digit words of a
    dictation fixed; flag = part of a number. A word counts as a misheard digit only next to
    another number ("cinco, pocho, dos"; "cero o uno"), so "pero" or "o" elsewhere stay."""
    fixed = list(tokens)
    flags = [_is_number_word(t) for t in fixed]
    words = [i for i, t in enumerate(fixed) if t not in _PUNCT_TOKENS]
    changed = True
    while changed:  # repeated so that "o o uno" works from the right
        changed = False
        for n, i in enumerate(words):
            if flags[i]:
                continue
            before = n > 0 and flags[words[n - 1]]
            after = n + 1 < len(words) and flags[words[n + 1]]
            if not (before or after):
                continue
            tok = fixed[i]
            digit = "uno" if tok in ("un", "una") else _misheard_digit(tok)
            if digit is not None:
                fixed[i] = digit
                flags[i] = changed = True
    return list(zip(fixed, flags, strict=True))


def _number_tokens(text: str) -> list[str]:
    """Lower-case, accent-free words and figures, with pauses (, ; . ! ?) as their own marks."""
    return _NUMBER_TOKEN.findall(strip_accents(text.lower()))


def spoken_digits(text: str) -> str:
    """Every digit a caller dictated, in order, from words, figures or both:
    "cero cero uno, dos tres cuatro" → "001234"; "ochocientos nueve, cinco cinco cinco" →
    "809555"; "001-1234567-8" → "00112345678"; "o" heard for "cero" between digits counts."""
    tokens = _digit_tokens(_number_tokens(text))
    return extract_digits_sequence(" ".join(tok for tok, _ in tokens))


def _digits_in_place(text: str) -> str:
    """Replace each dictated run of numbers (with its commas, dashes and "y") by its digits."""
    tokens = list(re.finditer(r"\d+|[A-Za-zÁÉÍÓÚÜÑáéíóúüñ]+", text))
    if not tokens:
        return text
    fixed = _digit_tokens([strip_accents(t.group(0).lower()) for t in tokens])
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(tokens):
        if not fixed[i][1]:
            i += 1
            continue
        j = i
        while j + 1 < len(tokens) and (
            fixed[j + 1][1]
            or (fixed[j + 1][0] in _NUMBER_GLUE and j + 2 < len(tokens) and fixed[j + 2][1])
        ):
            gap = text[tokens[j].end() : tokens[j + 1].start()]
            if re.search(r"[^\s,.;:\-]", gap):
                break
            j += 1
        # Pauses (commas) end a group: "doce, treinta" is 12 30, not 42.
        groups = []
        for k in range(i, j + 1):
            groups.append(fixed[k][0])
            if k < j and re.search(r"[,.;]", text[tokens[k].end() : tokens[k + 1].start()]):
                groups.append(",")
        digits = extract_digits_sequence(" ".join(groups))
        if digits:
            out.append(text[pos : tokens[i].start()])
            out.append(digits)
            pos = tokens[j].end()
        i = j + 1
    out.append(text[pos:])
    return "".join(out)


@functools.lru_cache(maxsize=512)
def _repair_norm(norm: str, vocab: Vocabulary) -> str:
    repaired = normalize(repair_words(_service_soundalikes(norm, None), vocab))
    return " ".join(_split_clitic(w, vocab) for w in repaired.split())


def _split_clitic(word: str, vocab: Vocabulary) -> str:
    """ "apostillarlo" → "apostillar lo", so the catalog's alias "apostillar" matches."""
    m = _CLITIC.search(word)
    if m and m.start() >= 4 and word[: m.start()] in vocab.by_norm:
        return f"{word[: m.start()]} {m.group(0)}"
    return word


def repair_for_matching(norm: str, catalog: Catalog) -> str:
    """Normalised text with misheard office words repaired, for the catalog's own matching
    (cached: the dialogue asks the catalog several times per turn about the same text)."""
    return _repair_norm(norm, _vocabulary(catalog)) if norm else norm


# ---------------------------------------------------------------------------------------------
# Priming the recogniser
# ---------------------------------------------------------------------------------------------

_WEEKDAYS = "lunes, martes, miércoles, jueves, viernes, sábado"
_MONTHS = (
    "enero, febrero, marzo, abril, mayo, junio, julio, agosto, septiembre, octubre, noviembre, "
    "diciembre"
)


def whisper_prompt(catalog: Catalog, *, months: bool = True, full_names: bool = True) -> str:
    """Whisper's initial prompt from the catalog: short answers first (a prompt of nouns
    alone makes Whisper hear "Cédula, pasaporte…" in a lone "Sí"), then the services (full
    names) and offices as lists, then the weekdays and months. It holds no caller sentence
    and few function words, so a real answer ("cédula en Santiago el lunes") is not taken
    for an echo of the prompt by the STT's hallucination guard. Measured against the short
    form (spoken names, no months) with beam 5: office facts recovered 0.85 vs 0.83, WER
    the same (bench/stt_wer_bench.py).
    """
    names = [s.name if full_names else s.spoken for s in catalog.services]
    services = ", ".join(n[:1].lower() + n[1:] for n in names)
    offices = ", ".join(o.short for o in catalog.offices)
    parts = ["Sí. No. Correcto. Gracias.", f"Cita para {services}.", f"{offices}."]
    parts.append(_WEEKDAYS[:1].upper() + _WEEKDAYS[1:] + ".")
    if months:
        parts.append(_MONTHS[:1].upper() + _MONTHS[1:] + ".")
    return " ".join(parts)


DIGITS_PROMPT = "Cero, uno, dos, tres, cuatro, cinco, seis, siete, ocho, nueve."


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------


def repair_transcript(text: str, catalog: Catalog, expect: str | None = None) -> str:
    """The transcript with misheard office words written as the catalog writes them.

    ``expect`` is what the bot just asked for ("service", "office", "date", "time", "name",
    "cedula", "phone", "code", "confirm", "choice" or None). Words close to the office's
    vocabulary are rewritten ("oficia principal" → "oficina principal", "sédula" →
    "cédula"), "fe" becomes "cédula" where a service is plausible ("renovar mi fe"), and when
    digits are expected every dictated number becomes one digit string ("cero cero uno, dos
    tres cuatro" → "001234"). While a name is expected nothing is touched: names are as said.
    """
    if not text or not text.strip() or expect == "name":
        return text
    vocab = _vocabulary(catalog)
    repaired = _service_soundalikes(text, expect)
    repaired = repair_words(repaired, vocab, expect)
    if expect == "date":
        repaired = _short_date_answer(_tomorrow_soundalike(repaired), vocab)
    if expect == "office":
        repaired = _office_phrases(repaired, catalog)
    if expect in _DIGIT_EXPECTS:
        repaired = _digits_in_place(repaired)
    return repaired
