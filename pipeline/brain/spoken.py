"""How the assistant reads codes, cédulas and phone numbers aloud, and how it understands a
confirmation code read back by a caller.

A TTS voice reads "TA-7K3P9" as a word and "00112345678" as a huge number; people need each
character, in small groups, with Spanish letter names.
"""

from __future__ import annotations

import re

from pipeline.brain.spanish_text import normalize, number_to_words

__all__ = [
    "DIGIT_WORDS",
    "parse_booking_code",
    "speak_cedula",
    "speak_code",
    "speak_digits",
    "speak_phone_end",
]

_LETTER_NAMES = {
    "A": "a",
    "B": "be grande",
    "C": "ce",
    "D": "de",
    "E": "e",
    "F": "efe",
    "G": "ge",
    "H": "hache",
    "I": "i",
    "J": "jota",
    "K": "ka",
    "L": "ele",
    "M": "eme",
    "N": "ene",
    "Ñ": "eñe",
    "O": "o",
    "P": "pe",
    "Q": "cu",
    "R": "erre",
    "S": "ese",
    "T": "te",
    "U": "u",
    "V": "ve chiquita",
    "W": "doble ve",
    "X": "equis",
    "Y": "ye",
    "Z": "zeta",
}
_CODE_PREFIX = "TA-"
_CODE_LENGTH = 5


def speak_digits(digits: str) -> str:
    """ "809" → "ocho cero nueve": one word per digit, so TTS cannot read a big number."""
    return " ".join(number_to_words(int(d)) for d in digits if d.isdigit())


def speak_code(code: str) -> str:
    """ "TA-7K3P9" → "siete, ka, tres, pe, nueve": the part after the fixed prefix, which is
    all a caller needs to say back; commas give the voice a pause between characters."""
    core = code[len(_CODE_PREFIX) :] if code.upper().startswith(_CODE_PREFIX) else code
    parts = []
    for ch in core.upper():
        if ch.isdigit():
            parts.append(number_to_words(int(ch)))
        elif ch in _LETTER_NAMES:
            parts.append(_LETTER_NAMES[ch])
    return ", ".join(parts)


def speak_cedula(cedula: str) -> str:
    """ "00112345678" → "cero cero uno, uno dos tres cuatro cinco seis siete, ocho": the
    3-7-1 groups printed on the card."""
    digits = re.sub(r"\D", "", cedula)
    if len(digits) != 11:
        return speak_digits(digits)
    return f"{speak_digits(digits[:3])}, {speak_digits(digits[3:10])}, {speak_digits(digits[10])}"


def speak_phone_end(phone: str, n: int = 4) -> str:
    """The last ``n`` digits, for "el número que termina en …"."""
    digits = re.sub(r"\D", "", phone)
    return ", ".join(number_to_words(int(d)) for d in digits[-n:])


# --- understanding a code read back ---------------------------------------------------------

_NAME_TO_CHAR: dict[str, str] = {}
for _ch, _name in _LETTER_NAMES.items():
    _NAME_TO_CHAR[normalize(_name).split()[0]] = _ch
_NAME_TO_CHAR.update(
    {
        "be": "B",
        "ve": "V",
        "uve": "V",
        "doble": "W",
        "ca": "K",
        "que": "K",
        "k": "K",
        "zeta": "Z",
        "seta": "Z",
        "ye": "Y",
        "i griega": "Y",
        "jota": "J",
        "hache": "H",
        "equis": "X",
        "cu": "Q",
        "pe": "P",
        "te": "T",
        "de": "D",
        "ce": "C",
        "se": "C",
        "ge": "G",
        "eme": "M",
        "ene": "N",
        "ele": "L",
        "efe": "F",
        "erre": "R",
        "ere": "R",
        "ese": "S",
    }
)
# Spanish digit words as said one by one (also used to spot dictated numbers elsewhere).
DIGIT_WORDS: dict[str, str] = {
    "cero": "0",
    "uno": "1",
    "un": "1",
    "una": "1",
    "dos": "2",
    "tres": "3",
    "cuatro": "4",
    "cinco": "5",
    "seis": "6",
    "siete": "7",
    "ocho": "8",
    "nueve": "9",
}
# Words that qualify a letter ("be grande", "ve chiquita", "doble ve") and add nothing.
_QUALIFIERS = frozenset({"grande", "chiquita", "pequena", "larga", "corta", "alta", "baja"})
_VALID = frozenset("23456789ABCDEFGHJKMNPQRSTUVWXYZ")
_PREFIXED = re.compile(r"\bTA[\s.-]*([2-9A-HJKMNP-Z]{5})\b")


def _code_chars(token: str) -> str | None:
    if token in DIGIT_WORDS:
        return DIGIT_WORDS[token]
    if token in _NAME_TO_CHAR:
        return _NAME_TO_CHAR[token]
    if re.fullmatch(r"[a-z0-9]+", token) and (len(token) == 1 or re.search(r"\d", token)):
        return token.upper()  # "7k3p9", "k", "7"
    return None


def parse_booking_code(text: str) -> str | None:
    """A confirmation code in what a caller said or Whisper wrote: "TA-7K3P9", "7 K 3 P 9",
    "siete ka tres pe nueve", "el código es te a siete ka tres pe nueve". Returns the stored
    form ("TA-7K3P9") or None when no run of five code characters is found."""
    direct = _PREFIXED.search(text.upper())
    if direct:
        return _CODE_PREFIX + direct.group(1)
    s = normalize(text).replace("-", " ")
    s = re.sub(r"\bdoble\s+ve\b", "w", s)
    s = re.sub(r"\bi\s+griega\b", "y", s)
    runs: list[str] = []
    current = ""
    for token in s.split():
        if token in _QUALIFIERS and current:
            continue
        chars = _code_chars(token)
        if chars is None:
            if current:
                runs.append(current)
            current = ""
            continue
        current += chars
    if current:
        runs.append(current)
    for run in reversed(runs):
        if run.startswith("TA") and len(run) == len("TA") + _CODE_LENGTH:
            run = run[2:]
        if len(run) < _CODE_LENGTH:
            continue
        candidate = run[-_CODE_LENGTH:]
        if set(candidate) <= _VALID:
            return _CODE_PREFIX + candidate
    return None
