"""The few answers the offline brain knows by heart, for when no knowledge base is wired in
(unit tests, a broken index): hours, addresses and how to get an appointment. They restate
``knowledge_data/oficinas.md`` and ``citas.md``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAQ", "Answer", "faq_answer"]


@dataclass(frozen=True)
class Answer:
    keywords: tuple[str, ...]  # any of these normalised words or phrases
    text: str
    source: str


FAQ: tuple[Answer, ...] = (
    Answer(
        ("hora", "horario", "abren", "abre", "cierran", "cierra", "atienden"),
        "Nuestras oficinas atienden de lunes a viernes, de ocho de la mañana a cuatro de la "
        "tarde. Las de Santo Domingo Centro y Santiago también abren los sábados, de ocho de la "
        "mañana a doce del mediodía.",
        "oficinas.md",
    ),
    Answer(
        ("direccion", "donde queda", "donde estan", "ubicad", "ubicacion", "como llego"),
        "La oficina principal queda en la avenida 27 de Febrero número 415, en el Ensanche "
        "Naco, Santo Domingo. También tenemos oficinas en Santo Domingo Este, Santiago y La "
        "Romana.",
        "oficinas.md",
    ),
    Answer(
        ("cita", "turno", "agendar", "reservar"),
        "Las citas son gratis y se dan de lunes a sábado, desde el día siguiente y hasta con "
        "treinta días de anticipación.",
        "citas.md",
    ),
)


def faq_answer(norm: str) -> Answer | None:
    """The answer with most keyword hits in normalised text, if any."""
    padded = f" {norm} "
    best: tuple[int, Answer] | None = None
    for answer in FAQ:
        hits = sum(1 for k in answer.keywords if f" {k}" in padded)
        if hits and (best is None or hits > best[0]):
            best = (hits, answer)
    return best[1] if best else None
