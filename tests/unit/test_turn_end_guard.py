"""The transcript guard: never end a turn on an unfinished sentence or a half-dictated number."""

from __future__ import annotations

import pytest

from pipeline.turn_end_guard import (
    HOLD_MS,
    SLOT_HOLD_MS,
    judge_transcript,
    slot_from_prompt,
)


@pytest.mark.parametrize(
    "text",
    [
        "Quiero una cita para",
        "Quiero una cita para.",  # Whisper puts a full stop on anything
        "Es el certificado de",
        "Mi nombre es Juan y",
        "Lo que pasa es que",
        "Necesito renovar mi",
        "Para el martes o",
        "Eh, quiero",
        "Bueno, este",
    ],
)
def test_holds_on_words_that_need_a_continuation(text: str) -> None:
    d = judge_transcript(text)
    assert d.hold and d.reason == "connector" and d.min_silence_ms == HOLD_MS


@pytest.mark.parametrize(
    "text",
    [
        "Quiero una cita para el martes.",
        "Sí.",
        "Si.",  # Whisper's unaccented "Sí" alone
        "No, gracias.",
        "A las diez.",
        "El 15 de marzo.",
        "¿Qué?",
        "¿Cómo?",
        "¿A qué hora abren?",
        "Mi teléfono es 809 555 1234.",
        "Mi cédula es 001-1234567-8.",
        "Eso es todo, muchas gracias.",
    ],
)
def test_lets_complete_turns_end(text: str) -> None:
    d = judge_transcript(text)
    assert not d.hold, d


@pytest.mark.parametrize(
    "text",
    ["Mi cédula es cero cero uno", "Es el 809 555", "cuatro cero dos, dos tres", "001 1234"],
)
def test_holds_while_a_number_is_being_dictated(text: str) -> None:
    d = judge_transcript(text)
    assert d.hold and d.reason == "number" and d.digits >= 3


def test_trailing_off_and_empty_hold() -> None:
    assert judge_transcript("Quería saber si…").reason == "trailing_off"
    assert judge_transcript("Quería saber...").hold
    assert judge_transcript("  ").reason == "empty"


def test_slot_from_the_bots_question() -> None:
    assert slot_from_prompt("¿Me dice su número de cédula, por favor?") == "cedula"
    assert slot_from_prompt("¿A qué teléfono le podemos llamar?") == "phone"
    assert slot_from_prompt("¿Qué día le conviene?") is None
    assert slot_from_prompt(None) is None


def test_slot_aware_hold_is_longer_and_ends_when_complete() -> None:
    prompt = "Dígame su cédula, por favor."
    part = judge_transcript("Cero cero uno, uno dos tres cuatro", prompt=prompt)
    assert part.hold and part.reason == "slot_digits" and part.digits == 7
    assert part.min_silence_ms == SLOT_HOLD_MS > HOLD_MS
    # Ten digits end a phone number but not a cédula.
    ten = "Es 001 123 4567."
    assert judge_transcript(ten, slot="cedula").hold
    assert not judge_transcript(ten, slot="phone").hold
    assert not judge_transcript("00112345678", prompt=prompt).hold
    # Asked for digits, the caller says something else: no slot hold.
    assert not judge_transcript("No la tengo aquí.", prompt=prompt).hold
