"""The simulated citizen's ears and judgement, without a call: what was asked, dates as
people say them, facts heard, the read-back checked, numbers normalised for WER."""

from __future__ import annotations

import datetime as dt

import pytest

from app.spoken_eval_caller import _option_key, classify, fact_heard
from app.spoken_eval_report import StoredBooking, bot_wer, judge_booking, judge_human, wer_words
from app.spoken_eval_scenarios import Scenario, load_scenarios, resolve_date

MONDAY = dt.date(2026, 12, 7)


@pytest.mark.parametrize(
    ("heard", "kind"),
    [
        ("¿Para qué trámite es la cita? Por ejemplo: cédula, pasaporte o licencia.", "service"),
        ("Con gusto. ¿En qué oficina le queda mejor: Santiago o La Romana?", "office"),
        ("En Santo Domingo, centro o en Santo Domingo este.", "office"),
        ("¿Para qué día y a qué hora le gustaría?", "datetime"),
        ("Para el jueves tengo a las ocho o a las nueve. ¿Cuál prefiere?", "choose_time"),
        ("¿A nombre de quién hago la cita?", "name"),
        ("¿Cuál es el número de cédula? Puede marcarlo en el teclado.", "cedula"),
        ("¿Le podemos contactar al número desde el que llama, que termina en 0 1?", "phone"),
        ("Cédula en Santiago el jueves, a nombre de Ana Díaz. ¿Está correcto?", "confirm"),
        ("Su código es A B 1. ¿Le puedo ayudar en algo más?", "more"),
        ("Disculpe, no le entendí. ¿Me lo repite?", "repeat"),
        ("Gracias por llamar. ¡Que tenga un buen día!", "bye"),
        # As a person understands them, also when the ear bent a word.
        ("Me dice su número de célula, puede decirlo o marcarlo en el teclado.", "cedula"),
        ("¿Y su apellido?", "surname"),
        ("¿Qué desea cambiar: el día, la oficina, el nombre, o su cédula?", "change_what"),
        ("Sí, le estoy haciendo la cita. ¿Cuál de esos horarios prefiere?", "choose_time"),
        ("¿Le llamamos a ese mismo número? Responda sí o no.", "phone"),
        ("El pasaporte cuesta 3500 pesos. ¿Quiere que le haga una cita?", "book_offer"),
        ("Abren a las ocho. ¿Quiere saber algo más?", "more"),
    ],
)
def test_the_citizen_recognises_what_was_asked(heard: str, kind: str) -> None:
    assert classify(heard) == kind


def test_dates_as_citizens_say_them() -> None:
    assert resolve_date("mañana", MONDAY) == {dt.date(2026, 12, 8)}
    assert resolve_date("en la mañana", MONDAY) == set()
    assert resolve_date("el jueves", MONDAY) == {dt.date(2026, 12, 10)}
    assert resolve_date("el lunes", MONDAY) == {dt.date(2026, 12, 14)}  # never today
    assert resolve_date("el martes que viene", MONDAY) == {
        dt.date(2026, 12, 8),
        dt.date(2026, 12, 15),
    }
    assert resolve_date("el 15", MONDAY) == {dt.date(2026, 12, 15)}
    assert resolve_date("el 3", MONDAY) == {dt.date(2027, 1, 3)}
    assert resolve_date("el 16 de diciembre", MONDAY) == {dt.date(2026, 12, 16)}


def test_facts_are_heard_whatever_the_spelling() -> None:
    assert fact_heard("cuesta 3.500 pesos", ["3500", "tres mil quinientos"])
    assert fact_heard("Cuesta tres mil quinientos pesos", ["3500", "tres mil quinientos"])
    assert not fact_heard("cuesta 2.500 pesos", ["3500", "tres mil quinientos"])


def test_option_key_is_the_position_of_the_choice() -> None:
    heard = "¿es para cedula, pasaporte o licencia? diga el nombre o marque 1, 2 o 3"
    assert _option_key(heard, ["licencia"]) == "3"
    assert _option_key(heard, ["pasaporte"]) == "2"
    assert _option_key("¿para que tramite?", ["licencia"]) is None


def test_a_booking_is_judged_on_the_database_row() -> None:
    s = Scenario.from_dict({
        "id": "x", "kind": "booking", "voice": "pico-es", "service": "cedula", "office": "STI",
        "date": "el jueves", "name": "María Fernández", "cedula": "40212345678",
    })  # fmt: skip
    at = dt.datetime(2026, 12, 10, 9, 0)
    good = StoredBooking("confirmed", "cedula", "STI", at, "Maria Fernandez", "40212345678")
    assert judge_booking(s, [good], "el jueves", MONDAY).ok
    wrong_day = StoredBooking("confirmed", "cedula", "STI", at.replace(day=11), "María Fernández",
                              "40212345678")  # fmt: skip
    verdict = judge_booking(s, [wrong_day], "el jueves", MONDAY)
    assert not verdict.ok and "date" in verdict.reasons[0]
    assert not judge_booking(s, [], "el jueves", MONDAY).ok


def test_a_promised_transfer_without_a_number_fails() -> None:
    greeting = "Buenas tardes. ¿En qué le puedo ayudar?"
    assert not judge_human([greeting, "Le comunico con un agente, espere un momento."]).ok
    assert judge_human(
        [
            greeting,
            "No puedo comunicarle con un agente ahora. Puede llamar al "
            "809-555-0100 de lunes a viernes. ¿Le ayudo con algo más?",
        ]
    ).ok


def test_wer_ignores_how_numbers_are_written() -> None:
    assert wer_words("Cuesta RD$3,500.") == wer_words("cuesta tres mil quinientos")
    assert bot_wer(["El pasaporte cuesta 3500 pesos."], ["el pasaporte cuesta 3.500 pesos"])[0] == 0
    wer, errors, words = bot_wer(["Punto Ciudadano"], ["un rociudadano"])
    assert errors == 2 and words == 2


def test_the_scenario_set_is_broad() -> None:
    scenarios = load_scenarios()
    kinds = {s.kind for s in scenarios}
    assert len(scenarios) >= 40 and kinds == {"booking", "question", "goodbye", "human"}
    families = {s.voice.split("-")[0] for s in scenarios}
    assert {"espeak", "pico", "kokoro"} <= families
    assert sum(1 for s in scenarios if s.digits_voice) >= 5
    bookings = [s for s in scenarios if s.kind == "booking"]
    assert {s.service for s in bookings} == {
        "cedula", "pasaporte", "licencia", "actas", "no_antecedentes", "apostilla"
    }  # fmt: skip
    assert {s.office for s in bookings} == {"SDC", "SDE", "STI", "LRO"}
