"""The spoken evaluation's fixed CI subset: whole phone calls by simulated citizens.

A ``taina serve`` with the embedded engines is started with a fresh database; six citizens
(three bookings, two questions, one goodbye) call it over the Twilio stream, each with its own
voice family through the phone band — Kokoro, SVOX Pico and eSpeak, with a person's recorded
digits spliced in for the cédula — hear the bot through the same line and answer what they
heard. A booking counts only when the database holds the right service, office, date and
name; a question only when the citizen heard the facts. Any scenario failing, or any question
asked a third time, fails the build. The whole set: ``taina eval --spoken``.
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


@pytest.mark.timeout(900)  # about 6 minutes on 2 idle cores; whole calls at real time
def test_ci_subset_of_spoken_calls_succeeds() -> None:
    scenarios = select(load_scenarios(), ",".join(CI_SUBSET))
    assert [s.id for s in scenarios] == list(CI_SUBSET)
    report = asyncio.run(run_eval(EvalConfig(scenarios=scenarios, concurrency=3), lambda _: None))
    table = format_table(report["calls"], report["summary"])
    failed = [c["id"] for c in report["calls"] if not c["ok"]]
    assert not failed, f"scenarios failed: {failed}\n{table}"
    assert report["summary"]["third_asks"] == 0, table
