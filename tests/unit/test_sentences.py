"""Cutting streamed text into speakable sentences."""

from __future__ import annotations

from pipeline.sentences import SentenceSplitter


def feed(tokens: list[str]) -> list[tuple[int, str]]:
    """(index of the token that released it, sentence) for every sentence."""
    splitter = SentenceSplitter()
    out = [(i, s) for i, tok in enumerate(tokens) for s in splitter.push(tok)]
    return out + [(len(tokens), s) for s in splitter.flush()]


def test_a_finished_sentence_is_released_on_its_last_token() -> None:
    tokens = [
        "Nuestras",
        " oficinas",
        " abren",
        " el",
        " lunes",
        ".",
        " ¿",
        "Desea",
        " algo",
        " más",
        "?",
    ]
    assert feed(tokens) == [
        (5, "Nuestras oficinas abren el lunes."),
        (10, "¿Desea algo más?"),
    ]


def test_numbers_abbreviations_and_times_do_not_end_sentences() -> None:
    text = "El costo es RD$1.500 aprox. por persona. Abrimos a las 8:30 en la Av. Duarte. Gracias."
    sentences = [s for _, s in feed([c for c in text])]
    assert sentences == [
        "El costo es RD$1.500 aprox. por persona.",
        "Abrimos a las 8:30 en la Av. Duarte.",
        "Gracias.",
    ]


def test_short_fragments_join_the_next_sentence() -> None:
    assert [s for _, s in feed(["Sí.", " Le", " ayudo", " con", " eso", " ahora."])] == [
        "Sí. Le ayudo con eso ahora."
    ]


def test_a_long_run_without_punctuation_is_cut_at_a_comma() -> None:
    text = "Necesita traer " + ", ".join(f"el documento número {i}" for i in range(30))
    words = text.split(" ")
    sentences = [s for _, s in feed([words[0], *(" " + w for w in words[1:])])]
    assert len(sentences) > 1
    assert all(len(s) <= 240 for s in sentences)
    assert " ".join(sentences) == text
