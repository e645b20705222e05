"""Dates and times as callers say them, and as the assistant should say them back.

Callers booking an appointment say "mañana a las diez", "el próximo lunes", "pasado mañana en
la tarde" or "el 23", often through Whisper without accents or with odd punctuation. The
offline brain needs a concrete date and time from that, plus enough flags to know when to ask
("¿de la mañana o de la tarde?"). Reading the booking back, it must sound like a person:
"el lunes 23 de noviembre a las diez de la mañana".

Rules are deliberately explicit (regular expressions over normalised text with numbers already
turned into digits) so each accepted phrase is visible and testable.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pipeline.brain.spanish_text import clock_words, normalize, words_to_digits

__all__ = [
    "MONTH_NAMES",
    "WEEKDAY_NAMES",
    "When",
    "is_correction",
    "parse_when",
    "speak_date",
    "speak_datetime",
    "speak_relative",
    "speak_time",
]

PartOfDay = Literal["mañana", "tarde", "noche"]
Relation = Literal["at", "after", "before", "around"]

WEEKDAY_NAMES = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
MONTH_NAMES = (
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
).split()

_WEEKDAYS = {
    "lunes": 0,
    "martes": 1,
    "miercoles": 2,
    "jueves": 3,
    "viernes": 4,
    "sabado": 5,
    "domingo": 6,
}
_MONTHS = {name: i + 1 for i, name in enumerate(MONTH_NAMES)} | {"setiembre": 9}
_WD = r"(?P<wd>lunes|martes|miercoles|jueves|viernes|sabado|domingo)"
_MON = r"(?P<mon>" + "|".join(_MONTHS) + r")"


@dataclass(frozen=True, slots=True)
class When:
    """What a caller said about when, resolved against "now".

    ``part_of_day`` is what the caller said ("en la tarde"), not derived from ``time``.
    ``date_end`` is set when the caller named a span ("la semana que viene"): ``date`` is its
    first day. ``hour_ambiguous`` means no a.m./p.m. cue was heard and the hour was placed in
    office hours (or kept as said when no office hours were given). ``conflict`` means two
    cues disagree ("el lunes 24" when the 24th is a Tuesday); the date follows the number.
    """

    date: _dt.date | None = None
    time: _dt.time | None = None
    part_of_day: PartOfDay | None = None
    date_end: _dt.date | None = None
    relation: Relation = "at"
    hour_ambiguous: bool = False
    conflict: bool = False

    @property
    def is_range(self) -> bool:
        return self.date_end is not None

    @property
    def confidence(self) -> float:
        """A rough 0–1 score so the dialogue engine knows when to confirm explicitly."""
        score = 1.0
        if self.hour_ambiguous:
            score -= 0.2
        if self.is_range:
            score -= 0.3
        if self.relation != "at":
            score -= 0.1
        if self.conflict:
            score -= 0.4
        return round(max(score, 0.1), 2)

    def as_datetime(self) -> _dt.datetime | None:
        if self.date is None or self.time is None:
            return None
        return _dt.datetime.combine(self.date, self.time)

    def merge(self, newer: When) -> When:
        """Combine with what the caller says next; the newer words win.

        "el lunes" then "mejor a las once" keeps Monday; "a las diez" then "mejor en la tarde"
        drops the morning time; "en la tarde" then "a las tres" reads the hour as afternoon.
        """
        date, date_end = (newer.date, newer.date_end) if newer.date else (self.date, self.date_end)
        time, relation, ambiguous = self.time, self.relation, self.hour_ambiguous
        part = newer.part_of_day or self.part_of_day
        if newer.time is not None:
            time, relation, ambiguous = newer.time, newer.relation, newer.hour_ambiguous
            if ambiguous and newer.part_of_day is None and self.part_of_day:
                hour = _apply_part_of_day(time.hour % 12 or 12, self.part_of_day)
                # Only within waking hours: "en la mañana" then "a las tres" is not 3 a.m.
                if 6 <= hour <= 21 and _part_of(time.replace(hour=hour)) == self.part_of_day:
                    time, ambiguous = time.replace(hour=hour), False
            if newer.part_of_day is None and part and _part_of(time) != part:
                part = None
        elif newer.part_of_day and time is not None and _part_of(time) != newer.part_of_day:
            time, relation, ambiguous = None, "at", False
        return When(
            date=date,
            time=time,
            part_of_day=part,
            date_end=date_end,
            relation=relation,
            hour_ambiguous=ambiguous,
            conflict=newer.conflict if newer.date else self.conflict,
        )


def _part_of(t: _dt.time) -> PartOfDay:
    if t.hour < 12:
        return "mañana"
    return "tarde" if t.hour < 19 else "noche"


def _apply_part_of_day(hour: int, part: str) -> int:
    if part in ("tarde", "noche") and 1 <= hour < 12:
        return hour + 12
    if part == "mañana" and hour >= 13:
        return hour - 12
    return hour


# ---------------------------------------------------------------------------------------------
# Preparing the text
# ---------------------------------------------------------------------------------------------

_CANON: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\bmanana\b", "mañana"),
        (r"\bmañanita\b|\bmananita\b", "mañana"),
        (r"\btardecita\b", "tarde"),
        (r"\bpasao\b", "pasado"),
        (r"\bmedio dia\b", "mediodia"),
        (r"\bmedia noche\b", "medianoche"),
        (r"\bpal\b", "para el"),
        (r"\bpa\b", "para"),
        (r"\b1(?:ro|ero|o)\b", "1"),
        (r"\b(el|dia)\s+primero\b", r"\1 1"),
        (r"\bprimero\s+de\s+(?=" + "|".join(_MONTHS) + r")", "1 de "),
        (r"\bproxima\b", "proximo"),
        (r"\bsiguiente\b", "proximo"),
    )
)


def _prepare(text: str) -> str:
    s = normalize(text)
    for pattern, replacement in _CANON:
        s = pattern.sub(replacement, s)
    return " " + words_to_digits(s) + " "


class _Scan:
    """Text being consumed: each accepted match is blanked out so that later, more general
    patterns cannot read the same words again, while positions stay comparable."""

    def __init__(self, text: str) -> None:
        self.text = text

    def each(self, pattern: re.Pattern[str], accept: Callable[[re.Match[str]], bool]) -> None:
        for m in list(pattern.finditer(self.text)):
            if "#" in m.group(0):
                continue
            if accept(m):
                start, end = m.span()
                self.text = self.text[:start] + "#" * (end - start) + self.text[end:]

    def rest(self) -> str:
        return re.sub(r"[#\s]+", " ", self.text).strip()


# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------

_REL = (
    r"(?:(?P<rel>a\s+eso\s+de|como\s+a|como|alrededor\s+de|tipo|mas\s+o\s+menos\s+a|"
    r"despues\s+de|a\s+partir\s+de|desde|antes\s+de|hasta|no\s+mas\s+tarde\s+de)\s+)?"
)
_SUFFIX = (
    r"(?:\s+en\s+punto)?(?:\s+(?:horas|hrs|hr|h)\b)?"
    r"(?:\s+(?P<ampm>am|pm)\b|\s+(?:de|en|por|a)\s+la\s+(?P<pod>mañana|tarde|noche|madrugada)\b"
    r"|\s+del\s+(?P<md>mediodia)\b)?"
)
_NOT_A_TIME = (
    r"(?!\s+(?:citas?|personas?|semanas?|dias?|meses|veces|cosas|de\s+(?:ellas|ellos|mis|sus)))"
)
_MINUTES = (
    r"(?:[:.](?P<mm>\d{2})\b"
    r"|\s+y\s+(?P<frac>media|cuarto|\d{1,2})(?:\s+minutos)?\b"
    r"|\s+menos\s+(?P<less>cuarto|\d{1,2})\b"
    r"|\s+(?P<mm2>[1-5]\d)\b(?!\s+de\s+" + _MON.replace("?P<mon>", "?:") + r"))?"
)
# "un cuarto para las cuatro", "diez para las cinco": minutes before the hour.
_T_BEFORE = re.compile(
    _REL + r"\b(?:(?:a|para)\s+)?(?:(?:1|el)\s+)?(?P<before>cuarto|5|10|15|20|25)\s+(?:minutos\s+)?"
    r"para\s+(?:las?|la)\s+(?P<h>\d{1,2})\b" + _SUFFIX
)
# "a las tres y media", "las 10 de la mañana", "a la una", "a las 3:30 pm".
_T_ARTICLE = re.compile(
    _REL
    + r"\b(?:(?:a|para|de|desde|hasta|entre|y)\s+)?(?P<art>las|la)\s+(?P<h>\d{1,2})\b"
    + _MINUTES
    + _SUFFIX
    + _NOT_A_TIME
)
_NOT_A_DAY = r"(?<!\bel\s)(?<!\bdia\s)(?<!\bdel\s)" + "".join(rf"(?<!\b{wd}\s)" for wd in _WEEKDAYS)
# "10:30", "3.30 pm": clock digits need no article.
_T_CLOCK = re.compile(_REL + r"(?:\ba\s+)?\b(?P<h>\d{1,2})[:.](?P<mm>\d{2})\b" + _SUFFIX)
# "10 am", "3 y media de la tarde": a bare hour needs a part of day (or "y media").
_T_BARE = re.compile(
    _REL
    + r"(?:\ba\s+)?"
    + _NOT_A_DAY
    + r"\b(?P<h>\d{1,2})(?:\s+y\s+(?P<frac>media|cuarto)|\s+menos\s+(?P<less>cuarto))?"
    r"(?:\s+(?P<ampm>am|pm)\b|\s+(?:de|en|por)\s+la\s+(?P<pod>mañana|tarde|noche|madrugada)\b"
    r"|\s+del\s+(?P<md>mediodia)\b)"
)
_T_HALF = re.compile(_REL + _NOT_A_DAY + r"\b(?P<h>\d{1,2})\s+y\s+(?P<frac>media|cuarto)\b")
_T_NOON = re.compile(
    r"(?:\b(?P<rel>despues|antes|alrededor)\s+)?"
    r"\b(?:(?:a|al|para\s+el|el|del|por\s+el|de)\s+)?(?P<noon>mediodia|medianoche)\b"
)

_RELATIONS: dict[str, Relation] = {
    "despues": "after",
    "a partir": "after",
    "desde": "after",
    "antes": "before",
    "hasta": "before",
    "no mas": "before",
}


def _relation(raw: str | None) -> Relation:
    if not raw:
        return "at"
    raw = re.sub(r"\s+", " ", raw)
    for prefix, relation in _RELATIONS.items():
        if raw.startswith(prefix):
            return relation
    return "around"


@dataclass
class _TimeMention:
    pos: int
    hour: int  # as said, 0–23
    minute: int
    offset: int  # minutes to add after resolving the hour ("menos cuarto" = -15)
    cue: str | None  # "am" | "pm" | "mañana" | "tarde" | "noche" | "madrugada" | "mediodia"
    relation: Relation
    fixed: bool = False  # already a 24-hour time (noon, midnight)


def _minute_value(raw: str | None) -> int | None:
    if raw is None:
        return 0
    if raw == "media":
        return 30
    if raw == "cuarto":
        return 15
    value = int(raw)
    return value if value < 60 else None


def _time_from_match(m: re.Match[str]) -> _TimeMention | None:
    groups = m.groupdict()
    hour = int(groups["h"])
    if hour > 23:
        return None
    cue = groups.get("ampm") or groups.get("pod") or groups.get("md")
    minute, offset = 0, 0
    if groups.get("before"):
        before = _minute_value(groups["before"])
        offset = -(before or 0)
    elif groups.get("less"):
        less = _minute_value(groups["less"])
        if less is None:
            return None
        offset = -less
    else:
        raw = groups.get("mm") or groups.get("frac") or groups.get("mm2")
        value = _minute_value(raw)
        if value is None:
            return None
        minute = value
    if groups.get("art") == "la" and hour != 1:
        return None  # "la 2" is not how an hour is said; "la una" is
    return _TimeMention(m.start(), hour, minute, offset, cue, _relation(groups.get("rel")))


def _resolve_hour(
    hour: int, cue: str | None, office_hours: tuple[int, int] | None
) -> tuple[int, bool]:
    """The 24-hour value of a spoken hour, and whether it had to be guessed."""
    if hour == 0 or hour > 12:
        return hour, False
    if cue in ("pm", "tarde"):
        return (12 if hour == 12 else hour + 12), False
    if cue == "noche":
        return (0 if hour == 12 else hour + 12 if hour >= 6 else hour), False
    if cue in ("am", "madrugada"):
        return (0 if hour == 12 else hour), False
    if cue == "mañana":
        return hour, False
    if cue == "mediodia":
        return (hour + 12 if hour <= 4 else hour), False
    if hour == 12:
        return 12, False
    if office_hours is None:
        return hour, True
    open_hour, close_hour = office_hours

    def distance(h: int) -> int:
        if open_hour <= h < close_hour:
            return 0
        return min(abs(h - open_hour), abs(h - close_hour))

    morning, afternoon = hour, hour + 12
    return (morning if distance(morning) < distance(afternoon) else afternoon), True


# ---------------------------------------------------------------------------------------------
# Parts of the day
# ---------------------------------------------------------------------------------------------

_P_THIS = re.compile(r"\besta\s+(?P<pod>mañana|tarde|noche)\b")
_P_PART = re.compile(
    r"\b(?:(?:de|en|por|a|para|durante|hacia)\s+)?(?:(?:horas|horario)\s+de\s+)?"
    r"(?:la|las)\s+(?P<pod>mañana|tarde|noche)s?\b"
)
_P_EARLY = re.compile(r"\b(?:bien\s+|lo\s+mas\s+)?(?:temprano|tempranito)\b(?:\s+posible)?")
_P_ALONE = re.compile(r"^\s*(?:en\s+|por\s+|de\s+)?(?P<pod>tarde|noche)\s*$")


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------

_NEXT_WEEK = (
    r"(?:semana\s+que\s+viene|proximo\s+semana|semana\s+proximo|otra\s+semana|semana\s+entrante)"
)
_NOT_AN_HOUR = (
    r"(?![:./]\d)(?!\s+(?:am|pm|horas|de\s+la|y\s+media|y\s+cuarto|menos|minutos|dias|semanas"
    r"|meses|personas|citas|años)\b)"
)
_D_FULL = re.compile(
    r"\b(?:(?:el|este|para\s+el|el\s+proximo|proximo)\s+)?(?:" + _WD + r"\s+)?"
    r"(?:(?:el|dia|del)\s+)*(?P<d>\d{1,2})\s+(?:de\s+)?" + _MON + r"\b"
    r"(?:\s+(?:de|del)\s+(?P<y>\d{4})\b)?"
)
_D_MONTH_FIRST = re.compile(
    r"\b" + _MON + r"\s+(?P<d>\d{1,2})\b" + _NOT_AN_HOUR + r"(?:\s+(?:de|del)\s+(?P<y>\d{4})\b)?"
)
_D_NUMERIC = re.compile(
    r"(?<![\d/.:-])(?:(?P<d>\d{1,2})/(?P<m>\d{1,2})(?:/(?P<y>\d{2}|\d{4}))?"
    r"|(?P<d2>\d{1,2})-(?P<m2>\d{1,2})-(?P<y2>\d{4})"
    r"|(?P<y3>\d{4})-(?P<m3>\d{1,2})-(?P<d3>\d{1,2}))(?![\d/.:-])"
)
_D_RELATIVE_WD = re.compile(
    r"\b(?P<rel>pasado\s+mañana|mañana|hoy)\s+(?:que\s+)?(?:es\s+)?(?:el\s+)?"
    + _WD
    + r"(?:\s+(?P<d>\d{1,2})\b"
    + _NOT_AN_HOUR
    + r")?"
)
_D_WD_NEXT_WEEK = re.compile(
    r"\b(?:el\s+)?" + _WD + r"\s+(?:de\s+)?(?:la\s+)?" + _NEXT_WEEK + r"\b"
    r"|\b(?:el\s+)?otro\s+" + _WD.replace("wd", "wd2") + r"\b"
)
_D_WD_THIS_WEEK = re.compile(r"\b(?:el\s+)?" + _WD + r"\s+de\s+esta\s+(?:misma\s+)?semana\b")
_D_WD_DOM = re.compile(
    r"\b(?:(?:el|este|para\s+el|el\s+proximo|proximo)\s+)?"
    + _WD
    + r"\s+(?:(?:dia|el)\s+)?(?P<d>\d{1,2})\b"
    + _NOT_AN_HOUR
)
_D_DOM = re.compile(
    r"\b(?:el|dia|del|para\s+el)\s+(?:dia\s+)?(?P<d>\d{1,2})\b"
    + _NOT_AN_HOUR
    + r"(?:\s+(?:de\s+)?(?:este|el)\s+mes\b)?"
)
_D_WEEKDAY = re.compile(
    r"\b(?:(?P<mod>este|el\s+proximo|proximo|el|para\s+el)\s+)?"
    + _WD
    + r"(?:\s+(?P<mod2>que\s+viene|proximo|entrante))?\b"
)
_D_IN = re.compile(
    r"\b(?:en|dentro\s+de|de\s+aqui\s+a)\s+(?P<n>\d{1,3})\s+(?P<unit>dias?|semanas?|mes(?:es)?)\b"
)
_D_RELATIVE = re.compile(
    r"\b(?P<rel>pasado\s+mañana|anteayer|antier|ayer|hoy(?:\s+mismo)?|mañana(?:\s+mismo)?)\b"
)
_D_NEXT_WEEK = re.compile(r"\b(?:la\s+)?" + _NEXT_WEEK + r"\b")
_D_THIS_WEEK = re.compile(r"\besta\s+(?:misma\s+)?semana\b")
_D_WEEKEND = re.compile(r"\b(?:este\s+|el\s+)?(?:proximo\s+)?fin\s+de\s+semana\b")
_D_NEXT_MONTH = re.compile(
    r"\b(?:el\s+)?(?:mes\s+que\s+viene|proximo\s+mes|mes\s+proximo|mes\s+entrante|otro\s+mes)\b"
)
_D_THIS_MONTH = re.compile(r"\beste\s+(?:mismo\s+)?mes\b")
_D_MONTH = re.compile(r"\b(?:en|para|de|a\s+principios\s+de|a\s+finales\s+de)\s+" + _MON + r"\b")


@dataclass
class _DateMention:
    pos: int
    date: _dt.date
    end: _dt.date | None = None
    conflict: bool = False


def _add_months(d: _dt.date, months: int) -> _dt.date:
    index = d.month - 1 + months
    return _dt.date(d.year + index // 12, index % 12 + 1, 1)


def _month_end(d: _dt.date) -> _dt.date:
    return _add_months(d, 1) - _dt.timedelta(days=1)


def _day_of_month(day: int, today: _dt.date) -> _dt.date | None:
    """The next date (today included) whose day of month is ``day``."""
    if not 1 <= day <= 31:
        return None
    first = today.replace(day=1)
    for months in range(13):
        start = _add_months(first, months)
        try:
            candidate = start.replace(day=day)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    return None


def _full_date(day: int, month: int, year: int | None, today: _dt.date) -> _dt.date | None:
    if not 1 <= month <= 12:
        return None
    if year is not None and year < 100:
        year += 2000
    try:
        candidate = _dt.date(year or today.year, month, day)
    except ValueError:
        if year is None and month == 2 and day == 29:
            for ahead in range(1, 8):  # the next leap year
                try:
                    return _dt.date(today.year + ahead, 2, 29)
                except ValueError:
                    continue
        return None
    if year is None and candidate < today:
        candidate = candidate.replace(year=today.year + 1)
    return candidate


def _next_weekday(today: _dt.date, weekday: int, *, include_today: bool) -> _dt.date:
    delta = (weekday - today.weekday()) % 7
    if delta == 0 and not include_today:
        delta = 7
    return today + _dt.timedelta(days=delta)


def _monday(d: _dt.date) -> _dt.date:
    return d - _dt.timedelta(days=d.weekday())


def _relative_day(word: str, today: _dt.date) -> _dt.date:
    word = re.sub(r"\s+", " ", word)
    if word.startswith("pasado"):
        return today + _dt.timedelta(days=2)
    if word.startswith("mañana"):
        return today + _dt.timedelta(days=1)
    if word == "ayer":
        return today - _dt.timedelta(days=1)
    if word in ("anteayer", "antier"):
        return today - _dt.timedelta(days=2)
    return today


def _find_dates(scan: _Scan, today: _dt.date) -> list[_DateMention]:
    found: list[_DateMention] = []

    def add(m: re.Match[str], when: _dt.date | None, **extra: object) -> bool:
        if when is None:
            return False
        found.append(_DateMention(m.start(), when, **extra))  # type: ignore[arg-type]
        return True

    def weekday_conflict(m: re.Match[str], when: _dt.date | None) -> bool:
        wd = m.groupdict().get("wd")
        return bool(wd and when and when.weekday() != _WEEKDAYS[wd])

    def full(m: re.Match[str]) -> bool:
        y = m.group("y")
        when = _full_date(int(m["d"]), _MONTHS[m["mon"]], int(y) if y else None, today)
        add(m, when, conflict=weekday_conflict(m, when))
        return True  # consumed even when impossible: "el 30 de febrero" is not "febrero"

    def numeric(m: re.Match[str]) -> bool:
        d, mo, y = (
            (m["d"], m["m"], m["y"])
            if m["d"]
            else (m["d2"], m["m2"], m["y2"])
            if m["d2"]
            else (m["d3"], m["m3"], m["y3"])
        )
        return add(m, _full_date(int(d), int(mo), int(y) if y else None, today))

    def relative_weekday(m: re.Match[str]) -> bool:
        when = _relative_day(m["rel"], today)
        conflict = when.weekday() != _WEEKDAYS[m["wd"]]
        if m["d"] and int(m["d"]) != when.day:
            conflict = True
        return add(m, when, conflict=conflict)

    def weekday_next_week(m: re.Match[str]) -> bool:
        weekday = _WEEKDAYS[m["wd"] or m["wd2"]]
        return add(m, _monday(today) + _dt.timedelta(days=7 + weekday))

    def weekday_this_week(m: re.Match[str]) -> bool:
        return add(m, _monday(today) + _dt.timedelta(days=_WEEKDAYS[m["wd"]]))

    def weekday_dom(m: re.Match[str]) -> bool:
        when = _day_of_month(int(m["d"]), today)
        return add(m, when, conflict=weekday_conflict(m, when))

    def dom(m: re.Match[str]) -> bool:
        return add(m, _day_of_month(int(m["d"]), today))

    def weekday(m: re.Match[str]) -> bool:
        include_today = (m["mod"] or "") == "este"
        return add(m, _next_weekday(today, _WEEKDAYS[m["wd"]], include_today=include_today))

    def in_n(m: re.Match[str]) -> bool:
        n, unit = int(m["n"]), m["unit"]
        if unit.startswith("dia"):
            # "en ocho días" / "en quince días" are the idioms for one and two weeks.
            days = {8: 7, 15: 14}.get(n, n)
            return add(m, today + _dt.timedelta(days=days))
        if unit.startswith("semana"):
            return add(m, today + _dt.timedelta(weeks=n))
        target = _add_months(today, n)
        return add(m, _day_of_month(min(today.day, _month_end(target).day), target))

    def relative(m: re.Match[str]) -> bool:
        return add(m, _relative_day(m["rel"], today))

    def next_week(m: re.Match[str]) -> bool:
        start = _monday(today) + _dt.timedelta(days=7)
        return add(m, start, end=start + _dt.timedelta(days=6))

    def this_week(m: re.Match[str]) -> bool:
        return add(m, today, end=_monday(today) + _dt.timedelta(days=6))

    def weekend(m: re.Match[str]) -> bool:
        saturday = _next_weekday(today, 5, include_today=True)
        start = today if today.weekday() == 6 else saturday
        end = today if today.weekday() == 6 else saturday + _dt.timedelta(days=1)
        return add(m, start, end=end)

    def next_month(m: re.Match[str]) -> bool:
        start = _add_months(today, 1)
        return add(m, start, end=_month_end(start))

    def this_month(m: re.Match[str]) -> bool:
        return add(m, today, end=_month_end(today))

    def month(m: re.Match[str]) -> bool:
        number = _MONTHS[m["mon"]]
        year = today.year if number >= today.month else today.year + 1
        start = max(_dt.date(year, number, 1), today)
        return add(m, start, end=_month_end(start))

    scan.each(_D_FULL, full)
    scan.each(_D_NUMERIC, numeric)
    scan.each(_D_MONTH_FIRST, full)
    scan.each(_D_RELATIVE_WD, relative_weekday)
    scan.each(_D_WD_NEXT_WEEK, weekday_next_week)
    scan.each(_D_WD_THIS_WEEK, weekday_this_week)
    scan.each(_D_WD_DOM, weekday_dom)
    scan.each(_D_DOM, dom)
    scan.each(_D_WEEKDAY, weekday)
    scan.each(_D_IN, in_n)
    scan.each(_D_RELATIVE, relative)
    scan.each(_D_NEXT_WEEK, next_week)
    scan.each(_D_THIS_WEEK, this_week)
    scan.each(_D_WEEKEND, weekend)
    scan.each(_D_NEXT_MONTH, next_month)
    scan.each(_D_THIS_MONTH, this_month)
    scan.each(_D_MONTH, month)
    return found


def _find_times(scan: _Scan) -> list[_TimeMention]:
    found: list[_TimeMention] = []

    def spoken(m: re.Match[str]) -> bool:
        mention = _time_from_match(m)
        if mention is None:
            return False
        found.append(mention)
        return True

    def noon(m: re.Match[str]) -> bool:
        hour = 12 if m["noon"] == "mediodia" else 0
        found.append(_TimeMention(m.start(), hour, 0, 0, None, _relation(m["rel"]), fixed=True))
        return True

    scan.each(_T_BEFORE, spoken)
    scan.each(_T_ARTICLE, spoken)
    scan.each(_T_CLOCK, spoken)
    scan.each(_T_BARE, spoken)
    scan.each(_T_HALF, spoken)
    scan.each(_T_NOON, noon)
    return found


def _find_parts(scan: _Scan, today: _dt.date) -> tuple[list[tuple[int, str]], list[_DateMention]]:
    parts: list[tuple[int, str]] = []
    dates: list[_DateMention] = []

    def this(m: re.Match[str]) -> bool:
        parts.append((m.start(), m["pod"]))
        dates.append(_DateMention(m.start(), today))
        return True

    def part(m: re.Match[str]) -> bool:
        parts.append((m.start(), m["pod"]))
        return True

    scan.each(_P_THIS, this)
    scan.each(_P_PART, part)
    if not parts:
        scan.each(_P_EARLY, lambda m: bool(parts.append((m.start(), "mañana"))) or True)
        scan.each(_P_ALONE, part)
    return parts, dates


def _parse(prepared: str, now: _dt.datetime, office_hours: tuple[int, int] | None) -> When | None:
    today = now.date()
    scan = _Scan(prepared)
    times = _find_times(scan)
    parts, part_dates = _find_parts(scan, today)
    dates = _find_dates(scan, today) + part_dates
    if not (times or parts or dates):
        return None

    part_of_day: str | None = max(parts)[1] if parts else None
    time: _dt.time | None = None
    relation: Relation = "at"
    ambiguous = False
    if times:
        spoken = max(times, key=lambda t: t.pos)
        relation = spoken.relation
        if spoken.fixed:
            hour = spoken.hour
        else:
            hour, ambiguous = _resolve_hour(spoken.hour, spoken.cue or part_of_day, office_hours)
            if spoken.cue in ("mañana", "tarde", "noche"):
                part_of_day = spoken.cue
            elif spoken.cue == "madrugada":
                part_of_day = "mañana"
            elif spoken.cue in ("am", "pm"):
                part_of_day = "mañana" if spoken.cue == "am" else "tarde"
        moment = _dt.datetime.combine(today, _dt.time(hour, spoken.minute))
        time = (moment + _dt.timedelta(minutes=spoken.offset)).time()

    date_mention = max(dates, key=lambda d: d.pos) if dates else None
    return When(
        date=date_mention.date if date_mention else None,
        time=time,
        part_of_day=part_of_day,  # type: ignore[arg-type]
        date_end=date_mention.end if date_mention else None,
        relation=relation,
        hour_ambiguous=ambiguous,
        conflict=date_mention.conflict if date_mention else False,
    )


def parse_when(
    text: str,
    now: _dt.datetime,
    *,
    office_hours: tuple[int, int] | None = (8, 16),
    expect: Literal["date", "time"] | None = None,
) -> When | None:
    """Understand when the caller means, or ``None`` if the text says nothing about it.

    ``office_hours`` (opening hour, closing hour) places an hour said without a.m./p.m. cue:
    with the default 8–16, "a las dos" is 14:00 and "a las nueve" is 09:00; ``None`` keeps the
    hour as said. ``expect`` tells how to read a bare number the engine asked for ("¿Qué
    día?" → "25" is the 25th; "¿A qué hora?" → "10" is ten o'clock).

    Weekdays resolve to their next occurrence after today ("el lunes" said on a Monday is next
    week's), "este viernes" includes today, a day of month already past rolls to next month,
    and when several dates or times are mentioned the last one wins ("el lunes, no, mejor el
    martes").
    """
    prepared = _prepare(text)
    found = _parse(prepared, now, office_hours)
    if found is None and expect is not None and re.fullmatch(r"\s*\d{1,2}\s*", prepared):
        prefix = " el dia " if expect == "date" else " a las "
        found = _parse(prefix + prepared, now, office_hours)
    return found


# ---------------------------------------------------------------------------------------------
# Corrections
# ---------------------------------------------------------------------------------------------

_CORRECTION = re.compile(
    r"\b(?:mejor\s+dicho|en\s+vez\s+de|en\s+lugar\s+de|mas\s+bien|me\s+equivoque|quise\s+decir"
    r"|quiero\s+decir|corrijo|correccion|rectifico|no\s+era|otro\s+dia|otra\s+hora|otra\s+fecha"
    r"|(?:mejor\s+)?que\s+sea\s+(?:el|la|las|a|en|para|mas)"
    r"|cambi\w*\s+(?:para|a|al|por)\b|cambi(?:e|a|ar|emos)(?:lo|la|los|las)\b"
    r"|(?:muev|pas|pong|mov)\w*\s+(?:para|al)\b|(?:muev|pas|pong)\w*(?:lo|la)\s+(?:a|para)\b)"
)
_MEJOR = re.compile(r"(?<!\blo\s)\bmejor\b(?!\s*(?:no|nada)?\s*$)")
_LEADING_NO = re.compile(r"^(?:(?:no|nop|negativo|perdon|disculpe|eh|este|pues)\s+)+")
_FILLERS = re.compile(r"\b(?:senor|senora|señor|señora|gracias|muchas|eso|ya|no)\b")
_NEW_VALUE_START = re.compile(
    r"^(?:el|la|las|los|a|al|es|era|son|mi|me|se|para|en|por|que|de|del|dije|mejor|solo)\b"
)
_ANY_TIME = _dt.datetime(2000, 1, 3, 9, 0)


def is_correction(text: str) -> bool:
    """Is the caller changing something they said ("no, mejor el martes", "mejor a las once",
    "cámbielo para el jueves")?

    A bare "no" is a refusal, not a correction: after a leading "no" there must be a new value
    (a date, a time, a number, or words such as "es el…", "a las…", "mi nombre…").
    """
    s = normalize(text)
    if not s:
        return False
    if _CORRECTION.search(s) or _MEJOR.search(s):
        return True
    if not re.match(r"(?:no|nop|negativo)\b", s):
        return False
    rest = _LEADING_NO.sub("", s + " ").strip()
    if not rest or not _FILLERS.sub("", rest).strip():
        return False
    if re.match(r"^(?:esta\s+bien|ta\s+bien|gracias|quiero|nada|hace\s+falta|importa)\b", rest):
        return False
    if parse_when(rest, _ANY_TIME) is not None:
        return True
    return bool(_NEW_VALUE_START.match(rest) or re.search(r"\d", words_to_digits(rest)))


# ---------------------------------------------------------------------------------------------
# Speaking dates and times
# ---------------------------------------------------------------------------------------------


def speak_date(d: _dt.date, today: _dt.date | None = None) -> str:
    """ "el lunes 23 de noviembre"; the year only when it is not this year's (given
    ``today``). Day 1 is "primero", as people say it; other days stay digits, which the TTS
    reads correctly."""
    day = "primero" if d.day == 1 else str(d.day)
    text = f"el {WEEKDAY_NAMES[d.weekday()]} {day} de {MONTH_NAMES[d.month - 1]}"
    if today is not None and d.year != today.year:
        text += f" de {d.year}"
    return text


def speak_time(t: _dt.time) -> str:
    """ "a las diez de la mañana", "a la una de la tarde", "a las doce del mediodía"."""
    article = "la" if t.hour % 12 == 1 else "las"
    return f"a {article} {clock_words(t.hour, t.minute)}"


def speak_datetime(moment: _dt.datetime, today: _dt.date | None = None) -> str:
    """ "el lunes 23 de noviembre a las diez de la mañana"."""
    return f"{speak_date(moment.date(), today)} {speak_time(moment.time())}"


def speak_relative(d: _dt.date, today: _dt.date) -> str:
    """ "hoy", "mañana", "pasado mañana", or the full date further away."""
    days = (d - today).days
    if days == 0:
        return "hoy"
    if days == 1:
        return "mañana"
    if days == 2:
        return "pasado mañana"
    return speak_date(d, today)
