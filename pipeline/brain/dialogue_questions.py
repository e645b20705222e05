"""Questions for the knowledge base: a focused query, the passage that answers the kind of
question asked, a relevance check, and a short spoken answer with its source recorded."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pipeline.brain import phrases
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.faq import faq_answer
from pipeline.brain.intents import knowledge_topic, question_facet
from pipeline.brain.spanish_text import normalize
from pipeline.brain.tools import SEARCH_KNOWLEDGE

__all__ = ["QuestionsHandler"]

# Words that put a question in the office's domain even when the documents say little about
# its other words ("¿Me van a castigar si falto a la cita?").
_ANCHOR_WORDS = (
    "cita turno horario hora abren cierran direccion telefono correo costo cuesta precio "
    "tarjeta efectivo dolares requisitos documento papeles queja reclamacion agente feriado "
    "sabado domingo parqueo parquear accesibilidad embarazada preferencial fila visa multa "
    "traduccion traducen estafa gestor recibo denuncia duplicado renovar renovacion vencida "
    "menor interprete senas extranjero tramite certificado"
).split()
# Words of a question that say nothing about what is asked, for the relevance check.
_GENERIC_WORDS = (
    "oficina oficinas punto ciudadano puedo pueden puede hacer hacen tener tienen "
    "dia dias saber quiero necesito favor usted ustedes ahi alli donde cuando como cuanto"
).split()
_TOPIC_WORDS = {
    "hours": "horario",
    "hours_saturday": "horario sábados",
    "address": "dirección",
    "phone": "teléfono",
}


class QuestionsHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self._speakable: Callable[..., str] | None = None
        self._analyzer: Any = None
        self._generic_terms: set[str] = set()
        self._anchor_terms: set[str] = set()
        if kit.tools is not None:
            self._load_text_tools()

    def _load_text_tools(self) -> None:
        """Import the knowledge package's text helpers now, not during a caller's turn."""
        try:
            from knowledge.speech import speakable_answer
            from knowledge.text import default_analyzer
        except ImportError:  # a deployment without the knowledge package
            return
        self._speakable = speakable_answer
        self._analyzer = default_analyzer()
        self._generic_terms = set(self._analyzer.tokenize(" ".join(_GENERIC_WORDS)))
        self._anchor_terms = set(self._analyzer.tokenize(" ".join(_ANCHOR_WORDS)))

    async def answer(self, t: Turn) -> bool:
        """Answer the utterance as a question; False when nothing relevant was found."""
        kit = self.kit
        if kit.tools is None:
            faq = faq_answer(t.norm)
            if faq is None:
                return False
            t.progress = True
            t.st.sources.append(faq.source)
            t.say(faq.text)
            self.after_answer(t, None)
            return True
        query, prefer = self._query(t)
        facet = question_facet(t.norm) if not prefer else ()
        args: dict[str, Any] = {"query": query}
        if prefer or facet:
            args["k"] = 5
        result = await kit.tool(t, SEARCH_KNOWLEDGE, args)
        hits = result.get("hits") or []
        if "error" in result or not hits:
            return False
        hit = hits[0]
        if prefer:
            hit = next((h for h in hits if h["heading"].endswith(prefer)), hit)
        elif facet:
            hit = next((h for h in hits if _answers_facet(h, hits[0], facet)), hit)
        if query == t.raw and not self._relevant(t, hits, hit):
            return False
        answer = result.get("answer") if hit is hits[0] else None
        if not answer and self._speakable is not None:
            answer = self._speakable(hit["text"], query=query)
        if not answer:
            return False
        answer = _naturalize(answer)
        t.progress = True
        t.st.sources.append(
            f"{hit['source']} — {hit['heading']}" if hit["heading"] else hit["source"]
        )
        t.say(answer)
        services = kit.catalog.find_services(t.norm)
        self.after_answer(t, services[0] if services else None)
        return True

    def _query(self, t: Turn) -> tuple[str, str | None]:
        """A focused query for questions about one office's hours, address or phone, and the
        heading suffix of the section that answers it."""
        catalog = self.kit.catalog
        topic = knowledge_topic(t.norm)
        offices = catalog.find_offices(t.norm)
        services = catalog.find_services(t.norm)
        if topic and len(offices) == 1:
            office = catalog.office(offices[0])
            if office is not None:
                return f"{_TOPIC_WORDS[topic]} {office.name}", office.name
        if topic in ("hours", "hours_saturday") and not offices and not services:
            if topic == "hours_saturday":
                return "¿Qué oficinas abren los sábados y a qué hora abren y cierran?", None
            return "¿A qué hora abren y cierran las oficinas?", None
        return t.raw, None

    def after_answer(self, t: Turn, service: str | None) -> None:
        """Back to the booking under way, or offer one for the service asked about."""
        st = t.st
        if st.task and st.resume_prompt:
            t.say(f"{phrases.BACK_TO_BOOKING} {st.resume_prompt}")
            return
        if service and self.kit.tools is not None and self.kit.catalog.service(service):
            st.offer_service = service
            st.awaiting = "offer_booking"
            t.ask(phrases.OFFER_BOOKING)
            return
        st.awaiting = "anything_else"
        t.ask(phrases.ANYTHING_ELSE, resume=False)

    def _relevant(self, t: Turn, hits: list[dict[str, Any]], hit: dict[str, Any]) -> bool:
        """Is the best passage an answer, or only a lexical accident? BM25 finds something for
        "quiero pagar la luz" ("pagar" is in the documents). A question is out of scope when
        half or more of its meaningful words appear in none of the passages found and it names
        nothing the office deals with; and the chosen passage must share a meaningful word."""
        if self._analyzer is None:
            return True
        terms = set(self._analyzer.tokenize(t.raw)) - self._generic_terms
        if not terms:
            return float(hit.get("score", 0)) > 0
        found: set[str] = set()
        for h in hits:
            found |= set(self._analyzer.tokenize(h["heading"] + " " + h["text"]))
        unmatched = terms - found
        anchored = bool(
            terms & self._anchor_terms
            or self.kit.catalog.find_services(t.norm)
            or self.kit.catalog.find_offices(t.norm)
        )
        if 2 * len(unmatched) >= len(terms) and not anchored:
            return False
        expanded = set(self._analyzer.query_terms(t.raw)) - self._generic_terms
        own = set(self._analyzer.tokenize(hit["heading"] + " " + hit["text"]))
        return bool(expanded & own)


_LABELS = {
    "direccion": "La dirección es",
    "telefono": "El teléfono es",
    "horario": "El horario es",
    "servicios": "Los servicios son",
    "parqueo": "En cuanto al parqueo,",
}
_LABEL = re.compile(r"(?:(?<=^)|(?<=[.!?] ))([A-ZÁÉÍÓÚÑ][a-záéíóúñ]+): ")


def _naturalize(answer: str) -> str:
    """ "Dirección: calle Duarte 45." → "La dirección es calle Duarte 45.": a list item's
    label reads like a form on the phone."""

    def label(m: re.Match[str]) -> str:
        lead = _LABELS.get(normalize(m.group(1)))
        return f"{lead} " if lead else m.group(0)

    return _LABEL.sub(label, answer)


def _answers_facet(hit: dict[str, Any], top: dict[str, Any], words: tuple[str, ...]) -> bool:
    """A section of the best document whose own heading names the facet asked about."""
    if hit["source"] != top["source"]:
        return False
    last = normalize(hit["heading"].rsplit(">", 1)[-1])
    return any(re.search(rf"\b{w}\b", last) for w in words)
