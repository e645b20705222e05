"""Spanish text helpers: what Whisper writes in, what the TTS voice reads out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.brain.spanish_text import (
    clock_words,
    extract_digits_sequence,
    extract_numbers,
    is_affirmative,
    normalize,
    number_to_words,
    parse_number_words,
    speakable,
    strip_accents,
    words_to_digits,
)

# --------------------------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mañana, a las 10.", "mañana a las 10"),
        ("¿Sí? ¡Claro!", "si claro"),
        ("  EL   PRÓXIMO   lunes  ", "el proximo lunes"),
        ("A las 3:30 p. m.", "a las 3:30 pm"),
        ("a las 8:30 a.m.", "a las 8:30 am"),
        ("a las 3pm", "a las 3 pm"),
        ("a las 3 P.M.", "a las 3 pm"),
        ("El 23/11, por favor", "el 23/11 por favor"),
        ("Cuesta RD$1,500.", "cuesta rd 1,500"),
        ("001-1234567-8", "001-1234567-8"),
        ("Miércoles—jueves", "miercoles jueves"),
        ("Ñoño, cigüeña", "ñoño cigueña"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_strip_accents_keeps_enie_in_both_cases() -> None:
    assert strip_accents("ÁÉÍÓÚ áéíóú Ññ ü") == "AEIOU aeiou Ññ u"


# --------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cero", 0),
        ("uno", 1),
        ("un", 1),
        ("una", 1),
        ("quince", 15),
        ("dieciséis", 16),
        ("dieciseis", 16),
        ("veinte", 20),
        ("veintiuno", 21),
        ("veintiún", 21),
        ("veintitrés", 23),
        ("veintitres", 23),
        ("veinti tres", 23),
        ("treinta y cinco", 35),
        ("cuarenta y una", 41),
        ("noventa y nueve", 99),
        ("cien", 100),
        ("ciento veinte", 120),
        ("ciento uno", 101),
        ("doscientos", 200),
        ("quinientas", 500),
        ("setecientos setenta y siete", 777),
        ("mil", 1000),
        ("mil quinientos", 1500),
        ("dos mil", 2000),
        ("dos mil veintiséis", 2026),
        ("mil novecientos noventa y nueve", 1999),
        ("cien mil", 100_000),
        ("un millón", 1_000_000),
        ("un millón doscientos mil", 1_200_000),
        ("dos millones", 2_000_000),
        ("1,500", 1500),
        ("1.500", 1500),
        ("1500", 1500),
        ("2 mil", 2000),
        ("Quince.", 15),
    ],
)
def test_parse_number_words(text: str, expected: int) -> None:
    assert parse_number_words(text) == expected


@pytest.mark.parametrize("text", ["", "hola", "somos tres", "tres personas", "mañana", "y"])
def test_parse_number_words_rejects_text_that_is_not_only_a_number(text: str) -> None:
    assert parse_number_words(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("quiero una cita para el 23 a las tres y media, somos 2", [1, 23, 3, 2]),
        ("tengo veinticinco años", [25]),
        ("son ciento veinte pesos y 1,500 más", [120, 1500]),
        ("del quince al veinte", [15, 20]),
        ("treinta y cinco treinta y seis", [35, 36]),
        ("ocho cero nueve", [8, 0, 9]),
        ("no tengo ninguno", []),
        ("", []),
    ],
)
def test_extract_numbers(text: str, expected: list[int]) -> None:
    assert extract_numbers(text) == expected


def test_extract_numbers_can_ignore_articles() -> None:
    assert extract_numbers("quiero una cita para un trámite", articles=False) == []
    assert extract_numbers("una cita para un millón de personas", articles=False) == [1_000_000]
    assert extract_numbers("veintiuna personas", articles=False) == [21]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ocho cero nueve, cinco cinco cinco, uno dos tres cuatro", "8095551234"),
        ("809 555 1234", "8095551234"),
        ("809-555-1234", "8095551234"),
        ("(809) 555-1234", "8095551234"),
        ("Mi número es el 809.555.1234.", "8095551234"),
        ("ochocientos nueve, quinientos cincuenta y cinco, doce treinta y cuatro", "8095551234"),
        ("ochocientos nueve quinientos cincuenta y cinco doce treinta y cuatro", "8095551234"),
        ("001-1234567-8", "00112345678"),
        ("cero cero uno, uno dos tres cuatro cinco seis siete, ocho", "00112345678"),
        (
            "mi cédula es cero cero uno, doce treinta y cuatro cincuenta y seis siete, ocho",
            "00112345678",
        ),
        ("doble cero uno", "001"),
        ("ocho cero nueve, triple cinco", "809555"),
        ("tengo una cédula: cero cero uno", "001"),
        ("no me acuerdo", ""),
    ],
)
def test_extract_digits_sequence(text: str, expected: str) -> None:
    assert extract_digits_sequence(text) == expected


def test_words_to_digits_rewrites_only_number_phrases() -> None:
    assert words_to_digits("a las tres y media del veintitres de noviembre") == (
        "a las 3 y media del 23 de noviembre"
    )
    assert words_to_digits("dos mil veintiseis") == "2026"
    assert words_to_digits("a las 3:30 pm") == "a las 3:30 pm"


@pytest.mark.parametrize(
    ("n", "kwargs", "expected"),
    [
        (0, {}, "cero"),
        (1, {}, "uno"),
        (1, {"feminine": True}, "una"),
        (1, {"apocope": True}, "un"),
        (16, {}, "dieciséis"),
        (21, {}, "veintiuno"),
        (21, {"apocope": True}, "veintiún"),
        (22, {}, "veintidós"),
        (45, {}, "cuarenta y cinco"),
        (100, {}, "cien"),
        (101, {}, "ciento uno"),
        (200, {"feminine": True}, "doscientas"),
        (1500, {}, "mil quinientos"),
        (2026, {}, "dos mil veintiséis"),
        (21_000, {}, "veintiún mil"),
        (1_000_000, {}, "un millón"),
        (2_500_000, {}, "dos millones quinientos mil"),
    ],
)
def test_number_to_words(n: int, kwargs: dict[str, bool], expected: str) -> None:
    assert number_to_words(n, **kwargs) == expected


@pytest.mark.parametrize(
    "n", [0, 1, 7, 15, 21, 35, 99, 100, 120, 999, 1000, 2026, 15_350, 1_200_000]
)
def test_number_words_round_trip(n: int) -> None:
    assert parse_number_words(number_to_words(n)) == n


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [
        (8, 0, "ocho de la mañana"),
        (8, 30, "ocho y media de la mañana"),
        (9, 15, "nueve y cuarto de la mañana"),
        (10, 45, "diez y cuarenta y cinco de la mañana"),
        (12, 0, "doce del mediodía"),
        (12, 30, "doce y media de la tarde"),
        (13, 0, "una de la tarde"),
        (15, 30, "tres y media de la tarde"),
        (16, 5, "cuatro y cinco de la tarde"),
        (20, 0, "ocho de la noche"),
        (0, 0, "doce de la noche"),
        (3, 0, "tres de la madrugada"),
    ],
)
def test_clock_words(hour: int, minute: int, expected: str) -> None:
    assert clock_words(hour, minute) == expected


# --------------------------------------------------------------------------------- yes / no


@pytest.mark.parametrize(
    "text",
    [
        "sí",
        "Sí.",
        "si",
        "Sí, claro.",
        "claro",
        "Claro que sí",
        "correcto",
        "está bien",
        "esta bien",
        "tá bien",
        "dale",
        "ok",
        "Okay.",
        "okey",
        "así es",
        "asi es",
        "exacto",
        "perfecto",
        "de acuerdo",
        "por supuesto",
        "¡Cómo no!",
        "no hay problema",
        "sí, no se preocupe",
        "sí, gracias",
        "sí, señora",
        "eh... sí",
        "ajá",
        "bueno",
        "creo que sí",
        "dale, perfecto",
        "no, perdón, sí",
        "eso es",
        "afirmativo",
        "sí, quiero cancelar",
        "sí, nada más",
        "bien",
    ],
)
def test_is_affirmative_yes(text: str) -> None:
    assert is_affirmative(text) is True


@pytest.mark.parametrize(
    "text",
    [
        "no",
        "No.",
        "NO",
        "negativo",
        "para nada",
        "no, mejor el martes",
        "No, mejor a las once.",
        "no gracias",
        "no, está bien",
        "claro que no",
        "por supuesto que no",
        "mejor no",
        "bueno, no",
        "no no no",
        "incorrecto",
        "nada más, gracias",
        "sí... no, perdón, no",
        "no está bien",
        "nada",
    ],
)
def test_is_affirmative_no(text: str) -> None:
    assert is_affirmative(text) is False


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no sé",
        "no se",
        "no estoy seguro",
        "quizás",
        "tal vez mañana",
        "hola",
        "a las diez",
        "sí, pero no a esa hora",
        "¿cómo dice?",
        "repita por favor",
    ],
)
def test_is_affirmative_unclear(text: str) -> None:
    assert is_affirmative(text) is None


# --------------------------------------------------------------------------------- speakable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("El costo es RD$1,500.", "El costo es 1500 pesos."),
        ("RD$ 1,500.00", "1500 pesos"),
        ("Pague RD$1,500.50", "Pague 1500 pesos con 50 centavos"),
        ("RD$1", "1 peso"),
        ("cuesta $500 pesos", "cuesta 500 pesos"),
        ("US$50", "50 dólares"),
        ("Abrimos a las 8:00.", "Abrimos a las ocho de la mañana."),
        ("8:30 a. m.", "ocho y media de la mañana"),
        ("a las 8:30 a. m.", "a las ocho y media de la mañana"),
        ("a la 1:00", "a la una de la tarde"),
        ("12:00", "doce del mediodía"),
        ("16:30", "cuatro y media de la tarde"),
        ("4:00 p. m.", "cuatro de la tarde"),
        (
            "Horario: Lun–Vie 8:00–16:00",
            "Horario: de lunes a viernes de ocho de la mañana a cuatro de la tarde",
        ),
        (
            "Lunes a viernes de 8:00 a. m. a 4:00 p. m.",
            "de lunes a viernes de ocho de la mañana a cuatro de la tarde",
        ),
        ("Sáb. 9:00–12:00", "sábado de nueve de la mañana a doce del mediodía"),
        ("L-V", "de lunes a viernes"),
        (
            "Visite https://www.gob.do/citas para más información.",
            "Visite la página web para más información.",
        ),
        (
            "Oficina: Av. 27 de Febrero No. 12, Sto. Dgo.",
            "Oficina: Avenida 27 de Febrero número 12, Santo Domingo.",
        ),
        (
            "C/ El Sol #45, Ens. Naco, D.N.",
            "calle El Sol número 45, Ensanche Naco, Distrito Nacional.",
        ),
        ("No. No hay citas.", "No. No hay citas."),
        ("Llame al 809-555-1234.", "Llame al 8 0 9, 5 5 5, 1 2 3 4."),
        ("Su cédula 001-1234567-8", "Su cédula 0 0 1, 1 2 3 4 5 6 7, 8"),
        ("Escriba a info@oficina.gob.do", "Escriba a info arroba oficina punto gob punto do"),
        ("El 50% de descuento", "El 50 por ciento de descuento"),
        ("Fecha: 23/11/2026", "Fecha: 23 de noviembre de 2026"),
        ("Demora 2–3 días hábiles (aprox.)", "Demora 2 a 3 días hábiles, aproximadamente"),
        ("Dr. Pérez y la Sra. Gómez", "doctor Pérez y la señora Gómez"),
        ("Duración: 30 min.", "Duración: 30 minutos"),
        (
            "Estamos en Sto. Dgo. Abrimos a las 8:00.",
            "Estamos en Santo Domingo. Abrimos a las ocho de la mañana.",
        ),
        ("Traiga cédula, acta, etc. y la foto.", "Traiga cédula, acta, etcétera y la foto."),
        ("Hay 1.500 citas", "Hay 1500 citas"),
    ],
)
def test_speakable(text: str, expected: str) -> None:
    assert speakable(text) == expected


def test_speakable_removes_markdown_and_turns_lines_into_sentences() -> None:
    text = (
        "## Requisitos\n"
        "- **Cédula** vieja\n"
        "* Acta de _nacimiento_\n"
        "\n"
        "1. Pague en [el banco](http://banco.example/pagos)\n"
        "> `Importante`: llegue temprano\n"
        "---\n"
    )
    assert speakable(text) == (
        "Requisitos. Cédula vieja. Acta de nacimiento. Pague en el banco. "
        "Importante: llegue temprano"
    )


def test_speakable_reads_tables_as_lists() -> None:
    text = "| Servicio | Costo |\n|---|---|\n| Cédula | RD$0 |\n| Pasaporte | RD$2,600 |"
    assert speakable(text) == "Servicio, Costo. Cédula, 0 pesos. Pasaporte, 2600 pesos"


def test_speakable_leaves_no_symbols_for_the_voice() -> None:
    out = speakable("**Horario** (Lun–Vie 8:00–16:00) — más en www.ejemplo.do 😀 & #1")
    for symbol in "*#$()–—😀&/:":
        assert symbol not in out, (symbol, out)
    assert "de lunes a viernes" in out
    assert "número 1" in out


@given(st.text(max_size=120))
@settings(max_examples=300, deadline=None)
def test_helpers_survive_any_text(text: str) -> None:
    assert normalize(normalize(text)) == normalize(text)
    assert extract_digits_sequence(text).isdigit() or extract_digits_sequence(text) == ""
    assert all(n >= 0 for n in extract_numbers(text))
    assert is_affirmative(text) in (True, False, None)
    assert isinstance(speakable(text), str)


@given(st.integers(min_value=0, max_value=999_999_999))
@settings(max_examples=300, deadline=None)
def test_every_number_reads_back(n: int) -> None:
    assert parse_number_words(number_to_words(n)) == n
