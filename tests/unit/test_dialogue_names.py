"""Names as callers say them, and as Whisper writes them."""

from __future__ import annotations

import pytest

from pipeline.brain.names import find_name, name_as_heard, name_in_answer


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Soy María Gómez, quiero sacar el pasaporte en Santiago", "María Gómez"),
        ("buenas, soy maría gómez, quiero sacar el pasaporte", "María Gómez"),
        ("Aló, buenas, le habla Ramón Vásquez.", "Ramón Vásquez"),
        ("Hola, mi nombre es Pedro Martínez. Necesito una cita", "Pedro Martínez"),
        (
            "quiero una cita a nombre de María Fernanda Rosario para el lunes",
            "María Fernanda Rosario",
        ),
        ("a nombre de María de los Ángeles Peña", "María de los Ángeles Peña"),
        ("soy de Santiago", None),
        ("soy menor de edad", None),
        ("soy diabético", None),
        ("Soy yo", None),
    ],
)
def test_a_name_introduced_in_a_longer_turn(text: str, name: str | None) -> None:
    assert find_name(text) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("María Fernández.", "María Fernández"),
        ("Sí, María Pérez, para servirle", "María Pérez"),
        ("José Rodríguez para servirle", "José Rodríguez"),
        ("claro que sí, Ana de la Cruz", "Ana de la Cruz"),
        ("la cita es a nombre de Pedro Santana", "Pedro Santana"),
        ("Ya no, ya no, Carlos, come.", "Carlos"),
        ("Vellamos, Carlos Gómez.", "Carlos Gómez"),
        ("Mi cédula es", None),
        ("ajá", None),
    ],
)
def test_the_name_in_an_answer_to_the_name_question(text: str, name: str | None) -> None:
    assert name_in_answer(text) == name


def test_a_name_as_heard_keeps_only_plausible_words() -> None:
    assert name_as_heard("cita xiomara ajá altagracia") == "Xiomara Altagracia"
    assert name_as_heard("ajá sí pues") is None


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Su inombre es José Rodríguez.", "José Rodríguez"),
        ("Anombre de Ana Martínez.", "Ana Martínez"),
        ("Al hombre de Ana Martínez", "Ana Martínez"),
        ("Minombre es Carlos Gómez", "Carlos Gómez"),
        ("Al hombre se ha ramatribes.", None),
    ],
)
def test_lead_words_the_line_glued_are_not_taken_for_the_name(text: str, name: str | None) -> None:
    """Heard in spoken calls: "Su inombre es José Rodríguez" was not understood and
    "Anombre de Ana Martínez" became the name "Anombre de Ana Martínez"."""
    assert name_in_answer(text) == name
