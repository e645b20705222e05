"""Quality work: the report of questions the assistant misunderstood or could not answer,
the tags in use, and "probar una pregunta" (what the assistant would answer, and from which
passage).

Roles: agents and admins. Question texts are callers' words, so digits in them are masked for
agents like every transcript (``app.personal_data``).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import Text, and_, cast, not_, or_, select

from app.api.analytics_routes import question_key
from app.api.deps import ApiRoute, ServicesDep, office_tz
from app.api.review_routes import tag_counts
from app.auth import AgentUser
from app.personal_data import Redactor
from app.quality import NO_WORDS, classify, exchanges, try_question
from app.storage.models import Call, CallTag, Turn
from pipeline.brain.tools import SEARCH_KNOWLEDGE

router = APIRouter(prefix="/quality", tags=["quality"], route_class=ApiRoute)

MAX_GROUPS = 50
CALLS_PER_GROUP = 10
KIND_LABELS = {"no_entendida": "No entendida", "sin_respuesta": "Sin respuesta"}
MAX_CONCURRENT_TRIALS = 2  # «probar una pregunta» runs at once, per process
_trials_running = [0]


class CallRef(BaseModel):
    call_sid: str
    started_at: datetime


class ProblemGroup(BaseModel):
    text: str  # the most common spelling of the question
    kind: str  # no_entendida | sin_respuesta
    kind_label: str
    count: int  # how many times it was said (and missed)
    calls: list[CallRef]  # newest first, at most CALLS_PER_GROUP
    call_count: int


class TagCount(BaseModel):
    tag: str
    count: int


class QualityReport(BaseModel):
    days: int
    since: datetime
    caller_turns: int  # what callers said in the window (turns with words or unheard)
    misunderstood: int
    unanswered: int
    groups: list[ProblemGroup]
    tags: list[TagCount]
    tagged_calls: dict[str, list[CallRef]]  # tag → its calls in the window, newest first


class TryIn(BaseModel):
    question: str = Field(min_length=1, max_length=500)


class TryPassage(BaseModel):
    source: str
    heading: str
    score: float | None
    text: str
    used: bool


class TryOut(BaseModel):
    question: str
    answer: str
    brain: str
    passages: list[TryPassage]
    tools: list[str]


@router.get(
    "/report", response_model=QualityReport, summary="Preguntas no entendidas o sin respuesta"
)
async def report(
    services: ServicesDep,
    principal: AgentUser,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> QualityReport:
    tz = office_tz(services)
    first_day = datetime.now(tz).date() - timedelta(days=days - 1)
    since = datetime.combine(first_day, time(0), tzinfo=tz)
    # Only the columns the judgement needs: a turn's tools hold whole knowledge passages, so
    # "a search that found nothing" is decided in SQL on their JSON text (both backends write
    # it as ``"hits": []``), and the JSON itself never leaves the database.
    tools_text = cast(Turn.tools, Text)
    empty_search = and_(
        Turn.speaker == "bot",
        tools_text.contains(f'"name": "{SEARCH_KNOWLEDGE}"'),
        or_(tools_text.contains('"hits": []'), tools_text.contains('"error": ')),
        not_(tools_text.contains('"hits": [{')),
    )
    in_window = select(Call.id).where(Call.started_at >= since).scalar_subquery()
    stmt = (
        select(
            Turn.call_id,
            Turn.seq,
            Turn.speaker,
            Turn.text,
            Turn.dtmf,
            Turn.timings["unheard"].as_float().label("unheard"),
            empty_search.label("empty_search"),
        )
        .where(Turn.call_id.in_(in_window))
        .order_by(Turn.call_id, Turn.seq)
    )
    async with services.db.session() as s:
        calls_in_window = {
            cid: (sid, started)
            for cid, sid, started in (
                await s.execute(
                    select(Call.id, Call.call_sid, Call.started_at).where(Call.started_at >= since)
                )
            ).all()
        }
        rows = (await s.execute(stmt)).all()
        tag_rows = (
            await s.execute(
                select(CallTag.tag, Call.call_sid, Call.started_at)
                .join(Call, CallTag.call_id == Call.id)
                .where(Call.started_at >= since)
                .order_by(Call.started_at.desc())
            )
        ).all()

    # Judging every turn of up to a year is CPU work: in a worker thread, so live calls on
    # this event loop are not held up while the report is built.
    return await asyncio.to_thread(
        _summarise, days, since, rows, calls_in_window, tag_rows, Redactor.for_principal(principal)
    )


def _summarise(
    days: int,
    since: datetime,
    rows: Sequence[Any],
    calls_in_window: dict[int, tuple[str, datetime]],
    tag_rows: Sequence[Any],
    redact: Redactor,
) -> QualityReport:
    """The report from the rows read (plain Python, no I/O: runs in a worker thread)."""
    by_call: dict[str, tuple[datetime, list[Any]]] = {}
    for call_id, seq, speaker, text, dtmf, unheard, empty in rows:
        known = calls_in_window.get(call_id)
        if known is None:  # a call that started while we were reading
            continue
        turn = SimpleNamespace(
            seq=seq,
            speaker=speaker,
            text=text,
            timings={"unheard": unheard} if unheard else {},
            dtmf=dtmf,
            tools=None,
            empty_search=bool(empty),
        )
        by_call.setdefault(known[0], (known[1], []))[1].append(turn)

    spellings: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    calls: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
    caller_turns = misunderstood = unanswered = 0
    for sid, (started, turns) in by_call.items():
        for ex in exchanges(sid, started, turns):
            caller_turns += 1
            kind = classify(ex.caller, ex.reply)
            if kind is None:
                continue
            if kind == "no_entendida":
                misunderstood += 1
            else:
                unanswered += 1
            text = " ".join((ex.caller.text or "").split()) or NO_WORDS
            key = (kind, question_key(text) or text)
            spellings[key][text] += 1
            calls[key][sid] = started

    ranked = sorted(spellings.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    groups = []
    for key, variants in ranked[:MAX_GROUPS]:
        kind = key[0]
        refs = sorted(calls[key].items(), key=lambda kv: kv[1], reverse=True)
        groups.append(
            ProblemGroup(
                text=redact.text(variants.most_common(1)[0][0]) or "",
                kind=kind,
                kind_label=KIND_LABELS[kind],
                count=sum(variants.values()),
                calls=[CallRef(call_sid=s, started_at=t) for s, t in refs[:CALLS_PER_GROUP]],
                call_count=len(refs),
            )
        )
    tagged: dict[str, list[CallRef]] = defaultdict(list)
    for tag, sid, started in tag_rows:
        if len(tagged[tag]) < CALLS_PER_GROUP:
            tagged[tag].append(CallRef(call_sid=sid, started_at=started))
    tag_total = Counter(tag for tag, _, _ in tag_rows)
    return QualityReport(
        days=days,
        since=since,
        caller_turns=caller_turns,
        misunderstood=misunderstood,
        unanswered=unanswered,
        groups=groups,
        tags=[TagCount(tag=t, count=n) for t, n in tag_total.most_common()],
        tagged_calls=dict(tagged),
    )


@router.get(
    "/call-tags",
    response_model=dict[str, list[str]],
    summary="Las etiquetas de varias llamadas (para la lista de llamadas)",
)
async def call_tags(
    services: ServicesDep,
    _: AgentUser,
    sid: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006 (FastAPI's list query)
) -> dict[str, list[str]]:
    wanted = list(dict.fromkeys(s for s in sid if s))[:500]
    if not wanted:
        return {}
    async with services.db.session() as s:
        rows = (
            await s.execute(
                select(Call.call_sid, CallTag.tag)
                .join(CallTag, CallTag.call_id == Call.id)
                .where(Call.call_sid.in_(wanted))
                .order_by(Call.call_sid, CallTag.tag)
            )
        ).all()
    out: dict[str, list[str]] = {}
    for call_sid, tag in rows:
        out.setdefault(call_sid, []).append(tag)
    return out


@router.get("/tags", response_model=list[TagCount], summary="Etiquetas en uso (sugerencias)")
async def tags(services: ServicesDep, _: AgentUser) -> list[TagCount]:
    return [TagCount(tag=t, count=n) for t, n in await tag_counts(services)]


@router.post(
    "/try",
    response_model=TryOut,
    summary="Probar una pregunta: lo que respondería el asistente y de qué pasaje",
    responses={
        429: {"description": "Demasiadas pruebas a la vez"},
        504: {"description": "El asistente tardó demasiado"},
    },
)
async def try_a_question(body: TryIn, services: ServicesDep, principal: AgentUser) -> TryOut:
    question = " ".join(body.question.split())
    if not question:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="Escriba una pregunta.")
    if _trials_running[0] >= MAX_CONCURRENT_TRIALS:
        # Trials share the brain, the index and the CPU with live calls: a few at a time.
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="Hay otras pruebas en curso. Intente de nuevo en unos segundos.",
            headers={"Retry-After": "2"},
        )
    _trials_running[0] += 1
    try:
        trial = await try_question(services.engines.brain, question)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            detail="El asistente tardó demasiado en responder. Intente de nuevo.",
        ) from None
    finally:
        _trials_running[0] -= 1
    redact = Redactor.for_principal(principal)
    return TryOut(
        question=question,
        answer=redact.text(trial.answer) or "",
        brain=trial.brain,
        passages=[
            TryPassage(
                source=p["source"],
                heading=p["heading"],
                score=p["score"] if isinstance(p["score"], int | float) else None,
                text=p["text"],
                used=p["used"],
            )
            for p in trial.passages
        ],
        tools=trial.tools,
    )
