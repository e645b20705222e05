"""The call review's arithmetic and the quality classification, on hand-made turns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.call_review import passages_of, recording_origin, review_turns
from app.quality import classify, classify_reply, exchanges
from app.storage import TurnRecord
from pipeline.brain import phrases
from pipeline.brain.tools import SEARCH_KNOWLEDGE
from pipeline.session import SORRY_NOT_UNDERSTOOD

T0 = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def turn(seq: int, speaker: str, text: str = "x", at: float = 0.0, **extra: object) -> TurnRecord:
    return TurnRecord(
        seq=seq,
        speaker=speaker,  # type: ignore[arg-type]
        text=text,
        heard_text=text,
        interrupted=False,
        started_at=T0 + timedelta(seconds=at),
        ended_at=T0 + timedelta(seconds=at + 2),
        **extra,  # type: ignore[arg-type]
    )


def search(*hits: tuple[str, str], answer: str | None = "Sí.") -> dict[str, object]:
    return {
        "name": SEARCH_KNOWLEDGE,
        "arguments": {"query": "q"},
        "result": {
            "hits": [{"source": s, "heading": h, "score": 1.0, "text": "…"} for s, h in hits],
            "answer": answer,
        },
    }


def test_positions_come_from_the_audio_timeline_when_stored() -> None:
    caller = turn(1, "caller", at=30, timings={"stream_at_ms": 4200.0, "audio_ms": 1500.0})
    bot = turn(
        2,
        "bot",
        at=31,
        timings={
            "stream_at_ms": 6000.0,
            "endpoint_ms": 500.0,
            "stt_wait_ms": 100.0,
            "first_byte_ms": 900.0,
        },
    )
    rows = review_turns([caller, bot], T0, slow_turn_ms=800)
    assert (rows[0].start_s, rows[0].end_s) == (4.2, 5.7)  # not the wall clock's 30 s
    assert rows[1].start_s == 6.0
    # Heard for the row's 2 s minus the 0.3 s between the row's start and the first byte.
    assert rows[1].end_s == pytest.approx(7.7)
    assert rows[1].slow and not rows[0].slow


def test_positions_fall_back_to_wall_clock_times() -> None:
    bot = turn(
        3,
        "bot",
        at=12,
        timings={"endpoint_ms": 400.0, "stt_wait_ms": 200.0, "first_byte_ms": 1000.0},
    )
    [row] = review_turns([bot], T0, slow_turn_ms=1500)
    assert row.start_s == pytest.approx(12.4)  # audio 0.4 s after the row's start
    assert not row.slow
    assert row.stages == {"endpoint_ms": 400.0, "stt_wait_ms": 200.0}


def test_greeting_is_never_slow() -> None:
    [row] = review_turns([turn(0, "bot", timings={"first_byte_ms": 5000.0})], T0, 100)
    assert not row.slow


def test_the_spoken_passage_is_the_top_hit_of_the_last_search_that_found_something() -> None:
    tools = [
        search(("pasaporte.md", "Pasaporte > Requisitos")),
        search(("pasaporte.md", "Pasaporte > Renovación > Requisitos"), ("faq.md", "Pasaporte")),
        {"name": "check_availability", "arguments": {}, "result": {"slots": []}},
    ]
    found = passages_of(tools)
    assert [(p.source, p.heading, p.used) for p in found] == [
        ("pasaporte.md", "Pasaporte > Renovación > Requisitos", True),
        ("pasaporte.md", "Pasaporte > Requisitos", False),
        ("faq.md", "Pasaporte", False),
    ]
    assert not any(p.used for p in passages_of(tools, answered=False))
    assert passages_of([{"name": SEARCH_KNOWLEDGE, "result": {"error": "x"}}]) == []


def test_the_spoken_passage_is_the_one_the_reply_was_read_from() -> None:
    """The offline engine may read a hit other than the first (one office's hours)."""
    hours = {
        "name": SEARCH_KNOWLEDGE,
        "arguments": {"query": "horario Santiago"},
        "result": {
            "answer": None,
            "hits": [
                {
                    "source": "oficinas.md",
                    "heading": "Oficinas > Santo Domingo Centro",
                    "text": "Horario: lunes a viernes de 8:00 a 16:00. Dirección: calle Duarte 45.",
                },
                {
                    "source": "oficinas.md",
                    "heading": "Oficinas > Santiago",
                    "text": "Horario: lunes a viernes de 8:00 a 15:00. Dirección: avenida Estrella "
                    "Sadhalá, Santiago de los Caballeros.",
                },
            ],
        },
    }
    said = "El horario es lunes a viernes de 8:00 a 15:00, en la avenida Estrella Sadhalá."
    found = passages_of([hours], reply_text=said)
    assert [(p.heading, p.used) for p in found] == [
        ("Oficinas > Santiago", True),
        ("Oficinas > Santo Domingo Centro", False),
    ]
    # Without the reply's text: the top hit.
    assert passages_of([hours])[0].heading == "Oficinas > Santo Domingo Centro"


def test_the_recording_origin_is_its_first_sample() -> None:
    started = "2026-12-07T14:00:01.250000+00:00"
    assert recording_origin({"recording": {"started_at": started}}, T0) == T0 + timedelta(
        seconds=1.25
    )
    assert recording_origin({"recording": {"started_at": "no"}}, T0) == T0
    assert recording_origin({}, T0) == T0


def test_replies_tell_misunderstood_from_unanswered() -> None:
    assert classify_reply(SORRY_NOT_UNDERSTOOD) == "no_entendida"
    assert classify_reply(f"{phrases.NOT_CAUGHT} ¿Qué trámite?") == "no_entendida"
    assert classify_reply(f"{phrases.CANNOT_HELP_WITH_THAT} {phrases.CAPABILITIES}") == (
        "sin_respuesta"
    )
    assert classify_reply("Abrimos a las ocho.") is None

    asked = turn(1, "caller", "¿Venden sellos?")
    empty = turn(2, "bot", "Déjeme ver.", tools=[search(answer=None)])
    assert classify(asked, empty) == "sin_respuesta"
    assert (
        classify(asked, turn(2, "bot", "Sí, en la oficina.", tools=[search(("a.md", "A"))])) is None
    )
    assert classify(turn(1, "caller", "", timings={"unheard": 1.0}), None) == "no_entendida"
    assert classify(turn(1, "caller", "", dtmf="1"), None) is None


def test_each_caller_turn_is_paired_with_the_next_reply() -> None:
    turns = [
        turn(0, "bot"),
        turn(1, "caller"),
        turn(2, "caller"),
        turn(3, "bot"),
        turn(4, "caller"),
    ]
    pairs = [(e.caller.seq, e.reply.seq if e.reply else None) for e in exchanges("CA", T0, turns)]
    assert pairs == [(1, 3), (2, 3), (4, None)]
