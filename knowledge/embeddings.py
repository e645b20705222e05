"""Optional dense retrieval: embeddings from OpenAI (or any compatible server) over the sections.

BM25 alone works offline; embeddings help with paraphrases that share no words with the
documents. They are only used when an embedder is injected, and every failure falls back to
BM25, because a caller on the phone must get an answer either way.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. ``name`` identifies the model: cached vectors are per name."""

    @property
    def name(self) -> str: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class OpenAIEmbedder:
    """The OpenAI embeddings endpoint over plain httpx (no SDK needed).

    ``base_url`` makes any OpenAI-compatible server work; ``client`` is injectable so tests can
    use a local transport instead of the network.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        model: str = DEFAULT_EMBEDDING_MODEL,
        timeout_s: float = 10.0,
        batch_size: int = 64,
        client: httpx.Client | None = None,
    ) -> None:
        self._url = (base_url or DEFAULT_OPENAI_BASE_URL).rstrip("/") + "/embeddings"
        self._model = model
        self._batch_size = batch_size
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._client = client or httpx.Client(timeout=timeout_s)

    @property
    def name(self) -> str:
        return f"openai:{self._model}"

    def _post(self, inputs: Sequence[str]) -> list[list[float]]:
        response = self._client.post(
            self._url,
            json={"model": self._model, "input": list(inputs)},
            headers=self._headers,
        )
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        if len(data) != len(inputs):
            raise ValueError(f"expected {len(inputs)} embeddings, got {len(data)}")
        return [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._post(texts[start : start + self._batch_size]))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._post([text])[0]

    def close(self) -> None:
        self._client.close()


class LlamaIndexEmbedder:
    """Adapter for any LlamaIndex ``BaseEmbedding`` (e.g. ``MockEmbedding`` or a local model)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    @property
    def name(self) -> str:
        return f"llamaindex:{getattr(self._model, 'model_name', type(self._model).__name__)}"

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return list(self._model.get_text_embedding_batch(list(texts)))

    def embed_query(self, text: str) -> list[float]:
        return list(self._model.get_query_embedding(text))


def text_key(text: str) -> str:
    """Cache key of a section's indexed text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


class EmbeddingIndex:
    """Unit vectors of all sections; cosine similarity by one matrix-vector product."""

    def __init__(self, embedder: Embedder, matrix: np.ndarray) -> None:
        self.embedder = embedder
        self._matrix = _normalise(np.asarray(matrix, dtype=np.float32))

    def __len__(self) -> int:
        return int(self._matrix.shape[0])

    def rank(self, query: str, n: int) -> list[tuple[int, float]]:
        """Indices of the ``n`` most similar sections with their cosine similarity."""
        vector = np.asarray(self.embedder.embed_query(query), dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if norm == 0 or len(self) == 0:
            return []
        scores = self._matrix @ (vector / norm)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top]

    @classmethod
    def build(cls, embedder: Embedder, texts: Sequence[str], cache_dir: Path) -> EmbeddingIndex:
        """Embed the sections, reusing vectors cached for unchanged texts under ``cache_dir``.

        Only new or edited sections cost a call to the embedding service.
        """
        cache_path = cache_dir / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', embedder.name)}.npz"
        cached: dict[str, np.ndarray] = {}
        if cache_path.exists():
            try:
                with np.load(cache_path, allow_pickle=False) as data:
                    cached = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("ignoring unreadable embedding cache %s: %s", cache_path, exc)
        keys = [text_key(t) for t in texts]
        missing = [i for i, key in enumerate(keys) if key not in cached]
        if missing:
            vectors = embedder.embed_documents([texts[i] for i in missing])
            for i, vector in zip(missing, vectors, strict=True):
                cached[keys[i]] = np.asarray(vector, dtype=np.float32)
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_name(cache_path.name + ".tmp.npz")
            np.savez(tmp, keys=np.array(keys), vectors=np.stack([cached[k] for k in keys]))
            tmp.replace(cache_path)
        matrix = np.stack([cached[k] for k in keys]) if keys else np.zeros((0, 1), np.float32)
        return cls(embedder, matrix)
