"""Text as the embedded voices should say it, with the parts a caller must catch marked slow.

Any brain (offline dialogue or LLM) may hand the voice digits, amounts, clock times, codes and
abbreviations. Read as written, "00112345678" becomes a huge number and "TA-7K3P9" a word.
:func:`spoken_segments` rewrites the text into words (reusing
:func:`pipeline.brain.spanish_text.speakable`, :mod:`pipeline.brain.spoken` and
:func:`number_to_words`) and marks the spans a listener has to write down or remember (digit
groups, codes, dates, times) as *slow*: the Pico voice reads them slower with short pauses
between groups; engines without that control still get the grouped words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.brain.spanish_dates import MONTH_NAMES, WEEKDAY_NAMES
from pipeline.brain.spanish_text import number_to_words, speakable
from pipeline.brain.spoken import speak_code, speak_digits

__all__ = [
    "SpeechSegment",
    "group_digits",
    "plan_speech",
    "spoken_segments",
    "spoken_text",
]


@dataclass(frozen=True)
class SpeechSegment:
    """A stretch of words, read at normal speed or slowly (digit groups, codes, dates)."""

    text: str
    slow: bool = False


# --- numbers and codes to words --------------------------------------------------------------

_CODE = re.compile(r"\bTA-?([2-9A-HJKMNP-Z]{5})\b")
# Single digits separated by spaces/commas, as speakable() writes cédulas and phone numbers:
# "0 0 1, 1 2 3 4 5 6 7, 8".
_SPACED_DIGITS = re.compile(r"(?<![\d.,])\d(?:(?:,\s*|\s)\d(?![\d.,]\d)){2,}(?![\d])")
# Digit groups separated by spaces or hyphens that together form an identifier:
# "001 1234567 8", "809 555 1234", "001-1234567-8".
_DIGIT_GROUPS = re.compile(r"(?<![\d.,])\d+(?:[ -]\d+)+(?![\d]|[.,]\d)")
_NUMBER = re.compile(r"(?<![\d.,])\d+(?:[.,]\d+)?(?![\d])")
# Pico and eSpeak read "3.ª", "1ro" etc. poorly; ordinals are rare in the office's speech.
_ORDINAL = re.compile(r"\b(1)(?:ro|ero|º|°)\b")


def group_digits(digits: str) -> list[str]:
    """How a person reads an identifier: cédula 3-7-1, phone 3-3-4, else groups of 3 or 4."""
    n = len(digits)
    if n == 11:
        sizes = [3, 7, 1]
    elif n == 10:
        sizes = [3, 3, 4]
    elif n == 7:
        sizes = [3, 4]
    elif n <= 4:
        sizes = [n]
    else:
        sizes = [3] * (n // 3)
        rest = n % 3
        if rest == 1:
            sizes[-1] = 4
        elif rest == 2:
            sizes.append(2)
    groups, start = [], 0
    for size in sizes:
        groups.append(digits[start : start + size])
        start += size
    return groups


def _spoken_groups(groups: list[str]) -> str:
    return ", ".join(speak_digits(g) for g in groups if g)


def _is_identifier(digits: str) -> bool:
    """Read digit by digit: long runs and anything with a leading zero ("0800")."""
    return len(digits) >= 5 or (len(digits) >= 2 and digits.startswith("0"))


def _say_digit_groups(m: re.Match[str]) -> str:
    groups = re.split(r"[ -]", m.group(0))
    digits = "".join(groups)
    if len(digits) < 5 and not digits.startswith("0"):
        return m.group(0)  # "de 8 9 personas" is not an identifier
    if max(len(g) for g in groups) > 7:
        return _spoken_groups(group_digits(digits))
    return _spoken_groups(groups)


def _say_number(m: re.Match[str]) -> str:
    raw = m.group(0)
    if re.fullmatch(r"\d+", raw):
        if _is_identifier(raw) and not (len(raw) <= 9 and raw[0] != "0" and _amount_follows(m)):
            return _spoken_groups(group_digits(raw))
        return number_to_words(int(raw))
    whole, sep, frac = re.split(r"([.,])", raw)
    if len(frac) == 3 and (sep == "," or len(whole) <= 3):
        return number_to_words(int(whole + frac))  # thousands separator: "3,500"
    return f"{number_to_words(int(whole))} coma {speak_digits(frac)}"


_AMOUNT_WORDS = re.compile(r"\s*(?:pesos|peso|dólares|dólar|centavos|personas|días|años)\b")


def _amount_follows(m: re.Match[str]) -> bool:
    return bool(_AMOUNT_WORDS.match(m.string, m.end()))


_DAY_PART = r"(de\s+la\s+(?:mañana|tarde|noche|madrugada)|del\s+mediodía)"
# "8:00 de la mañana": the day part is already said; speakable() would add its own guess.
_CLOCK_WITH_PART = re.compile(rf"(?<![\d:])(\d{{1,2}}):(\d{{2}})\s+{_DAY_PART}")
_REPEATED_PART = re.compile(rf"\b{_DAY_PART}(?:\s+{_DAY_PART})+")
_FIRST_OF_MONTH = re.compile(r"\b1(?=\s+de\s+(?:" + "|".join(MONTH_NAMES) + r")\b)")


def _say_clock_with_part(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return m.group(0)
    words = number_to_words(hour % 12 or 12, feminine=True)
    if minute == 30:
        words += " y media"
    elif minute == 15:
        words += " y cuarto"
    elif minute:
        words += f" y {number_to_words(minute)}"
    return f"{words} {m.group(3)}"


def _to_words(text: str) -> str:
    s = _CLOCK_WITH_PART.sub(_say_clock_with_part, text)
    s = _FIRST_OF_MONTH.sub("primero", s)
    s = speakable(s)
    s = _REPEATED_PART.sub(lambda m: m.group(1), s)
    s = _CODE.sub(lambda m: speak_code(m.group(1)), s)
    s = _ORDINAL.sub("primero", s)
    s = _SPACED_DIGITS.sub(
        lambda m: ", ".join(speak_digits(g) for g in re.split(r",\s*", m.group(0))), s
    )
    s = _DIGIT_GROUPS.sub(_say_digit_groups, s)
    s = _NUMBER.sub(_say_number, s)
    return re.sub(r"\s+", " ", s).strip()


# --- what to read slowly ---------------------------------------------------------------------


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_DIGIT_WORD = _alternation([number_to_words(d) for d in range(10)])
_LETTER_WORD = _alternation(
    [
        *"a be ce de e efe ge hache i jota ka ele eme ene eñe o pe cu erre ese te u".split(),
        *["equis", "ye", "zeta", "be grande", "ve chiquita", "doble ve"],
    ]
)
_DAY_WORD = _alternation(["primero"] + [number_to_words(d) for d in range(1, 32)])
_HOUR_WORD = _alternation([number_to_words(h, feminine=True) for h in range(1, 13)])
_MINUTE_WORD = _alternation([number_to_words(m) for m in range(1, 60)])
_MONTH = _alternation(list(MONTH_NAMES))
_WEEKDAY = _alternation(list(WEEKDAY_NAMES))

_SLOW_PATTERNS = (
    # Three or more digits said one by one: cédulas, phones, codes of digits.
    re.compile(rf"\b(?:{_DIGIT_WORD})(?:[\s,]+(?:{_DIGIT_WORD})){{2,}}\b"),
    # A code read character by character: "siete, ka, tres, pe, nueve".
    re.compile(
        rf"\b(?:{_DIGIT_WORD}|{_LETTER_WORD})(?:,\s(?:{_DIGIT_WORD}|{_LETTER_WORD})){{3,}}\b"
    ),
    # "el lunes veintitrés de noviembre de dos mil veintiséis"
    re.compile(
        rf"\b(?:(?:el|este|próximo)\s+)?(?:(?:{_WEEKDAY})\s+)?(?:{_DAY_WORD})\s+de\s+"
        rf"(?:{_MONTH})\b(?:\s+del?\s+dos\s+mil(?:\s+(?:{_MINUTE_WORD}))?\b)?",
        re.IGNORECASE,
    ),
    # "a las diez y media de la mañana", "de ocho de la mañana a cuatro de la tarde"
    re.compile(
        rf"\b(?:(?:a|de|desde|hasta|para)\s+)?las?\s+(?:{_HOUR_WORD})\b"
        rf"(?:\s+(?:y|menos)\s+(?:media|cuarto|{_MINUTE_WORD})\b)?"
        rf"(?:\s+(?:de\s+la\s+(?:mañana|tarde|noche|madrugada)|del\s+mediodía|en\s+punto)\b)?",
        re.IGNORECASE,
    ),
    re.compile(
        rf"\b(?:de|desde|a|hasta)\s+(?:{_HOUR_WORD})\b(?:\s+y\s+(?:media|cuarto|{_MINUTE_WORD}))?"
        rf"\s+(?:de\s+la\s+(?:mañana|tarde|noche|madrugada)|del\s+mediodía)\b",
        re.IGNORECASE,
    ),
)
# A bare time ("las dos") is only slow when it clearly is a time: preposition or day part.
_TIME_CONTEXT = re.compile(
    r"^(?:a|de|desde|hasta|para)\s|(?:mañana|tarde|noche|madrugada|mediodía|punto|media|cuarto)$",
    re.IGNORECASE,
)


def _slow_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for i, pattern in enumerate(_SLOW_PATTERNS):
        for m in pattern.finditer(text):
            if i == 3 and not _TIME_CONTEXT.search(m.group(0)):
                continue
            spans.append(m.span())
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        # Overlapping or separated only by spaces/commas/"y": one slow stretch.
        if merged and re.fullmatch(r"[\s,]*(?:y\s+)?", text[merged[-1][1] : start] or ""):
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _segments_of(words: str) -> list[SpeechSegment]:
    segments: list[SpeechSegment] = []
    at = 0
    for start, end in _slow_spans(words):
        if start > at and words[at:start].strip():
            segments.append(SpeechSegment(words[at:start].strip()))
        segments.append(SpeechSegment(words[start:end].strip(), slow=True))
        at = end
    if words[at:].strip():
        segments.append(SpeechSegment(words[at:].strip()))
    return segments


def spoken_segments(text: str) -> list[SpeechSegment]:
    """``text`` in words, cut into normal and slow stretches (in order, nothing lost)."""
    return _segments_of(_to_words(text))


def spoken_text(text: str) -> str:
    """``text`` in words for a voice without speed control: "00112345678" → "cero cero uno,
    uno dos tres cuatro cinco seis siete, ocho"; "RD$3,500" → "tres mil quinientos pesos"."""
    return _to_words(text)


def _cut(words: str, max_chars: int) -> list[str]:
    from pipeline.tts import split_for_synthesis

    return split_for_synthesis(words, max_chars)


def plan_speech(text: str, max_chars: int = 120) -> list[list[SpeechSegment]]:
    """The text as synthesis pieces of at most about ``max_chars`` characters (sentence, then
    clause boundaries), each a list of segments; a slow stretch cut by a piece boundary stays
    slow on both sides."""
    words = _to_words(text)
    slow_chars = [False] * len(words)
    for start, end in _slow_spans(words):
        for i in range(start, end):
            slow_chars[i] = True
    pieces: list[list[SpeechSegment]] = []
    at = 0
    for piece in _cut(words, max_chars):
        start = words.find(piece, at)
        if start < 0:  # cannot happen: the cutter only strips whitespace
            pieces.append([SpeechSegment(piece)])
            continue
        at = start + len(piece)
        segments: list[SpeechSegment] = []
        run_start = start
        for i in range(start + 1, at + 1):
            if i == at or slow_chars[i] != slow_chars[run_start]:
                chunk = words[run_start:i].strip()
                if chunk:
                    segments.append(SpeechSegment(chunk, slow=slow_chars[run_start]))
                run_start = i
        pieces.append(segments)
    return pieces
