"""What happened on a call, turn by turn: where each turn sits in the recording, where the
time of each reply went, and which knowledge passages an answer came from.

Everything here is derived from what the session already stores with each turn (timings in
milliseconds, tool calls with their results, wall-clock start and end), so it works for every
call recorded since those fields exist, with no second copy to keep in sync.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.brain.tools import SEARCH_KNOWLEDGE

# The stages of one reply, in the order they happen: end of turn → transcript → brain's first
# sentence → voice's first audio → plumbing; their sum is (about) first_byte_ms.
STAGES: tuple[tuple[str, str], ...] = (
    ("endpoint_ms", "Fin de turno"),
    ("stt_wait_ms", "Transcripción"),
    ("brain_first_sentence_ms", "Asistente"),
    ("tts_first_audio_ms", "Voz"),
    ("overhead_ms", "Resto"),
)
MAX_PASSAGES = 3


@dataclass(frozen=True)
class Passage:
    source: str
    heading: str
    score: float | None
    used: bool  # the passage the answer was read from (the first hit of a search)


@dataclass(frozen=True)
class TurnReview:
    seq: int
    speaker: str
    start_s: float | None  # seconds from the recording's (or call's) start
    end_s: float | None
    first_byte_ms: float | None
    stages: dict[str, float]
    slow: bool
    passages: list[Passage] = field(default_factory=list)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _seconds(at: datetime | None, origin: datetime) -> float | None:
    if at is None:
        return None
    return round(max((at - origin).total_seconds(), 0.0), 2)


def audible_span(turn: Any) -> tuple[datetime | None, datetime | None]:
    """When this turn could be heard on the line.

    Caller turns: ``started_at`` is when the caller started speaking and ``audio_ms`` how long
    the utterance was. Bot turns: the row's ``started_at`` is when the reply began to be
    prepared (after the transcript); its audio went out ``first_byte_ms`` after the caller's
    end of speech, of which ``endpoint_ms + stt_wait_ms`` had passed already.
    """
    timings = turn.timings or {}
    start, end = turn.started_at, turn.ended_at
    if start is None:
        return None, end
    if turn.speaker == "caller":
        audio_ms = _num(timings.get("audio_ms"))
        if audio_ms is not None:
            end = start + timedelta(milliseconds=audio_ms)
        return start, end
    first_byte = _num(timings.get("first_byte_ms"))
    if first_byte is not None:
        before = (_num(timings.get("endpoint_ms")) or 0.0) + (
            _num(timings.get("stt_wait_ms")) or 0.0
        )
        start = start + timedelta(milliseconds=max(first_byte - before, 0.0))
    if end is not None and end < start:
        end = start
    return start, end


_WORD = re.compile(r"\w{4,}")


def _words(text: str) -> set[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    return set(_WORD.findall("".join(c for c in folded if not unicodedata.combining(c))))


def _spoken_index(hits: list[Any], reply_text: str | None) -> int:
    """Which hit of a search the reply was read from: the one sharing most words with what was
    said (the offline engine reads sentences of one passage, and may prefer a hit other than
    the first, e.g. one office's hours); the first hit when the reply's text is unknown."""
    said = _words(reply_text or "")
    if not said:
        return 0
    best, best_overlap = 0, -1
    for i, hit in enumerate(hits):
        if not isinstance(hit, dict):
            continue
        overlap = len(said & _words(f"{hit.get('heading') or ''} {hit.get('text') or ''}"))
        if overlap > best_overlap:
            best, best_overlap = i, overlap
    return best


def passages_of(
    tools: list[Any], answered: bool = True, reply_text: str | None = None
) -> list[Passage]:
    """The knowledge passages a turn's searches returned. When the reply answered (it is not an
    apology or an "I cannot help with that"), the passage of the last search that found
    something that shares most words with the reply is marked as the one it was read from
    (without the reply's text: that search's top hit, which both brains speak from first)."""
    out: list[Passage] = []
    seen: set[tuple[str, str]] = set()
    searches = [
        t.get("result")
        for t in tools or []
        if isinstance(t, dict)
        and t.get("name") == SEARCH_KNOWLEDGE
        and isinstance(t.get("result"), dict)
        and "error" not in t["result"]
    ]
    last = next((r for r in reversed(searches) if r.get("hits")), None)
    spoken = _spoken_index(last.get("hits") or [], reply_text) if last is not None else -1
    for result in searches:
        for i, hit in enumerate(result.get("hits") or []):
            if not isinstance(hit, dict):
                continue
            key = (str(hit.get("source") or ""), str(hit.get("heading") or ""))
            if not key[0] or key in seen:
                continue
            seen.add(key)
            out.append(
                Passage(
                    source=key[0],
                    heading=key[1],
                    score=_num(hit.get("score")),
                    used=answered and i == spoken and result is last,
                )
            )
    out.sort(key=lambda p: not p.used)  # the spoken passage first, the others as found
    return out[: max(MAX_PASSAGES, sum(p.used for p in out))]


def stream_span(turn: Any) -> tuple[float, float | None] | None:
    """Where the turn sits in the call's own audio timeline (seconds of caller audio received),
    which is the recording's timeline: exact even when the server ran behind the wall clock.
    None for turns recorded before the session stored ``stream_at_ms``."""
    timings = turn.timings or {}
    at = _num(timings.get("stream_at_ms"))
    if at is None:
        return None
    start = at / 1000
    if turn.speaker == "caller":
        audio_ms = _num(timings.get("audio_ms"))
        return start, start + audio_ms / 1000 if audio_ms is not None else None
    if turn.started_at is not None and turn.ended_at is not None:
        # Played from the first byte until the caller had heard it all (or interrupted).
        spoke_for = (turn.ended_at - turn.started_at).total_seconds()
        first_byte = _num(timings.get("first_byte_ms")) or 0.0
        before = (_num(timings.get("endpoint_ms")) or 0.0) + (
            _num(timings.get("stt_wait_ms")) or 0.0
        )
        return start, start + max(spoke_for - max(first_byte - before, 0.0) / 1000, 0.0)
    return start, None


def is_apology(text: str | None) -> bool:
    """A reply that says the caller was not understood or cannot be helped (see
    app/quality.py): whatever it searched, it answered from no passage."""
    from app.quality import classify_reply

    return classify_reply(text or "") is not None


def review_turns(turns: list[Any], origin: datetime, slow_turn_ms: float) -> list[TurnReview]:
    """One row per turn: position in the recording, stage timings, slow mark, passages.

    Positions come from the audio timeline when the turn has it, from wall-clock times
    (relative to ``origin``) otherwise."""
    rows: list[TurnReview] = []
    for turn in turns:
        timings = turn.timings or {}
        span = stream_span(turn)
        if span is not None:
            start_s: float | None = round(span[0], 2)
            end_s = round(span[1], 2) if span[1] is not None else None
        else:
            start, end = audible_span(turn)
            start_s, end_s = _seconds(start, origin), _seconds(end, origin)
        first_byte = _num(timings.get("first_byte_ms")) if turn.speaker == "bot" else None
        stages = {
            key: round(v, 1)
            for key, _ in STAGES
            if (v := _num(timings.get(key))) is not None and turn.speaker == "bot"
        }
        # The greeting (seq 0) is measured from the call's start, not from a caller's turn.
        slow = bool(first_byte is not None and turn.seq > 0 and first_byte > slow_turn_ms)
        rows.append(
            TurnReview(
                seq=turn.seq,
                speaker=turn.speaker,
                start_s=start_s,
                end_s=end_s,
                first_byte_ms=round(first_byte, 1) if first_byte is not None else None,
                stages=stages,
                slow=slow,
                passages=(
                    passages_of(
                        turn.tools, answered=not is_apology(turn.text), reply_text=turn.text
                    )
                    if turn.speaker == "bot"
                    else []
                ),
            )
        )
    return rows


def recording_origin(meta: dict[str, Any], call_started_at: datetime) -> datetime:
    """The wall-clock time of the recording's first sample, or the call's start."""
    info = meta.get("recording") if isinstance(meta, dict) else None
    raw = info.get("started_at") if isinstance(info, dict) else None
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    return call_started_at
