"""Variants of a procedure: answer the one asked for, ask back when the question leaves it open.

The outline is read from heading paths only, so the first tests use a made-up knowledge file
(a "Permiso de pesca" nobody wrote code for); the later ones run the office's real knowledge
base through the ``search_knowledge`` tool, including the re-query a brain makes with the
option the caller chose.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from knowledge import Hit, KnowledgeBase
from knowledge.speech import fits_phone, phone_answer, sentences, word_count
from knowledge.spelling import QueryCorrector, sound_key
from knowledge.text import default_analyzer
from knowledge.variants import Outline, Section, choose, heading_facets, question_facet
from pipeline.brain.base import CallContext
from pipeline.brain.office_tools import OfficeTools

REAL_SOURCE = Path(__file__).resolve().parents[2] / "knowledge_data"

PESCA_MD = """\
# Permiso de pesca

El permiso de pesca autoriza a pescar en ríos y en el mar.

## Costos del permiso de pesca

Hay varios permisos; el costo depende del tipo.

## Permiso de pesca deportiva

### Requisitos del permiso deportivo

- Cédula vigente.
- Curso de pesca responsable aprobado.

### Costo del permiso deportivo

El permiso deportivo cuesta RD$900.

### Duración del trámite deportivo

El permiso está listo en 3 días laborables.

## Renovación del permiso de pesca

### Requisitos para renovar el permiso

- El permiso anterior.
- Cédula vigente.

### Costo de la renovación del permiso

La renovación cuesta RD$400.

### Duración de la renovación del permiso

El permiso renovado está listo en 3 días laborables.

## Permiso de pesca comercial

- Requisitos: registro de la embarcación y cédula del capitán.
- Tiempo de entrega: el permiso está listo en 3 días laborables.

## Zonas de pesca

Se puede pescar en todas las costas excepto en los parques nacionales.
"""


def pesca_outline(without_general: bool = False) -> Outline:
    text = PESCA_MD
    if without_general:
        text = re.sub(r"## Costos del permiso de pesca\n\n.*?\n\n", "", text, flags=re.S)
    sections: list[Section] = []
    path: list[str] = []
    body: list[str] = []

    def flush() -> None:
        if path and "".join(body).strip():
            sections.append(Section("pesca.md", " > ".join(path), "\n".join(body).strip()))

    for line in text.splitlines():
        match = re.match(r"^(#+) (.*)$", line)
        if match:
            flush()
            level = len(match.group(1))
            path[:] = [*path[: level - 1], match.group(2)]
            body.clear()
        else:
            body.append(line)
    flush()
    return Outline(sections)


def hits_for(outline: Outline, *headings: str) -> list[Hit]:
    """Hits in the order given, as a retriever would return them."""
    found = []
    for heading in headings:
        section = next(
            s
            for d in outline.documents.values()
            for b in d.branches
            for s in b.sections
            if s.heading.endswith(heading)
        )
        found.append(Hit(section.text, section.source, section.heading, 1.0))
    return found


# --- the outline and the choice, on a file no code knows about ------------------------------


def test_outline_reads_variants_labels_and_general_sections_from_headings() -> None:
    document = pesca_outline().documents["pesca.md"]
    kinds = {b.title: (b.is_variant, b.general, b.label) for b in document.branches}
    assert kinds["Permiso de pesca deportiva"] == (True, False, "deportiva")
    assert kinds["Renovación del permiso de pesca"] == (True, False, "renovación")
    assert kinds["Permiso de pesca comercial"] == (True, False, "comercial")
    assert kinds["Costos del permiso de pesca"][1] is True  # names only a facet: general
    assert document.procedural
    assert heading_facets("Costo y tiempo de la renovación") == {"cost", "duration"}


def test_question_facets() -> None:
    assert question_facet("¿cuánto cuesta?").name == "cost"
    assert question_facet("que papeles tengo que llevar").name == "requirements"
    assert question_facet("en cuanto tiempo esta listo").name == "duration"
    assert question_facet("hasta cuando esta vigente").name == "validity"
    assert question_facet("¿cuánto dura el pasaporte?").name == "validity"
    assert question_facet("¿cuánto dura la cita?").name == "duration"
    assert question_facet("donde queda la oficina").name == "place"
    assert question_facet("¿puedo ir con mis hijos?") is None


def test_a_named_variant_is_answered_from_its_own_section() -> None:
    outline = pesca_outline()
    hits = hits_for(
        outline, "Requisitos del permiso deportivo", "Requisitos para renovar el permiso"
    )
    choice = choose("¿qué necesito para renovar el permiso de pesca?", hits, outline)
    assert choice.clarify is None
    assert choice.section.heading.endswith("Requisitos para renovar el permiso")
    assert choice.variant == "renovación" and choice.facet == "requirements"


def test_an_open_question_on_differing_variants_asks_which_one() -> None:
    outline = pesca_outline()
    hits = hits_for(
        outline, "Requisitos del permiso deportivo", "Requisitos para renovar el permiso"
    )
    choice = choose("¿qué requisitos piden para el permiso de pesca?", hits, outline)
    assert choice.section is None
    assert choice.clarify.options == ("deportiva", "renovación", "comercial")
    assert choice.clarify.question == (
        "Los requisitos dependen del caso: ¿deportiva, renovación o comercial?"
    )
    # The caller's choice appended to the question lands on that variant.
    for option, heading in zip(
        choice.clarify.options,
        ("Requisitos del permiso deportivo", "Requisitos para renovar el permiso", "comercial"),
        strict=True,
    ):
        again = choose(f"¿qué requisitos piden para el permiso de pesca? {option}", hits, outline)
        assert again.clarify is None and again.section.heading.endswith(heading), option


def test_variants_that_agree_are_answered_without_asking() -> None:
    outline = pesca_outline()
    hits = hits_for(
        outline, "Duración de la renovación del permiso", "Duración del trámite deportivo"
    )
    choice = choose("¿cuánto tarda el permiso de pesca?", hits, outline)
    assert choice.clarify is None
    assert choice.section.heading.endswith("Duración de la renovación del permiso")


def test_a_section_covering_every_variant_answers_an_open_question() -> None:
    outline = pesca_outline()
    hits = hits_for(outline, "Costo del permiso deportivo", "Costo de la renovación del permiso")
    choice = choose("¿cuánto cuesta el permiso de pesca?", hits, outline)
    assert choice.clarify is None and choice.section.title == "Costos del permiso de pesca"
    without = pesca_outline(without_general=True)
    hits = hits_for(without, "Costo del permiso deportivo", "Costo de la renovación del permiso")
    asked = choose("¿cuánto cuesta el permiso de pesca?", hits, without)
    assert asked.clarify is not None
    assert asked.clarify.question.startswith("El costo depende del caso")


def test_questions_about_something_else_are_left_alone() -> None:
    outline = pesca_outline()
    hits = hits_for(outline, "Zonas de pesca", "Requisitos del permiso deportivo")
    choice = choose("¿dónde se puede pescar?", hits, outline)
    assert choice.clarify is None and choice.section.title == "Zonas de pesca"


# --- spelling repairs -------------------------------------------------------------------------


def test_misheard_words_get_the_documents_spelling() -> None:
    corrector = QueryCorrector(["La cédula y el pasaporte.", "Licencia de conducir, apostilla."])
    assert sound_key("sedula") == sound_key("cédula")
    assert corrector.corrections("cuanto cuesta la sedula") == ["cedula"]
    assert corrector.corrections("requisitos del pasa porte") == ["pasaporte"]
    assert corrector.corrections("la lisencia") == ["licencia"]
    assert corrector.corrections("apostiya") == ["apostilla"]
    assert corrector.corrections("la cédula y el pasaporte") == []
    assert corrector.correct("quiero pagar la luz") == "quiero pagar la luz"
    # An inflection BM25 already matches through its stem is not added twice.
    stemmed = QueryCorrector(["Nunca cobran por teléfono."], stem=default_analyzer().stem)
    assert stemmed.corrections("me están cobrando") == []
    assert QueryCorrector(["Nunca cobran por teléfono."]).corrections("cobrando") == ["cobran"]


# --- phone answers ----------------------------------------------------------------------------


def test_phone_answer_compresses_a_requirements_list_into_one_sentence() -> None:
    hit = Hit(
        "- Acta de nacimiento certificada, original, emitida hace menos de 6 meses.\n"
        "- Estar presente en persona para la foto, la firma y las huellas.\n"
        "- Si es menor de 18 años y está casado, acta de matrimonio certificada.\n"
        "- Puede venir acompañado de su padre o su madre, pero no es obligatorio.",
        "cedula.md",
        "Cédula > Primera cédula > Requisitos",
        1.0,
    )
    answer = phone_answer(hit, query="¿qué necesito para la primera cédula?")
    assert answer == (
        "Necesita: acta de nacimiento certificada y estar presente en persona para la foto."
    )


def test_phone_answer_keeps_two_sentences_with_the_amounts() -> None:
    hit = Hit(
        "El pasaporte para adultos cuesta RD$3,500 y vale por 10 años. El de menores cuesta "
        "RD$2,500 y vale por 5 años. El servicio urgente cuesta RD$2,000 adicionales. Si se "
        "perdió, se paga un recargo de RD$1,000.",
        "pasaporte.md",
        "Pasaporte > Costos",
        1.0,
    )
    answer = phone_answer(hit, query="¿cuánto cuesta el pasaporte para adultos y menores?")
    assert "3500 pesos" in answer and "2500 pesos" in answer
    assert len(sentences(answer)) <= 2 and word_count(answer) <= 35


# --- the tool, on the office's real knowledge base --------------------------------------------


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> OfficeTools:
    kb = KnowledgeBase.load(tmp_path_factory.mktemp("kb"), REAL_SOURCE)
    return OfficeTools(kb, None)


def ctx() -> CallContext:
    return CallContext(call_id="variants-test")


async def ask(tools: OfficeTools, query: str) -> dict[str, Any]:
    return await tools.call("search_knowledge", {"query": query}, ctx())


@pytest.mark.parametrize(
    ("question", "option_words", "expected"),
    [
        (
            "¿Qué necesito para sacar el pasaporte?",
            {"primera vez", "renovación", "menores de edad"},
            {
                "primera vez": "Requisitos para el primer pasaporte",
                "renovación": "Requisitos para renovar el pasaporte",
                "menores de edad": "Requisitos para el pasaporte de un menor",
            },
        ),
        (
            "cuanto cuesta la sedula",
            {"primera cédula", "renovación", "duplicado por pérdida"},
            {
                "primera cédula": "Primera cédula > Costo",
                "renovación": "Costo de la renovación",
                "duplicado por pérdida": "Costo del duplicado",
            },
        ),
        (
            "que necesito para sacar la licencia",
            {"permiso de aprendizaje", "primera vez", "renovación"},
            {
                "permiso de aprendizaje": "Permiso de aprendizaje",
                "primera vez": "Requisitos de la primera licencia",
                "renovación": "Requisitos para renovar la licencia",
            },
        ),
    ],
)
async def test_open_questions_ask_and_the_option_lands_on_its_variant(
    tools: OfficeTools, question: str, option_words: set[str], expected: dict[str, str]
) -> None:
    result = await ask(tools, question)
    clarify = result["clarify"]
    assert set(clarify["options"]) == option_words
    assert 2 <= len(clarify["options"]) <= 3
    assert result["answer"] == clarify["question"]
    assert clarify["question"].endswith("?") and word_count(clarify["question"]) <= 16
    for index, option in enumerate(clarify["options"]):
        again = await ask(tools, f"{question} {option}")
        assert "clarify" not in again, option
        assert again["heading"].endswith(expected[option]), (option, again["heading"])
        assert again["answer"] and fits_phone(again["answer"]), again["answer"]
        assert index == clarify["options"].index(option)  # DTMF n ↔ options[n - 1]


@pytest.mark.parametrize(
    ("question", "heading", "facts"),
    [
        ("¿cuánto cuesta el pasaporte de mi hijo?", "Costo del pasaporte de menores", ["2500"]),
        (
            "requisitos pa el pasa porte de un niño",
            "Requisitos para el pasaporte de un menor",
            ["acta de nacimiento"],
        ),
        (
            "mi pasaporte se venció, qué necesito",
            "Requisitos para renovar el pasaporte",
            ["pasaporte anterior"],
        ),
        ("cuanto me cobran por renovar la sedula", "Costo de la renovación", ["200 pesos"]),
        (
            "que nesesito pa sacar la cedula por primera ves",
            "Primera cédula > Requisitos",
            ["acta de nacimiento"],
        ),
        ("se me perdió la cédula", "Duplicado por pérdida, robo o deterioro", ["duplicado"]),
        ("cuanto cuesta el duplicao de la cedula", "Costo del duplicado", ["300 pesos"]),
        (
            "cuanto vale renovar la lisencia",
            "Costo de la renovación de la licencia",
            ["1000 pesos", "1500 pesos"],
        ),
        (
            "qué necesito para pedir un acta de defunción",
            "Acta de defunción",
            ["cédula", "fecha de fallecimiento"],
        ),
        ("cuanto cuesta un acta de matrimonio", "Costo de las actas", ["150 pesos"]),
        ("cuanto cuesta un acta de nacimiento", "Costo de las actas", ["150 pesos"]),
        (
            "¿Cuánto cuesta el pasaporte?",
            "Costos y vigencia del pasaporte",
            ["3500 pesos", "2500 pesos"],
        ),
        ("¿cuánto tarda la cédula?", "Duración", ["5 días laborables"]),
        ("¿cuánto dura el pasaporte?", "Costos y vigencia del pasaporte", ["10 años"]),
        ("¿dónde puedo sacar el pasaporte?", "Pasaporte", ["Santiago"]),
        ("¿Dónde pago una multa de tránsito?", "Multas de tránsito", ["bancos"]),
        ("¿cuánto cuesta la visa?", "Visas", ["no tramita visas"]),
        ("donde queda la oficina de santiago", "Punto Ciudadano Santiago", ["Duarte"]),
        ("ustedes abren los sabados", "Horario de atención", ["sábados", "8", "12"]),
        (
            "Si pido un acta de nacimiento, ¿cuándo me la entregan?",
            "Tiempo de entrega",
            ["mismo día"],
        ),
        ("¿Por cuánto tiempo vale el certificado de no antecedentes?", "Vigencia", ["90 días"]),
        ("cuanto cuesta el pasaporte rapido", "Costos y vigencia del pasaporte", ["2000 pesos"]),
    ],
)
async def test_named_or_agreeing_variants_are_answered_with_their_facts(
    tools: OfficeTools, question: str, heading: str, facts: list[str]
) -> None:
    result = await ask(tools, question)
    assert "clarify" not in result, result.get("clarify")
    assert heading in result["heading"], result["heading"]
    assert result["hits"][0]["heading"] == result["heading"]
    answer = result["answer"]
    assert fits_phone(answer), answer
    for fact in facts:
        assert fact in answer, (fact, answer)


async def test_a_caller_s_own_words_answer_the_clarifying_question(tools: OfficeTools) -> None:
    question = "¿Qué necesito para sacar el pasaporte?"
    assert "clarify" in await ask(tools, question)
    for reply, heading in (
        ("es para mi hija", "Requisitos para el pasaporte de un menor"),
        ("lo voy a renovar", "Requisitos para renovar el pasaporte"),
        ("es mi primer pasaporte", "Requisitos para el primer pasaporte"),
    ):
        result = await ask(tools, f"{question} {reply}")
        assert result["heading"].endswith(heading), (reply, result["heading"])


async def test_every_section_answer_fits_a_phone_turn(tools: OfficeTools) -> None:
    kb = tools.knowledge
    for node in kb.nodes:
        hit = Hit(node.text, node.metadata["file_name"], node.metadata["heading"], 1.0)
        for query in (None, node.metadata["heading"]):
            answer = phone_answer(hit, query=query)
            assert answer and fits_phone(answer), (node.node_id, answer)
            assert not re.search(r"RD\$|[*#]|\d:\d\d", answer), answer


async def test_a_reply_that_rules_a_variant_out_narrows_the_question(tools: OfficeTools) -> None:
    question = "¿Qué necesito para sacar el pasaporte?"
    for reply in ("para un adulto", "es mayor de edad"):
        result = await ask(tools, f"{question} {reply}")
        assert result["clarify"]["options"] == ["primera vez", "renovación"], reply
    both = await ask(tools, f"{question} es mayor de edad y es la primera vez")
    assert both["heading"].endswith("Requisitos para el primer pasaporte")


async def test_a_labelled_list_reads_the_item_asked_for(tools: OfficeTools) -> None:
    result = await ask(tools, "que papeles piden pa la licencia permiso de aprendizaje")
    assert result["heading"].endswith("Permiso de aprendizaje")
    assert result["answer"].startswith("Requisitos: cédula"), result["answer"]
    cost = await ask(tools, "cuanto cuesta el permiso de aprendizaje")
    assert "600 pesos" in cost["answer"] and fits_phone(cost["answer"])


async def test_a_new_knowledge_file_with_variants_works_through_the_tool(tmp_path: Path) -> None:
    """No code knows "pesca": the chunker's heading paths are enough."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "pesca.md").write_text(PESCA_MD, encoding="utf-8")
    (source / "otros.md").write_text("# Otros\n\n## Horario\n\nAbrimos a las 8:00.\n")
    tools = OfficeTools(KnowledgeBase.load(tmp_path / "data", source), None)
    asked = await ask(tools, "que rekisitos piden pal permiso de pezca")
    assert asked["clarify"]["options"] == ["deportiva", "renovación", "comercial"]
    again = await ask(tools, "que rekisitos piden pal permiso de pezca renovación")
    assert again["heading"].endswith("Requisitos para renovar el permiso")
    assert again["answer"] == "Necesita: el permiso anterior y cédula vigente."
    cost = await ask(tools, "cuanto cuesta el permiso deportivo")
    assert cost["answer"] == "El permiso deportivo cuesta 900 pesos."


async def test_a_question_naming_no_procedure_asks_which_one(tools: OfficeTools) -> None:
    asked = await ask(tools, "¿cuánto cuesta?")
    options = asked["clarify"]["options"]
    assert set(options) == {"pasaporte", "cédula", "licencia"}
    assert asked["answer"].startswith("El costo depende del trámite: ¿")
    cedula = await ask(tools, "¿cuánto cuesta? cédula")
    assert cedula["clarify"]["options"][0] == "primera cédula"  # then which variant
    passport = await ask(tools, "¿cuánto cuesta? pasaporte")
    assert "3500 pesos" in passport["answer"]
    assert "clarify" not in await ask(tools, "¿cuánto cuesta la cita?")


async def test_a_title_said_beats_a_passage_that_only_mentions_it(tools: OfficeTools) -> None:
    urgent = await ask(tools, "¿Cuánto cuesta el acta urgente?")
    assert urgent["source"] == "actas_estado_civil.md" and "150 pesos" in urgent["answer"]
    scam = await ask(tools, "Un señor me está cobrando por conseguirme la cita, ¿es legal?")
    assert scam["heading"].endswith("Cobros por teléfono y estafas")
    valid = await ask(tools, "¿Cuánto tiempo es válido el certificado de no antecedentes?")
    assert "90 días" in valid["answer"]
