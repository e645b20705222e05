"""Markdown files → retrievable sections that remember where they came from.

Each section becomes one LlamaIndex ``TextNode`` whose metadata carries the file name and the
heading path ("Pasaporte > Renovación del pasaporte"), so every answer can be cited and a
caller can be told which part of which document it comes from. Node ids are derived from the
file and heading, not random, so they stay the same from one build to the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from llama_index.core import Document
from llama_index.core.node_parser import MarkdownNodeParser
from llama_index.core.schema import TextNode

HEADING_SEPARATOR = " > "
# Sections longer than this are split at paragraph boundaries: long passages dilute BM25
# scores and are too long to read aloud anyway.
DEFAULT_MAX_CHARS = 1200


def parse_heading(line: str) -> tuple[int, str] | None:
    r"""``"## Horarios ##"`` -> ``(2, "Horarios")``; None when ``line`` is not an ATX heading.

    Plain string scanning, linear in the line's length: the regular expression it replaces
    (``^(#{1,6})\s+(.+?)\s*#*\s*$``) backtracked in cubic time on a crafted line of an
    uploaded document (issue 13).
    """
    level = len(line) - len(line.lstrip("#"))
    if not 1 <= level <= 6:
        return None
    rest = line[level:]
    if not rest[:1].isspace():
        return None
    text = rest.strip()
    if not text:
        return None
    title = text.rstrip("#").rstrip()  # a closing run of #'s is not part of the title
    return level, title or text[:1]


def source_files(source_dir: Path) -> list[Path]:
    """The Markdown documents of the knowledge base, in a stable order."""
    return sorted(p for p in source_dir.glob("*.md") if p.is_file())


def load_documents(source_dir: Path) -> list[Document]:
    """Read every Markdown file as one LlamaIndex document whose id is the file stem."""
    return [
        Document(
            text=path.read_text(encoding="utf-8"),
            id_=path.stem,
            metadata={"file_name": path.name},
        )
        for path in source_files(source_dir)
    ]


def slug(text: str) -> str:
    """A short ASCII identifier for a heading path."""
    from knowledge.text import fold_accents

    return re.sub(r"[^a-z0-9]+", "-", fold_accents(text).lower()).strip("-") or "section"


def _split_paragraphs(body: str, max_chars: int) -> list[str]:
    """Group consecutive paragraphs into pieces no longer than ``max_chars`` where possible."""
    if len(body) <= max_chars:
        return [body]
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if current and len(current) + 2 + len(paragraph) > max_chars:
            pieces.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


def make_node(node_id: str, text: str, file_name: str, heading: str, doc_id: str) -> TextNode:
    """A node whose indexed text is "heading path + body" and whose metadata cites its source.

    The heading path goes into the indexed text twice ("heading_terms" is an index-only copy):
    what a section is about is said best by its headings, and a caller asking about the cédula
    should land in the cédula document even though every other document mentions the cédula as
    a requirement. The file name and doc id stay out: they would add noise terms everywhere.
    """
    return TextNode(
        id_=node_id,
        text=text,
        metadata={
            "file_name": file_name,
            "heading": heading,
            "doc_id": doc_id,
            "heading_terms": heading,
        },
        excluded_embed_metadata_keys=["file_name", "doc_id"],
        excluded_llm_metadata_keys=["doc_id", "heading_terms"],
        metadata_template="{value}",
        text_template="{metadata_str}\n\n{content}",
    )


def split_documents(
    documents: Iterable[Document], max_chars: int = DEFAULT_MAX_CHARS
) -> list[TextNode]:
    """Split documents at Markdown headings, keeping the full heading path of every section.

    Content before the first heading (the "sample data" note) and headings with no text of
    their own are dropped: they answer no question.
    """
    parser = MarkdownNodeParser(include_metadata=True, include_prev_next_rel=False)
    nodes: list[TextNode] = []
    seen: set[str] = set()
    for document in documents:
        file_name = document.metadata["file_name"]
        doc_id = document.id_
        for raw in parser.get_nodes_from_documents([document]):
            text = raw.get_content().strip()
            first, _, rest = text.partition("\n")
            match = parse_heading(first)
            if match is None:
                continue
            parents = [p for p in str(raw.metadata.get("header_path", "/")).split("/") if p]
            heading = HEADING_SEPARATOR.join([*parents, match[1]])
            body = rest.strip()
            if not body:
                continue
            pieces = _split_paragraphs(body, max_chars)
            # The document title is already in doc_id; the rest of the path names the section.
            base_id = f"{doc_id}#{slug(HEADING_SEPARATOR.join([*parents[1:], match[1]]))}"
            for index, piece in enumerate(pieces):
                node_id = base_id if len(pieces) == 1 else f"{base_id}-{index + 1}"
                while node_id in seen:  # two sections with the same heading path
                    node_id += "+"
                seen.add(node_id)
                nodes.append(make_node(node_id, piece, file_name, heading, doc_id))
    return nodes


def build_nodes(source_dir: Path, max_chars: int = DEFAULT_MAX_CHARS) -> list[TextNode]:
    """All sections of the knowledge base in ``source_dir``."""
    return split_documents(load_documents(source_dir), max_chars=max_chars)
