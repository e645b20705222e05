"""Quality work on calls: which caller questions went unanswered or were misunderstood, and
what the assistant would answer to a question typed by staff.

A caller turn is judged by the reply that followed it, using the assistant's own fixed
sentences (``pipeline.brain.phrases`` and the session's apologies), so the report follows the
dialogue when its wording changes: a reply that opens with "Disculpe, no le entendí" means the
turn was misunderstood; "Disculpe, con eso no le puedo ayudar" or a knowledge search that found
nothing means the question was out of the knowledge base's reach. A caller turn in which no
words could be recognised counts as misunderstood too.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.brain import phrases
from pipeline.brain.base import CallContext, Message, TextChunk, ToolEvent, UserInput
from pipeline.brain.tools import SEARCH_KNOWLEDGE
from pipeline.session import SORRY_NOT_UNDERSTOOD, SORRY_PROBLEM

Problem = Literal["no_entendida", "sin_respuesta"]

# Openings of a reply that say the caller was not understood.
MISUNDERSTOOD_OPENINGS = (
    SORRY_NOT_UNDERSTOOD,
    SORRY_PROBLEM,
    phrases.NOT_UNDERSTOOD,
    phrases.NOT_CAUGHT,
    phrases.NOT_HEARD,
    phrases.LINE_UNCLEAR,
)
# Openings of a reply that say the question has no answer here.
UNANSWERED_OPENINGS = (phrases.CANNOT_HELP_WITH_THAT,)
NO_WORDS = "(no se reconocieron palabras)"


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


_MISS = tuple(_fold(s) for s in MISUNDERSTOOD_OPENINGS)
_UNANSWERED = tuple(_fold(s) for s in UNANSWERED_OPENINGS)


def _empty_search(tools: list[Any]) -> bool:
    """A knowledge search ran and found nothing (or failed) in this reply."""
    searches = [t for t in tools or [] if isinstance(t, dict) and t.get("name") == SEARCH_KNOWLEDGE]
    if not searches:
        return False
    for tool in searches:
        result = tool.get("result")
        if isinstance(result, dict) and "error" not in result and result.get("hits"):
            return False
    return True


def classify_reply(text: str) -> Problem | None:
    """What a reply's opening says about the turn before it, from its words alone."""
    said = _fold(text)
    if said.startswith(_MISS):
        return "no_entendida"
    if said.startswith(_UNANSWERED):
        return "sin_respuesta"
    return None


def classify(caller: Any, reply: Any | None) -> Problem | None:
    """Was this caller turn misunderstood, unanswered, or fine (None)?"""
    timings = caller.timings or {}
    if not (caller.text or "").strip():
        return "no_entendida" if timings.get("unheard") and not caller.dtmf else None
    if reply is None:
        return None
    by_words = classify_reply(reply.text or "")
    if by_words is not None:
        return by_words
    # The report computes this flag in SQL (tools carry whole passages: not worth loading).
    empty = getattr(reply, "empty_search", None)
    if empty is None:
        empty = _empty_search(reply.tools)
    return "sin_respuesta" if empty else None


@dataclass
class Exchange:
    """A caller turn, the reply after it, and the call they belong to."""

    call_sid: str
    started_at: Any
    caller: Any
    reply: Any | None


def exchanges(call_sid: str, started_at: Any, turns: list[Any]) -> list[Exchange]:
    """Pair each caller turn with the next bot turn of the same call (turns in seq order)."""
    out: list[Exchange] = []
    for i, turn in enumerate(turns):
        if turn.speaker != "caller":
            continue
        reply = next((t for t in turns[i + 1 :] if t.speaker == "bot"), None)
        out.append(Exchange(call_sid, started_at, turn, reply))
    return out


# --- "probar una pregunta" ---------------------------------------------------------------------


@dataclass
class TrialAnswer:
    answer: str
    brain: str
    passages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)


async def try_question(brain: Any, question: str, timeout_s: float = 20.0) -> TrialAnswer:
    """What the assistant answers to ``question`` as a call's first words, and the passages it
    searched: the same brain, tools and knowledge the calls use, with a throwaway context (no
    call row, nothing recorded). The greeting runs first so the brain is in the state it has
    when a caller speaks."""
    ctx = CallContext(call_id=f"probar-{uuid.uuid4().hex[:12]}", ingress="simulator")

    async def run() -> TrialAnswer:
        greeting = await brain.greeting(ctx)
        ctx.history.append(Message("assistant", greeting))
        ctx.history.append(Message("user", question))
        text: list[str] = []
        events: list[dict[str, Any]] = []
        async for out in brain.respond(ctx, UserInput(text=question)):
            if isinstance(out, TextChunk):
                text.append(out.text)
            elif isinstance(out, ToolEvent):
                events.append({"name": out.name, "arguments": out.arguments, "result": out.result})
        answer = " ".join("".join(text).split())
        from app.call_review import passages_of

        texts = {
            (str(h.get("source") or ""), str(h.get("heading") or "")): str(h.get("text") or "")
            for e in events
            if e["name"] == SEARCH_KNOWLEDGE and isinstance(e["result"], dict)
            for h in e["result"].get("hits") or []
            if isinstance(h, dict)
        }
        found = passages_of(events, answered=classify_reply(answer) is None, reply_text=answer)
        return TrialAnswer(
            answer=answer,
            brain=str(getattr(brain, "name", "") or ""),
            passages=[
                {
                    "source": p.source,
                    "heading": p.heading,
                    "score": p.score,
                    "text": texts.get((p.source, p.heading), "")[:600],
                    "used": p.used,
                }
                for p in found
            ],
            tools=[e["name"] for e in events],
        )

    return await asyncio.wait_for(run(), timeout_s)
