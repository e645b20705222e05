"""Retrieval quality on callers' questions: hit@3 against the expected source document.

Each line of ``retrieval_set.jsonl`` is a question as a caller would say it, the document that
answers it (``source``) and, where the answer genuinely lives in more than one document, the
other acceptable ones (``also``). A question counts as a hit when any of the top three sections
comes from an acceptable document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from knowledge import KnowledgeBase

SET_PATH = Path(__file__).with_name("retrieval_set.jsonl")
SOURCE_DIR = Path(__file__).resolve().parents[2] / "knowledge_data"
TARGET_HIT_AT_3 = 0.90


@dataclass(frozen=True)
class Case:
    question: str
    accepted: frozenset[str]


def load_cases(path: Path = SET_PATH) -> list[Case]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            cases.append(Case(row["question"], frozenset([row["source"], *row.get("also", [])])))
    return cases


def evaluate(kb: KnowledgeBase, cases: list[Case], k: int = 3) -> tuple[float, list[str]]:
    """hit@k and a readable line per miss."""
    misses = []
    for case in cases:
        sources = [hit.source for hit in kb.search(case.question, k)]
        if not case.accepted & set(sources):
            misses.append(f"{case.question!r}: expected {sorted(case.accepted)}, got {sources}")
    return 1 - len(misses) / len(cases), misses


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    return KnowledgeBase.load(tmp_path_factory.mktemp("data"), SOURCE_DIR)


def test_set_is_large_enough_and_points_at_real_documents() -> None:
    cases = load_cases()
    assert len(cases) >= 60
    documents = {p.name for p in SOURCE_DIR.glob("*.md")}
    for case in cases:
        assert case.accepted <= documents, case


def test_hit_at_3(kb: KnowledgeBase) -> None:
    cases = load_cases()
    score, misses = evaluate(kb, cases, k=3)
    print(f"\nretrieval hit@3 = {score:.3f} on {len(cases)} questions ({len(misses)} misses)")
    for miss in misses:
        print("  miss:", miss)
    assert score >= TARGET_HIT_AT_3, "\n".join(misses)


def test_hit_at_1_is_reported(kb: KnowledgeBase) -> None:
    """Top-1 matters for the offline brain, which reads only the best passage aloud."""
    cases = load_cases()
    score, _ = evaluate(kb, cases, k=1)
    print(f"\nretrieval hit@1 = {score:.3f} on {len(cases)} questions")
    assert score >= 0.70
