"""Knowledge base: chunking, Spanish analysis, persistence, hybrid fusion and speech output."""

from __future__ import annotations

import itertools
import json
import math
import re
import socket
from collections.abc import Sequence
from pathlib import Path

import bm25s
import httpx
import pytest

import knowledge.base as kb_module
from knowledge import (
    Hit,
    KnowledgeBase,
    OpenAIEmbedder,
    citation,
    context_block,
    reciprocal_rank_fusion,
    speakable_answer,
)
from knowledge.chunking import build_nodes
from knowledge.speech import to_speech
from knowledge.text import TOKEN_PATTERN, SpanishAnalyzer, fold_accents

REAL_SOURCE = Path(__file__).resolve().parents[2] / "knowledge_data"

PASAPORTE_MD = """\
> Datos de ejemplo: nada de esto es real.

# Pasaporte

El pasaporte sirve para viajar.

## Renovación

Se renueva con el pasaporte anterior.

### Costo

La renovación cuesta RD$3,500.

## Menores

- Acta de nacimiento del menor.
- **Cédula** de los padres.
- El menor debe estar presente.
"""

CEDULA_MD = """\
# Cédula

## Duplicado

Si perdió la cédula, pida un duplicado. Cuesta RD$300.

## Horario

Abrimos de lunes a viernes.
"""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "source"
    directory.mkdir()
    (directory / "pasaporte.md").write_text(PASAPORTE_MD, encoding="utf-8")
    (directory / "cedula.md").write_text(CEDULA_MD, encoding="utf-8")
    return directory


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


# --- chunking -------------------------------------------------------------------------------


def test_chunking_keeps_heading_paths_and_skips_the_sample_note(source: Path) -> None:
    nodes = build_nodes(source)
    pairs = [(n.metadata["file_name"], n.metadata["heading"]) for n in nodes]
    assert pairs == [
        ("cedula.md", "Cédula > Duplicado"),
        ("cedula.md", "Cédula > Horario"),
        ("pasaporte.md", "Pasaporte"),
        ("pasaporte.md", "Pasaporte > Renovación"),
        ("pasaporte.md", "Pasaporte > Renovación > Costo"),
        ("pasaporte.md", "Pasaporte > Menores"),
    ]
    assert all("Datos de ejemplo" not in n.text for n in nodes)
    assert all(not n.text.startswith("#") for n in nodes)  # the heading line is metadata
    costo = nodes[4]
    assert costo.text == "La renovación cuesta RD$3,500."
    assert costo.node_id == "pasaporte#renovacion-costo"


def test_node_ids_are_stable_between_builds(source: Path) -> None:
    assert [n.node_id for n in build_nodes(source)] == [n.node_id for n in build_nodes(source)]


def test_long_sections_are_split_at_paragraphs(tmp_path: Path) -> None:
    paragraphs = [f"Párrafo número {i} " + "palabra " * 40 for i in range(6)]
    (tmp_path / "largo.md").write_text("# Largo\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    nodes = build_nodes(tmp_path, max_chars=700)
    assert len(nodes) > 1
    assert all(len(n.text) <= 700 for n in nodes)
    assert {n.metadata["heading"] for n in nodes} == {"Largo"}
    assert len({n.node_id for n in nodes}) == len(nodes)
    assert "".join(n.text for n in nodes).count("Párrafo número") == 6


# --- Spanish analysis -----------------------------------------------------------------------


def test_accent_folding_and_stemming_unify_spellings() -> None:
    analyzer = SpanishAnalyzer()
    assert fold_accents("cédula ñame Ávila") == "cedula name Avila"
    assert (
        analyzer.tokenize("cédula") == analyzer.tokenize("cedula") == analyzer.tokenize("CÉDULAS")
    )
    renov = analyzer.tokenize("renovación renovacion renovar renovaciones")
    assert len(set(renov)) == 1
    assert analyzer.tokenize("que necesito pa la de el") == analyzer.tokenize("necesito")


def test_analyzer_matches_bm25s_tokenization_of_the_corpus() -> None:
    """Index (bm25s.tokenize) and query (our analyzer) must produce the same terms."""
    analyzer = SpanishAnalyzer()
    text = "¿Cuánto cuesta la RENOVACIÓN del pasaporte? Renovacion en Santo Domingo Este, 2 días."
    tokenized = bm25s.tokenize(
        [text],
        stopwords=sorted(analyzer.stopwords),
        stemmer=analyzer,
        token_pattern=TOKEN_PATTERN,
        return_ids=False,
        show_progress=False,
    )
    assert tokenized[0] == analyzer.tokenize(text)
    assert "este" in analyzer.tokenize(text)  # an office name, not a stopword here


def test_search_matches_without_accents(source: Path, data_dir: Path) -> None:
    kb = KnowledgeBase.load(data_dir, source)
    for query in ("cedula perdida", "cédula perdida", "CEDULA PERDIDA"):
        hits = kb.search(query, k=1)
        assert hits and hits[0].heading == "Cédula > Duplicado", query
    top = kb.search("renovacion del pasaporte", k=1)[0]
    assert top.heading.startswith("Pasaporte > Renovación")


def test_search_returns_nothing_for_unknown_words(source: Path, data_dir: Path) -> None:
    kb = KnowledgeBase.load(data_dir, source)
    assert kb.search("xilófono zeppelin", k=3) == []
    assert kb.search("   ", k=3) == []
    assert kb.search("pasaporte", k=0) == []


def test_hits_carry_source_heading_text_and_score(source: Path, data_dir: Path) -> None:
    kb = KnowledgeBase.load(data_dir, source)
    hits = kb.search("cuánto cuesta renovar el pasaporte", k=3)
    assert 1 <= len(hits) <= 3
    assert hits[0] == Hit(
        text="La renovación cuesta RD$3,500.",
        source="pasaporte.md",
        heading="Pasaporte > Renovación > Costo",
        score=hits[0].score,
        node_id="pasaporte#renovacion-costo",
    )
    assert all(a.score >= b.score > 0 for a, b in itertools.pairwise(hits))


async def test_asearch_gives_the_same_hits(source: Path, data_dir: Path) -> None:
    kb = KnowledgeBase.load(data_dir, source)
    assert await kb.asearch("duplicado de cédula", 2) == kb.search("duplicado de cédula", 2)


def test_as_retriever_returns_llamaindex_nodes(source: Path, data_dir: Path) -> None:
    kb = KnowledgeBase.load(data_dir, source)
    results = kb.as_retriever(k=2).retrieve("duplicado de cédula")
    assert results[0].node.metadata["heading"] == "Cédula > Duplicado"
    assert results[0].node.metadata["file_name"] == "cedula.md"


# --- persistence ----------------------------------------------------------------------------


def test_second_load_uses_the_persisted_index(
    source: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = KnowledgeBase.load(data_dir, source)
    assert first.info.rebuilt
    manifest = json.loads((data_dir / "knowledge" / "manifest.json").read_text())
    assert manifest["files"].keys() == {"cedula.md", "pasaporte.md"}

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the index was rebuilt although nothing changed")

    monkeypatch.setattr(kb_module, "build_nodes", no_build)
    second = KnowledgeBase.load(data_dir, source)
    assert not second.info.rebuilt
    assert second.search("duplicado cédula", 2) == first.search("duplicado cédula", 2)
    assert not second.is_stale()


def test_changing_a_file_triggers_a_rebuild(source: Path, data_dir: Path) -> None:
    first = KnowledgeBase.load(data_dir, source)
    old_dir = first.info.index_dir
    (source / "cedula.md").write_text(
        CEDULA_MD + "\n## Trébol\n\nLa oficina tiene un jardín de tréboles.\n", encoding="utf-8"
    )
    assert first.is_stale()
    second = KnowledgeBase.load(data_dir, source)
    assert second.info.rebuilt
    assert second.info.fingerprint != first.info.fingerprint
    assert second.search("trebol", 1)[0].heading == "Cédula > Trébol"
    assert not old_dir.exists()  # the superseded index is cleaned up
    assert KnowledgeBase.load(data_dir, source).info.rebuilt is False


def test_reindex_in_place_and_forced(source: Path, data_dir: Path) -> None:
    kb = KnowledgeBase.load(data_dir, source)
    assert kb.search("tréboles", 1) == []
    assert not kb.reindex().rebuilt  # nothing changed
    (source / "nuevo.md").write_text("# Trébol\n\nHay tréboles.\n", encoding="utf-8")
    info = kb.reindex()
    assert info.rebuilt and info.files == 3
    assert kb.search("tréboles", 1)[0].source == "nuevo.md"
    assert kb.reindex(force=True).rebuilt
    assert kb_module.reindex(data_dir, source).rebuilt is False


def test_damaged_index_is_rebuilt(source: Path, data_dir: Path) -> None:
    first = KnowledgeBase.load(data_dir, source)
    for path in first.info.index_dir.iterdir():
        path.write_bytes(b"garbage")
    second = KnowledgeBase.load(data_dir, source)
    assert second.info.rebuilt
    assert second.search("duplicado cédula", 1)[0].heading == "Cédula > Duplicado"


def test_empty_source_dir_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        KnowledgeBase.load(tmp_path / "data", tmp_path / "empty")


def test_load_and_search_never_touch_the_network(
    source: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    kb = KnowledgeBase.load(data_dir, source)
    assert kb.search("pasaporte menores", 1)
    assert speakable_answer(kb.search("pasaporte menores", 1)[0])


# --- fusion ---------------------------------------------------------------------------------


def test_reciprocal_rank_fusion_by_hand() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    scores = dict(fused)
    assert math.isclose(scores["a"], 1 / 61 + 1 / 62)
    assert math.isclose(scores["c"], 1 / 63 + 1 / 61)
    assert math.isclose(scores["b"], 1 / 62)
    assert math.isclose(scores["d"], 1 / 63)
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]


def test_fusion_weights_limit_duplicates_and_edge_cases() -> None:
    weighted = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=0, weights=[1.0, 3.0])
    assert [item for item, _ in weighted] == ["b", "a"]
    assert dict(weighted)["b"] == pytest.approx(1 / 2 + 3 / 1)
    assert reciprocal_rank_fusion([["x", "x", "y"]], k=0) == [("x", 1.0), ("y", 1 / 3)]
    assert reciprocal_rank_fusion([[1, 2, 3], [3]], limit=1) == [(3, 1 / 63 + 1 / 61)]
    assert reciprocal_rank_fusion([[], []]) == []
    assert [i for i, _ in reciprocal_rank_fusion([["p", "q"], []])] == ["p", "q"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], k=-1)


# --- optional embeddings --------------------------------------------------------------------


class BagOfWordsEmbedder:
    """Deterministic stand-in for an embedding model: hashed bag of folded words."""

    def __init__(self, dims: int = 64, fail_queries: bool = False) -> None:
        self.dims = dims
        self.fail_queries = fail_queries
        self.documents_embedded = 0

    @property
    def name(self) -> str:
        return f"test-bow-{self.dims}"

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for word in re.findall(r"\w+", fold_accents(text.lower())):
            vector[sum(map(ord, word)) % self.dims] += 1.0
        return vector

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.documents_embedded += len(texts)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        if self.fail_queries:
            raise httpx.ConnectError("embedding service down")
        return self._vector(text)


def test_hybrid_search_fuses_bm25_and_embeddings(source: Path, data_dir: Path) -> None:
    embedder = BagOfWordsEmbedder()
    kb = KnowledgeBase.load(data_dir, source, embedder=embedder)
    assert kb.info.hybrid
    assert embedder.documents_embedded == kb.info.sections
    hits = kb.search("duplicado de la cédula", k=3)
    assert hits[0].heading == "Cédula > Duplicado"
    assert len(hits) == 3  # embeddings contribute sections BM25 alone would not return
    # fused scores are reciprocal ranks: at most one term of 1/61 per retriever
    assert hits[0].score <= 2 / 61 + 1e-9

    again = BagOfWordsEmbedder()
    KnowledgeBase.load(data_dir, source, embedder=again)
    assert again.documents_embedded == 0  # vectors of unchanged sections come from the cache


def test_embedding_failures_fall_back_to_bm25(source: Path, data_dir: Path) -> None:
    failing = BagOfWordsEmbedder(fail_queries=True)
    kb = KnowledgeBase.load(data_dir, source, embedder=failing)
    assert kb.info.hybrid
    assert kb.search("duplicado cédula", 1)[0].heading == "Cédula > Duplicado"

    class Broken(BagOfWordsEmbedder):
        def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
            raise httpx.ConnectError("down")

    kb = KnowledgeBase.load(data_dir, source, embedder=Broken(dims=32))  # nothing cached
    assert not kb.info.hybrid
    assert kb.search("duplicado cédula", 1)[0].heading == "Cédula > Duplicado"


def test_openai_embedder_speaks_the_embeddings_api() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        inputs = json.loads(request.content)["input"]
        data = [{"index": i, "embedding": [float(i), 1.0]} for i in range(len(inputs))]
        return httpx.Response(200, json={"data": list(reversed(data)), "model": "m"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    embedder = OpenAIEmbedder(
        "sk-test", base_url="http://local.test/v1/", model="emb-model", batch_size=2, client=client
    )
    assert embedder.name == "openai:emb-model"
    assert embedder.embed_documents(["a", "b", "c"]) == [[0.0, 1.0], [1.0, 1.0], [0.0, 1.0]]
    assert embedder.embed_query("hola") == [0.0, 1.0]
    assert [str(r.url) for r in seen] == ["http://local.test/v1/embeddings"] * 3
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert json.loads(seen[0].content) == {"model": "emb-model", "input": ["a", "b"]}


# --- citations, context and speech ----------------------------------------------------------


def test_citation_format() -> None:
    hit = Hit("texto", "pasaporte.md", "Pasaporte > Renovación", 1.0)
    assert citation(hit) == "pasaporte.md — Pasaporte > Renovación"
    assert citation(Hit("texto", "faq.md", "", 1.0)) == "faq.md"


def test_context_block_numbers_hits_with_citations() -> None:
    hits = [
        Hit("Cuesta RD$3,500.", "pasaporte.md", "Pasaporte > Costo", 2.0),
        Hit("Cuesta RD$300.", "cedula.md", "Cédula > Duplicado", 1.0),
    ]
    block = context_block(hits)
    assert "[1] pasaporte.md — Pasaporte > Costo\nCuesta RD$3,500." in block
    assert "[2] cedula.md — Cédula > Duplicado\nCuesta RD$300." in block
    assert block.index("[1]") < block.index("[2]")
    assert context_block([]) != ""


def test_to_speech_rewrites_what_tts_would_misread() -> None:
    spoken = to_speech(
        "**Costo**: RD$3,500 o RD$ 150.00; llame al 809-555-0199 de 8:00 a. m. a 3:30 p. m. "
        "o escriba a quejas@puntociudadano.example"
    )
    assert "3500 pesos" in spoken and "150 pesos" in spoken
    assert "8 0 9, 5 5 5, 0 1 9 9" in spoken
    assert "de 8 de la mañana a 3 y media de la tarde" in spoken
    assert "quejas arroba puntociudadano punto example" in spoken
    assert not re.search(r"[*#$@]|RD", spoken)


def test_speakable_answer_turns_bullets_into_one_sentence() -> None:
    text = "Necesita lo siguiente:\n\n- Acta de nacimiento.\n- **Cédula** de los padres.\n- Fotos."
    assert speakable_answer(text) == (
        "Necesita lo siguiente: acta de nacimiento, cédula de los padres y fotos."
    )


def test_speakable_answer_prefers_sentences_about_the_question() -> None:
    text = (
        "El pasaporte sirve para viajar. Se solicita en Santo Domingo y Santiago. "
        "Para adultos cuesta RD$3,500. Tarda 10 días laborables."
    )
    answer = speakable_answer(text, query="¿cuánto cuesta?", max_sentences=1)
    assert answer == "Para adultos cuesta 3500 pesos."
    assert speakable_answer(text, query="¿cuánto tarda?", max_sentences=1) == (
        "Tarda 10 días laborables."
    )


def test_speakable_answer_reads_only_the_matching_items_of_a_long_list() -> None:
    office = Hit(
        "- Dirección: avenida Duarte número 88, Los Jardines, Santiago de los Caballeros.\n"
        "- Teléfono: 809-555-0140.\n"
        "- Horario: de lunes a viernes de 8:00 a. m. a 4:00 p. m.\n"
        "- Servicios: cédula, pasaporte, licencia de conducir, actas y certificados de no "
        "antecedentes penales, legalizaciones, apostillas y muchas cosas más.\n"
        "- Parqueo: tiene 15 espacios gratis y hay parqueo público en la calle de atrás.",
        "oficinas.md",
        "Oficinas > Punto Ciudadano Santiago",
        1.0,
    )
    answer = speakable_answer(office, max_chars=200, query="¿cuál es el teléfono de Santiago?")
    assert "Teléfono: 8 0 9, 5 5 5, 0 1 4 0." in answer
    assert "Parqueo" not in answer and "Horario" not in answer
    hours = speakable_answer(office, max_chars=200, query="horario de la oficina de Santiago")
    assert "Horario: de lunes a viernes de 8 de la mañana a 4 de la tarde." in hours


@pytest.mark.parametrize("max_chars", [60, 120, 300])
def test_speakable_answer_is_plain_and_short_for_every_real_section(
    tmp_path: Path, max_chars: int
) -> None:
    kb = KnowledgeBase.load(tmp_path, REAL_SOURCE)
    for node in kb.nodes:
        hit = Hit(node.text, node.metadata["file_name"], node.metadata["heading"], 1.0)
        for query in (None, node.metadata["heading"]):
            answer = speakable_answer(hit, max_chars=max_chars, query=query)
            assert answer, node.node_id
            assert len(answer) <= max_chars, (node.node_id, answer)
            assert not re.search(r"[*#`\[\]|]|RD\$|^\s*-|\n", answer), (node.node_id, answer)
            assert answer.endswith((".", "?", "!")), answer
