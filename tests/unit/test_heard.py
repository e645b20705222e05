"""Repairs of what Whisper heard: misheard office words, numbers, and what must stay as said."""

from __future__ import annotations

import pytest

from app.booking import CATALOG
from pipeline.brain.heard import phonetic_key, repair_transcript, spoken_digits
from pipeline.brain.spanish_text import normalize


def _fix(text: str, expect: str | None = None) -> str:
    return repair_transcript(text, CATALOG, expect)


# --- the field report and its relatives --------------------------------------------------------


@pytest.mark.parametrize(
    "said", ["En Santo Domingo, es que vivo cerca", "Santo Domingo, es mejor", "tanto el domingo"]
)
def test_santo_domingo_este_only_when_said_so(said: str) -> None:
    assert _fix(said, "office") == said


def test_field_report_sentence() -> None:
    assert (
        _fix("Quiero hacer una cita para renovar mi fe en la oficia principal")
        == "Quiero hacer una cita para renovar mi cédula en la oficina principal"
    )


@pytest.mark.parametrize(
    ("heard", "service"),
    [
        ("quiero renovar la sédula", "cedula"),
        ("una cita para la zedula", "cedula"),
        ("vengo a sacar mi fe", "cedula"),
        ("perdí la célula", "cedula"),
        ("cita para la fe", "cedula"),
        ("necesito un pasa porte", "pasaporte"),
        ("para el pasaporte", "pasaporte"),
        ("quiero sacar el pazaporte", "pasaporte"),
        ("quiero una apostila", "apostilla"),
        ("para apostiyar unos documentos", "apostilla"),
        ("el certificado de antesedentes", "no_antecedentes"),
        ("los ante sedentes penales", "no_antecedentes"),
        ("renovar la licencia de conduci", "licencia"),
        ("la lisencia de conducir", "licencia"),
        ("una legalisación de documentos", "apostilla"),
        ("hacer la aportilla", "apostilla"),
        ("puedo hacer la abostida", "apostilla"),
        ("el papel de buena conduzca", "no_antecedentes"),
        ("una copia de la pasta de nacimiento", "actas"),
        ("cita para el hacha de matrimonio", "actas"),
    ],
)
def test_misheard_services_reach_the_catalog(heard: str, service: str) -> None:
    assert CATALOG.find_services(normalize(_fix(heard))) == [service]


@pytest.mark.parametrize(
    ("heard", "office"),
    [
        ("en la oficia principal", "SDC"),
        ("en Santiago de los Cabayeros", "STI"),
        ("en la plasa Oriental", "SDE"),
        ("la de la Ramana", "LRO"),  # when the office was asked for
        ("Santo Domingo, es sí", "SDE"),
        ("en tanto domingo es", "SDE"),
        ("en la de Miami", None),
        ("en la Romana", "LRO"),
        ("en San Bicente de Paul", "SDE"),
    ],
)
def test_misheard_offices(heard: str, office: str | None) -> None:
    found = CATALOG.find_offices(normalize(_fix(heard, "office")))
    assert found == ([office] if office else [])


@pytest.mark.parametrize(
    ("heard", "fixed"),
    [
        ("el miercole que viene", "el miércoles que viene"),
        ("el juebes en la mañana", "el jueves en la mañana"),
        ("el marte a las diez", "el martes a las diez"),
        ("el savado", "el sábado"),
        ("el 3 de setiembre", "el 3 de setiembre"),
        ("el 5 de nobiembre", "el 5 de noviembre"),
        ("el primero de obtubre", "el primero de octubre"),
    ],
)
def test_weekdays_and_months(heard: str, fixed: str) -> None:
    assert _fix(heard, "date") == fixed


# --- ordinary speech passes through ------------------------------------------------------------

ORDINARY = [
    "Buenos días, ¿cómo está usted?",
    "Sí, correcto.",
    "No, gracias, eso es todo.",
    "Tengo fe en que me van a atender rápido.",
    "Las partes del documento están en la casa.",
    "¿A qué hora abren los sábados?",
    "Mi hermana vive cerca del parque central.",
    "Quiero saber cuánto cuesta, por favor.",
    "Voy a pasar por allá el martes.",
    "Los santos y las vírgenes de la iglesia.",
    "Me gusta la música de mi pueblo.",
    "Ahora no puedo, estoy trabajando.",
    "¿Qué documentos tengo que llevar?",
    "El oficial me dijo que viniera hoy.",
    "Tengo un celular nuevo.",
    "Mañana por la tarde me queda mejor.",
    "Perdone, no le entendí bien.",
    "Es para mi hijo, que es menor de edad.",
    "La dirección es en la calle Duarte.",
    "Mi mamá nació en enero.",
    "Gracias, muy amable, adiós.",
    "¿Me puede repetir la hora?",
    "Estoy buscando un trabajo en la zona franca.",
    "¿Ustedes atienden los domingos?",
    "El doctor me mandó a hacer unos análisis.",
    "Ya tengo una cita, quiero cambiarla.",
    "Necesito hablar con una persona.",
    "Vivo en la capital desde hace diez años.",
    "Póngala a nombre de mi esposa.",
    "Ese día tengo que ir al médico.",
    "Mi fecha de nacimiento es el tres de mayo.",
    "Fuimos a la fiesta de matrimonio de mi prima.",
    "Mi lugar de nacimiento es Baní.",
    "Es una casa de dos niveles.",
    "¿Ustedes venden el marbete del carro?",
]


@pytest.mark.parametrize("sentence", ORDINARY)
@pytest.mark.parametrize("expect", [None, "service", "office", "date", "confirm"])
def test_ordinary_sentences_pass_through(sentence: str, expect: str | None) -> None:
    assert _fix(sentence, expect) == sentence


@pytest.mark.parametrize(
    "name", ["Me llamo Pedro Martes", "Soy Ana Fe Santos", "Juana Sédula", "Luis Apostol"]
)
def test_names_are_kept_as_said(name: str) -> None:
    assert _fix(name, "name") == name


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("cero cero uno, dos tres cuatro cinco seis siete ocho, nueve", "00123456789"),
        ("ochocientos nueve, cinco cinco cinco, doce treinta y cuatro", "8095551234"),
        ("001-1234567-8", "00112345678"),
        ("0 0 1, 2 3 4", "001234"),
        ("cero o uno dos", "0012"),
        ("o o uno", "001"),
        ("cero, cero, uno. Dos, tres", "00123"),
        ("doble cinco, tres", "553"),
        ("mi número es ocho cero nueve, 555, 12 34", "8095551234"),
        ("nuevo ocho siete", "987"),
        ("sero sero uno", "001"),
        ("cinco, pocho, dos, porcho", "5828"),
        ("ocho, ojo, nueve", "889"),
        ("pero el último es cinco", "5"),
        ("cero, o, uno", "001"),
        ("", ""),
        ("no me acuerdo", ""),
    ],
)
def test_spoken_digits(said: str, digits: str) -> None:
    assert spoken_digits(said) == digits


@pytest.mark.parametrize(
    ("heard", "expect", "fixed"),
    [
        (
            "Cero cero uno, dos tres cuatro, cinco seis siete, ocho nueve.",
            "cedula",
            "00123456789.",
        ),
        ("Es el 001-1234567-8.", "cedula", "Es el 00112345678."),
        ("ochocientos nueve, cinco cinco cinco, uno dos tres cuatro", "phone", "8095551234"),
        ("Mi cédula es cero cero uno, ¿verdad?", "cedula", "Mi cédula es 001, ¿verdad?"),
        ("el código es o uno dos", "code", "el código es 012"),
    ],
)
def test_digits_in_place_when_expected(heard: str, expect: str, fixed: str) -> None:
    assert _fix(heard, expect) == fixed


def test_numbers_untouched_without_digit_context() -> None:
    assert _fix("a las tres y media del dos de mayo") == "a las tres y media del dos de mayo"
    assert _fix("somos dos personas", "confirm") == "somos dos personas"


def test_o_is_a_conjunction_outside_digits() -> None:
    assert _fix("cédula o pasaporte", "cedula") == "cédula o pasaporte"


# --- sound key ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("cédula", "sedula"),
        ("zedula", "cédula"),
        ("vienes", "bienes"),
        ("hora", "ora"),
        ("calle", "caye"),
        ("apostilla", "apostiya"),
        ("jueves", "juebes"),
    ],
)
def test_phonetic_key_collides_on_sound(a: str, b: str) -> None:
    assert phonetic_key(a) == phonetic_key(b)


@pytest.mark.parametrize(("a", "b"), [("casa", "cosa"), ("martes", "partes"), ("fe", "se")])
def test_phonetic_key_keeps_different_sounds_apart(a: str, b: str) -> None:
    assert phonetic_key(a) != phonetic_key(b)


def test_fast_enough_for_every_turn() -> None:
    import time

    text = "Quiero hacer una cita para renovar mi fe en la oficia principal el marte a las tres"
    started = time.perf_counter()
    for _ in range(50):
        _fix(text)
    assert (time.perf_counter() - started) / 50 < 0.01


# --- the catalog's own matching (used by the LLM brain's tool arguments) ------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("sedula", "cedula"),
        ("Sédula", "cedula"),
        ("la fe", "cedula"),
        ("pasa porte", "pasaporte"),
        ("antesedentes penales", "no_antecedentes"),
        ("apostila", "apostilla"),
        ("licencia de conduci", "licencia"),
        ("cedula", "cedula"),
        ("una pizza", None),
        ("fe", "cedula"),
    ],
)
def test_resolve_service_accepts_misheard_values(value: str, code: str | None) -> None:
    assert CATALOG.resolve_service(value) == code


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("Santo Domingo centro", "SDC"),
        ("oficia principal", "SDC"),
        ("Santiago de los Cabayeros", "STI"),
        ("San Bicente de Paul", "SDE"),
        ("Santo Domingo", None),  # still ambiguous
        ("Miami", None),
    ],
)
def test_resolve_office_accepts_misheard_values(value: str, code: str | None) -> None:
    assert CATALOG.resolve_office(value) == code


@pytest.mark.parametrize(
    ("said", "code"),
    [
        ("quiero apostillarlo", "apostilla"),
        ("voy a legalizarlos", "apostilla"),
        ("renovarla", None),
    ],
)
def test_verbs_with_a_pronoun_still_name_the_service(said: str, code: str | None) -> None:
    assert CATALOG.find_services(normalize(said)) == ([code] if code else [])


def test_find_services_in_running_text() -> None:
    assert CATALOG.find_services(normalize("quiero renovar mi fe y sacar el pasa porte")) == [
        "cedula",
        "pasaporte",
    ]
    assert CATALOG.find_services(normalize("tengo fe en dios")) == []


# --- the LLM brain sees the repaired words --------------------------------------------------------


class _ToolsWithCatalog:
    catalog = CATALOG

    async def call(self, name: str, arguments: dict, ctx: object) -> dict:  # pragma: no cover
        return {}


def test_llm_brain_sees_repaired_user_text() -> None:
    from pipeline.brain.base import UserInput
    from pipeline.brain.llm import LLMBrain

    brain = LLMBrain(client=None, tools=_ToolsWithCatalog())  # type: ignore[arg-type]
    user = UserInput("renovar mi fe en la oficia principal", dtmf="")
    messages = [{"role": "system", "content": "x"}, {"role": "user", "content": user.text}]
    brain._repair_heard(messages, user)
    assert messages[-1]["content"] == "renovar mi cédula en la oficina principal"
    untouched = [{"role": "user", "content": "hola, buenos días"}]
    brain._repair_heard(untouched, UserInput("hola, buenos días"))
    assert untouched[-1]["content"] == "hola, buenos días"


# --- a day as the whole answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "fixed"),
    [
        ("Mardes", "Martes"),
        ("verenas", "viernes"),
        ("cuebe", "jueves"),
        ("maniana", "mañana"),
        ("Sabato", "Sábado"),
        ("el mierco", "el miércoles"),
    ],
)
def test_a_day_said_alone_is_matched_loosely(heard: str, fixed: str) -> None:
    assert _fix(heard, "date") == fixed


@pytest.mark.parametrize(
    "answer",
    [
        "cuando sea",
        "lo antes posible",
        "pasado mañana",
        "en la tarde",
        "después",
        "usted dirá",
        "la otra semana",
        "el próximo",
        "hoy mismo",
        "no sé",
        "temprano",
        "el quince",
        "ninguno",
        "Sí.",
        "Mejor otro día.",
    ],
)
def test_ordinary_short_answers_to_a_date_question_pass_through(answer: str) -> None:
    assert _fix(answer, "date") == answer


def test_loose_day_match_only_when_a_day_is_expected() -> None:
    assert _fix("verenas") == "verenas"


@pytest.mark.parametrize(
    "said", ["Yolanda Marte", "Sonia Batista", "Pedro Martínez", "ahí mismo donde siempre"]
)
@pytest.mark.parametrize("expect", [None, "service", "office", "date"])
def test_surnames_inside_a_sentence_are_not_office_words(said: str, expect: str | None) -> None:
    assert _fix(said, expect) == said


def _office_sentences() -> list[str]:
    """Every sentence of the office's own knowledge base: correct Spanish full of office
    words, their inflections and near neighbours (certificada, vigente, legalizarlo, pérdida)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "knowledge_data"
    out = []
    for path in sorted(root.glob("*.md")):
        for sent in re.split(r"(?<=[.?!])\s+|\n", path.read_text(encoding="utf-8")):
            sent = sent.strip()
            if 10 < len(sent) < 300 and not sent.startswith("#") and "|" not in sent:
                out.append(sent.replace("carné", "carnet"))
    return out


@pytest.mark.parametrize("expect", [None, "service", "office", "date"])
def test_the_office_s_own_correct_text_passes_through(expect: str | None) -> None:
    sentences = _office_sentences()
    assert len(sentences) > 100
    changed = [(s, _fix(s, expect)) for s in sentences if _fix(s, expect) != s]
    assert changed == []


@pytest.mark.parametrize(
    "said",
    [
        "el código es te a siete ka tres pe nueve",
        "Te, a, siete, ka, tres, pe, nueve",
        "TA-7K3P9",
        "siete ka tres pe nueve",
    ],
)
def test_booking_codes_survive_the_code_repair(said: str) -> None:
    from pipeline.brain.spoken import parse_booking_code

    assert parse_booking_code(_fix(said, "code")) == parse_booking_code(said) == "TA-7K3P9"


def test_thousands_said_as_words() -> None:
    assert spoken_digits("dos mil veinticinco") == "2025"
    assert _fix("dos mil", "code") == "2000"


# --- "mañana" over the phone line ----------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "expected"),
    [
        ("Irla Magiana", "Irla mañana"),
        ("Vila Magiana", "Vila mañana"),
        ("Para manana", "Para mañana"),
        ("mañiana", "mañana"),
        ("pasado magiana", "pasado mañana"),
        ("en la magiana", "en la mañana"),  # the morning: the date parser reads it so
        ("Irra maniana", "Irra mañana"),
    ],
)
def test_a_soundalike_of_manana_is_manana_when_a_day_is_expected(heard: str, expected: str) -> None:
    assert normalize(_fix(heard, "date")) == normalize(expected)


def test_a_word_glued_to_manana_is_split_off() -> None:
    assert normalize(_fix("Irramañana", "date")).endswith("mañana")
    assert normalize(_fix("Irramaniana", "date")).endswith("mañana")


@pytest.mark.parametrize("said", ["manzana", "la semana que viene", "el martes", "Magia"])
def test_other_words_are_not_manana(said: str) -> None:
    assert _fix(said, "date") == said


def test_manana_soundalikes_only_when_a_day_is_expected() -> None:
    assert _fix("Irla Magiana", None) == "Irla Magiana"
    assert _fix("Irla Magiana", "office") == "Irla Magiana"
