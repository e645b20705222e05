"""The knowledge base behind LlamaIndex's retriever interface.

Chat engines and query engines (two of the three answering modes) take a ``BaseRetriever``;
this adapter gives them the same hits, hybrid or not, that the rest of TAINA sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from knowledge.chunking import make_node

if TYPE_CHECKING:
    from knowledge.base import KnowledgeBase


class KnowledgeRetriever(BaseRetriever):
    """Retrieves ``k`` sections per query from a :class:`KnowledgeBase`."""

    def __init__(self, kb: KnowledgeBase, k: int = 3) -> None:
        super().__init__()
        self._kb = kb
        self._k = k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        results: list[NodeWithScore] = []
        for hit in self._kb.search(query_bundle.query_str, self._k):
            node: TextNode = make_node(
                hit.node_id, hit.text, hit.source, hit.heading, hit.node_id.split("#")[0]
            )
            results.append(NodeWithScore(node=node, score=hit.score))
        return results

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self._kb.asearch(query_bundle.query_str, self._k)
        return [
            NodeWithScore(
                node=make_node(h.node_id, h.text, h.source, h.heading, h.node_id.split("#")[0]),
                score=h.score,
            )
            for h in hits
        ]
