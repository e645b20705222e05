"""Personal data by role: what staff see of callers' cédulas and phone numbers.

Callers give their cédula (national ID, 11 digits) and phone number to book; the numbers then
sit in many places: the caller's transcribed words ("001-1234567-8", "0 0 1 1 2 …", or "cero
cero uno …" when the transcript repair left words), the assistant's read-back ("cero cero uno,
uno dos tres …"), keyed digits (DTMF), the arguments and results of the booking tools stored
with each turn, live events, booking rows and exports. Admins see everything in clear; agents
(who review calls and answer citizens) see only the last four digits, which is enough to tell
two citizens apart and to confirm a number a citizen reads to them.

The rule lives here, once, and is applied where data leaves the server for a person
(serialisation of API answers, the live stream, CSV exports) — never in storage, so an admin
and an audit always have the original. ``Redactor.for_principal`` picks the rule by role; the
views call its ``text``/``number``/``dtmf``/``data`` methods on every field that can carry a
number. ``tests/integration/test_personal_data.py`` walks every GET route of the API as an agent
and fails if a full number appears anywhere, so a new endpoint that forgets is caught.

Free text is scanned with one linear regular expression (no nested quantifiers: each step either
consumes a token or a bounded separator), so a hostile transcript cannot make it backtrack.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.auth import Principal, has_role
from pipeline.brain.spoken import DIGIT_WORDS

__all__ = [
    "KEEP_DIGITS",
    "MIN_KEYED_DIGITS",
    "MIN_TEXT_DIGITS",
    "MaskingLogFilter",
    "Redactor",
    "mask_digits",
    "mask_text",
    "sees_personal_data",
]

KEEP_DIGITS = 4  # the last digits an agent sees: "*******5678"
# A run of at least this many digits in free text is a personal number (a local phone number
# has 7, a phone with area code 10, a cédula 11). Shorter runs are times, amounts, counts.
MIN_TEXT_DIGITS = 7
# Keyed entries of 1–4 digits are menu choices; 5 or more are (part of) a number.
MIN_KEYED_DIGITS = 5
MASK = "*"

_DIGIT_WORDS = DIGIT_WORDS  # the dialogue's own table: one list of digit words
_WORD = "|".join(sorted(_DIGIT_WORDS, key=len, reverse=True))
_TOKEN = rf"(?:\d+|(?<!\w)(?:{_WORD})(?!\w))"
# Between the parts of one number: spaces, dashes, dots, commas, slashes, brackets (at most 3).
_SEP = r"[\s\-.,/()]{1,3}"
# A run of digit tokens, never starting or ending inside a longer digit sequence. Digits glued to
# letters count ("cédula00112345678"); identifiers are told apart afterwards (``_IDENTIFIER``).
_RUN = re.compile(rf"(?<!\d){_TOKEN}(?:{_SEP}{_TOKEN})*(?!\d)", re.IGNORECASE)
# A long unbroken token of ASCII letters, digits, "_" and "-" around a run is an identifier
# (a UUID, a Twilio call SID, a hash), not something a person said.
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MIN_IDENTIFIER_CHARS = 20
# Runs that are numbers but not personal: dates and amounts with thousands separators.
# (At most two thousands groups: "40,212,345,678" is a cédula as a transcriber may write it.)
_YEAR, _MONTH, _DAY = r"(?:19|20)\d\d", r"(?:0?[1-9]|1[0-2])", r"(?:0?[1-9]|[12]\d|3[01])"
_NOT_PERSONAL = re.compile(
    rf"(?:{_YEAR}-{_MONTH}-{_DAY}|{_DAY}/{_MONTH}/{_YEAR})(?:\s(?:[01]?\d|2[0-3]))?"  # dates
    r"|\d{1,3}(?:[.,]\d{3}){1,2}(?:[.,]\d{1,2})?"  # amounts: 1,500,000 or 1.500.000,00
)
_WORD_RE = re.compile(rf"\d+|(?:{_WORD})(?!\w)", re.IGNORECASE)

# Keys whose value is a personal number wherever they appear (API fields, tool arguments and
# results, live events).
NUMBER_KEYS = frozenset(
    {
        "cedula",
        "cédula",
        "phone",
        "telefono",
        "teléfono",
        "caller_number",
        "caller",
        "from",
        "from_number",
        "citizen_phone",
        "citizen_cedula",
    }
)
DTMF_KEYS = frozenset({"dtmf", "digits"})
# Keys whose values are identifiers, times or codes: never scanned (a masked timestamp or call
# id would only break the dashboard).
SAFE_KEYS = frozenset(
    {
        "type",
        "call_sid",
        "stream_sid",
        "origin",
        "pid",
        "id",
        "ts",
        "seq",
        "started_at",
        "ended_at",
        "answered_at",
        "created_at",
        "starts_at",
        "ends_at",
        "code",
        "slot_id",
        "ingress",
        "reason",
        "outcome",
        "status",
        "backend",
        "speaker",
    }
)


def sees_personal_data(principal: Principal | None) -> bool:
    """Admins read personal numbers in clear; everyone else (agents) masked."""
    return principal is not None and has_role(principal, "admin")


def mask_digits(value: str, keep: int = KEEP_DIGITS) -> str:
    """Every digit but the last ``keep`` becomes ``*``; other characters stay
    ("+18095550100" → "+*******0100", "00112345678" → "*******5678")."""
    total = sum(ch.isdigit() for ch in value)
    if total == 0:
        return value
    hide = max(total - keep, 0) if total > keep else total
    out: list[str] = []
    for ch in value:
        if ch.isdigit() and hide > 0:
            out.append(MASK)
            hide -= 1
        else:
            out.append(ch)
    return "".join(out)


def _run_digits(run: str) -> str:
    return "".join(
        tok if tok.isdigit() else _DIGIT_WORDS[tok.lower()] for tok in _WORD_RE.findall(run)
    )


_HEX = frozenset("0123456789abcdefABCDEF-_")


def _in_identifier(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` sits in an identifier: a token of 20+ characters that is
    hexadecimal (with dashes) after at most a short prefix — a UUID, a Twilio SID ("CA…"), a
    web call id ("web-…"). Digits glued to Spanish words ("cédula00112345678") are not."""
    if any(ch not in _ID_CHARS for ch in text[start:end]):
        return False
    while start > 0 and text[start - 1] in _ID_CHARS:
        start -= 1
    while end < len(text) and text[end] in _ID_CHARS:
        end += 1
    token = text[start:end]
    if len(token) < MIN_IDENTIFIER_CHARS:
        return False
    letters = len(token) - len(token.lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    prefix, rest = token[:letters], token[letters:]
    if len(prefix) > 4 and not set(prefix) <= _HEX:
        return False
    return set(rest) <= _HEX and any(ch.isalpha() for ch in rest)


def _mask_run(m: re.Match[str]) -> str:
    run = m.group(0)
    digits = _run_digits(run)
    if len(digits) < MIN_TEXT_DIGITS or _NOT_PERSONAL.fullmatch(run):
        return run
    if _in_identifier(m.string, m.start(), m.end()):
        return run
    return MASK * (len(digits) - KEEP_DIGITS) + digits[-KEEP_DIGITS:]


def mask_text(text: str) -> str:
    """Free text with every personal number (digits, spaced or dashed groups, Spanish digit
    words, or a mix) replaced by stars and its last four digits."""
    if not text:
        return text
    return _RUN.sub(_mask_run, text)


def mask_heard(heard: str, text: str) -> str:
    """What the caller heard of a reply before interrupting it: a prefix of ``text`` that may
    end in the middle of a number ("Su cédula es cero cero uno, uno dos tres"). The cut part is
    short of the threshold on its own, so a number that is personal in the whole reply is
    masked in full here too."""
    masked = mask_text(heard)
    if not text.startswith(heard.rstrip()):
        return masked
    end = len(heard.rstrip())
    last = None
    for last in _RUN.finditer(heard, 0, end):  # noqa: B007  (only the last one matters)
        pass
    if last is None or last.end() != end:
        return masked
    whole = _RUN.match(text, last.start())
    digits = _run_digits(last.group(0))
    if whole is None or len(digits) >= MIN_TEXT_DIGITS:
        return masked
    if len(_run_digits(whole.group(0))) < MIN_TEXT_DIGITS or _NOT_PERSONAL.fullmatch(whole[0]):
        return masked
    return mask_text(heard[: last.start()]) + MASK * len(digits) + heard[end:]


def mask_cut(text: str, marker: str = "…") -> str:
    """Text cut short (a live event over the broker's size limit ends in ``marker``): the cut
    may fall inside a number, so a run of 3+ digits right before the marker is hidden whole."""
    if not text.endswith(marker):
        return mask_text(text)
    body = text[: -len(marker)]
    end = len(body)
    last = None
    for last in _RUN.finditer(body):  # noqa: B007  (only the last one matters)
        pass
    if last is None or last.end() != end or len(_run_digits(last.group(0))) < 3:
        return mask_text(text)
    if _NOT_PERSONAL.fullmatch(last.group(0)) or _in_identifier(body, last.start(), end):
        return mask_text(text)
    return mask_text(body[: last.start()]) + MASK * len(_run_digits(last.group(0))) + marker


def mask_keyed(dtmf: str) -> str:
    """Keyed digits: menu choices (1–4 digits) as they are; longer entries masked."""
    if sum(ch.isdigit() for ch in dtmf) < MIN_KEYED_DIGITS:
        return dtmf
    return mask_digits(dtmf)


def mask_number(value: str) -> str:
    """A field known to hold a cédula or phone number: last four digits only. A field with
    no digits (a caller id like "anonymous") is left as is."""
    return mask_digits(value)


# Searching by part of a number would let an agent rebuild it one digit at a time ("does any
# call contain 45678? 345678?…"): agents search by a whole number or by none.
MIN_SEARCH_DIGITS = 10
MAX_FREE_SEARCH_DIGITS = 2  # "8 de marzo", "a las 10"
MSG_PARTIAL_NUMBER = (
    "Para buscar por número escriba el número completo (al menos 10 dígitos): "
    "su rol no permite buscar partes de una cédula o de un teléfono."
)


def partial_number_search(text: str | None, *, phone: bool = False) -> bool:
    """Whether a search (``phone`` filter or transcript text) holds part of a number: a run of
    3–9 digits (or digit words) in text; for the phone filter (which matches the end of the
    number) 5–9 digits."""
    if not text:
        return False
    if phone:
        digits = sum(ch.isdigit() for ch in text)
        return KEEP_DIGITS < digits < MIN_SEARCH_DIGITS  # the last four are shown anyway
    for m in _RUN.finditer(text):
        n = len(_run_digits(m.group(0)))
        if MAX_FREE_SEARCH_DIGITS < n < MIN_SEARCH_DIGITS:
            return True
    return False


@dataclass(frozen=True)
class Redactor:
    """What one viewer may see. ``full`` (admins) returns everything unchanged."""

    full: bool

    @classmethod
    def for_principal(cls, principal: Principal | None) -> Redactor:
        return cls(full=sees_personal_data(principal))

    def text(self, value: str | None) -> str | None:
        """Transcript text, snippets, questions: numbers found in the words are masked."""
        if self.full or not value:
            return value
        return mask_text(value)

    def number(self, value: str | None) -> str | None:
        """A cédula or phone field."""
        if self.full or not value:
            return value
        return mask_number(value)

    def heard(self, heard: str | None, text: str | None) -> str | None:
        """``heard_text`` of a reply, judged with the whole reply (see ``mask_heard``)."""
        if self.full or not heard:
            return heard
        return mask_heard(heard, text or "")

    def search_refusal(self, text: str | None = None, phone: str | None = None) -> str | None:
        """The Spanish reason to refuse a search that could spell out a masked number, or None
        (admins search freely)."""
        if self.full:
            return None
        if partial_number_search(phone, phone=True) or partial_number_search(text):
            return MSG_PARTIAL_NUMBER
        return None

    def dtmf(self, value: str | None) -> str | None:
        if self.full or not value:
            return value
        return mask_keyed(value)

    def data(self, value: Any, key: str | None = None) -> Any:
        """Any JSON-like value (tool arguments and results, live events): fields named like a
        number are masked as numbers, other strings as free text, identifiers left alone."""
        if self.full:
            return value
        if isinstance(value, Mapping):
            out = {k: self.data(v, str(k).lower()) for k, v in value.items()}
            heard, text = value.get("heard_text"), value.get("text")
            if isinstance(heard, str) and isinstance(text, str):
                out["heard_text"] = mask_heard(heard, text)
            if value.get("truncated") is True:  # a live event whose texts were cut to fit
                for k in ("text", "heard_text"):
                    if isinstance(value.get(k), str):
                        out[k] = mask_cut(value[k])
            return out
        if isinstance(value, list | tuple):
            return [self.data(v, key) for v in value]
        if key in SAFE_KEYS:
            return value
        if key in NUMBER_KEYS:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return mask_number(str(value))
            return mask_number(value) if isinstance(value, str) else value
        if key in DTMF_KEYS and isinstance(value, str):
            return mask_keyed(value)
        if isinstance(value, str):
            return mask_text(value)
        return value


class MaskingLogFilter(logging.Filter):
    """Server logs never keep a caller's numbers: the session logs what each caller said
    ("caller: mi cédula es …"), and logs travel further than the database (shippers, support
    tickets). Numbers are masked as for agents; the call record keeps them for admins."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(mask_text(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, Mapping) and args:
            record.args = {k: mask_text(v) if isinstance(v, str) else v for k, v in args.items()}
        elif isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        return True
