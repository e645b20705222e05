"""Questions for the knowledge base: a focused query, the passage that answers the kind of
question asked, a relevance check, and a short spoken answer with its source recorded."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pipeline.brain import phrases
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.faq import faq_answer
from pipeline.brain.intents import asks_question, choice_index, knowledge_topic
from pipeline.brain.spanish_text import normalize
from pipeline.brain.tools import SEARCH_KNOWLEDGE

__all__ = ["QUESTION_STEPS", "QuestionsHandler"]

QUESTION_STEPS = frozenset({"clarify"})

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
            from knowledge.speech import phone_answer
            from knowledge.text import default_analyzer
        except ImportError:  # a deployment without the knowledge package
            return
        self._speakable = phone_answer  # at most two sentences: what a phone call can carry
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
        result = await kit.tool(t, SEARCH_KNOWLEDGE, {"query": query, "k": 5 if prefer else 3})
        hits = result.get("hits") or []
        if "error" in result or not hits:
            return False
        hit = hits[0]
        if prefer:
            hit = next((h for h in hits if h["heading"].endswith(prefer)), hit)
        # The caller's own words must find an answer (a follow-up only adds the topic).
        follow_up = query != t.raw
        if query.startswith(t.raw) and not self._relevant(t, hits, hit, follow_up):
            return False
        services = kit.catalog.find_services(t.norm)
        service = services[0] if services else None
        clarify = result.get("clarify")
        if isinstance(clarify, dict) and clarify.get("question") and clarify.get("options"):
            # "¿Primera vez, renovación o menores de edad?": ask which before answering.
            t.progress = True
            t.st.clarify = {**clarify, "query": query, "service": service}
            t.st.offer_service = service
            t.st.awaiting = "clarify"
            t.st.choices = list(clarify["options"])
            t.ask(str(clarify["question"]))
            return True
        return self._speak(t, result, hit, query, service)

    def _speak(
        self, t: Turn, result: dict[str, Any], hit: dict[str, Any], query: str, service: str | None
    ) -> bool:
        hits = result.get("hits") or []
        answer = result.get("answer") if hits and hit is hits[0] else None
        if not answer and self._speakable is not None:
            answer = self._speakable(hit["text"], query=query)
        if not answer:
            return False
        t.progress = True
        t.st.sources.append(
            f"{hit['source']} — {hit['heading']}" if hit["heading"] else hit["source"]
        )
        t.say(_naturalize(answer))
        self.after_answer(t, service)
        return True

    async def fill(self, t: Turn) -> bool:
        """The caller's pick among the variants asked about ("para un menor", "la dos")."""
        st = t.st
        options: list[str] = list((st.clarify or {}).get("options") or [])
        if not options:
            return False
        index = choice_index(t.norm, len(options))
        if index is None:
            index = _option_said(t.norm, options)
        if index is not None:
            await self.answer_variant(t, options[index])
            return True
        if t.goal or asks_question(t.norm, t.raw) or not t.norm:
            return False  # another question or request: the variant is left open
        return await self.answer_variant(t, t.raw, fallback=False)

    async def on_key(self, t: Turn, digits: str) -> bool:
        st = t.st
        options = list((st.clarify or {}).get("options") or [])
        if st.awaiting != "clarify" or not digits.isdigit():
            return False
        index = int(digits) - 1
        if not 0 <= index < len(options):
            return False
        await self.answer_variant(t, options[index])
        return True

    async def answer_variant(self, t: Turn, said: str, *, fallback: bool = True) -> bool:
        """Search again with the variant appended to the first question, and answer."""
        st = t.st
        pending = st.clarify or {}
        query = f"{pending.get('query', '')} {said}".strip()
        result = await self.kit.tool(t, SEARCH_KNOWLEDGE, {"query": query})
        hits = result.get("hits") or []
        narrower = result.get("clarify")
        if (
            isinstance(narrower, dict)
            and narrower.get("options")
            and len(narrower["options"]) < len(pending.get("options") or [])
        ):
            # "para un adulto" rules the minors out: "¿primera vez o renovación?" once more.
            t.progress = True
            st.clarify = {**narrower, "query": query, "service": pending.get("service")}
            st.choices = list(narrower["options"])
            t.ask(str(narrower["question"]))
            return True
        if "error" in result or not hits or (narrower and not fallback):
            return False
        st.clarify = None
        st.awaiting = None
        answer_result = result
        if result.get("clarify"):
            answer_result = {"hits": hits}  # still open: read the best passage as it is
        return self._speak(t, answer_result, hits[0], query, pending.get("service"))

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
                return "¿Qué oficinas abren los sábados?", None
            return "¿A qué hora abren y cierran las oficinas?", None
        follow = catalog.service(t.st.topic_service) if t.st.topic_service else None
        if follow is not None and not services and not offices and not topic:
            # "¿Y cuándo me la entregan?" right after a question about actas: about actas.
            return f"{t.raw} {follow.spoken}", None
        return t.raw, None

    def after_answer(self, t: Turn, service: str | None) -> None:
        """Back to the booking under way, or offer one for the service asked about."""
        st = t.st
        if service:
            st.topic_service = service
        if st.task and st.resume_prompt:
            t.say(f"{phrases.BACK_TO_BOOKING} {t.pending_question()}")
            return
        if service and self.kit.tools is not None and self.kit.catalog.service(service):
            st.offer_service = service
            st.awaiting = "offer_booking"
            t.ask(phrases.OFFER_BOOKING)
            return
        st.awaiting = "anything_else"
        t.ask(phrases.WANT_MORE_INFO, resume=False)

    def _relevant(
        self, t: Turn, hits: list[dict[str, Any]], hit: dict[str, Any], follow_up: bool = False
    ) -> bool:
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
            follow_up  # about the service of the last answer: the passage must still match
            or terms & self._anchor_terms
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


def _option_said(norm: str, options: list[str]) -> int | None:
    """The option whose words the caller used ("renovación" in "la voy a renovar")."""
    said = set(norm.split())
    best: tuple[int, int] | None = None
    for i, option in enumerate(options):
        words = [w for w in normalize(option).split() if len(w) >= 4]
        hits = sum(1 for w in words if w in said or any(s[:5] == w[:5] for s in said))
        if hits and (best is None or hits > best[0]):
            best = (hits, i)
    return best[1] if best else None
