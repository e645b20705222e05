"""The fixed sentences of the offline dialogue, listed for the voice to pre-render."""

from __future__ import annotations

from app.booking import CATALOG
from pipeline.brain import phrases
from pipeline.brain.dialogue import OfflineDialogueBrain
from pipeline.brain.phrases import sentences


def test_fixed_phrases_are_single_unique_sentences_including_the_common_ones() -> None:
    brain = OfflineDialogueBrain(catalog=CATALOG, office_name="Punto Ciudadano")
    fixed = brain.fixed_phrases()
    assert len(fixed) == len(set(fixed))
    assert all(sentences(s) == [s] for s in fixed)
    for expected in (
        "Buenos días, gracias por llamar a Punto Ciudadano.",
        "Le habla Taína, su asistente virtual.",
        phrases.HOW_CAN_I_HELP,
        phrases.ANYTHING_ELSE,
        "¿A nombre de quién hago la cita?",
        "¿Está correcto?",
        "Gracias por llamar a Punto Ciudadano.",
        "¡Que tenga un buen día!",
        "¿En qué oficina le queda mejor: Santo Domingo Centro, Santo Domingo Este, Santiago o "
        "La Romana?",
    ):
        assert expected in fixed, expected
    assert any(s.startswith("¿Para qué trámite es la cita?") for s in fixed)


def test_sentences_split_where_the_voice_splits() -> None:
    assert sentences("Disculpe, no le entendí. ¿Para qué día?") == [
        "Disculpe, no le entendí.",
        "¿Para qué día?",
    ]
    assert sentences("Muy bien. ¿Le puedo ayudar en algo más?") == [
        "Muy bien. ¿Le puedo ayudar en algo más?"  # too short to be said alone
    ]
