"""The structure of a knowledge base: documents, their variants and their facets.

A document (``# Pasaporte``) has second-level sections, its branches: a variant of the
procedure (``## Renovación del pasaporte``) or a general section that names only facets
(``## Costos y vigencia del pasaporte``). A variant's facets are third-level sections
(``### Requisitos para renovar el pasaporte``) or labelled items (``- Costo: RD$600.``).
:class:`Outline` reads this from the heading paths the chunker keeps on every section.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from knowledge.chunking import HEADING_SEPARATOR
from knowledge.facets import (
    ARTICLES,
    LABELLED_FACET,
    PREPOSITIONS,
    Facet,
    fold,
    heading_facets,
)
from knowledge.text import SpanishAnalyzer, default_analyzer


@dataclass(frozen=True)
class Section:
    """One section of a knowledge file (split pieces of one heading merged back)."""

    source: str
    heading: str
    text: str
    node_id: str = ""

    @property
    def parts(self) -> list[str]:
        return self.heading.split(HEADING_SEPARATOR)

    @property
    def title(self) -> str:
        return self.parts[-1]


@dataclass
class Branch:
    """A second-level section of a document with everything under it: one variant of the
    document's procedure ("Renovación del pasaporte") or a general section ("Costos y
    vigencia del pasaporte", a heading that names only facets)."""

    source: str
    title: str
    order: int
    sections: list[Section] = field(default_factory=list)
    terms: frozenset[str] = frozenset()  # what tells it apart from its siblings
    label: str = ""
    general: bool = False
    is_procedure: bool = False  # has facets of its own (set once by the outline)

    @property
    def is_variant(self) -> bool:
        return not self.general and bool(self.terms)

    def has_facets(self) -> bool:
        """Has facets of its own: sub-sections ("### Costo") or labelled items ("- Costo:")."""
        if any(len(s.parts) > 2 and heading_facets(s.title) for s in self.sections):
            return True
        return any(LABELLED_FACET.search(fold(s.text)) for s in self.sections)

    def facet_section(self, facet: Facet) -> Section | None:
        """The section of this branch that states ``facet``: a sub-section whose heading names
        it, a branch heading that names it, or a branch whose own text states it."""
        for section in self.sections:
            if len(section.parts) > 2 and facet.name in heading_facets(section.title):
                return section
        own = self.sections[0] if self.sections and len(self.sections[0].parts) == 2 else None
        if own is None:
            return None
        if facet.name in heading_facets(own.title):
            return own
        # Its own text states the facet ("- Costo: RD$600.", "La licencia vale por 4 años").
        if facet.evidence.search(fold(own.text)):
            return own
        return None


@dataclass
class Document:
    """A knowledge file: its title, its introduction and its branches in file order."""

    source: str
    title: str
    terms: frozenset[str]
    intro: Section | None = None
    branches: list[Branch] = field(default_factory=list)
    # Describes a procedure in variants: two or more branches have facets of their own. Other
    # documents (offices, FAQ) are answered from the best passage as it is.
    procedural: bool = False

    def branch(self, heading: str) -> Branch | None:
        parts = heading.split(HEADING_SEPARATOR)
        if len(parts) < 2:
            return None
        return next((b for b in self.branches if b.title == parts[1]), None)

    @property
    def variants(self) -> list[Branch]:
        return [b for b in self.branches if b.is_variant]

    def general_section(self, facet: Facet) -> Section | None:
        """A section that states ``facet`` for the whole document (covering every variant): a
        branch whose heading names only facets, or the introduction if it states it ("El
        pasaporte se solicita solo en dos oficinas")."""
        for branch in self.branches:
            if branch.general and facet.name in heading_facets(branch.title):
                return branch.sections[0]
        if self.intro is not None and facet.evidence.search(fold(self.intro.text)):
            return self.intro
        return None

    def sections_naming(self, facet: Facet) -> list[Section]:
        return [
            s for b in self.branches for s in b.sections if facet.name in heading_facets(s.title)
        ]


class Outline:
    """The documents of a knowledge base as variants and facets, read from heading paths."""

    def __init__(self, sections: Iterable[Section], analyzer: SpanishAnalyzer | None = None):
        self.analyzer = analyzer or default_analyzer()
        merged: dict[tuple[str, str], Section] = {}
        for section in sections:
            key = (section.source, section.heading)
            if key in merged:  # a long section split into pieces: one section again
                first = merged[key]
                merged[key] = Section(
                    first.source, first.heading, f"{first.text}\n\n{section.text}", first.node_id
                )
            else:
                merged[key] = section
        self._sections = merged
        self.documents: dict[str, Document] = {}
        for section in merged.values():
            self._add(section)
        for document in self.documents.values():
            self._describe(document)

    @classmethod
    def from_nodes(cls, nodes: Iterable[Any], analyzer: SpanishAnalyzer | None = None) -> Outline:
        """From LlamaIndex nodes as the knowledge base indexes them."""
        return cls(
            (
                Section(
                    str(node.metadata.get("file_name", "")),
                    str(node.metadata.get("heading", "")),
                    node.text,
                    node.node_id,
                )
                for node in nodes
            ),
            analyzer,
        )

    def section(self, source: str, heading: str) -> Section | None:
        return self._sections.get((source, heading))

    def _add(self, section: Section) -> None:
        parts = section.parts
        document = self.documents.get(section.source)
        if document is None:
            terms = frozenset(self.analyzer.tokenize(parts[0]))
            document = Document(section.source, parts[0], terms)
            self.documents[section.source] = document
        if len(parts) == 1:
            document.intro = section
            return
        branch = next((b for b in document.branches if b.title == parts[1]), None)
        if branch is None:
            branch = Branch(section.source, parts[1], len(document.branches))
            document.branches.append(branch)
        if len(parts) == 2:
            branch.sections.insert(0, section)
        else:
            branch.sections.append(section)

    def _describe(self, document: Document) -> None:
        facet_words = {
            t for b in document.branches for t in self.analyzer.tokenize(b.title)
        } & _facet_terms(self.analyzer)
        own = {
            b.title: set(self.analyzer.tokenize(b.title)) - document.terms - facet_words
            for b in document.branches
        }
        # A word most siblings share ("Punto Ciudadano …") tells none of them apart.
        counts: dict[str, int] = {}
        for terms in own.values():
            for term in terms:
                counts[term] = counts.get(term, 0) + 1
        shared = {t for t, n in counts.items() if n >= 2 and 2 * n > len(document.branches)}
        for branch in document.branches:
            branch.general = bool(heading_facets(branch.title))
            branch.terms = frozenset(own[branch.title] - shared)
            branch.label = _label(branch.title, document.terms, self.analyzer)
            branch.is_procedure = branch.has_facets()
        document.procedural = sum(1 for b in document.variants if b.is_procedure) >= 2


def _facet_terms(analyzer: SpanishAnalyzer) -> set[str]:
    words = "costo costos precio tarifa requisitos duración tiempo entrega vigencia"
    return set(analyzer.tokenize(words))


def _label(title: str, topic: frozenset[str], analyzer: SpanishAnalyzer) -> str:
    """A short spoken name for a variant: its heading without the document's own topic.

    "Renovación de la cédula" → "renovación", "Pasaporte para menores de edad" → "menores de
    edad", "Duplicado por pérdida, robo o deterioro" → "duplicado por pérdida".
    """
    words = title.split(",")[0].split()

    def is_topic(word: str) -> bool:
        return set(analyzer.tokenize(word)) <= topic and bool(analyzer.tokenize(word))

    while len(words) > 1 and is_topic(words[0]):
        words = words[1:]
        while len(words) > 1 and fold(words[0]) in PREPOSITIONS:
            words = words[1:]
    for i, word in enumerate(words):
        if i and fold(word) in PREPOSITIONS:
            rest = [w for w in words[i + 1 :] if fold(w) not in ARTICLES | PREPOSITIONS]
            if rest and all(is_topic(w) for w in rest):
                words = words[:i]
                break
    label = " ".join(words)
    if len(words) > 1 and words[1][:1].isupper():  # a name: "Punto Ciudadano Santiago"
        return label
    return label[:1].lower() + label[1:]
