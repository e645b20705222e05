"""Spanish text helpers for the offline brain.

The offline dialogue engine hears what Whisper wrote (accents and punctuation may be missing,
numbers may be words or digits) and speaks through a TTS voice that reads symbols, Markdown and
abbreviations badly. These helpers bridge both gaps with plain rules: no NLP library, no model,
well under a millisecond per call, so they can run on the event loop inside a turn.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "clock_words",
    "extract_digits_sequence",
    "extract_numbers",
    "is_affirmative",
    "normalize",
    "number_to_words",
    "parse_number_words",
    "speakable",
    "strip_accents",
    "words_to_digits",
]

# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------


def strip_accents(text: str) -> str:
    """Remove diacritics but keep ``ñ``: Whisper is inconsistent with accents, while ``ñ``
    distinguishes words we care about (``mañana``)."""
    decomposed = unicodedata.normalize("NFD", text)
    decomposed = decomposed.replace("n\u0303", "\x00").replace("N\u0303", "\x01")
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.replace("\x00", "ñ").replace("\x01", "Ñ")


# "a. m.", "a.m.", "p. m." → "am"/"pm" before punctuation is dropped, so they survive as words.
_AMPM_DOTTED = re.compile(r"(?<![a-zñ])([ap])\s?\.\s?m(?:\s?\.|(?![a-zñ]))")
_AMPM_AFTER_DIGIT = re.compile(r"(\d)\s*([ap])\s?m(?![a-zñ])")
# Punctuation between two digits is meaningful ("3:30", "23/11", "1,500"): keep it.
_PUNCT = re.compile(r"(?<=\d)[:/.,\-](?=\d)|([^a-z0-9ñ\s])")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lowercase, accent-free (except ``ñ``), punctuation-free text for matching.

    Punctuation inside numbers is kept ("3:30", "23/11", "1,500") and "a. m."/"p. m." become
    the words "am"/"pm", so that date and number parsing can work on the normalised form.
    """
    s = strip_accents(text.lower())
    s = _AMPM_DOTTED.sub(r" \1m ", s)
    s = _PUNCT.sub(lambda m: m.group(0) if m.group(1) is None else " ", s)
    s = _AMPM_AFTER_DIGIT.sub(r"\1 \2m", _SPACES.sub(" ", s))
    return _SPACES.sub(" ", s).strip()


# ---------------------------------------------------------------------------------------------
# Numbers said as words
# ---------------------------------------------------------------------------------------------

_UNITS: dict[str, int] = {
    "uno": 1,
    "un": 1,
    "una": 1,
    "dos": 2,
    "tres": 3,
    "cuatro": 4,
    "cinco": 5,
    "seis": 6,
    "siete": 7,
    "ocho": 8,
    "nueve": 9,
}
_ARTICLES = frozenset({"un", "una"})
_TEENS: dict[str, int] = {
    "diez": 10,
    "once": 11,
    "doce": 12,
    "trece": 13,
    "catorce": 14,
    "quince": 15,
    "dieciseis": 16,
    "diecisiete": 17,
    "dieciocho": 18,
    "diecinueve": 19,
    "veintiuno": 21,
    "veintiun": 21,
    "veintiuna": 21,
    "veintidos": 22,
    "veintitres": 23,
    "veinticuatro": 24,
    "veinticinco": 25,
    "veintiseis": 26,
    "veintisiete": 27,
    "veintiocho": 28,
    "veintinueve": 29,
}
_TENS: dict[str, int] = {
    "veinte": 20,
    "treinta": 30,
    "cuarenta": 40,
    "cincuenta": 50,
    "sesenta": 60,
    "setenta": 70,
    "ochenta": 80,
    "noventa": 90,
}
_HUNDREDS: dict[str, int] = {"cien": 100, "ciento": 100}
for _word, _value in {
    "doscient": 200,
    "trescient": 300,
    "cuatrocient": 400,
    "quinient": 500,
    "seiscient": 600,
    "setecient": 700,
    "sietecient": 700,
    "ochocient": 800,
    "novecient": 900,
    "nuevecient": 900,
}.items():
    _HUNDREDS[_word + "os"] = _value
    _HUNDREDS[_word + "as"] = _value
_MILLION = frozenset({"millon", "millones"})
_NUMBER_WORDS = (
    frozenset(_UNITS) | frozenset(_TEENS) | frozenset(_TENS) | frozenset(_HUNDREDS) | _MILLION
) | {"mil", "cero"}

# Whisper sometimes splits compounds: "veinti tres", "dieci seis".
_SPLIT_COMPOUND = re.compile(
    r"\b(veinti|dieci)\s+(uno|un|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)\b"
)
_THOUSANDS_SEP = re.compile(r"(?<!\d)(\d{1,3}(?:([.,])\d{3})(?:\2\d{3})*)(?![\d]|[.,]\d)")


def _below100(tokens: list[str], j: int) -> tuple[int, int] | None:
    if j >= len(tokens):
        return None
    word = tokens[j]
    if word in _TENS:
        value = _TENS[word]
        if j + 2 < len(tokens) and tokens[j + 1] == "y" and tokens[j + 2] in _UNITS:
            return value + _UNITS[tokens[j + 2]], j + 3
        return value, j + 1
    if word in _TEENS:
        return _TEENS[word], j + 1
    if word in _UNITS:
        return _UNITS[word], j + 1
    return None


def _below1000(tokens: list[str], j: int) -> tuple[int, int] | None:
    if j < len(tokens) and tokens[j].isdigit() and int(tokens[j]) < 1000:
        # "2 mil", "1 millón": digits only count as a segment before a multiplier.
        if j + 1 < len(tokens) and (tokens[j + 1] == "mil" or tokens[j + 1] in _MILLION):
            return int(tokens[j]), j + 1
        return None
    value: int | None = None
    if j < len(tokens) and tokens[j] in _HUNDREDS:
        value = _HUNDREDS[tokens[j]]
        j += 1
    rest = _below100(tokens, j)
    if rest is not None:
        value = (value or 0) + rest[0]
        j = rest[1]
    return (value, j) if value is not None else None


def _parse_at(tokens: list[str], i: int, *, articles: bool = True) -> tuple[int, int] | None:
    """The longest number phrase starting at ``tokens[i]`` as ``(value, next_index)``."""
    n = len(tokens)
    if i >= n:
        return None
    word = tokens[i]
    if word == "cero":
        return 0, i + 1
    if word.isdigit():
        value, j = int(word), i + 1
        if j < n and tokens[j] in _MILLION:
            value, j = value * 1_000_000, j + 1
        elif j < n and tokens[j] == "mil":
            value, j = value * 1000, j + 1
        return value, j
    if word not in _NUMBER_WORDS:
        return None

    total = 0
    j = i
    seg = _below1000(tokens, j)
    if seg is not None and seg[1] < n and tokens[seg[1]] in _MILLION:
        total += seg[0] * 1_000_000
        j = seg[1] + 1
        seg = _below1000(tokens, j)
    if seg is not None and seg[1] < n and tokens[seg[1]] == "mil":
        total += seg[0] * 1000
        j = seg[1] + 1
        seg = _below1000(tokens, j)
    elif seg is None and j < n and tokens[j] == "mil":
        total += 1000
        j += 1
        seg = _below1000(tokens, j)
    if seg is not None:
        total += seg[0]
        j = seg[1]
    if j == i:
        return None
    if not articles and j == i + 1 and tokens[i] in _ARTICLES:
        return None
    return total, j


def _number_tokens(text: str) -> list[str]:
    s = normalize(text)
    s = _SPLIT_COMPOUND.sub(r"\1\2", s)
    s = _THOUSANDS_SEP.sub(lambda m: m.group(1).replace(m.group(2), ""), s)
    return re.findall(r"\d+|[a-zñ]+", s)


def parse_number_words(text: str) -> int | None:
    """The number the whole text says ("treinta y cinco", "1,500", "dos mil veintiséis").

    Returns ``None`` unless the text is a number and nothing else: a caller answering
    "¿cuántas personas?" with "somos tres" goes through :func:`extract_numbers` instead.
    """
    tokens = _number_tokens(text)
    if not tokens:
        return None
    parsed = _parse_at(tokens, 0)
    if parsed is None or parsed[1] != len(tokens):
        return None
    return parsed[0]


def extract_numbers(text: str, *, articles: bool = True) -> list[int]:
    """Every number in running text, in order ("tengo veinte y cinco años" → [25]).

    ``articles=False`` ignores a lone "un"/"una", which are usually articles ("una cita").
    """
    tokens = _number_tokens(text)
    found: list[int] = []
    i = 0
    while i < len(tokens):
        parsed = _parse_at(tokens, i, articles=articles)
        if parsed is None:
            i += 1
            continue
        found.append(parsed[0])
        i = parsed[1]
    return found


def words_to_digits(normalized: str) -> str:
    """Rewrite number phrases in *normalised* text as digits ("a las tres y media" →
    "a las 3 y media") so that date and time patterns need only match digits."""
    s = _SPLIT_COMPOUND.sub(r"\1\2", normalized)
    tokens = s.split()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i].isdigit() and not (
            i + 1 < len(tokens) and (tokens[i + 1] == "mil" or tokens[i + 1] in _MILLION)
        ):
            out.append(tokens[i])
            i += 1
            continue
        parsed = _parse_at(tokens, i)
        if parsed is None:
            out.append(tokens[i])
            i += 1
            continue
        out.append(str(parsed[0]))
        i = parsed[1]
    return " ".join(out)


_DIGIT_TOKEN = re.compile(r"\d+|[a-zñ]+|[,;.!?]")
_REPEAT = {"doble": 2, "triple": 3}


def extract_digits_sequence(text: str) -> str:
    """The digits a caller dictated, concatenated: "ocho cero nueve, quinientos cincuenta y
    cinco, doce treinta y cuatro" → "8095551234"; "001-1234567-8" → "00112345678".

    Each spoken number contributes its decimal digits, so grouped dictation ("doce treinta y
    cuatro") and digit-by-digit dictation both work; a pause (comma) ends a group; "doble
    cinco" is "55". Words that are not numbers are skipped, and "un"/"una" count only as part
    of a bigger number because they are nearly always articles.
    """
    tokens = _DIGIT_TOKEN.findall(_SPLIT_COMPOUND.sub(r"\1\2", strip_accents(text.lower())))
    digits: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.isdigit():
            digits.append(token)
            i += 1
            continue
        if token in _REPEAT and i + 1 < len(tokens):
            parsed = _parse_at(tokens, i + 1, articles=False)
            if parsed is not None and parsed[0] < 10:
                digits.append(str(parsed[0]) * _REPEAT[token])
                i = parsed[1]
                continue
        parsed = _parse_at(tokens, i, articles=False)
        if parsed is None:
            i += 1
            continue
        digits.append(str(parsed[0]))
        i = parsed[1]
    return "".join(digits)


_WORDS_0_29 = (
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
    "dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés "
    "veinticuatro veinticinco veintiséis veintisiete veintiocho veintinueve"
).split()
_WORDS_TENS = "treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
_WORDS_HUNDREDS = (
    "ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos "
    "ochocientos novecientos"
).split()


def number_to_words(n: int, *, feminine: bool = False, apocope: bool = False) -> str:
    """Spanish words for ``n`` ≥ 0 ("veintitrés", "mil quinientos").

    ``feminine`` agrees with a feminine noun ("una", "doscientas"); ``apocope`` gives the form
    used before a masculine noun ("un", "veintiún").
    """
    if n < 0:
        return "menos " + number_to_words(-n, feminine=feminine, apocope=apocope)
    if n >= 1_000_000:
        millions, rest = divmod(n, 1_000_000)
        head = (
            "un millón" if millions == 1 else number_to_words(millions, apocope=True) + " millones"
        )
        return (
            head
            if rest == 0
            else f"{head} {number_to_words(rest, feminine=feminine, apocope=apocope)}"
        )
    if n >= 1000:
        thousands, rest = divmod(n, 1000)
        head = (
            "mil"
            if thousands == 1
            else number_to_words(thousands, feminine=feminine, apocope=True) + " mil"
        )
        return (
            head
            if rest == 0
            else f"{head} {number_to_words(rest, feminine=feminine, apocope=apocope)}"
        )
    if n >= 100:
        hundreds, rest = divmod(n, 100)
        if n == 100:
            return "cien"
        head = _WORDS_HUNDREDS[hundreds - 1]
        if feminine and hundreds > 1:
            head = head[:-2] + "as"
        return (
            head
            if rest == 0
            else f"{head} {number_to_words(rest, feminine=feminine, apocope=apocope)}"
        )
    if n < 30:
        word = _WORDS_0_29[n]
        if n in (1, 21):
            if feminine:
                word = word[:-1] + "a"
            elif apocope:
                word = "un" if n == 1 else "veintiún"
        return word
    tens, unit = divmod(n, 10)
    head = _WORDS_TENS[tens - 3]
    return (
        head
        if unit == 0
        else f"{head} y {number_to_words(unit, feminine=feminine, apocope=apocope)}"
    )


def clock_words(hour: int, minute: int = 0) -> str:
    """How a clerk says a 24-hour clock time, without the leading article:
    (8, 30) → "ocho y media de la mañana", (13, 0) → "una de la tarde",
    (12, 0) → "doce del mediodía"."""
    h12 = hour % 12 or 12
    if hour == 12 and minute == 0:
        period = "del mediodía"
    elif hour == 0:
        period = "de la noche"
    elif hour < 6:
        period = "de la madrugada"
    elif hour < 12:
        period = "de la mañana"
    elif hour < 19:
        period = "de la tarde"
    else:
        period = "de la noche"
    words = number_to_words(h12, feminine=True)
    if minute == 15:
        words += " y cuarto"
    elif minute == 30:
        words += " y media"
    elif minute:
        words += " y " + number_to_words(minute)
    return f"{words} {period}"


# ---------------------------------------------------------------------------------------------
# Yes / no
# ---------------------------------------------------------------------------------------------

# Phrases that contain "no" but are not a refusal, or say nothing about yes/no.
_NEUTRAL = (
    "no se preocupe",
    "no te preocupes",
    "no hay de que",
    "muchas gracias",
    "gracias",
    "por favor",
)
_UNCLEAR = (
    "no se",
    "no lo se",
    "no estoy seguro",
    "no estoy segura",
    "no entiendo",
    "no entendi",
    "no le entendi",
    "no escuche",
    "no le escuche",
    "no recuerdo",
    "no me acuerdo",
    "quizas",
    "quiza",
    "tal vez",
    "a lo mejor",
    "puede ser",
    "depende",
    "repita",
    "repitame",
    "como dice",
    "como dijo",
    "mande",
)
_POSITIVE = (
    "como no",
    "por que no",
    "no hay problema",
    "no hay lio",
    "sin problema",
    "claro que si",
    "por supuesto",
    "desde luego",
    "asi es",
    "eso es",
    "eso mismo",
    "esta bien",
    "ta bien",
    "ta to",
    "de acuerdo",
    "muy bien",
    "si",
    "sii",
    "sip",
    "claro",
    "correcto",
    "dale",
    "ok",
    "okey",
    "okay",
    "oki",
    "vale",
    "exacto",
    "exactamente",
    "efectivamente",
    "perfecto",
    "afirmativo",
    "confirmo",
    "confirmado",
    "confirmada",
    "seguro",
    "listo",
    "adelante",
    "procede",
    "hagalo",
    "aja",
    "ajam",
    "aha",
    "obvio",
)
_NEGATIVE = (
    "claro que no",
    "por supuesto que no",
    "para nada",
    "de ninguna manera",
    "ni hablar",
    "mejor no",
    "no gracias",
    "no",
    "nop",
    "nope",
    "negativo",
    "incorrecto",
    "equivocado",
    "equivocada",
    "tampoco",
    "nunca",
    "jamas",
    "esta mal",
)
# Words that only count when nothing stronger is said: "bueno, no" is a no, "sí, nada más" a yes.
_WEAK_POSITIVE = ("bueno", "bien", "supongo")
_WEAK_NEGATIVE = ("nada", "nada mas")
# "no, perdón, sí": the part after a self-correction is what the caller means.
_SELF_CORRECTION = re.compile(r"\b(?:perdon|digo|quise decir|quiero decir|mejor dicho|o sea)\b")


def _phrase_regex(phrases: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted(phrases, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in ordered) + r")\b")


_NEUTRAL_RE = _phrase_regex(_NEUTRAL)
_UNCLEAR_RE = _phrase_regex(_UNCLEAR)
_POLAR_RE = _phrase_regex(_POSITIVE + _NEGATIVE)  # one alternation: the longest phrase wins
_POSITIVE_SET = frozenset(_POSITIVE)
_WEAK_RE = _phrase_regex(_WEAK_POSITIVE + _WEAK_NEGATIVE)


def _polarity(s: str) -> bool | None:
    s = _NEUTRAL_RE.sub(" ", s)
    if _UNCLEAR_RE.search(s):
        return None
    marks = [m.group(0) in _POSITIVE_SET for m in _POLAR_RE.finditer(s)]
    if not marks:
        marks = [m.group(0) in _WEAK_POSITIVE for m in _WEAK_RE.finditer(s)]
    if not marks:
        return None
    if not marks[0]:
        return False  # a leading "no" wins, even before a correction: "no, mejor el martes"
    if all(marks):
        return True
    return None  # "sí, pero no a esa hora": mixed, ask again


def is_affirmative(text: str) -> bool | None:
    """Did the caller say yes (``True``), no (``False``), or neither (``None``)?

    A leading "no" decides, even when a correction follows ("no, mejor el martes"). Phrases
    that contain "no" without refusing ("cómo no", "no hay problema") count as yes, and doubt
    ("no sé", "tal vez") or a mixed answer is ``None`` so the engine asks again.
    """
    s = normalize(text)
    if not s:
        return None
    parts = [p for p in _SELF_CORRECTION.split(s) if p.strip()]
    for part in reversed(parts):
        verdict = _polarity(part)
        if verdict is not None or _UNCLEAR_RE.search(part):
            return verdict
    return None


# ---------------------------------------------------------------------------------------------
# Text for the TTS voice
# ---------------------------------------------------------------------------------------------

_MD_CODE_FENCE = re.compile(r"^\s*```.*$", re.MULTILINE)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_MD_QUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)
_MD_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+", re.MULTILINE)
_MD_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.MULTILINE)
_MD_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}.*$", re.MULTILINE)
_MD_BOLD = re.compile(r"(\*\*|__)(.+?)\1")
_MD_ITALIC = re.compile(r"(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\1(?![\w*])")
_MD_CODE = re.compile(r"`([^`]*)`")
_URL = re.compile(r"(?:https?://|www\.)[^\s)>\]]+", re.IGNORECASE)
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")

_CURRENCY = re.compile(
    r"(?:(?P<cur>RD|US|U\$S|USD|DOP)\s?)?\$\s?(?P<amount>\d[\d.,]*\d|\d)(?:\s*(?P<word>pesos|peso))?",
    re.IGNORECASE,
)
_PHONE = re.compile(r"(?<![\d-])(?:\((\d{3})\)\s?|(\d{3})[-. ])(\d{3})[-. ](\d{4})(?![\d-])")
_CEDULA = re.compile(r"(?<![\d-])(\d{3})-(\d{7})-(\d)(?![\d-])")
_AMPM = r"(?:\s?(?P<{0}>[aApP])\.?\s?[mM]\.?(?![a-zA-Z]))"
_TIME = (
    r"(?P<h{0}>\d{{1,2}})(?::(?P<m{0}>\d{{2}})(?:"
    + _AMPM.format("ap{0}")
    + r")?|"
    + _AMPM.format("bp{0}")
    + r")"
)
_TIME_RANGE = re.compile(
    r"(?:\b(?:de|desde)\s+)?(?<![\d:])"
    + _TIME.format(1)
    + r"\s*(?:–|—|-|\ba\b|\bhasta\b)\s*(?:las?\s+)?"
    + _TIME.format(2)
    + r"(?!\d)",
    re.IGNORECASE,
)
_TIME_ONE = re.compile(r"(?<![\d:])" + _TIME.format(1) + r"(?![\d:])")
_DATE_NUMERIC = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4})(?![\d/])")
_NUMBER_RANGE = re.compile(
    r"(?<![\d.,:/-])(\d{1,4})\s?[–—-]\s?(\d{1,4})(?![\d.,:/-])(?=\s+[^\W\d_])"
)
_PERCENT = re.compile(r"(\d)\s?%")
_THOUSANDS_COMMA = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,]|\.\d)")
_THOUSANDS_DOT = re.compile(r"(?<![\d.,])(\d{1,3}(?:\.\d{3})+)(?![\d.]|,\d)")

_MONTH_NAMES = (
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
).split()
_DAY_NAMES = {
    "lunes": "lunes",
    "lun": "lunes",
    "martes": "martes",
    "mar": "martes",
    "miércoles": "miércoles",
    "miercoles": "miércoles",
    "mié": "miércoles",
    "mie": "miércoles",
    "jueves": "jueves",
    "jue": "jueves",
    "viernes": "viernes",
    "vie": "viernes",
    "sábado": "sábado",
    "sabado": "sábado",
    "sáb": "sábado",
    "sab": "sábado",
    "domingo": "domingo",
    "dom": "domingo",
}
_DAY_ALT = "|".join(sorted(_DAY_NAMES, key=len, reverse=True))
_DAY_RANGE = re.compile(
    rf"(?:\b(?:de|desde)\s+)?\b({_DAY_ALT})\.?\s*(?:–|—|-|\ba\b|\bal\b|\bhasta\b)\s*({_DAY_ALT})\b\.?",
    re.IGNORECASE,
)
_DAY_LETTER_RANGE = re.compile(r"\bL\s*[-–—]\s*V\b")
_DAY_SINGLE = re.compile(r"\b(lun|mié|mie|jue|vie|sáb|sab)\b\.?", re.IGNORECASE)

# (pattern, replacement); order matters: longer forms first.
_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    (r"Sto\.\s?Dgo\.?", "Santo Domingo"),
    (r"Rep\.\s?Dom\.?", "República Dominicana"),
    (r"R\.\s?D\.(?!\w)", "República Dominicana"),
    (r"D\.\s?N\.(?!\w)", "Distrito Nacional"),
    (r"p\.\s?ej\.", "por ejemplo"),
    (r"(?:No|Núm|Num|N)\.\s?(?=\d)", "número "),
    (r"(?:Nº|N°|N\.º|#)\s?(?=\d)", "número "),
    (r"Avda\.", "Avenida"),
    (r"Av\.", "Avenida"),
    (r"Ave\.", "Avenida"),
    (r"C/\s?", "calle "),
    (r"Esq\.", "esquina"),
    (r"Ens\.", "Ensanche"),
    (r"Urb\.", "urbanización"),
    (r"Res\.", "residencial"),
    (r"Prol\.", "prolongación"),
    (r"Ctra\.", "carretera"),
    (r"Carr\.", "carretera"),
    (r"Edif\.", "edificio"),
    (r"Apto\.", "apartamento"),
    (r"Pto\.", "Puerto"),
    (r"Stgo\.", "Santiago"),
    (r"Sto\.", "Santo"),
    (r"Sta\.", "Santa"),
    (r"Dgo\.", "Domingo"),
    (r"Mons\.", "Monseñor"),
    (r"Gral\.", "General"),
    (r"Prov\.", "provincia"),
    (r"Tel\.", "teléfono"),
    (r"Ext\.", "extensión"),
    (r"Srta\.", "señorita"),
    (r"Sra\.", "señora"),
    (r"Sr\.", "señor"),
    (r"Dra\.", "doctora"),
    (r"Dr\.", "doctor"),
    (r"Licda\.", "licenciada"),
    (r"Lic\.", "licenciado"),
    (r"Ing\.", "ingeniero"),
    (r"Uds\.", "ustedes"),
    (r"Ud\.", "usted"),
    (r"Art\.", "artículo"),
    (r"[Pp]ág\.", "página"),
    (r"[Aa]prox\.", "aproximadamente"),
    (r"[Mm]áx\.", "máximo"),
    (r"[Mm]ín\.", "mínimo"),
    (r"[Hh]rs?\.?(?=\s|$|[,;])", "horas"),
    (r"[Mm]in\.", "minutos"),
    (r"[Kk]m\.?(?=\s|$|[,;])", "kilómetros"),
    (r"etc\.", "etcétera"),
)
_ABBREVIATION_RES = tuple(
    (re.compile(r"(?<![\w.])" + pattern), replacement) for pattern, replacement in _ABBREVIATIONS
)
# Abbreviations that often close a sentence: their period doubles as the full stop.
_SENTENCE_END_AFTER = frozenset(
    {"Santo Domingo", "República Dominicana", "Distrito Nacional", "etcétera", "aproximadamente"}
)
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")


def _amount_value(raw: str) -> tuple[int, int] | None:
    """(whole, cents) from "1,500.50", "1.500,50", "1500" or "2,5"."""
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?", raw):
        whole, _, cents = raw.replace(",", "").partition(".")
    elif re.fullmatch(r"\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?", raw):
        whole, _, cents = raw.replace(".", "").partition(",")
    elif re.fullmatch(r"\d+(?:[.,]\d{1,2})?", raw):
        whole, _, cents = raw.replace(",", ".").partition(".")
    else:
        return None
    cents = (cents + "00")[:2] if cents else "00"
    return int(whole), int(cents)


def _say_currency(m: re.Match[str]) -> str:
    parsed = _amount_value(m.group("amount"))
    if parsed is None:
        return m.group(0)
    whole, cents = parsed
    cur = (m.group("cur") or "").upper()
    dollars = cur in ("US", "U$S", "USD")
    unit = (
        ("dólar" if whole == 1 else "dólares") if dollars else ("peso" if whole == 1 else "pesos")
    )
    text = f"{whole} {unit}"
    if cents:
        text += f" con {cents} centavos"
    return text


def _clock(hour: int, minute: int | None, ampm: str | None) -> str | None:
    minute = minute or 0
    if hour > 23 or minute > 59:
        return None
    if ampm:
        if hour == 0 or hour > 12:
            return None
        pm = ampm.lower() == "p"
        hour = (hour % 12) + (12 if pm else 0)
    elif 1 <= hour <= 6:
        hour += 12  # an office timetable: "4:00" is the afternoon
    return clock_words(hour, minute)


def _say_time_range(m: re.Match[str]) -> str:
    first = _clock(int(m["h1"]), m["m1"] and int(m["m1"]), m["ap1"] or m["bp1"])
    second = _clock(int(m["h2"]), m["m2"] and int(m["m2"]), m["ap2"] or m["bp2"])
    if first is None or second is None:
        return m.group(0)
    return f"de {first} a {second}"


def _say_time(m: re.Match[str]) -> str:
    said = _clock(int(m["h1"]), m["m1"] and int(m["m1"]), m["ap1"] or m["bp1"])
    return m.group(0) if said is None else said


def _say_numeric_date(m: re.Match[str]) -> str:
    day, month, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return m.group(0)
    return f"{day} de {_MONTH_NAMES[month - 1]} de {year}"


def _expand_abbreviation(m: re.Match[str], replacement: str) -> str:
    if replacement in _SENTENCE_END_AFTER and m.group(0).endswith("."):
        if re.match(r"\s+[A-ZÁÉÍÓÚÑ¿¡]|\s*$", m.string[m.end() :]):
            return replacement + "."
    return replacement


def _spaced_digits(*groups: str) -> str:
    return ", ".join(" ".join(group) for group in groups)


def _markdown_to_lines(text: str) -> str:
    s = _MD_CODE_FENCE.sub("", text)
    s = _MD_IMAGE.sub(r"\1", s)
    s = _MD_LINK.sub(r"\1", s)
    s = _MD_TABLE_RULE.sub("", s)
    s = _MD_RULE.sub("", s)
    s = _MD_HEADING.sub("", s)
    s = _MD_QUOTE.sub("", s)
    s = _MD_BULLET.sub("", s)
    s = _MD_BOLD.sub(r"\2", s)
    s = _MD_ITALIC.sub(r"\2", s)
    s = _MD_CODE.sub(r"\1", s)
    lines = []
    for raw in s.splitlines():
        line = raw.strip().strip("|").strip()
        if line:
            lines.append(re.sub(r"\s*\|\s*", ", ", line))
    # A line break is a pause: end every line but the last with a full stop.
    return " ".join(
        line if i == len(lines) - 1 or line[-1] in ".!?:;,…" else line + "."
        for i, line in enumerate(lines)
    )


def speakable(text: str) -> str:
    """Rewrite text so the TTS voice says it like a person would.

    Markdown and URLs go; amounts, clock times, phone numbers, day ranges and common
    abbreviations become words: "RD$1,500" → "1500 pesos", "Lun–Vie 8:00–16:00" → "de lunes a
    viernes de ocho de la mañana a cuatro de la tarde", "Av. 27 de Febrero No. 12" →
    "Avenida 27 de Febrero número 12". Bare hours without a.m./p.m. are read as office hours
    (1–6 are the afternoon).
    """
    s = _markdown_to_lines(text)
    s = _URL.sub("la página web", s)
    s = _EMAIL.sub(
        lambda m: (
            f"{m.group(1).replace('.', ' punto ')} arroba {m.group(2).replace('.', ' punto ')}"
        ),
        s,
    )
    s = _CURRENCY.sub(_say_currency, s)
    s = _CEDULA.sub(lambda m: _spaced_digits(m.group(1), m.group(2), m.group(3)), s)
    s = _PHONE.sub(lambda m: _spaced_digits(m.group(1) or m.group(2), m.group(3), m.group(4)), s)
    s = _DATE_NUMERIC.sub(_say_numeric_date, s)
    s = _TIME_RANGE.sub(_say_time_range, s)
    s = _TIME_ONE.sub(_say_time, s)
    s = _THOUSANDS_COMMA.sub(lambda m: m.group(1).replace(",", ""), s)
    s = _THOUSANDS_DOT.sub(lambda m: m.group(1).replace(".", ""), s)
    s = _NUMBER_RANGE.sub(r"\1 a \2", s)
    s = _PERCENT.sub(r"\1 por ciento", s)
    s = _DAY_RANGE.sub(
        lambda m: f"de {_DAY_NAMES[m.group(1).lower()]} a {_DAY_NAMES[m.group(2).lower()]}", s
    )
    s = _DAY_LETTER_RANGE.sub("de lunes a viernes", s)
    s = _DAY_SINGLE.sub(lambda m: _DAY_NAMES[m.group(1).lower()], s)
    for pattern, replacement in _ABBREVIATION_RES:
        s = pattern.sub(lambda m, r=replacement: _expand_abbreviation(m, r), s)
    s = _EMOJI.sub("", s)
    s = s.replace("&", " y ")
    s = re.sub(r"\s+[–—-]\s+|[–—]", ", ", s)
    s = re.sub(r"\(\s*([^()]*?)\s*\)", r", \1,", s)
    s = re.sub(r"[*_#`~<>\[\]{}|\\]", " ", s)
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r",(?:\s*,)+", ",", s)
    s = re.sub(r",\s*([.;:!?])", r"\1", s)
    s = re.sub(r"([.;:!?])\s*,", r"\1", s)
    s = re.sub(r"^[\s,.;:]+|[\s,;]+$", "", s)
    s = re.sub(r"(?<!\.)\.\.(?!\.)", ".", s)  # "Santo Domingo.." after an abbreviation
    return s.strip()
