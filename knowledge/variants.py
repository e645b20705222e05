"""Which variant of a procedure a caller asks about, and when to ask back instead.

Many procedures come in variants: a first passport, a renewal, a minor's passport; a first
cédula, a renewal, a duplicate. Their requirements and fees differ, so answering "¿qué necesito
para el pasaporte?" from whichever passage BM25 ranks first is a coin toss. The knowledge files
already say what the variants are: a document (``# Pasaporte``) has second-level sections
(``## Renovación del pasaporte``), and a procedure's facets are third-level sections
(``### Requisitos para renovar el pasaporte``, ``### Costo …``) or labelled items
("- Costo: RD$600."). :class:`~knowledge.outline.Outline` reads that structure from the
indexed sections and :mod:`knowledge.facets` knows how facets are asked and stated, so a new
knowledge file written the same way gets variants without any code or word list.

:func:`choose` then decides, for a question and its retrieved passages:

a. the question names a variant ("renovar", "mi hijo" → menor, "primera vez") → answer from
   that variant's section for what was asked (cost, requirements, duration, validity);
b. it does not, and the variants disagree on what was asked → a short clarifying question with
   two or three option labels taken from the headings ("¿primera vez, renovación o menores de
   edad?"); appending an option to the question lands on that variant (case a);
c. the variants agree, or one section covers them all ("Costos y vigencia del pasaporte") →
   answer.

A question that names no procedure ("¿cuánto cuesta?") asks which one first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from knowledge.facets import (
    AMOUNT,
    FACETS,
    PIECES,
    UNIT,
    Facet,
    facet_by_name,
    fold,
    heading_facets,
    question_facet,
)
from knowledge.outline import Branch, Document, Outline, Section
from knowledge.text import SpanishAnalyzer

__all__ = [
    "FACETS",
    "Choice",
    "Clarify",
    "Facet",
    "Outline",
    "Section",
    "choose",
    "facet_by_name",
    "heading_facets",
    "question_facet",
]

MAX_OPTIONS = 3
# Two requirement lists "agree" when this share of the shorter one's words is in the other.
AGREEMENT = 0.8


@dataclass(frozen=True)
class Clarify:
    """A question that asks which variant the caller means, and its options in order."""

    question: str
    options: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"question": self.question, "options": list(self.options)}


@dataclass(frozen=True)
class Choice:
    """What to answer from (``section``), or what to ask first (``clarify``)."""

    section: Section | None
    clarify: Clarify | None = None
    facet: str | None = None
    variant: str | None = None  # label of the variant answered, when one was picked
    source: str | None = None  # the document the question is about


def join_options(options: Sequence[str]) -> str:
    """ "a, b o c" (Spanish "o" before the last option)."""
    if len(options) == 1:
        return options[0]
    return ", ".join(options[:-1]) + " o " + options[-1]


def clarifying_question(facet: Facet, options: Sequence[str]) -> str:
    """ "Los requisitos dependen del caso: ¿primera vez, renovación o menores de edad?" """
    return f"{facet.lead}: ¿{join_options(options)}?"


def choose(
    query: str,
    hits: Sequence[Any],
    outline: Outline,
) -> Choice:
    """Pick the passage that answers ``query`` among ``hits`` (best first), or a question.

    ``hits`` need ``source``, ``heading`` and ``text`` (``knowledge.Hit`` or alike).
    """
    if not hits:
        return Choice(None)
    analyzer = outline.analyzer
    terms = set(analyzer.query_terms(query))
    facet = question_facet(query)
    facet_name = facet.name if facet else None
    document = _focus(hits, query, outline)
    if document is None:
        return Choice(_as_section(hits[0], outline), facet=facet_name)
    if facet is not None and not _topic_terms(query, facet, analyzer):
        # "¿Cuánto cuesta?" with no procedure named: ask which one first.
        which = _which_procedure(facet, hits, outline)
        if which is not None:
            return which
    doc_hits = [h for h in hits if h.source == document.source]
    top = _as_section(doc_hits[0], outline)
    rank = _branch_rank(document, doc_hits)
    if not document.procedural:
        return _plain(document, top, facet, _named(document, terms, rank))

    opposed = {_OPPOSITES[t] for t in terms if t in _OPPOSITES}
    named = _named(document, terms, rank, frozenset(opposed))
    if named is not None:
        section = named.facet_section(facet) if facet else None
        if section is None and facet is not None and named.is_procedure:
            # The variant has no word on this ("¿cuánto tarda el pasaporte de un menor?"): the
            # document's section for it covers every variant. A branch that is no procedure
            # ("Visas", "Multas de tránsito") answers for itself: "no tramitamos visas".
            section = document.general_section(facet) or _agreed(document, facet, analyzer)
        if section is None and facet is None:
            # Asked about the variant itself ("se me perdió la cédula"): its introduction.
            section = next((s for s in named.sections if len(s.parts) == 2), None)
        if section is None:
            section = next(
                (_as_section(h, outline) for h in doc_hits if document.branch(h.heading) is named),
                named.sections[0] if named.sections else top,
            )
        return Choice(section, facet=facet_name, variant=named.label)

    if facet is None:
        return Choice(top)
    general = document.general_section(facet)
    if general is not None:
        return Choice(general, facet=facet_name)
    candidates = [b for b in document.variants if b.facet_section(facet) is not None]
    if not candidates:
        return Choice(top, facet=facet_name)
    sections = [b.facet_section(facet) for b in candidates]
    # "Para un adulto" rules out the variant for minors.
    kept = [b for b in candidates if not (b.terms & opposed)]
    if kept and len(kept) < len(candidates):
        candidates = kept
        sections = [b.facet_section(facet) for b in candidates]
    # "¿Tengo que llevar fotos para el pasaporte?": only the variants that mention fotos.
    specific = _specific_terms(query, facet, document, analyzer)
    if specific:
        mentioning = [
            b
            for b, s in zip(candidates, sections, strict=True)
            if s is not None and specific & set(analyzer.tokenize(_facet_text(s, facet)))
        ]
        if mentioning and len(mentioning) < len(candidates):
            candidates = mentioning
            sections = [b.facet_section(facet) for b in candidates]
    stated = [s for s in sections if s is not None]
    if len(candidates) == 1 or _agree(stated, facet, document, analyzer):
        # The variant that says the most ("30 minutos, 10 días") covers the others.
        said = {s.heading: len(facts(s, facet, document, analyzer)) for s in stated}
        chosen = max(stated, key=lambda s: (said[s.heading], s == top))
        return Choice(chosen, facet=facet_name)
    offered = sorted(candidates, key=lambda b: (rank.get(b.title, len(hits)), b.order))
    offered = sorted(offered[:MAX_OPTIONS], key=lambda b: b.order)
    options = tuple(b.label for b in offered)
    question = Clarify(clarifying_question(facet, options), options)
    return Choice(None, question, facet_name, source=document.source)


def _plain(document: Document, top: Section, facet: Facet | None, named: Branch | None) -> Choice:
    """A document that is not a procedure in variants (offices, FAQ): the best passage, unless
    that is only an overview (the introduction, or a section on one facet for everything, as
    "Dónde se hace cada servicio") and a section answers better: the one the question names
    ("…la oficina de Santiago") or the one for what it asks ("¿cuánto cobran…?" → "Costo …")."""
    facet_name = facet.name if facet else None
    top_branch = document.branch(top.heading)
    overview = len(top.parts) == 1 or (top_branch is not None and top_branch.general)
    if overview and named is not None and named.sections:
        own = next((s for s in named.sections if len(s.parts) == 2), named.sections[0])
        return Choice(own, facet=facet_name, variant=named.label)
    top_facets = heading_facets(top.title)
    if facet is not None and top_facets and facet.name not in top_facets:
        # "¿Cuánto tiempo es válido el certificado?" ranked the section on its cost first.
        general = document.general_section(facet)
        if general is not None:
            return Choice(general, facet=facet_name)
    if facet is not None and not _states(top, facet):
        # "Si pido un acta de nacimiento, ¿cuándo me la entregan?": "Acta de nacimiento" says
        # who may ask for it; "Tiempo de entrega de las actas" says when.
        naming = document.sections_naming(facet)
        stating = document.general_section(facet) or (naming[0] if len(naming) == 1 else None)
        if stating is not None:
            return Choice(stating, facet=facet_name)
    return Choice(top, facet=facet_name)


# Requirements in prose ("Para pedirla necesita la cédula…"), not only as a labelled list.
_REQUIREMENTS_PROSE = re.compile(r"\bnecesitas?\b|\btraiga\b|\bhay que (?:traer|presentar)\b")


def _states(section: Section, facet: Facet) -> bool:
    """Does a section say anything about ``facet`` (by its heading or its text)?"""
    text = fold(section.text)
    if facet.name == "requirements" and _REQUIREMENTS_PROSE.search(text):
        return True
    return facet.name in heading_facets(section.title) or bool(facet.evidence.search(text))


def _topic_terms(query: str, facet: Facet, analyzer: SpanishAnalyzer) -> set[str]:
    """What a question is about beyond the facet it asks: {} for "¿cuánto cuesta?"."""
    words = [
        w
        for w in re.findall(r"\w+", query)
        if not facet.question.search(fold(w)) and not _GETTING.match(fold(w))
    ]
    return set(analyzer.tokenize(" ".join(words)))


def _which_procedure(facet: Facet, hits: Sequence[Any], outline: Outline) -> Choice | None:
    """ "Los requisitos dependen del trámite: ¿pasaporte, cédula o licencia?" over the
    procedures in variants found for the question, best-ranked first."""
    sources: list[str] = []
    for hit in hits:
        document = outline.documents.get(hit.source)
        if document is not None and document.procedural and hit.source not in sources:
            sources.append(hit.source)
    for document in outline.documents.values():  # the others, in file order
        if document.procedural and document.source not in sources:
            sources.append(document.source)
    if len(sources) < 2:
        return None
    options = tuple(_fold_title(outline.documents[s].title) for s in sources[:MAX_OPTIONS])
    lead = facet.lead.replace("del caso", "del trámite")
    question = Clarify(f"{lead}: ¿{join_options(options)}?", options)
    return Choice(None, question, facet.name, source=sources[0])


def _fold_title(title: str) -> str:
    """A procedure's spoken name: the first word of its title ("Cédula de identidad y
    electoral" → "cédula")."""
    first = title.split()[0].strip(",")
    return first[:1].lower() + first[1:]


def _specific_terms(
    query: str, facet: Facet, document: Document, analyzer: SpanishAnalyzer
) -> set[str]:
    """The words of a question beyond its topic and its facet ("fotos" in "¿tengo que llevar
    fotos para el pasaporte?")."""
    words = [
        w
        for w in re.findall(r"\w+", query)
        if not facet.question.search(fold(w)) and not _GETTING.match(fold(w))
    ]
    return set(analyzer.tokenize(" ".join(words))) - document.terms


# Words that rule a variant out: an adult's case is not the minors' variant.
_OPPOSITES = {"adult": "menor", "mayor": "menor", "grand": "menor"}

# Verbs for getting a document say nothing about which variant: "sacar", "pedir", "tramitar".
_GETTING = re.compile(r"(?:sac|ped|pid|solicit|tramit|hac|hag|obten|obtuv|consegu|consig)\w*$")


def _facet_text(section: Section, facet: Facet) -> str:
    """What a section says about ``facet``: all of it when its heading names the facet,
    otherwise only its sentences and items that state it."""
    if facet.name in heading_facets(section.title):
        return section.text
    pieces = PIECES.split(section.text)
    return " ".join(p for p in pieces if p.strip() and facet.evidence.search(fold(p)))


def _as_section(hit: Any, outline: Outline) -> Section:
    known = outline.section(hit.source, hit.heading)
    return known or Section(hit.source, hit.heading, hit.text, getattr(hit, "node_id", ""))


def _focus(hits: Sequence[Any], query: str, outline: Outline) -> Document | None:
    """The document the question is about: the one whose title the caller said ("…el
    pasaporte" → Pasaporte) even when a passage of another document that only mentions the
    passport ranks first; otherwise the best-ranked one.

    Titles of procedures in variants always count. Other titles ("Citas", "Actas") count only
    when the best passage's heading shares no word with the question: "la cita" is said in
    passing in many questions ("me cobran por conseguirme la cita" is about "Cobros por
    teléfono"), but "¿cuánto cuesta el acta urgente?" is not about the passport's "Costos".
    Only words said count, not words implied by them ("papeles" implies "documentos", which is
    in the title of the apostille document)."""
    said = set(outline.analyzer.tokenize(query))
    accidental = not (said & set(outline.analyzer.tokenize(hits[0].heading))) if hits else True
    best: tuple[int, int] | None = None
    focus: Document | None = None
    for index, hit in enumerate(hits):
        document = outline.documents.get(hit.source)
        if document is None:
            continue
        named = len(document.terms & said) if document.procedural or accidental else 0
        key = (-named, index)
        if best is None or key < best:
            best, focus = key, document
    return focus


def _branch_rank(document: Document, doc_hits: Sequence[Any]) -> dict[str, int]:
    rank: dict[str, int] = {}
    for index, hit in enumerate(doc_hits):
        branch = document.branch(hit.heading)
        if branch is not None:
            rank.setdefault(branch.title, index)
    return rank


def _named(
    document: Document, terms: set[str], rank: dict[str, int], opposed: frozenset[str] = frozenset()
) -> Branch | None:
    """The variant the question names, if any: most of its distinguishing words, then the
    best-ranked; never one the question rules out ("mayor de edad" is not "menores de edad")."""
    variants = [b for b in document.variants if not (b.terms & opposed)]
    scored = [(len(_matching(b.terms, terms)), b) for b in variants]
    scored = [(n, b) for n, b in scored if n]
    if not scored:
        return None
    scored.sort(key=lambda nb: (-nb[0], rank.get(nb[1].title, 1_000), nb[1].order))
    return scored[0][1]


def _matching(branch_terms: frozenset[str], terms: set[str]) -> set[str]:
    return {t for t in branch_terms if t in terms}


def _agreed(document: Document, facet: Facet, analyzer: SpanishAnalyzer) -> Section | None:
    """The variants' section on ``facet`` when they all say the same, else None."""
    stated = [s for b in document.variants if (s := b.facet_section(facet)) is not None]
    if not stated or not _agree(stated, facet, document, analyzer):
        return None
    return max(stated, key=lambda s: len(facts(s, facet, document, analyzer)))


def facts(section: Section, facet: Facet, document: Document, analyzer: SpanishAnalyzer) -> set:
    """What a section says about ``facet``, comparable between variants: amounts of money for
    the cost, lengths of time for durations, content words otherwise."""
    key = (section.source, section.heading, facet.name)
    cached = _FACTS.get(key)
    if cached is None or cached[0] != section.text:
        cached = (section.text, frozenset(_facts(section, facet, document, analyzer)))
        if len(_FACTS) > 10_000:
            _FACTS.clear()
        _FACTS[key] = cached
    return set(cached[1])


_FACTS: dict[tuple[str, str, str], tuple[str, frozenset[str]]] = {}


def _facts(section: Section, facet: Facet, document: Document, analyzer: SpanishAnalyzer) -> set:
    pieces = [p for p in PIECES.split(section.text) if p.strip()]
    if facet.numeric:
        found: set[str] = set()
        for piece in pieces:
            norm = fold(piece)
            if not facet.evidence.search(norm):
                continue
            if facet.name == "cost":  # amounts of money; "gratis" is an amount too
                found |= {a.replace(",", "") for a in AMOUNT.findall(norm)}
                if "gratis" in norm or "sin costo" in norm:
                    found.add("gratis")
            else:  # lengths of time: "45 minutos", "el mismo día"
                found |= {f"{n} {u.rstrip('s')}" for n, u in UNIT.findall(norm)}
                if "mismo dia" in norm:
                    found.add("mismo dia")
        return found
    return set(analyzer.tokenize(section.text)) - document.terms


def _agree(
    sections: list[Section], facet: Facet, document: Document, analyzer: SpanishAnalyzer
) -> bool:
    """Do all variants say the same about ``facet``? Amounts must be contained one in the
    other (a renewal that omits the appointment's length still agrees); words must overlap
    by :data:`AGREEMENT` of the shorter list."""
    said = [facts(s, facet, document, analyzer) for s in sections]
    for i, a in enumerate(said):
        for b in said[i + 1 :]:
            if not a or not b:
                return False
            if facet.numeric:
                if not (a <= b or b <= a):
                    return False
            elif len(a & b) / min(len(a), len(b)) < AGREEMENT:
                return False
    return True
