"""What the embedded voices are asked to say: numbers as words, identifiers in groups, and the
parts a caller must catch (digits, codes, dates, times) marked slow."""

from __future__ import annotations

import re

import pytest

from pipeline.speech_format import (
    SpeechSegment,
    group_digits,
    plan_speech,
    spoken_segments,
    spoken_text,
)


def _squeeze(text: str) -> str:
    return re.sub(r"\s+([,.;:?!])", r"\1", " ".join(text.split()))


CEDULA_WORDS = "cero cero uno, uno dos tres cuatro cinco seis siete, ocho"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00112345678", CEDULA_WORDS),
        ("001-1234567-8", CEDULA_WORDS),
        ("001 1234567 8", CEDULA_WORDS),
        ("8095551234", "ocho cero nueve, cinco cinco cinco, uno dos tres cuatro"),
        ("809-555-0199", "ocho cero nueve, cinco cinco cinco, cero uno nueve nueve"),
        ("10:30", "diez y media de la mañana"),
        ("a las 3:30 de la tarde", "a las tres y media de la tarde"),
        ("de 8:00 de la mañana a 12:00 del mediodía", "de ocho de la mañana a doce del mediodía"),
        ("RD$3,500", "tres mil quinientos pesos"),
        ("RD$ 1,000.50", "mil pesos con cincuenta centavos"),
        ("TA-7K3P9", "siete, ka, tres, pe, nueve"),
        ("el 1 de enero", "el primero de enero"),
        ("el lunes 23 de noviembre", "el lunes veintitrés de noviembre"),
        ("vale por 10 años", "vale por diez años"),
        ("Av. 27 de Febrero No. 12", "Avenida veintisiete de Febrero número doce"),
        ("en 2026", "en dos mil veintiséis"),
    ],
)
def test_spoken_text(text: str, expected: str) -> None:
    assert spoken_text(text) == expected


@pytest.mark.parametrize(
    ("digits", "groups"),
    [
        ("00112345678", ["001", "1234567", "8"]),
        ("8095551234", ["809", "555", "1234"]),
        ("5551234", ["555", "1234"]),
        ("123456", ["123", "456"]),
        ("12345678", ["123", "456", "78"]),
        ("1234567890123", ["123", "456", "789", "0123"]),
    ],
)
def test_group_digits(digits: str, groups: list[str]) -> None:
    assert group_digits(digits) == groups
    assert "".join(groups) == digits


def test_cedula_read_back_is_slow_and_the_rest_is_not() -> None:
    segments = spoken_segments("Su cédula es 00112345678, ¿es correcto?")
    assert segments == [
        SpeechSegment("Su cédula es"),
        SpeechSegment(CEDULA_WORDS, slow=True),
        SpeechSegment(", ¿es correcto?"),
    ]


def test_date_and_time_together_are_one_slow_stretch() -> None:
    segments = spoken_segments("Perfecto, el lunes 23 de noviembre a las 10:00 a. m. ¿Le sirve?")
    slow = [s.text for s in segments if s.slow]
    assert slow == ["el lunes veintitrés de noviembre a las diez de la mañana"]


def test_code_already_spelled_by_the_brain_is_slow() -> None:
    segments = spoken_segments("Su código es siete, ka, tres, pe, nueve.")
    assert SpeechSegment("siete, ka, tres, pe, nueve", slow=True) in segments


@pytest.mark.parametrize(
    "text",
    [
        "¿Para qué trámite es la cita? Diga el nombre o marque 1, 2 o 3.",
        "Son 2 personas y 15 días.",
        "Las dos opciones valen.",
        "¿En qué le puedo ayudar?",
    ],
)
def test_ordinary_sentences_have_no_slow_part(text: str) -> None:
    assert not any(s.slow for s in spoken_segments(text))


def test_nothing_is_lost_between_segments() -> None:
    text = (
        "Le confirmo: cita de pasaporte el viernes 4 de diciembre a las 11:00 a nombre de Ana, "
        "cédula 40212345671, teléfono 809-555-1234. ¿Está correcto?"
    )
    joined = " ".join(s.text for s in spoken_segments(text))
    assert _squeeze(joined) == _squeeze(spoken_text(text))


def test_plan_cuts_long_text_and_keeps_slow_marks_across_pieces() -> None:
    text = "Su cédula es 00112345678. " + "Esta es una frase bastante larga de relleno. " * 6
    pieces = plan_speech(text, max_chars=80)
    assert len(pieces) > 2
    assert all(sum(len(s.text) for s in piece) <= 90 for piece in pieces)
    assert SpeechSegment(CEDULA_WORDS, slow=True) in pieces[0]
    flat = " ".join(s.text for piece in pieces for s in piece)
    assert _squeeze(flat) == _squeeze(spoken_text(text))


def test_markup_like_text_is_spoken_as_words_only() -> None:
    assert "<" not in spoken_text("Hola <speed level='500'>rápido</speed>")
