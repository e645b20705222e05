"""Knowledge-base latency: index build, warm load, and search p50/p95 over the eval questions.

Run: ``.venv/bin/python bench/retrieval_bench.py [--rounds 20]``. Figures feed
docs/PERFORMANCE.md (target: search p50 ≤ 10 ms on the sample base).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge import KnowledgeBase, speakable_answer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="passes over the question set")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()

    questions = [
        json.loads(line)["question"]
        for line in (ROOT / "tests/eval/retrieval_set.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    with tempfile.TemporaryDirectory() as data_dir:
        start = time.perf_counter()
        kb = KnowledgeBase.load(Path(data_dir), ROOT / "knowledge_data")
        build_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        kb = KnowledgeBase.load(Path(data_dir), ROOT / "knowledge_data")
        load_ms = (time.perf_counter() - start) * 1000
        assert not kb.info.rebuilt

        for question in questions:  # warm-up: stemmer cache, numpy code paths
            kb.search(question, args.k)
        search_ms: list[float] = []
        speak_ms: list[float] = []
        for _ in range(args.rounds):
            for question in questions:
                start = time.perf_counter()
                hits = kb.search(question, args.k)
                search_ms.append((time.perf_counter() - start) * 1000)
                if hits:
                    start = time.perf_counter()
                    speakable_answer(hits[0], query=question)
                    speak_ms.append((time.perf_counter() - start) * 1000)

    print(f"sections: {kb.info.sections} from {kb.info.files} files")
    print(f"index build (cold): {build_ms:.1f} ms; load persisted index: {load_ms:.1f} ms")
    print(
        f"search k={args.k}: n={len(search_ms)} p50={percentile(search_ms, 0.5):.3f} ms "
        f"p95={percentile(search_ms, 0.95):.3f} ms mean={statistics.fmean(search_ms):.3f} ms"
    )
    print(
        f"speakable_answer: p50={percentile(speak_ms, 0.5):.3f} ms "
        f"p95={percentile(speak_ms, 0.95):.3f} ms"
    )


if __name__ == "__main__":
    main()
