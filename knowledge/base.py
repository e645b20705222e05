"""The office's knowledge base: load (or rebuild) the index and search it.

BM25 with Spanish stemming is the default and needs nothing but the Markdown files. When an
embedder is injected (an OpenAI key is configured), dense retrieval is fused with BM25 by
reciprocal rank fusion. The BM25 index is persisted under ``{data_dir}/knowledge/`` and rebuilt
only when the content of the Markdown files (or the analysis rules) change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from llama_index.retrievers.bm25 import BM25Retriever

from knowledge.chunking import DEFAULT_MAX_CHARS, build_nodes, source_files
from knowledge.embeddings import Embedder, EmbeddingIndex, OpenAIEmbedder
from knowledge.fusion import reciprocal_rank_fusion
from knowledge.spelling import QueryCorrector
from knowledge.text import ANALYZER_VERSION, TOKEN_PATTERN, SpanishAnalyzer, default_analyzer

# bm25s sets its own logger to DEBUG when imported; its per-build chatter is not ours to log.
logging.getLogger("bm25s").setLevel(logging.WARNING)
logger = logging.getLogger(__name__)

INDEX_FORMAT = 2
MANIFEST_NAME = "manifest.json"
# How many candidates each retriever contributes to the fusion.
FUSION_CANDIDATES = 20


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved section: what it says, where it comes from and how well it matched."""

    text: str
    source: str  # file name, e.g. "pasaporte.md"
    heading: str  # heading path, e.g. "Pasaporte > Renovación del pasaporte"
    score: float
    node_id: str = ""


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What the loaded index was built from, and whether this load had to rebuild it."""

    fingerprint: str
    files: int
    sections: int
    rebuilt: bool
    hybrid: bool
    index_dir: Path


def default_source_dir() -> Path:
    """``knowledge_data/`` of this checkout (``TAINA_KNOWLEDGE_DIR`` overrides it)."""
    override = os.environ.get("TAINA_KNOWLEDGE_DIR")
    if override:
        return Path(override)
    beside_package = Path(__file__).resolve().parent.parent / "knowledge_data"
    return beside_package if beside_package.is_dir() else Path.cwd() / "knowledge_data"


def fingerprint(source_dir: Path, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, dict[str, str]]:
    """Content hash of the knowledge base plus everything that shapes the index."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in source_files(source_dir)}
    if not files:
        raise FileNotFoundError(f"no Markdown documents in {source_dir}")
    payload = json.dumps(
        {
            "format": INDEX_FORMAT,
            "analyzer": ANALYZER_VERSION,
            "max_chars": max_chars,
            "token_pattern": TOKEN_PATTERN,
            "files": files,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest(), files


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class _BM25:
    """bm25s index plus the nodes it ranks, in index order."""

    def __init__(self, bm25: bm25s.BM25, nodes: list[TextNode], analyzer: SpanishAnalyzer):
        self.bm25 = bm25
        self.nodes = nodes
        self.analyzer = analyzer
        self.vocab: dict[str, int] = bm25.vocab_dict
        # Misheard words ("sedula", "pasa porte") are respelled from the documents' own words.
        self.corrector = QueryCorrector(
            (f"{node.metadata.get('heading', '')} {node.text}" for node in nodes),
            keep=analyzer.expansion_words,
            stem=analyzer.stem,
        )

    @classmethod
    def build(cls, nodes: list[TextNode], analyzer: SpanishAnalyzer) -> tuple[_BM25, Any]:
        """Index with LlamaIndex's BM25 retriever (bm25s underneath) and our Spanish analyzer."""
        retriever = BM25Retriever(
            nodes=nodes,
            stemmer=analyzer,
            language=sorted(analyzer.stopwords),
            token_pattern=TOKEN_PATTERN,
            similarity_top_k=min(len(nodes), 10),
        )
        return cls(retriever.bm25, nodes, analyzer), retriever

    @classmethod
    def load(cls, index_dir: Path, analyzer: SpanishAnalyzer) -> _BM25:
        bm25 = bm25s.BM25.load(str(index_dir), load_corpus=True, show_progress=False)
        nodes = [metadata_dict_to_node(entry) for entry in bm25.corpus]
        for node in nodes:
            if not isinstance(node, TextNode):
                raise ValueError(f"unexpected node type in {index_dir}")
        return cls(bm25, nodes, analyzer)  # type: ignore[arg-type]

    def rank(self, query: str, n: int) -> list[tuple[int, float]]:
        """Indices of the best ``n`` sections with a positive BM25 score."""
        ids = [self.vocab[t] for t in self.analyzer.query_terms(query) if t in self.vocab]
        if not ids:
            return []
        scores = self.bm25.get_scores_from_ids(ids)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]


class KnowledgeBase:
    """Search over the office's Markdown documents. Read-only and safe to share across threads.

    Use :meth:`load`; :meth:`reindex` swaps in a fresh index atomically while searches go on.
    """

    def __init__(
        self,
        data_dir: Path,
        source_dir: Path,
        *,
        embedder: Embedder | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        analyzer: SpanishAnalyzer | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.source_dir = Path(source_dir)
        self.index_root = self.data_dir / "knowledge"
        self.embedder = embedder
        self.max_chars = max_chars
        self.analyzer = analyzer or default_analyzer()
        self._bm25: _BM25 | None = None
        self._embeddings: EmbeddingIndex | None = None
        self._info: IndexInfo | None = None

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        data_dir: Path,
        source_dir: Path | None = None,
        *,
        embedder: Embedder | None = None,
        rebuild: bool = False,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> KnowledgeBase:
        """Open the persisted index, rebuilding it first if the documents changed.

        Blocking (file I/O, and network if an embedder is set): call it at start-up or from a
        thread, not on the event loop.
        """
        kb = cls(
            data_dir, source_dir or default_source_dir(), embedder=embedder, max_chars=max_chars
        )
        kb.reindex(force=rebuild)
        return kb

    @classmethod
    def from_settings(cls, settings: Any, source_dir: Path | None = None) -> KnowledgeBase:
        """Load with the app's settings: hybrid retrieval if an OpenAI key is configured."""
        return cls.load(settings.data_dir, source_dir, embedder=embedder_from_settings(settings))

    @property
    def info(self) -> IndexInfo:
        if self._info is None:
            raise RuntimeError("knowledge base not loaded")
        return self._info

    @property
    def nodes(self) -> list[TextNode]:
        """All indexed sections, in index order."""
        return list(self._state().nodes)

    def is_stale(self) -> bool:
        """True when the Markdown files no longer match the loaded index."""
        return fingerprint(self.source_dir, self.max_chars)[0] != self.info.fingerprint

    def reindex(self, force: bool = False) -> IndexInfo:
        """Rebuild the index if the documents changed (always when ``force``), then use it."""
        digest, files = fingerprint(self.source_dir, self.max_chars)
        self.index_root.mkdir(parents=True, exist_ok=True)
        manifest_path = self.index_root / MANIFEST_NAME
        manifest = _read_manifest(manifest_path)
        index_dir = self.index_root / f"index-{digest[:16]}"
        bm25: _BM25 | None = None
        rebuilt = False
        if not force and manifest and manifest.get("fingerprint") == digest and index_dir.is_dir():
            try:
                bm25 = _BM25.load(index_dir, self.analyzer)
            except Exception as exc:  # a damaged index is rebuilt, never fatal
                logger.warning("rebuilding unreadable knowledge index %s: %s", index_dir, exc)
        if bm25 is None:
            bm25 = self._build(index_dir, force=force)
            rebuilt = True
            _write_atomic(
                manifest_path,
                json.dumps(
                    {
                        "format": INDEX_FORMAT,
                        "analyzer": ANALYZER_VERSION,
                        "fingerprint": digest,
                        "index_dir": index_dir.name,
                        "files": files,
                        "sections": len(bm25.nodes),
                        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    },
                    indent=2,
                    ensure_ascii=False,
                ),
            )
            self._remove_old_indexes(keep=index_dir)
        embeddings = self._build_embeddings(bm25.nodes)
        # Swap both at once so a concurrent search sees either the old or the new index.
        self._bm25, self._embeddings = bm25, embeddings
        self._info = IndexInfo(
            fingerprint=digest,
            files=len(files),
            sections=len(bm25.nodes),
            rebuilt=rebuilt,
            hybrid=embeddings is not None,
            index_dir=index_dir,
        )
        logger.info(
            "knowledge base: %d sections from %d files (%s%s)",
            len(bm25.nodes),
            len(files),
            "rebuilt" if rebuilt else "loaded",
            ", hybrid" if embeddings is not None else "",
        )
        return self._info

    def _build(self, index_dir: Path, force: bool) -> _BM25:
        nodes = build_nodes(self.source_dir, self.max_chars)
        if not nodes:
            raise ValueError(f"no sections with text in {self.source_dir}")
        bm25, retriever = _BM25.build(nodes, self.analyzer)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=self.index_root))
        try:
            retriever.persist(str(tmp), show_progress=False)
            tmp.chmod(0o755)  # mkdtemp makes it private; the index is not secret
            if index_dir.exists() and force:
                shutil.rmtree(index_dir, ignore_errors=True)
            try:
                tmp.rename(index_dir)
            except OSError:  # another process finished the same build first
                if not index_dir.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return bm25

    def _remove_old_indexes(self, keep: Path) -> None:
        for path in self.index_root.glob("index-*"):
            if path != keep and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def _build_embeddings(self, nodes: list[TextNode]) -> EmbeddingIndex | None:
        if self.embedder is None:
            return None
        texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        try:
            return EmbeddingIndex.build(self.embedder, texts, self.index_root / "embeddings")
        except Exception as exc:  # embeddings are an extra: BM25 keeps working without them
            logger.warning("embeddings unavailable, using BM25 only: %s", exc)
            return None

    def _state(self) -> _BM25:
        if self._bm25 is None:
            raise RuntimeError("knowledge base not loaded")
        return self._bm25

    # --- searching ----------------------------------------------------------------------------
    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The ``k`` sections that best answer ``query``, best first; [] when nothing matches.

        BM25 only, this is sub-millisecond CPU work. With embeddings it also waits for the
        embedding service, so on the event loop prefer :meth:`asearch`.
        """
        if k <= 0 or not query.strip():
            return []
        bm25, embeddings = self._state(), self._embeddings
        query = bm25.corrector.correct(query)
        if embeddings is None:
            return [self._hit(bm25, i, score) for i, score in bm25.rank(query, k)]
        candidates = max(FUSION_CANDIDATES, k)
        lexical = [i for i, _ in bm25.rank(query, candidates)]
        try:
            dense = [i for i, _ in embeddings.rank(query, candidates)]
        except Exception as exc:
            logger.warning("embedding search failed, using BM25 only: %s", exc)
            dense = []
        fused = reciprocal_rank_fusion([lexical, dense], limit=k)
        return [self._hit(bm25, i, score) for i, score in fused]

    def correct(self, query: str) -> str:
        """``query`` plus the knowledge base's spelling of words it misheard ("sedula")."""
        return self._state().corrector.correct(query)

    async def asearch(self, query: str, k: int = 3) -> list[Hit]:
        """:meth:`search` in a worker thread, so the event loop never waits on it."""
        return await asyncio.to_thread(self.search, query, k)

    @staticmethod
    def _hit(bm25: _BM25, index: int, score: float) -> Hit:
        node = bm25.nodes[index]
        return Hit(
            text=node.text,
            source=str(node.metadata.get("file_name", "")),
            heading=str(node.metadata.get("heading", "")),
            score=score,
            node_id=node.node_id,
        )

    def as_retriever(self, k: int = 3) -> Any:
        """This knowledge base as a LlamaIndex retriever (for chat or query engines)."""
        from knowledge.retriever import KnowledgeRetriever

        return KnowledgeRetriever(self, k=k)


def embedder_from_settings(settings: Any) -> Embedder | None:
    """An OpenAI (or compatible) embedder when a key is configured, else None (BM25 only)."""
    api_key = getattr(settings, "openai_api_key", None)
    if not api_key:
        return None
    model = getattr(settings, "embedding_model", None) or "text-embedding-3-small"
    return OpenAIEmbedder(api_key, base_url=getattr(settings, "openai_base_url", None), model=model)


def reindex(
    data_dir: Path | None = None,
    source_dir: Path | None = None,
    *,
    force: bool = False,
    embedder: Embedder | None = None,
) -> IndexInfo:
    """Bring the persisted index up to date (for ``taina knowledge reindex``).

    Without ``data_dir`` the app settings decide, including the embedder.
    """
    if data_dir is None:
        from app.settings import Settings

        settings = Settings()
        data_dir = settings.data_dir
        if embedder is None:
            embedder = embedder_from_settings(settings)
    return KnowledgeBase.load(data_dir, source_dir, embedder=embedder, rebuild=force).info
