"""What a caller asks about a procedure — cost, requirements, duration, validity, place — as
questions word it, headings name it and passages state it.

Patterns apply to lower-case text without accents (:func:`fold`). They are ordinary Spanish
wordings, not phrases of one knowledge file: "¿cuánto cuesta…?", "¿qué necesito…?", "### Costo
de la renovación", "- Requisitos: …", "está listo en 5 días laborables".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from knowledge.text import fold_accents


@dataclass(frozen=True)
class Facet:
    """One kind of thing a caller asks about a procedure, as headings, questions and passages
    say it (patterns apply to lower-case text without accents)."""

    name: str
    heading: re.Pattern[str]
    question: re.Pattern[str]
    evidence: re.Pattern[str]  # a sentence or list item that states this facet
    lead: str  # first half of the clarifying question
    numeric: bool  # compared by its amounts, not its words
    hint: str  # words that point the spoken answer at the sentence stating it


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


FACETS: tuple[Facet, ...] = (
    Facet(
        "cost",
        _rx(r"\b(?:costos?|precios?|tarifas?)\b"),
        _rx(
            r"\b(?:cuest\w*|cost\w*|cobr\w*|precio\w*|pag(?:o|a|ar|an|ue)|valen?|tarifa\w*|"
            r"gratis|cuanto (?:es|sale|hay que))\b"
        ),
        _rx(r"rd\$|us\$|\bpesos\b|\bgratis\b|\bcuesta\b|\bcostos?:|\bsin costo\b"),
        "El costo depende del caso",
        True,
        "cuesta costo pesos gratis",
    ),
    Facet(
        "requirements",
        _rx(r"\brequisitos?\b"),
        _rx(
            r"\b(?:requisito\w*|necesit\w*|nesesit\w*|llev(?:o|ar|a|e)|papeles|papeleo|"
            r"documentos|piden|pide|traer|traigo|hace falta)\b"
        ),
        _rx(r"\brequisitos?:"),
        "Los requisitos dependen del caso",
        False,
        "requisitos necesita",
    ),
    Facet(
        "validity",
        _rx(r"\bvigencia\b"),
        _rx(r"\b(?:vigencia|vigente|vence|vencimiento|cuantos anos|valid[oa]|vale por)\b"),
        _rx(r"\bvigencia\b|\bvale por\b|\bvalido por\b"),
        "La vigencia depende del caso",
        True,
        "vigencia vale años válido",
    ),
    Facet(
        "duration",
        _rx(r"\b(?:duracion|tiempo|entrega)\b"),
        _rx(
            r"\b(?:tarda\w*|dura|duran|demora\w*|cuanto tiempo|que tiempo|cuantos dias|"
            r"list[oa]s?|entreg\w*)\b"
        ),
        _rx(
            r"\blist[oa]s? en\b|\bse entrega\b|\bentrega(?:n|do)? en\b|\bdura unos\b|"
            r"\bmismo dia\b|\b(?:duracion|entrega):"
        ),
        "El tiempo de entrega depende del caso",
        True,
        "listo lista entrega",
    ),
    Facet(
        "place",
        _rx(r"\bdonde\b"),
        _rx(r"\b(?:donde|en que oficinas?|en cual oficina)\b"),
        _rx(
            r"\bse (?:solicita|solicitan|hace|hacen|ofrece|ofrecen|tramita|tramitan) "
            r"(?:solo |solamente |unicamente )?en\b"
        ),
        "Depende del caso",
        False,
        "oficinas solicita hace",
    ),
)
_BY_NAME = {facet.name: facet for facet in FACETS}

PREPOSITIONS = {"de", "del", "para", "por", "en", "sobre"}
ARTICLES = {"el", "la", "los", "las", "un", "una", "su", "sus"}
AMOUNT = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")
UNIT = re.compile(r"(\d+) (dias|minutos|horas?|meses|anos)")
LABELLED_FACET = re.compile(
    r"^\s*[-*+•]\s*(?:costos?|requisitos|duracion|tiempo de entrega|vigencia)\s*:", re.MULTILINE
)
PIECES = re.compile(r"\n\s*[-*+•]\s+|\n\s*\d+[.)]\s+|(?<=[.!?])\s+|\n\s*\n")


def fold(text: str) -> str:
    """Lower case without accents: what the patterns here match."""
    return fold_accents(text.lower())


# "¿Cuánto dura el pasaporte?" asks how long the document is valid; "¿cuánto dura la cita?"
# how long the appointment takes.
_DOCUMENT_LASTS = re.compile(
    r"\b(?:cuanto|cuanto tiempo|por cuanto tiempo|que tiempo) (?:me |le )?duran? "
    r"(?:el|la|los|las|mi|su)\b(?! (?:cita|tramite|proceso|espera|entrega|atencion))|"
    r"\bcuanto tiempo (?:me |le )?(?:vale|valen|sirve|sirven|es valid[oa])\b|"
    r"\bpor cuanto tiempo\b|\bhasta cuando (?:vale|sirve|es valid[oa])\b"
)


def question_facet(query: str) -> Facet | None:
    """What a question asks about a procedure ("¿cuánto cuesta…?" → cost), if anything."""
    norm = fold(query)
    if _DOCUMENT_LASTS.search(norm):
        return _BY_NAME["validity"]
    return next((facet for facet in FACETS if facet.question.search(norm)), None)


def heading_facets(title: str) -> frozenset[str]:
    """Facets a section heading names: "Costo y tiempo de la renovación" → cost, duration."""
    norm = fold(title)
    return frozenset(facet.name for facet in FACETS if facet.heading.search(norm))


def facet_by_name(name: str | None) -> Facet | None:
    return _BY_NAME.get(name or "")
