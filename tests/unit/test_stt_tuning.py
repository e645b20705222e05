"""Whisper's tuning to the office: the catalog prompt, and the prompt-echo guard around it."""

from __future__ import annotations

import pytest

from app.booking import CATALOG
from app.services import whisper_settings
from app.settings import Settings
from pipeline.brain.heard import whisper_prompt
from pipeline.stt import is_hallucination, normalize_text

PROMPT = whisper_prompt(CATALOG)


def test_prompt_names_every_service_office_and_weekday() -> None:
    text = normalize_text(PROMPT)
    for service in CATALOG.services:
        assert normalize_text(service.spoken) in text
    for office in CATALOG.offices:
        assert normalize_text(office.short) in text
    for day in ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado"):
        assert day in text
    assert text.startswith("si no correcto")  # short answers first: a lone "sí" stays "sí"


def test_prompt_fits_whisper_prompt_window() -> None:
    # faster-whisper keeps the last 223 tokens; Spanish runs under 2 tokens per word.
    assert len(PROMPT.split()) * 2 < 223
    assert len(whisper_prompt(CATALOG, months=True, full_names=True).split()) * 2 < 223


@pytest.mark.parametrize(
    "answer",
    [
        "Cédula en Santo Domingo Centro el lunes",
        "Para la cédula, en Santiago, el martes",
        "Licencia de conducir en La Romana el viernes",
        "El lunes o el martes en Santo Domingo Este",
        "Sí, correcto, gracias, el lunes en Santiago",
        "Quiero una cita para el pasaporte en Santiago",
    ],
)
def test_real_answers_made_of_prompt_words_are_kept(answer: str) -> None:
    assert not is_hallucination(answer, PROMPT)


@pytest.mark.parametrize(
    "echo",
    [
        "Cédula, pasaporte, licencia de conducir, actas del estado civil.",
        "Santo Domingo Centro, Santo Domingo Este, Santiago, La Romana.",
        "Lunes, martes, miércoles, jueves, viernes, sábado.",
        "Pasaporte, cédula, licencia de conducir, Santiago, La Romana, lunes.",
    ],
)
def test_prompt_echoes_are_dropped(echo: str) -> None:
    assert is_hallucination(echo, PROMPT)


def test_whisper_settings_follow_the_settings() -> None:
    kwargs = whisper_settings(Settings(stt_beam_size=3, stt_hotwords="apostilla"))
    assert kwargs["beam_size"] == 3
    assert kwargs["hotwords"] == "apostilla"
    assert kwargs["language"] == "es"
    default = whisper_settings(Settings())
    assert default["prompt"]  # the office's words prime the recogniser by default
