"""Turning retrieved sections into citations, LLM context and sentences fit to be spoken.

A passage written for reading (Markdown, bullet lists, "RD$3,500", "8:00") sounds wrong through
text-to-speech: symbols are spelled out and "3,500" is read as a decimal number in Spanish.
:func:`speakable_answer` keeps the one or two sentences that answer the question and rewrites
what TTS would misread.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from knowledge.base import Hit
from knowledge.chunking import HEADING_SEPARATOR
from knowledge.facets import question_facet
from knowledge.text import SpanishAnalyzer, default_analyzer, fold_accents

NO_CONTEXT = "No se encontró información sobre esto en la base de conocimiento de la oficina."


def citation(hit: Hit) -> str:
    """Short human-readable source of a hit: ``"pasaporte.md — Pasaporte > Renovación"``."""
    return f"{hit.source} — {hit.heading}" if hit.heading else hit.source


def context_block(hits: Sequence[Hit], max_chars_per_hit: int = 1200) -> str:
    """Hits formatted for a retrieval-augmented system prompt, numbered for citation."""
    if not hits:
        return NO_CONTEXT
    parts = [
        "Información de la base de conocimiento de la oficina. Responda solo con estos datos "
        "y, si no alcanzan, dígalo. Fuentes entre corchetes:"
    ]
    for number, hit in enumerate(hits, start=1):
        text = hit.text.strip()
        if len(text) > max_chars_per_hit:
            text = text[:max_chars_per_hit].rsplit(" ", 1)[0] + " …"
        parts.append(f"[{number}] {citation(hit)}\n{text}")
    return "\n\n".join(parts)


# --- speech normalisation -------------------------------------------------------------------

_MONEY = re.compile(r"(?:RD\$|\$RD|RD\s\$)\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{2}))?")
_DOLLARS = re.compile(r"(?:US\$|USD\s?)\s?(\d{1,3}(?:,\d{3})+|\d+)")
_PHONE = re.compile(r"\b(\d{3})-(\d{3})-(\d{4})\b")
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_AM_PM = re.compile(r"\s*\b([ap])\.?\s?m\.?(?=\s|$|[,;)])", re.IGNORECASE)
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(.+?)\1")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[¿¡A-ZÁÉÍÓÚÑ0-9])")


def _spoken_time(match: re.Match[str]) -> str:
    hour, minutes = match.group(1), match.group(2)
    if minutes == "00":
        return hour
    if minutes == "30":
        return f"{hour} y media"
    if minutes == "15":
        return f"{hour} y cuarto"
    return f"{hour} y {int(minutes)}"


def _spoken_am_pm(match: re.Match[str]) -> str:
    return " de la mañana" if match.group(1).lower() == "a" else " de la tarde"


def _spoken_phone(match: re.Match[str]) -> str:
    # Digit by digit, groups separated by commas: how phone numbers are read out.
    return ", ".join(" ".join(group) for group in match.groups())


def _spoken_email(match: re.Match[str]) -> str:
    domain = " punto ".join(match.group(2).split("."))
    return f"{match.group(1)} arroba {domain}"


def to_speech(text: str) -> str:
    """Plain text that TTS reads as a person would: no Markdown, no symbols to spell out."""
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _MONEY.sub(lambda m: f"{m.group(1).replace(',', '')} pesos", text)
    text = _DOLLARS.sub(lambda m: f"{m.group(1).replace(',', '')} dólares", text)
    text = _PHONE.sub(_spoken_phone, text)
    text = _EMAIL.sub(_spoken_email, text)
    text = _TIME.sub(_spoken_time, text)
    text = _AM_PM.sub(_spoken_am_pm, text)
    text = text.replace("“", "").replace("”", "").replace('"', "").replace("«", "")
    text = text.replace("»", "").replace("#", "").replace("*", "").replace("`", "")
    text = re.sub(r"\s*[–—]\s*", ", ", text)
    text = re.sub(r"(?<=\w)/(?=\w)", " o ", text)
    text = text.replace("%", " por ciento").replace("&", " y ")
    return re.sub(r"\s+", " ", text).strip()


# --- choosing what to say -------------------------------------------------------------------


@dataclass
class _Unit:
    """A sentence, or one item of a bullet list (``group`` = which list)."""

    text: str
    position: int
    group: int | None = None
    intro: str = ""  # the sentence introducing the list, e.g. "Requisitos:"


def _units(markdown: str) -> list[_Unit]:
    units: list[_Unit] = []
    group = 0
    previous_kind = ""
    for block in re.split(r"\n\s*\n", markdown.strip()):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        if all(_LIST_ITEM.match(line) or line.startswith("  ") for line in lines):
            group += 1
            intro = ""
            if previous_kind == "text" and units and units[-1].text.rstrip().endswith(":"):
                intro = units.pop().text
            for line in lines:
                if _LIST_ITEM.match(line):
                    item = _LIST_ITEM.sub("", line).strip()
                    units.append(_Unit(item, len(units), group, intro))
                elif units:  # continuation line of the previous item
                    units[-1].text += " " + line.strip()
            previous_kind = "list"
            continue
        paragraph = " ".join(_HEADING.sub("", line).strip() for line in lines)
        if _HEADING.match(lines[0]) and len(lines) == 1:
            previous_kind = "heading"
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            if sentence.strip():
                units.append(_Unit(sentence.strip(), len(units)))
        previous_kind = "text"
    for i, unit in enumerate(units):
        unit.position = i
    return units


def _lower_first(text: str) -> str:
    """Lower-case an item's first letter when it starts a common word, mid-sentence."""
    words = text.split(" ", 2)
    if len(words) > 1 and words[1][:1].isupper():  # a name: "Santo Domingo", "La Romana"
        return text
    return text[:1].lower() + text[1:]


def _is_statement(item: str) -> bool:
    """Items that are sentences, "label: value" pairs or have commas of their own read better
    one by one: joined with commas, a listener could not tell where one item ends."""
    return ": " in item or ", " in item or bool(_SENTENCE_END.search(item))


def _join_items(items: list[str]) -> str:
    items = [i.rstrip(" .;,") for i in items]
    if any(_is_statement(i) for i in items):
        return " ".join(_end_sentence(i) for i in items)
    if len(items) == 1:
        return items[0]
    items = [items[0], *(_lower_first(i) for i in items[1:])]
    return ", ".join(items[:-1]) + " y " + items[-1]


def _render(selected: list[_Unit]) -> str:
    """Sentences as they are; consecutive items of one list joined with commas."""
    parts: list[str] = []
    i = 0
    ordered = sorted(selected, key=lambda u: u.position)
    while i < len(ordered):
        unit = ordered[i]
        if unit.group is None:
            parts.append(_end_sentence(unit.text))
            i += 1
            continue
        items = [unit.text]
        j = i + 1
        while j < len(ordered) and ordered[j].group == unit.group:
            items.append(ordered[j].text)
            j += 1
        joined = _join_items(items)
        if unit.intro and not any(_is_statement(item) for item in items):
            joined = f"{unit.intro.rstrip(' :')}: {_lower_first(joined)}"
        parts.append(_end_sentence(joined))
        i = j
    return " ".join(parts)


def _first_sentence(item: str) -> str:
    return _SENTENCE_END.split(item, maxsplit=1)[0].rstrip(" .")


def _compressed_list(units: list[_Unit], max_chars: int) -> list[_Unit] | None:
    """A whole list, items cut to their first sentence if need be; None if it never fits."""
    for shorten in (None, _first_sentence):
        candidate = [
            _Unit(shorten(u.text) if shorten else u.text, u.position, u.group, u.intro)
            for u in units
        ]
        if len(_render(candidate)) <= max_chars:
            return candidate
    return None


def _end_sentence(text: str) -> str:
    text = text.strip().rstrip(",;:")
    return text if text.endswith((".", "?", "!", "…")) else text + "."


def _truncate(text: str, max_chars: int) -> str:
    """Cut at a clause or word boundary and close the sentence: no half words on the phone."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    for separator in (". ", "; ", ", ", " "):
        position = cut.rfind(separator)
        if position >= max_chars // 3:
            cut = cut[:position]
            break
    return _end_sentence(cut.rstrip(" ,;:"))


def _score(unit: _Unit, terms: set[str], analyzer: SpanishAnalyzer) -> int:
    return len(terms & set(analyzer.tokenize(unit.intro + " " + unit.text)))


def _weighted_scores(
    units: list[_Unit], terms: set[str], analyzer: SpanishAnalyzer
) -> dict[int, float]:
    """How well each unit matches the question. A word found in one sentence of the passage
    tells more than one found in all of them: "¿cuánto cuesta el pasaporte urgente?" is about
    the sentence with "urgente"."""
    found = {u.position: terms & set(analyzer.tokenize(f"{u.intro} {u.text}")) for u in units}
    spread = Counter(t for words in found.values() for t in words)
    return {position: sum(1 / spread[t] for t in words) for position, words in found.items()}


def speakable_answer(
    hit: Hit | str,
    max_chars: int = 300,
    query: str | None = None,
    max_sentences: int = 2,
) -> str:
    """One or two sentences of a passage, the ones closest to ``query``, ready for TTS.

    A bullet list that fits is read as one sentence ("a, b y c"); a list too long to read is
    reduced to its items that match the question. Always ≤ ``max_chars`` and free of Markdown.
    """
    text = hit if isinstance(hit, str) else hit.text
    analyzer = default_analyzer()
    units = [u for u in _units(text) if to_speech(u.text)]
    for unit in units:
        unit.text = to_speech(unit.text)
        unit.intro = to_speech(unit.intro)
    if not units:
        return ""
    terms = set(analyzer.query_terms(query)) if query else set()
    scores = _weighted_scores(units, terms, analyzer)
    best = max(units, key=lambda u: (scores[u.position], -u.position))

    selected: list[_Unit] = []
    if best.group is not None:
        whole = [u for u in units if u.group == best.group]
        # A list that fits (shortened if need be) is read whole: the caller asking "¿qué
        # necesito?" wants all the requirements. Otherwise only the items that match.
        selected = _compressed_list(whole, max_chars) or []
    if not selected:
        # When the question asks for the section itself ("¿qué llevo a la cita?" → "Qué llevar
        # a la cita") every item of its list answers it. When it also asks for something more
        # specific that some items mention ("el teléfono de Santiago" → "Punto Ciudadano
        # Santiago"), only those items do.
        heading = "" if isinstance(hit, str) else hit.heading.rsplit(HEADING_SEPARATOR, 1)[-1]
        heading_terms = set(analyzer.tokenize(heading))
        residual = terms - heading_terms
        specific = any(_score(u, residual, analyzer) for u in units if u.group == best.group)
        section_asked = bool(terms & heading_terms) and not specific
        selected = [best]
        ranked = sorted(units, key=lambda u: (-scores[u.position], u.position))
        for unit in ranked:
            if unit is best:
                continue
            same_list = best.group is not None and unit.group == best.group
            if terms and scores[unit.position] == 0 and not (same_list and section_asked):
                continue
            sentences = sum(1 for u in selected if u.group is None)
            if unit.group is None and sentences >= max_sentences:
                continue
            candidate = [*selected, unit]
            if len(_render(candidate)) <= max_chars:
                selected = candidate
    return _truncate(_render(selected), max_chars)


# --- answers for the phone -------------------------------------------------------------------

# A caller keeps about two short sentences in mind; longer answers are cut or compressed.
PHONE_MAX_WORDS = 35
PHONE_MAX_SENTENCES = 2
PHONE_MAX_CHARS = 240
_CLAUSE_END = re.compile(r",\s|;\s|:\s|\s\(|\.\s")
_WORDS = re.compile(r"\S+")


def sentences(text: str) -> list[str]:
    """The sentences of a spoken answer, as a listener hears them end."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def fits_phone(
    text: str, max_words: int = PHONE_MAX_WORDS, max_sentences: int = PHONE_MAX_SENTENCES
) -> bool:
    """Short enough to be understood in one hearing."""
    return word_count(text) <= max_words and len(sentences(text)) <= max_sentences


def _item_head(item: str) -> str:
    """The part of a list item a caller needs: "Acta de nacimiento certificada, original,
    emitida hace menos de 6 meses" → "acta de nacimiento certificada". A "label: value" item
    keeps its value ("Costo: 600 pesos"): that is the fact."""
    item = item.strip().rstrip(" .;,")
    if ": " in item:
        label, _, value = item.partition(": ")
        value = _SENTENCE_END.split(value, maxsplit=1)[0].rstrip(" .;,")
        return f"{label}: {value}"
    match = _CLAUSE_END.search(item)
    head = item[: match.start()] if match else item
    return re.sub(r"\s+(?:o|y|u|e)$", "", head)


def _conditional(item: str) -> bool:
    """ "Si es menor de 18 años y está casado, …": a case, not a requirement for everyone; its
    head would lose the consequence, so a compressed list leaves it out."""
    return bool(re.match(r"(?i)si\b", item.strip()))


def _optional(item: str) -> bool:
    """Permissions and notes ("Puede venir acompañado…", "No hace falta…") go next."""
    return bool(re.match(r"(?i)(?:no hace falta|puede|pueden|también)\b", item.strip()))


def _list_answer(hit: Any, query: str | None, max_words: int) -> str:
    """A list read as one sentence of short items, the optional ones dropped if need be."""
    text = hit if isinstance(hit, str) else hit.text
    units = [u for u in _units(text) if u.group is not None]
    if not units:
        return ""
    analyzer = default_analyzer()
    terms = set(analyzer.query_terms(query)) if query else set()
    groups: dict[int, list[_Unit]] = {}
    for unit in units:
        groups.setdefault(unit.group or 0, []).append(unit)
    best = max(
        groups.values(),
        key=lambda g: (sum(_score(u, terms, analyzer) for u in g), len(g), -g[0].position),
    )
    heading = "" if isinstance(hit, str) else hit.heading.rsplit(HEADING_SEPARATOR, 1)[-1]
    intro = to_speech(best[0].intro).rstrip(" :")
    if not intro and re.search(r"(?i)\brequisitos?\b", fold_accents(heading.lower())):
        intro = "Necesita"
    items = [to_speech(u.text) for u in best]
    items = [_item_head(i) for i in items if not _conditional(i)] or [_item_head(i) for i in items]
    items = [i for i in items if i]
    if intro == "Necesita":  # "Necesita: …, y puede venir acompañado" is not a requirement
        items = [i for i in items if not _optional(i)] or items
    # A list of "label: value" facts ("Costo: 600 pesos", "Requisitos: …"): the ones whose
    # label the question asks for.
    labelled = [i for i in items if ": " in i]
    if terms and len(labelled) == len(items):
        asked = [i for i in items if set(analyzer.tokenize(i.partition(": ")[0])) & terms]
        items = asked or items

    def render(chosen: list[str]) -> str:
        if any(": " in i for i in chosen):
            body = "; ".join(chosen[:1] + [_lower_first(i) for i in chosen[1:]])
        else:
            body = _join_items(chosen)
        if intro:
            return _end_sentence(f"{intro}: {_lower_first(body)}")
        return _end_sentence(body[:1].upper() + body[1:])

    chosen = list(items)
    while word_count(render(chosen)) > max_words:
        optional = [i for i in chosen if _optional(i)]
        if optional:
            chosen.remove(optional[-1])
        elif len(chosen) > 2:
            chosen.pop()
        else:
            break
    return render(chosen)


def _cut(text: str, max_words: int, max_sentences: int) -> str:
    """At most ``max_sentences`` sentences and ``max_words`` words, cut at a clause."""
    kept = " ".join(sentences(text)[:max_sentences])
    if word_count(kept) <= max_words:
        return kept
    words = _WORDS.findall(kept)[:max_words]
    cut = " ".join(words)
    for separator in (". ", "; ", ", ", " y "):
        position = cut.rfind(separator)
        if position >= len(cut) // 2:
            cut = cut[:position]
            break
    return _end_sentence(cut.rstrip(" ,;:"))


_SUBORDINATE = re.compile(r"(?i)(?:pero |y |o )?(?:si|cuando|aunque|mientras|porque|para que)\b")


def _sound_cut(original: str, cut: str) -> bool:
    """A cut answer still says something: its last sentence is whole, or was cut after a main
    clause, not inside a condition ("Pero si falta a tres citas." says nothing)."""
    last = sentences(cut)[-1] if sentences(cut) else ""
    if last in sentences(original):
        return True
    return not (_SUBORDINATE.match(last) and "," not in last)


def phone_answer(
    hit: Any,
    query: str | None = None,
    max_words: int = PHONE_MAX_WORDS,
    max_sentences: int = PHONE_MAX_SENTENCES,
) -> str:
    """The answer to read on the phone: at most two short sentences (≈35 words) that keep the
    facts asked for. A requirements list becomes one sentence of short items; prose keeps the
    sentences closest to the question."""
    listed = _list_answer(hit, query, max_words)
    wants_list = _wants_list(hit, query)
    if listed and wants_list and fits_phone(listed, max_words, max_sentences):
        return listed  # every requirement, not just the ones that share a word with the question
    answer = speakable_answer(
        hit, max_chars=PHONE_MAX_CHARS, query=query, max_sentences=max_sentences
    )
    if answer and fits_phone(answer, max_words, max_sentences):
        return answer
    if answer:
        cut = _cut(answer, max_words, max_sentences)
        # A cut inside a later sentence keeps a bit of each ("Le esperamos 15 minutos. Si llega
        # más tarde, la cita se pierde"); a cut that only drops whole sentences should drop the
        # least relevant ones instead (below).
        if sentences(cut)[-1:] != sentences(answer)[len(sentences(cut)) - 1 : len(sentences(cut))]:
            if _sound_cut(answer, cut):
                return cut
    greedy = _best_first(hit, query, max_words, max_sentences)
    if greedy:
        return greedy
    if listed and fits_phone(listed, max_words, max_sentences):
        return listed
    return _cut(answer or listed, max_words, max_sentences)


def _wants_list(hit: Any, query: str | None) -> bool:
    """A requirements list is read whole (compressed): every item is something to bring."""
    heading = "" if isinstance(hit, str) else fold_accents(hit.heading.lower())
    facet = question_facet(query) if query else None
    return bool(re.search(r"\brequisitos?\b", heading)) or (
        facet is not None and facet.name == "requirements"
    )


def _best_first(hit: Any, query: str | None, max_words: int, max_sentences: int) -> str:
    """The units closest to the question, best first, while the answer still fits."""
    text = hit if isinstance(hit, str) else hit.text
    units = [u for u in _units(text) if to_speech(u.text)]
    for unit in units:
        unit.text = to_speech(unit.text)
        unit.intro = to_speech(unit.intro)
    analyzer = default_analyzer()
    terms = set(analyzer.query_terms(query)) if query else set()
    # Words the heading already has ("La Romana" in "Punto Ciudadano La Romana") chose the
    # section; the other words ("hora") choose the sentence.
    heading = "" if isinstance(hit, str) else hit.heading.rsplit(HEADING_SEPARATOR, 1)[-1]
    terms = (terms - set(analyzer.tokenize(heading))) or terms
    scores = _weighted_scores(units, terms, analyzer)
    wants_number = _asks_for_number(query)
    ranked = sorted(
        units,
        key=lambda u: (
            -(scores[u.position] + (0.5 if wants_number and re.search(r"\d", u.text) else 0)),
            u.position,
        ),
    )
    selected: list[_Unit] = []
    for unit in ranked:
        if selected and terms and scores[unit.position] == 0:
            break
        candidate = [*selected, unit]
        if fits_phone(_render(candidate), max_words, max_sentences):
            selected = candidate
    return _render(selected)


def _asks_for_number(query: str | None) -> bool:
    facet = question_facet(query) if query else None
    return facet is not None and facet.numeric
