"""Reciprocal rank fusion: merge rankings whose scores are not comparable.

BM25 scores and cosine similarities live on different scales, so they are fused by rank only
(Cormack, Clarke & Büttcher 2009): each list contributes ``weight / (k + rank)`` per item.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]],
    k: int = DEFAULT_RRF_K,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> list[tuple[T, float]]:
    """Fuse ranked lists (best first) into one list of ``(item, fused score)``, best first.

    Ranks start at 1. An item missing from a list gets nothing from it. Ties keep the order in
    which items were first seen, so the result is deterministic. A duplicate within one list
    counts only at its best rank.
    """
    if k < 0:
        raise ValueError("k must be non-negative")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[T, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[T] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    fused = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)  # stable sort
    return fused if limit is None else fused[:limit]
