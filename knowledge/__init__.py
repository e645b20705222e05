"""The office's knowledge base: Markdown documents, Spanish BM25 (+ optional embeddings),
citations and passages shortened for speech."""

from knowledge.base import (
    Hit,
    IndexInfo,
    KnowledgeBase,
    default_source_dir,
    embedder_from_settings,
    reindex,
)
from knowledge.embeddings import Embedder, LlamaIndexEmbedder, OpenAIEmbedder
from knowledge.fusion import reciprocal_rank_fusion
from knowledge.speech import citation, context_block, phone_answer, speakable_answer

__all__ = [
    "Embedder",
    "Hit",
    "IndexInfo",
    "KnowledgeBase",
    "LlamaIndexEmbedder",
    "OpenAIEmbedder",
    "citation",
    "context_block",
    "default_source_dir",
    "embedder_from_settings",
    "phone_answer",
    "reciprocal_rank_fusion",
    "reindex",
    "speakable_answer",
]
