"""Dates and times as callers say them (through Whisper), and as the assistant says them back.

Two fixed "now"s: Saturday 2026-11-21 10:00 and Wednesday 2026-11-25 15:00.
"""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.brain.spanish_dates import (
    When,
    is_correction,
    parse_when,
    speak_date,
    speak_datetime,
    speak_relative,
    speak_time,
)

SAT = datetime(2026, 11, 21, 10, 0)
WED = datetime(2026, 11, 25, 15, 0)
assert SAT.weekday() == 5 and WED.weekday() == 2


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


def t(hour: int, minute: int = 0) -> time:
    return time(hour, minute)


# (text, now, expected date, expected time, expected part of day)
CASES: list[tuple[str, datetime, date | None, time | None, str | None]] = [
    # relative days
    ("mañana", SAT, d(11, 22), None, None),
    ("Mañana.", WED, d(11, 26), None, None),
    ("manana", SAT, d(11, 22), None, None),
    ("pasado mañana", SAT, d(11, 23), None, None),
    ("pasado manana", WED, d(11, 27), None, None),
    ("pasao mañana", SAT, d(11, 23), None, None),
    ("hoy", SAT, d(11, 21), None, None),
    ("hoy mismo", WED, d(11, 25), None, None),
    ("mañana mismo", WED, d(11, 26), None, None),
    # weekdays: the next occurrence after today
    ("el lunes", SAT, d(11, 23), None, None),
    ("el lunes", WED, d(11, 30), None, None),
    ("el próximo lunes", SAT, d(11, 23), None, None),
    ("el proximo lunes", WED, d(11, 30), None, None),
    ("el lunes que viene", SAT, d(11, 23), None, None),
    ("el lunes próximo", WED, d(11, 30), None, None),
    ("este viernes", SAT, d(11, 27), None, None),
    ("este viernes", WED, d(11, 27), None, None),
    ("el viernes", WED, d(11, 27), None, None),
    ("el miércoles", WED, d(12, 2), None, None),  # said on a Wednesday: next week's
    ("el miercoles", SAT, d(11, 25), None, None),
    ("este miércoles", WED, d(11, 25), None, None),  # "este" includes today
    ("hoy miércoles", WED, d(11, 25), None, None),
    ("el sábado", SAT, d(11, 28), None, None),
    ("para el lunes", SAT, d(11, 23), None, None),
    ("pal lunes", SAT, d(11, 23), None, None),
    ("el lunes de la semana que viene", SAT, d(11, 23), None, None),
    ("el martes de la semana que viene", WED, d(12, 1), None, None),
    ("el martes de la próxima semana", WED, d(12, 1), None, None),
    ("el otro martes", SAT, d(11, 24), None, None),
    ("el martes de esta semana", WED, d(11, 24), None, None),
    # days of the month
    ("el 23 de noviembre", SAT, d(11, 23), None, None),
    ("el 23 de noviembre", WED, d(11, 23, 2027), None, None),  # past: next year
    ("el veintitrés de noviembre", SAT, d(11, 23), None, None),
    ("el veintitres de noviembre del dos mil veintiseis", SAT, d(11, 23), None, None),
    ("23 de noviembre de 2027", SAT, d(11, 23, 2027), None, None),
    ("noviembre 30", SAT, d(11, 30), None, None),
    ("el 23", SAT, d(11, 23), None, None),
    ("el 23", WED, d(12, 23), None, None),  # past: next month
    ("el 21", SAT, d(11, 21), None, None),  # today is not the past
    ("el 31", SAT, d(12, 31), None, None),  # November has no 31st
    ("el día veinticinco", SAT, d(11, 25), None, None),
    ("el dia 25", WED, d(11, 25), None, None),
    ("el día 1", SAT, d(12, 1), None, None),
    ("el primero de diciembre", SAT, d(12, 1), None, None),
    ("el 1ro de diciembre", SAT, d(12, 1), None, None),
    ("el 15 de enero", SAT, d(1, 15, 2027), None, None),
    ("el lunes 23", SAT, d(11, 23), None, None),
    ("el lunes 30 de noviembre", WED, d(11, 30), None, None),
    ("23/11", SAT, d(11, 23), None, None),
    ("23/11/2026", SAT, d(11, 23), None, None),
    ("15/01/2027", SAT, d(1, 15, 2027), None, None),
    ("2026-12-01", SAT, d(12, 1), None, None),
    # spans of days
    ("en ocho días", SAT, d(11, 28), None, None),
    ("en tres días", WED, d(11, 28), None, None),
    ("dentro de dos semanas", SAT, d(12, 5), None, None),
    ("en una semana", WED, d(12, 2), None, None),
    # times
    ("a las diez", SAT, None, t(10), None),
    ("a las 10", SAT, None, t(10), None),
    ("a las diez en punto", SAT, None, t(10), None),
    ("a las tres y media", SAT, None, t(15, 30), None),
    ("a las 3:30", SAT, None, t(15, 30), None),
    ("a las 3 y 30", SAT, None, t(15, 30), None),
    ("a las tres treinta", SAT, None, t(15, 30), None),
    ("a las cuatro menos cuarto", SAT, None, t(15, 45), None),
    ("un cuarto para las cuatro", SAT, None, t(15, 45), None),
    ("diez para las once", SAT, None, t(10, 50), None),
    ("a las nueve y cuarto", SAT, None, t(9, 15), None),
    ("a las nueve y diez", SAT, None, t(9, 10), None),
    ("a las diez y cuarenta y cinco", SAT, None, t(10, 45), None),
    ("nueve y media", SAT, None, t(9, 30), None),
    ("a la una", SAT, None, t(13), None),
    ("a la una y media de la tarde", SAT, None, t(13, 30), "tarde"),
    ("a las doce", SAT, None, t(12), None),
    ("a las 12 del mediodía", SAT, None, t(12), None),
    ("al mediodía", SAT, None, t(12), None),
    ("a mediodía", SAT, None, t(12), None),
    ("a las dos", SAT, None, t(14), None),  # office hours: the afternoon
    ("a las ocho", SAT, None, t(8), None),
    ("a las cuatro", SAT, None, t(16), None),
    ("a las dos de la mañana", SAT, None, t(2), "mañana"),
    ("las 10 de la mañana", SAT, None, t(10), "mañana"),
    ("diez de la mañana", SAT, None, t(10), "mañana"),
    ("a las 2 pm", SAT, None, t(14), "tarde"),
    ("a las 10 am", SAT, None, t(10), "mañana"),
    ("A las 3:30 p. m.", SAT, None, t(15, 30), "tarde"),
    ("A las 10:00 a. m.", SAT, None, t(10), "mañana"),
    ("a las 3 de la tarde", SAT, None, t(15), "tarde"),
    ("a las ocho de la noche", SAT, None, t(20), "noche"),
    ("a las 14:00", SAT, None, t(14), None),
    ("a las catorce horas", SAT, None, t(14), None),
    # parts of the day
    ("en la tarde", SAT, None, None, "tarde"),
    ("por la tarde", SAT, None, None, "tarde"),
    ("en la mañana", SAT, None, None, "mañana"),
    ("por la mañana", SAT, None, None, "mañana"),
    ("de la tarde", SAT, None, None, "tarde"),
    ("tarde", SAT, None, None, "tarde"),
    ("en horas de la mañana", SAT, None, None, "mañana"),
    ("esta tarde", WED, d(11, 25), None, "tarde"),
    # combinations
    ("mañana a las diez", SAT, d(11, 22), t(10), None),
    ("manana a las diez", WED, d(11, 26), t(10), None),
    ("Mañana, a las 10.", SAT, d(11, 22), t(10), None),
    ("mañana en la mañana", SAT, d(11, 22), None, "mañana"),
    ("manana en la manana", WED, d(11, 26), None, "mañana"),
    ("mañana por la tarde", SAT, d(11, 22), None, "tarde"),
    ("mañana temprano", WED, d(11, 26), None, "mañana"),
    ("mañana a las 10 de la mañana", SAT, d(11, 22), t(10), "mañana"),
    ("pasado mañana en la tarde", SAT, d(11, 23), None, "tarde"),
    ("pasado manana en la tarde", WED, d(11, 27), None, "tarde"),
    ("el próximo lunes a las nueve y cuarto", WED, d(11, 30), t(9, 15), None),
    ("el lunes en la tarde a las tres", SAT, d(11, 23), t(15), "tarde"),
    ("el jueves a las nueve", SAT, d(11, 26), t(9), None),
    ("el jueves 26 a las 11", SAT, d(11, 26), t(11), None),
    ("el 23 de noviembre a las 10:30", SAT, d(11, 23), t(10, 30), None),
    (
        "el veintitrés de noviembre a las diez de la mañana",
        SAT,
        d(11, 23),
        t(10),
        "mañana",
    ),
    ("a las 3 de la tarde del 23 de noviembre", SAT, d(11, 23), t(15), "tarde"),
    ("Para el viernes, a la una y cuarto, por favor.", SAT, d(11, 27), t(13, 15), None),
    ("Quisiera una cita para mañana a las 9.", WED, d(11, 26), t(9), None),
    # corrections inside one utterance: the last mention wins
    ("el lunes, no, mejor el martes", SAT, d(11, 24), None, None),
    ("a las diez, no, a las once", SAT, None, t(11), None),
    ("no, mejor el martes", SAT, d(11, 24), None, None),
    ("mejor a las once", SAT, None, t(11), None),
    ("cámbielo para el jueves", SAT, d(11, 26), None, None),
]


@pytest.mark.parametrize(("text", "now", "day", "clock", "part"), CASES)
def test_parse_when(
    text: str, now: datetime, day: date | None, clock: time | None, part: str | None
) -> None:
    found = parse_when(text, now)
    assert found is not None, text
    assert (found.date, found.time, found.part_of_day) == (day, clock, part)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hola, buenas tardes",
        "buenos días",
        "quiero renovar mi cédula",
        "no",
        "sí, claro",
        "más tarde le llamo",
        "tengo 25 años",
        "somos dos personas",
        "quiero cancelar las 2 citas",
        "mi cédula es cero cero uno uno dos tres",
        "25",
        "el 30 de febrero",
        "¿Dónde queda la oficina?",
    ],
)
def test_parse_when_returns_none_without_a_date_or_time(text: str) -> None:
    assert parse_when(text, SAT) is None


def test_ambiguous_hours_are_flagged_and_follow_office_hours() -> None:
    two = parse_when("a las dos", SAT)
    assert two is not None and two.time == t(14) and two.hour_ambiguous
    assert two.confidence < 1.0

    explicit = parse_when("a las dos de la tarde", SAT)
    assert explicit is not None and explicit.time == t(14) and not explicit.hour_ambiguous
    assert explicit.confidence == 1.0

    as_said = parse_when("a las dos", SAT, office_hours=None)
    assert as_said is not None and as_said.time == t(2) and as_said.hour_ambiguous

    evening_office = parse_when("a las siete", SAT, office_hours=(14, 22))
    assert evening_office is not None and evening_office.time == t(19)


def test_part_of_day_said_elsewhere_places_the_hour() -> None:
    found = parse_when("en la tarde, a las dos", SAT, office_hours=None)
    assert found is not None
    assert found.time == t(14) and found.part_of_day == "tarde" and not found.hour_ambiguous


def test_weekday_that_disagrees_with_the_day_number_is_a_conflict() -> None:
    found = parse_when("el lunes 24", SAT)
    assert found is not None and found.date == d(11, 24) and found.conflict
    assert found.confidence < 1.0
    agreeing = parse_when("el lunes 23", SAT)
    assert agreeing is not None and not agreeing.conflict
    tomorrow = parse_when("mañana lunes", SAT)  # tomorrow is Sunday
    assert tomorrow is not None and tomorrow.date == d(11, 22) and tomorrow.conflict


@pytest.mark.parametrize(
    ("text", "now", "start", "end"),
    [
        ("la semana que viene", SAT, d(11, 23), d(11, 29)),
        ("la próxima semana", WED, d(11, 30), d(12, 6)),
        ("la proxima semana", WED, d(11, 30), d(12, 6)),
        ("esta semana", WED, d(11, 25), d(11, 29)),
        ("el mes que viene", SAT, d(12, 1), d(12, 31)),
        ("el fin de semana", WED, d(11, 28), d(11, 29)),
        ("en diciembre", SAT, d(12, 1), d(12, 31)),
    ],
)
def test_spans_of_days(text: str, now: datetime, start: date, end: date) -> None:
    found = parse_when(text, now)
    assert found is not None and found.is_range
    assert (found.date, found.date_end) == (start, end)


@pytest.mark.parametrize(
    ("text", "relation", "clock"),
    [
        ("como a las diez", "around", t(10)),
        ("a eso de las tres", "around", t(15)),
        ("después de las dos", "after", t(14)),
        ("a partir de las 9", "after", t(9)),
        ("antes de las once", "before", t(11)),
        ("antes del mediodía", "before", t(12)),
        ("a las diez", "at", t(10)),
    ],
)
def test_time_relation(text: str, relation: str, clock: time) -> None:
    found = parse_when(text, SAT)
    assert found is not None and (found.relation, found.time) == (relation, clock)


def test_expect_reads_a_bare_number_as_the_asked_slot() -> None:
    assert parse_when("25", SAT) is None
    as_day = parse_when("25", SAT, expect="date")
    assert as_day is not None and as_day.date == d(11, 25) and as_day.time is None
    as_hour = parse_when("diez", SAT, expect="time")
    assert as_hour is not None and as_hour.time == t(10) and as_hour.date is None
    # Anything more than a bare number is parsed normally.
    said = parse_when("el lunes", SAT, expect="time")
    assert said is not None and said.date == d(11, 23)


def test_as_datetime() -> None:
    found = parse_when("mañana a las diez", SAT)
    assert found is not None and found.as_datetime() == datetime(2026, 11, 22, 10, 0)
    only_day = parse_when("mañana", SAT)
    assert only_day is not None and only_day.as_datetime() is None


# --------------------------------------------------------------------------------- merging


def _when(text: str, now: datetime = SAT) -> When:
    found = parse_when(text, now)
    assert found is not None, text
    return found


def test_merge_keeps_the_date_when_only_the_time_changes() -> None:
    merged = _when("el lunes a las diez").merge(_when("mejor a las once"))
    assert merged.as_datetime() == datetime(2026, 11, 23, 11, 0)


def test_merge_keeps_the_time_when_only_the_date_changes() -> None:
    merged = _when("el lunes a las diez").merge(_when("no, mejor el martes"))
    assert merged.as_datetime() == datetime(2026, 11, 24, 10, 0)


def test_merge_drops_a_time_that_contradicts_the_new_part_of_day() -> None:
    merged = _when("el lunes a las diez").merge(_when("mejor en la tarde"))
    assert (merged.date, merged.time, merged.part_of_day) == (d(11, 23), None, "tarde")


def test_merge_reads_a_later_bare_hour_in_the_earlier_part_of_day() -> None:
    earlier = _when("mañana en la tarde")
    merged = earlier.merge(parse_when("a las dos", SAT, office_hours=None) or When())
    assert merged.as_datetime() == datetime(2026, 11, 22, 14, 0)
    assert not merged.hour_ambiguous and merged.part_of_day == "tarde"
    # Never into the small hours.
    morning = _when("en la mañana").merge(_when("a las tres"))
    assert morning.time == t(15) and morning.part_of_day is None


def test_merge_with_a_span() -> None:
    merged = _when("la semana que viene").merge(_when("a las diez"))
    assert (merged.date, merged.date_end, merged.time) == (d(11, 23), d(11, 29), t(10))


# --------------------------------------------------------------------------------- corrections


@pytest.mark.parametrize(
    "text",
    [
        "no, mejor el martes",
        "No, mejor el martes.",
        "mejor a las once",
        "mejor en la tarde",
        "cámbielo para el jueves",
        "cambielo para el jueves",
        "cámbiela al viernes",
        "no, a las once",
        "no, el lunes",
        "no, es el martes",
        "no, me llamo Juan Pérez",
        "no, mi cédula es cero cero uno",
        "no, la de pasaporte",
        "perdón, quise decir el jueves",
        "mejor dicho, a las tres",
        "en vez del lunes, el martes",
        "me equivoqué, es el 25",
        "¿puede ser otro día?",
        "que sea el miércoles",
    ],
)
def test_is_correction(text: str) -> None:
    assert is_correction(text) is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no",
        "No.",
        "no gracias",
        "no, está bien",
        "no, no quiero",
        "no, gracias, eso es todo",
        "no señor",
        "mejor no",
        "a lo mejor",
        "sí",
        "el martes",
        "a las diez",
        "quiero cambiar mi cita",
        "páseme con una persona",
    ],
)
def test_is_not_correction(text: str) -> None:
    assert is_correction(text) is False


# --------------------------------------------------------------------------------- speaking


@pytest.mark.parametrize(
    ("day", "today", "expected"),
    [
        (d(11, 23), None, "el lunes 23 de noviembre"),
        (d(11, 25), None, "el miércoles 25 de noviembre"),
        (d(12, 1), None, "el martes primero de diciembre"),
        (d(11, 28), d(11, 21), "el sábado 28 de noviembre"),
        (d(1, 15, 2027), d(11, 21), "el viernes 15 de enero de 2027"),
    ],
)
def test_speak_date(day: date, today: date | None, expected: str) -> None:
    assert speak_date(day, today) == expected


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        (t(10), "a las diez de la mañana"),
        (t(8, 30), "a las ocho y media de la mañana"),
        (t(9, 15), "a las nueve y cuarto de la mañana"),
        (t(10, 45), "a las diez y cuarenta y cinco de la mañana"),
        (t(11, 20), "a las once y veinte de la mañana"),
        (t(12), "a las doce del mediodía"),
        (t(12, 30), "a las doce y media de la tarde"),
        (t(13), "a la una de la tarde"),
        (t(13, 30), "a la una y media de la tarde"),
        (t(15, 30), "a las tres y media de la tarde"),
        (t(16), "a las cuatro de la tarde"),
        (t(19), "a las siete de la noche"),
        (t(1), "a la una de la madrugada"),
    ],
)
def test_speak_time(clock: time, expected: str) -> None:
    assert speak_time(clock) == expected


def test_speak_datetime() -> None:
    assert speak_datetime(datetime(2026, 11, 23, 10, 0)) == (
        "el lunes 23 de noviembre a las diez de la mañana"
    )
    assert speak_datetime(datetime(2026, 12, 1, 13, 30)) == (
        "el martes primero de diciembre a la una y media de la tarde"
    )


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (d(11, 21), "hoy"),
        (d(11, 22), "mañana"),
        (d(11, 23), "pasado mañana"),
        (d(11, 24), "el martes 24 de noviembre"),
        (d(11, 20), "el viernes 20 de noviembre"),
    ],
)
def test_speak_relative(day: date, expected: str) -> None:
    assert speak_relative(day, SAT.date()) == expected


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 23, 10, 0),
        datetime(2026, 11, 24, 15, 30),
        datetime(2026, 11, 27, 13, 15),
        datetime(2026, 12, 1, 8, 45),
        datetime(2026, 11, 30, 12, 0),
    ],
)
def test_what_the_assistant_says_parses_back_to_the_same_moment(moment: datetime) -> None:
    found = parse_when(speak_datetime(moment), SAT)
    assert found is not None and found.as_datetime() == moment
    assert not found.hour_ambiguous


# --------------------------------------------------------------------------------- robustness

_WORDS = (
    "a las la el de del y menos cuarto media para mañana manana pasado hoy lunes martes "
    "viernes próximo que viene semana en tarde noche mediodía día dias 0 1 2 12 23 25 31 99 "
    "3:30 10.30 23/11 31/02 pm am no mejor noviembre febrero dos tres veinte mil un"
).split()


@given(st.lists(st.sampled_from(_WORDS), max_size=12), st.sampled_from([SAT, WED]))
@settings(max_examples=400, deadline=None)
def test_parse_when_never_raises_and_is_consistent(words: list[str], now: datetime) -> None:
    found = parse_when(" ".join(words), now)
    if found is not None:
        assert found.date is not None or found.time is not None or found.part_of_day
        assert found.date_end is None or (found.date is not None and found.date_end >= found.date)
        assert 0.0 < found.confidence <= 1.0
    is_correction(" ".join(words))


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_parse_when_survives_any_text(text: str) -> None:
    parse_when(text, SAT)
    is_correction(text)
