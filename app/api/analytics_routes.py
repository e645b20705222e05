"""How the assistant performs: volume, latency, bookings, transfers, what people ask.

Numbers are computed on request from the call records of the last ``days`` office days. The
aggregates that need no per-row logic stay in SQL; percentiles, day buckets in the office's
time zone and question grouping are done in Python on already-narrowed columns.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import and_, exists, func, or_, select

from app.api.deps import ApiRoute, ServicesDep, office_tz
from app.auth import AgentUser
from app.personal_data import Redactor
from app.storage.models import Booking, Call, Turn

router = APIRouter(prefix="/analytics", tags=["analytics"], route_class=ApiRoute)

TOP_QUESTIONS = 10


class DayCount(BaseModel):
    day: date
    calls: int


class QuestionCount(BaseModel):
    text: str
    count: int


class Analytics(BaseModel):
    days: int
    since: datetime  # start of the window: office midnight, ``days - 1`` days before today
    calls_total: int
    calls_per_day: list[DayCount]  # every day of the window, oldest first, zeros included
    median_turn_latency_ms: float | None  # end of caller speech → first reply audio sent
    p95_turn_latency_ms: float | None
    booking_rate: float  # share of calls in which an appointment was booked (0..1)
    transfer_rate: float  # share of calls handed to a human agent (0..1)
    # Share of calls in which the assistant said at least once that it did not understand.
    not_understood_rate: float
    not_understood_calls: int
    top_questions: list[QuestionCount]  # most frequent first things callers said


# Words that change nothing about what is asked: greetings, courtesy, fillers and the usual
# ways of opening a request. Compared after folding (no accents, lower case).
_OPENERS = re.compile(
    r"\b(?:hola|ola|alo|aló|buenas|buenos|buen|dias|tardes|noches|senor(?:a|ita)?|disculpe|"
    r"perdon|oiga|mire|por favor|favor|gracias|eh+|este|bueno|pues|mmm+|ah+|oh+|si|"
    r"quisiera|quiero|queria|necesito|me gustaria|podria|puede|me puede|me podria|"
    r"saber|preguntar|consultar|una pregunta|informacion sobre|informacion de|"
    r"le llamo para|llamo para|llamaba para|es para|para saber)\b"
)
_ARTICLES = re.compile(
    r"\b(?:el|la|los|las|un|una|unos|unas|de|del|a|al|que|y|me|mi|lo|le|para|en|usted|ustedes|"
    r"oficina|oficinas)\b"
)


def question_key(text: str) -> str:
    """Group what callers say however it was transcribed and however it was put: case,
    accents, punctuation, greetings, courtesy and fillers ("Hola, buenos días, ¿a qué hora
    abren?" / "a que hora abren por favor") do not make two questions. Word order is kept
    apart from that: "abren a qué hora" and "a qué hora abren" group together too."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    words = re.sub(r"[^\w]+", " ", folded)
    core = _ARTICLES.sub(" ", _OPENERS.sub(" ", words)).split()
    if not core:  # only a greeting: group it with the other greetings
        return " ".join(words.split())
    return " ".join(sorted(core))


# How the assistant says it did not understand (pipeline/brain/phrases.py and the LLM's own
# wording), folded: matched as substrings of its replies.
NOT_UNDERSTOOD_MARKS = (
    "no le entendi",
    "no le estoy entendiendo",
    "no le escuche",
    "no entendi",
)


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: always a latency some caller actually waited."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def top_questions(texts: list[str], n: int = TOP_QUESTIONS) -> list[QuestionCount]:
    """Most frequent first, each shown in its most common spelling."""
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for text in texts:
        key = question_key(text)
        if key:
            spellings[key][" ".join(text.split())] += 1
    ranked = sorted(spellings.items(), key=lambda kv: -sum(kv[1].values()))
    return [
        QuestionCount(text=variants.most_common(1)[0][0], count=sum(variants.values()))
        for _, variants in ranked[:n]
    ]


@router.get("", response_model=Analytics, summary="Indicadores de los últimos días")
async def analytics(
    services: ServicesDep,
    principal: AgentUser,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Analytics:
    tz = office_tz(services)
    today = datetime.now(tz).date()
    first_day = today - timedelta(days=days - 1)
    since = datetime.combine(first_day, time(0), tzinfo=tz)
    in_window = Call.started_at >= since

    booked = exists().where(Booking.call_sid == Call.call_sid)
    calls_q = select(
        Call.started_at,
        or_(Call.outcome == "booked", booked).label("booked"),
        or_(Call.outcome == "transferred", Call.end_reason == "transfer").label("transferred"),
    ).where(in_window)
    # Replies only: seq 0 is the greeting, whose latency is measured on its own.
    latency_q = (
        select(Turn.timings["first_byte_ms"].as_float())
        .join(Call, Turn.call_id == Call.id)
        .where(in_window, Turn.speaker == "bot", Turn.seq > 0)
    )
    first = (
        select(Turn.call_id, func.min(Turn.seq).label("seq"))
        .join(Call, Turn.call_id == Call.id)
        .where(in_window, Turn.speaker == "caller", Turn.text != "")
        .group_by(Turn.call_id)
        .subquery()
    )
    questions_q = select(Turn.text).join(
        first, and_(Turn.call_id == first.c.call_id, Turn.seq == first.c.seq)
    )
    # Candidate replies narrowed in SQL ("entend"/"escuch" in the text), judged in Python.
    unclear_q = (
        select(Turn.call_id, Turn.text)
        .join(Call, Turn.call_id == Call.id)
        .where(
            in_window,
            Turn.speaker == "bot",
            or_(Turn.text.ilike("%entend%"), Turn.text.ilike("%escuch%")),
        )
    )
    async with services.db.session() as s:
        calls = (await s.execute(calls_q)).all()
        latencies = [float(v) for v in (await s.scalars(latency_q)).all() if v is not None]
        first_texts = list((await s.scalars(questions_q)).all())
        unclear = (await s.execute(unclear_q)).all()
    # Folding, grouping and masking every call's first words (up to a year of calls) is CPU
    # work: in a worker thread, so live calls on this event loop are not held up.
    return await asyncio.to_thread(
        _summarise,
        days,
        since,
        tz,
        calls,
        latencies,
        first_texts,
        unclear,
        Redactor.for_principal(principal),
    )


def _summarise(
    days: int,
    since: datetime,
    tz: tzinfo,
    calls: Sequence[Any],
    latencies: list[float],
    first_texts: list[str],
    unclear: Sequence[Any],
    redact: Redactor,
) -> Analytics:
    """The figures from the rows read (plain Python, no I/O: runs in a worker thread)."""
    first_day = since.date()
    unclear_calls = {
        call_id for call_id, text in unclear if any(m in _fold(text) for m in NOT_UNDERSTOOD_MARKS)
    }

    per_day: Counter[date] = Counter(started.astimezone(tz).date() for started, _, _ in calls)
    total = len(calls)
    return Analytics(
        days=days,
        since=since,
        calls_total=total,
        calls_per_day=[
            DayCount(
                day=first_day + timedelta(days=i),
                calls=per_day.get(first_day + timedelta(days=i), 0),
            )
            for i in range(days)
        ],
        median_turn_latency_ms=round(statistics.median(latencies), 1) if latencies else None,
        p95_turn_latency_ms=round(percentile(latencies, 95), 1) if latencies else None,
        booking_rate=round(sum(1 for c in calls if c.booked) / total, 4) if total else 0.0,
        transfer_rate=round(sum(1 for c in calls if c.transferred) / total, 4) if total else 0.0,
        not_understood_rate=round(len(unclear_calls) / total, 4) if total else 0.0,
        not_understood_calls=len(unclear_calls),
        # What callers said first may be a cédula or phone number: masked for agents.
        top_questions=top_questions([redact.text(t) or "" for t in first_texts]),
    )
