"""Calls, their turns and Twilio stream events."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)

from app.storage._sql import upsert
from app.storage.database import Database
from app.storage.errors import UnknownCall
from app.storage.models import Booking, Call, StreamEvent, Turn, utcnow
from app.storage.records import CallDetail, CallSummary, StreamEventRecord, TurnRecord


def phone_digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def phone_filter(column: Any, phone: str) -> ColumnElement[bool]:
    """Match a number however it was written: the last ten digits identify a Dominican (NANP)
    number whether stored as +18095551234, 809-555-1234 or 8095551234."""
    digits = phone_digits(phone)[-10:]
    if not digits:
        return column.contains(phone, autoescape=True)
    # Stored numbers are E.164 from Twilio or typed by people; compare the digit suffix by
    # stripping the usual separators in SQL so both spellings meet.
    stripped = column
    for ch in ("+", "-", " ", "(", ")", "."):
        stripped = func.replace(stripped, ch, "")
    return stripped.like(f"%{digits}")


_TURN_COLUMNS = (
    "speaker",
    "text",
    "heard_text",
    "interrupted",
    "started_at",
    "ended_at",
    "timings",
    "tools",
    "dtmf",
)
_CALL_ID = select(Call.id).where(Call.call_sid == bindparam("sid"))

# End reasons of calls that ended by accident rather than by anyone's choice.
FAILED_END_REASONS = ("disconnected", "protocol-error", "error", "timeout", "server-lost")
# A call still "in progress" long after the longest call allowed lost its process (crash,
# kill -9, power cut): :meth:`CallRepository.close_abandoned` ends it with this reason.
LOST_END_REASON = "server-lost"


# Accented letters folded by transcript search; both backends apply the same table in SQL.
_ACCENTED = "áàâäéèêëíìîïóòôöúùûüñç"
_PLAIN = "aaaaeeeeiiiioooouuuunc"
_FOLD = str.maketrans(_ACCENTED, _PLAIN)
SNIPPET_CHARS = 140


def fold(text: str) -> str:
    """Lower-case without accents, one character for one (so offsets in the folded text are
    offsets in the original): "Cédula" → "cedula"."""
    return text.lower().translate(_FOLD)


def _folded_column(db: Database, column: Any) -> Any:
    if db.is_sqlite:
        folded = func.taina_casefold(column)  # Unicode-aware lower case (registered UDF)
        for accented, plain in zip(_ACCENTED, _PLAIN, strict=True):
            folded = func.replace(folded, accented, plain)
        return folded
    return func.translate(func.lower(column), _ACCENTED, _PLAIN)


def contains_folded(db: Database, column: Any, needle: str) -> ColumnElement[bool]:
    """Case- and accent-insensitive substring match: "cedula" finds "Cédula" (issue 14).
    User wildcards (% and _) match literally."""
    return _folded_column(db, column).contains(fold(needle), autoescape=True)


def snippet(text: str, needle: str, width: int = SNIPPET_CHARS) -> tuple[str, int, int] | None:
    """A window of ``text`` around the first accent-insensitive match of ``needle``, and the
    match's start and end inside the window (for highlighting); None without a match."""
    at = fold(text).find(fold(needle))
    if at < 0 or not needle:
        return None
    start = max(0, at - (width - len(needle)) // 2)
    end = min(len(text), max(at + len(needle), start + width))
    start = max(0, min(start, end - width))
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    window = prefix + text[start:end] + suffix
    begin = len(prefix) + at - start
    return window, begin, begin + len(needle)


def effective_outcome() -> ColumnElement[str | None]:
    """What happened on the call, as staff read it (issue 14).

    The stored ``outcome`` only says how the assistant ended the call; a booking made during
    the call is the strongest fact ("booked", whatever the ending), and a call with no stored
    outcome is classified by how it ended: the caller hanging up before anything was settled
    ("abandoned") or an accident ("interrupted").
    """
    booked = exists().where(Booking.call_sid == Call.call_sid)
    return case(
        (booked, literal("booked")),
        (Call.outcome.is_not(None), Call.outcome),
        (Call.end_reason == "caller-hangup", literal("abandoned")),
        (Call.end_reason.in_(FAILED_END_REASONS), literal("interrupted")),
        else_=Call.outcome,
    )


class CallRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._turn_upsert: Any = None

    def _turn_statement(self) -> Any:
        """Built once: constructing an upsert (its ``excluded`` columns) costs more CPU than
        running it, and every turn of every call goes through here."""
        if self._turn_upsert is None:
            stmt = upsert(self.db, Turn)
            self._turn_upsert = stmt.on_conflict_do_update(
                index_elements=["call_id", "seq"],
                set_={c: stmt.excluded[c] for c in _TURN_COLUMNS},
            )
        return self._turn_upsert

    # --- writes (all idempotent: the recorder may retry them) ---------------------------------

    async def start_call(
        self,
        call_sid: str,
        ingress: str,
        caller_number: str | None = None,
        called_number: str | None = None,
        stream_sid: str | None = None,
        started_at: datetime | None = None,
        meta: dict[str, Any] | None = None,
        answered_at: datetime | None = None,
    ) -> int:
        """Create the call row (or fill in what a retry or a second ingress event adds)."""
        stmt = upsert(self.db, Call).values(
            call_sid=call_sid,
            ingress=ingress,
            caller_number=caller_number,
            called_number=called_number,
            stream_sid=stream_sid,
            started_at=started_at or utcnow(),
            answered_at=answered_at,
            meta=meta or {},
        )
        keep = ("caller_number", "called_number", "stream_sid", "answered_at")
        stmt = stmt.on_conflict_do_update(
            index_elements=["call_sid"],
            set_={c: func.coalesce(stmt.excluded[c], Call.__table__.c[c]) for c in keep},
        ).returning(Call.id)
        async with self.db.session(write=True) as s:
            return int((await s.execute(stmt)).scalar_one())

    async def add_turn(self, call_sid: str, turn: TurnRecord) -> None:
        """Write a finished turn; writing the same ``seq`` again replaces it."""
        values: dict[str, Any] = {
            "speaker": turn.speaker,
            "text": turn.text,
            "heard_text": turn.heard_text,
            "interrupted": turn.interrupted,
            "started_at": turn.started_at,
            "ended_at": turn.ended_at,
            "timings": dict(turn.timings),
            "tools": list(turn.tools),
            "dtmf": turn.dtmf,
        }
        async with self.db.session(write=True) as s:
            call_id = await s.scalar(_CALL_ID, {"sid": call_sid})
            if call_id is None:
                raise UnknownCall(call_sid)
            await s.execute(self._turn_statement(), {"call_id": call_id, "seq": turn.seq, **values})

    async def end_call(
        self,
        call_sid: str,
        ended_at: datetime | None = None,
        end_reason: str | None = None,
        outcome: str | None = None,
    ) -> None:
        """Close the call. An outcome already set during the call (e.g. "booked" by a tool)
        is kept unless a new one is given."""
        await self._update(
            call_sid,
            ended_at=ended_at or utcnow(),
            end_reason=func.coalesce(end_reason, Call.end_reason),
            outcome=func.coalesce(outcome, Call.outcome),
        )

    async def set_outcome(self, call_sid: str, outcome: str) -> None:
        await self._update(call_sid, outcome=outcome)

    async def set_greeting_ms(self, call_sid: str, greeting_ms: float) -> None:
        await self._update(call_sid, greeting_ms=greeting_ms)

    async def mark_answered(self, call_sid: str, answered_at: datetime | None = None) -> None:
        await self._update(call_sid, answered_at=answered_at or utcnow())

    async def update_meta(self, call_sid: str, **meta: Any) -> None:
        """Merge keys into the call's meta (read-modify-write inside one write transaction)."""
        async with self.db.session(write=True) as s:
            call = await s.scalar(select(Call).where(Call.call_sid == call_sid))
            if call is None:
                raise UnknownCall(call_sid)
            call.meta = {**(call.meta or {}), **meta}

    async def _update(self, call_sid: str, **values: Any) -> None:
        async with self.db.session(write=True) as s:
            result = await s.execute(update(Call).where(Call.call_sid == call_sid).values(values))
            if result.rowcount == 0:
                raise UnknownCall(call_sid)

    async def record_stream_event(
        self,
        call_sid: str | None,
        stream_sid: str | None,
        event: str,
        error: str | None = None,
        received_at: datetime | None = None,
        payload: dict[str, Any] | None = None,
    ) -> int:
        row = StreamEvent(
            call_sid=call_sid,
            stream_sid=stream_sid,
            event=event,
            error=error,
            received_at=received_at or utcnow(),
            payload=payload or {},
        )
        async with self.db.session(write=True) as s:
            s.add(row)
            await s.flush()
            return row.id

    # --- reads --------------------------------------------------------------------------------

    async def get_call(self, call_sid: str) -> CallDetail | None:
        async with self.db.session() as s:
            call = await s.scalar(select(Call).where(Call.call_sid == call_sid))
            if call is None:
                return None
            turns = (
                await s.scalars(select(Turn).where(Turn.call_id == call.id).order_by(Turn.seq))
            ).all()
            outcome = await s.scalar(select(effective_outcome()).where(Call.id == call.id))
            return CallDetail(
                **{**_summary_fields(call), "outcome": outcome},
                turn_count=len(turns),
                stream_sid=call.stream_sid,
                meta=dict(call.meta or {}),
                turns=[_turn_record(t) for t in turns],
            )

    async def list_calls(
        self,
        limit: int = 50,
        offset: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        ingress: str | None = None,
        outcome: str | None = None,
        phone: str | None = None,
        text: str | None = None,
    ) -> list[CallSummary]:
        """Newest first. ``since`` is inclusive, ``until`` exclusive; ``phone`` matches caller
        or called number; ``text`` searches what was said in any turn."""
        turn_count = select(func.count(Turn.id)).where(Turn.call_id == Call.id).scalar_subquery()
        stmt: Select[Any] = select(
            Call, turn_count.label("turn_count"), effective_outcome().label("effective")
        )
        stmt = self._filtered(stmt, since, until, ingress, outcome, phone, text)
        stmt = stmt.order_by(Call.started_at.desc(), Call.id.desc()).limit(limit).offset(offset)
        async with self.db.session() as s:
            rows = (await s.execute(stmt)).all()
        return [
            CallSummary(**{**_summary_fields(c), "outcome": eff}, turn_count=int(n))
            for c, n, eff in rows
        ]

    async def count_calls(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        ingress: str | None = None,
        outcome: str | None = None,
        phone: str | None = None,
        text: str | None = None,
    ) -> int:
        stmt: Select[Any] = select(func.count(Call.id))
        stmt = self._filtered(stmt, since, until, ingress, outcome, phone, text)
        async with self.db.session() as s:
            return int((await s.execute(stmt)).scalar_one())

    def _filtered(
        self,
        stmt: Select[Any],
        since: datetime | None,
        until: datetime | None,
        ingress: str | None,
        outcome: str | None,
        phone: str | None,
        text: str | None,
    ) -> Select[Any]:
        if since is not None:
            stmt = stmt.where(Call.started_at >= since)
        if until is not None:
            stmt = stmt.where(Call.started_at < until)
        if ingress:
            stmt = stmt.where(Call.ingress == ingress)
        if outcome:
            stmt = stmt.where(effective_outcome() == outcome)
        if phone:
            stmt = stmt.where(
                or_(
                    phone_filter(Call.caller_number, phone), phone_filter(Call.called_number, phone)
                )
            )
        if text and text.strip():
            # heard_text is a prefix of a bot turn's text and equals a caller turn's text, so
            # searching ``text`` alone finds both. Accents are folded on both sides, which the
            # trigram index cannot serve: a sequential scan of the narrowed turns.
            stmt = stmt.where(
                exists().where(
                    and_(Turn.call_id == Call.id, contains_folded(self.db, Turn.text, text.strip()))
                )
            )
        return stmt

    async def search_snippets(
        self, call_sids: list[str], text: str, view: Callable[[str], str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """For each listed call, its first turn matching ``text`` (accent-insensitive), as
        ``{"seq", "speaker", "text": window, "start", "end"}`` for a highlighted snippet.
        ``view`` turns a turn's text into what the reader may see (personal numbers masked for
        agents) before the window is cut, so a window never ends inside a number."""
        needle = text.strip()
        if not call_sids or not needle:
            return {}
        stmt = (
            select(Call.call_sid, Turn.seq, Turn.speaker, Turn.text)
            .join(Turn, Turn.call_id == Call.id)
            .where(Call.call_sid.in_(call_sids), contains_folded(self.db, Turn.text, needle))
            .order_by(Call.call_sid, Turn.seq)
        )
        async with self.db.session() as s:
            rows = (await s.execute(stmt)).all()
        out: dict[str, dict[str, Any]] = {}
        for sid, seq, speaker, turn_text in rows:
            if sid in out:
                continue
            found = snippet(view(turn_text) if view is not None else turn_text, needle)
            if found is not None:
                window, begin, end = found
                out[sid] = {
                    "seq": seq,
                    "speaker": speaker,
                    "text": window,
                    "start": begin,
                    "end": end,
                }
        return out

    async def close_abandoned(self, started_before: datetime) -> int:
        """End calls still open that started before ``started_before`` (older than the longest
        call allowed: their process died without recording the end). The end time is the last
        turn's, else the start; the reason is :data:`LOST_END_REASON`. Returns how many."""
        last_turn = (
            select(func.max(func.coalesce(Turn.ended_at, Turn.started_at)))
            .where(Turn.call_id == Call.id)
            .scalar_subquery()
        )
        stmt = (
            update(Call)
            .where(Call.ended_at.is_(None), Call.started_at < started_before)
            .values(
                ended_at=func.coalesce(last_turn, Call.started_at),
                end_reason=LOST_END_REASON,
            )
            .execution_options(synchronize_session=False)
        )
        async with self.db.session(write=True) as s:
            result = await s.execute(stmt)
            return int(result.rowcount or 0)

    async def list_stream_events(self, call_sid: str) -> list[StreamEventRecord]:
        async with self.db.session() as s:
            rows = (
                await s.scalars(
                    select(StreamEvent)
                    .where(StreamEvent.call_sid == call_sid)
                    .order_by(StreamEvent.received_at, StreamEvent.id)
                )
            ).all()
        return [
            StreamEventRecord(
                id=r.id,
                call_sid=r.call_sid,
                stream_sid=r.stream_sid,
                event=r.event,
                error=r.error,
                received_at=r.received_at,
                payload=dict(r.payload or {}),
            )
            for r in rows
        ]


def _summary_fields(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "call_sid": call.call_sid,
        "ingress": call.ingress,
        "caller_number": call.caller_number,
        "called_number": call.called_number,
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "end_reason": call.end_reason,
        "outcome": call.outcome,
        "greeting_ms": call.greeting_ms,
    }


def _turn_record(t: Turn) -> TurnRecord:
    return TurnRecord(
        seq=t.seq,
        speaker=t.speaker,
        text=t.text,
        heard_text=t.heard_text,
        interrupted=t.interrupted,
        started_at=t.started_at,
        ended_at=t.ended_at,
        timings=dict(t.timings or {}),
        tools=list(t.tools or []),
        dtmf=t.dtmf,
    )
