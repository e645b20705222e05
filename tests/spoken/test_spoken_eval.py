"""The spoken evaluation's fixed CI subset: whole phone calls by simulated citizens.

A ``taina serve`` with the embedded engines is started with a fresh database; six citizens
(three bookings, two questions, one goodbye) call it over the Twilio stream, each with its own
voice family through the phone band — Kokoro, SVOX Pico and eSpeak, with a person's recorded
digits spliced in for the cédula — hear the bot through the same line and answer what they
heard. A booking counts only when the database holds the right service, office, date and
name; a question only when the citizen heard the facts. The whole set: ``taina eval --spoken``.
"""

from __future__ import annotations

import asyncio

import pytest

from app.spoken_eval import EvalConfig, run_eval
from app.spoken_eval_report import format_table
from app.spoken_eval_scenarios import load_scenarios, select

pytestmark = pytest.mark.slow

CI_SUBSET = (
    "book-cedula-sti-renovar",  # Kokoro + human es-MX digits; office volunteered
    "book-cedula-sde-duplicado",  # SVOX Pico; facts one by one
    "book-cedula-lro-primera",  # eSpeak + human es-CO digits; office and day in one breath
    "q-pasaporte-adulto-costo",  # Kokoro; the adult variant of a two-variant answer
    "q-apostilla-donde",  # Pico
    "bye-directo",  # "Gracias, adiós" right after the greeting
)


@pytest.mark.timeout(900)  # about 5 minutes on 2 idle cores; whole calls at real time
def test_ci_subset_of_spoken_calls_holds_its_floor() -> None:
    """A regression floor, not the issue's targets (bookings and questions >= 95 %, WER
    <= 0.10, no third ask), which the whole set measures and docs/PERFORMANCE.md reports.

    The floor is what the product reached on this subset when it was set (2026-12-07):
    the questions and the goodbye succeed, the bot answers the callers' turns (a caller met
    with silence was the commonest failure), and the booking calls get past service, office,
    day and time to the name question — each allowing one miss, as whole calls at real time
    on two shared cores vary from run to run (22 calls of the whole set: 1 left in silence).
    """
    scenarios = select(load_scenarios(), ",".join(CI_SUBSET))
    assert [s.id for s in scenarios] == list(CI_SUBSET)
    report = asyncio.run(run_eval(EvalConfig(scenarios=scenarios, concurrency=3), lambda _: None))
    calls = report["calls"]
    table = format_table(calls, report["summary"])
    print(table)
    silent = [c["id"] for c in calls if any("did not answer" in r for r in c["reasons"])]
    assert len(silent) <= 1, f"the bot left callers in silence: {silent}\n{table}"
    others = [c for c in calls if c["kind"] != "booking"]
    assert sum(c["ok"] for c in others) >= len(others) - 1, table
    bookings = [c for c in calls if c["kind"] == "booking"]
    stalled = [c["id"] for c in bookings if not c["ok"] and "name" not in c["slot_asks"]]
    assert len(stalled) <= 1, f"bookings that never reached the name question: {stalled}\n{table}"
