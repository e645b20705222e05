"""The offline dialogue engine: its Spanish understanding, and whole conversations.

Conversations run against the real tools (knowledge base + SQLite + booking rules) at a fixed
"now" (Saturday 21 November 2026, 10:00 in Santo Domingo) unless a test needs a stub.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.booking import CATALOG, BookingService, ensure_catalog
from app.storage import BookingRepository, Database
from knowledge import KnowledgeBase
from pipeline.brain import phrases
from pipeline.brain.base import (
    BrainOutput,
    CallContext,
    EndCall,
    Message,
    TextChunk,
    ToolEvent,
    Transfer,
    UserInput,
)
from pipeline.brain.dialogue_state import STATE_KEY, DialogueState
from pipeline.brain.intents import (
    choice_index,
    detect_intent,
    extract_name,
    knowledge_topic,
    question_facet,
)
from pipeline.brain.office_tools import OfficeTools
from pipeline.brain.offline import OfflineBrain
from pipeline.brain.spanish_text import normalize
from pipeline.brain.spoken import parse_booking_code, speak_cedula, speak_code

TZ = ZoneInfo("America/Santo_Domingo")
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=TZ)
SOURCE_DIR = Path(__file__).resolve().parents[2] / "knowledge_data"
CEDULA_WORDS = "cero cero uno uno dos tres cuatro cinco seis siete ocho"


def clock() -> datetime:
    return NOW


# --- understanding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Quiero una cita para renovar la cédula", "book"),
        ("necesito un turno pa pasaporte", "book"),
        ("me gustaría reservar", "book"),
        ("quiero cancelar mi cita", "cancel"),
        ("ya no voy a poder ir a mi cita", "cancel"),
        ("quiero cambiar la fecha de mi cita", "reschedule"),
        ("necesito mover la cita para otro día", "reschedule"),
        ("a que hora es mi cita", "find"),
        ("se me olvidó cuándo es mi cita", "find"),
        ("quiero hablar con una persona", "human"),
        ("páseme con un agente", "human"),
        ("operador", "human"),
        ("¿Puede otra persona retirar mi cédula?", "none"),
        ("¿Cuánto cuesta cancelar una cita?", "none"),
        ("adiós", "goodbye"),
        ("no, eso es todo", "goodbye"),
        ("no gracias", "no_more"),
        ("¿cómo?", "repeat"),
        ("Buen día, quiero una cita", "book"),
    ],
)
def test_detect_intent(text: str, intent: str) -> None:
    assert detect_intent(normalize(text)).name == intent


def test_mine_tells_own_appointments_from_new_ones() -> None:
    assert detect_intent(normalize("quiero cambiar mi cita")).mine
    assert not detect_intent(normalize("cámbiela para el jueves")).mine


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Juan Pérez", "Juan Pérez"),
        ("mi nombre es maría de la cruz", "María de la Cruz"),
        ("sí, Carmen Peña", "Carmen Peña"),
        ("a nombre de José Miguel Rodríguez, gracias", "José Miguel Rodríguez"),
        ("las tres", None),
        ("el lunes", None),
        ("quiero una cita", None),
        ("001 1234567 8", None),
    ],
)
def test_extract_name(text: str, name: str | None) -> None:
    assert extract_name(text) == name


def test_codes_are_spelled_and_understood_back() -> None:
    assert speak_code("TA-7K3P9") == "siete, ka, tres, pe, nueve"
    assert speak_code("TA-BV2WX") == "be grande, ve chiquita, dos, doble ve, equis"
    for said in (
        "TA-7K3P9",
        "ta 7k3p9",
        "el código es siete ka tres pe nueve",
        "te a siete ka tres pe nueve",
        "7 K 3 P 9",
    ):
        assert parse_booking_code(said) == "TA-7K3P9", said
    assert parse_booking_code("be grande ve chiquita dos doble ve equis") == "TA-BV2WX"
    assert parse_booking_code("quiero una cita para el lunes") is None
    assert (
        speak_cedula("00112345678") == "cero cero uno, uno dos tres cuatro cinco seis siete, ocho"
    )


def test_choices_topics_and_facets() -> None:
    assert choice_index("la primera", 3) == 0
    assert choice_index("la segunda por favor", 3) == 1
    assert choice_index("la ultima", 3) == 2
    assert choice_index("a las dos", 3) is None  # an hour, not the second option
    assert knowledge_topic(normalize("¿A qué hora abren?")) == "hours"
    assert knowledge_topic(normalize("abren los sábados?")) == "hours_saturday"
    assert knowledge_topic(normalize("¿dónde queda la oficina?")) == "address"
    assert knowledge_topic(normalize("a qué hora es mi cita")) is None
    assert question_facet(normalize("cuanto vale el pasaporte")) == ("costo", "costos")
    assert question_facet(normalize("que papeles necesito")) == ("requisitos",)


# --- conversations ----------------------------------------------------------------------------


async def say(
    brain: OfflineBrain, ctx: CallContext, text: str = "", dtmf: str = ""
) -> tuple[str, list[BrainOutput]]:
    outputs = [out async for out in brain.respond(ctx, UserInput(text=text, dtmf=dtmf))]
    spoken = "".join(o.text for o in outputs if isinstance(o, TextChunk)).strip()
    return spoken, outputs


def tools_called(outputs: list[BrainOutput]) -> list[str]:
    return [o.name for o in outputs if isinstance(o, ToolEvent)]


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    return KnowledgeBase.load(tmp_path_factory.mktemp("kb"), SOURCE_DIR)


@pytest.fixture
async def office(
    tmp_path: Path, kb: KnowledgeBase
) -> AsyncIterator[tuple[OfficeTools, BookingRepository]]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await db.migrate()
    repo = BookingRepository(db, clock=clock)
    await ensure_catalog(repo)
    yield OfficeTools(kb, BookingService(repo, clock=clock)), repo
    await db.dispose()


async def test_without_tools_it_still_greets_answers_hands_over_and_hangs_up() -> None:
    brain = OfflineBrain(clock=lambda: datetime(2026, 11, 21, 15, 0, tzinfo=TZ))
    ctx = CallContext(call_id="CA1")
    greeting = await brain.greeting(ctx)
    assert greeting.startswith("Buenas tardes") and "Punto Ciudadano" in greeting
    text, _ = await say(brain, ctx, "¿A qué hora abren las oficinas?")
    assert "lunes a viernes" in text
    text, outputs = await say(brain, ctx, "Quiero una cita para el pasaporte")
    assert "agente" in text and not any(isinstance(o, Transfer) for o in outputs)
    text, outputs = await say(brain, ctx, "sí, por favor")
    assert any(isinstance(o, Transfer) for o in outputs)
    _, outputs = await say(brain, CallContext(call_id="CA2"), dtmf="0")
    assert any(isinstance(o, Transfer) for o in outputs)
    text, outputs = await say(brain, ctx, "No, eso es todo. Adiós.")
    assert "buen día" in text and any(isinstance(o, EndCall) for o in outputs)


async def test_three_misunderstandings_in_a_row_reach_a_human() -> None:
    brain = OfflineBrain()
    ctx = CallContext(call_id="CA1")
    for _ in range(2):
        text, outputs = await say(brain, ctx, "blablabla")
        assert "Disculpe" in text and not any(isinstance(o, Transfer) for o in outputs)
    _, outputs = await say(brain, ctx, "blablabla")
    transfer = [o for o in outputs if isinstance(o, Transfer)]
    assert transfer and transfer[0].reason == "misunderstanding"


async def test_understood_turns_reset_the_misunderstanding_count() -> None:
    brain = OfflineBrain()
    ctx = CallContext(call_id="CA1")
    for _ in range(3):
        await say(brain, ctx, "blablabla")
        await say(brain, ctx, "¿cuál es el horario?")
    assert DialogueState.of(ctx).misses == 0


async def test_a_whole_booking_with_tool_events_and_a_natural_readback(
    office: tuple[OfficeTools, BookingRepository],
) -> None:
    tools, repo = office
    brain = OfflineBrain(tools, clock=clock)
    ctx = CallContext(call_id="CA-book", caller_number="+18095551234")
    await brain.greeting(ctx)
    text, _ = await say(brain, ctx, "Quiero una cita para renovar la cédula")
    assert "oficina" in text and text.count("?") == 1  # one question at a time
    text, _ = await say(brain, ctx, "en santiago")
    assert text.endswith("?") and "día" in text
    text, outputs = await say(brain, ctx, "mañana a las diez")  # Sunday: closed
    assert tools_called(outputs) == ["check_availability"]
    assert "domingos" in text and "lunes 23 de noviembre" in text
    text, _ = await say(brain, ctx, "el lunes a las diez")
    assert "el lunes 23 de noviembre a las diez de la mañana" in text and "nombre" in text
    await say(brain, ctx, "Juan Pérez")
    text, _ = await say(brain, ctx, "cero cero uno uno dos tres")
    assert "faltan cinco" in text  # six digits so far
    text, _ = await say(brain, ctx, "cuatro cinco seis siete ocho")
    assert "termina en uno, dos, tres, cuatro" in text
    text, _ = await say(brain, ctx, dtmf="1")
    assert text.startswith("Le confirmo") and "Juan Pérez" in text
    assert "cero cero uno, uno dos tres cuatro cinco seis siete, ocho" in text
    text, outputs = await say(brain, ctx, "no, mejor el martes")
    assert "el martes 24 de noviembre a las diez de la mañana" in text and "correcto?" in text
    assert not [b for b in await repo.list_bookings()]  # nothing booked before the yes
    text, outputs = await say(brain, ctx, "sí")
    assert tools_called(outputs) == ["book_appointment"]
    booking = (await repo.list_bookings())[0]
    assert (booking.office_code, booking.service_code) == ("STI", "cedula")
    assert booking.starts_at == datetime(2026, 11, 24, 10, 0, tzinfo=TZ)
    assert booking.citizen_name == "Juan Pérez" and booking.cedula == "00112345678"
    assert booking.phone == "+18095551234" and booking.call_sid == "CA-book"
    assert "el martes 24 de noviembre a las diez de la mañana" in text
    assert speak_code(booking.code) in text
    state = ctx.state[STATE_KEY]
    assert state.last_booking["code"] == booking.code and state.awaiting == "anything_else"
    text, outputs = await say(brain, ctx, "no gracias")
    assert any(isinstance(o, EndCall) for o in outputs) and tools_called(outputs) == ["end_call"]


async def test_questions_are_answered_from_the_knowledge_base_and_cited(
    office: tuple[OfficeTools, BookingRepository],
) -> None:
    tools, _ = office
    brain = OfflineBrain(tools, clock=clock)
    ctx = CallContext(call_id="CA-q")
    text, outputs = await say(brain, ctx, "cuanto cuesta el pasaporte")
    assert "3500 pesos" in text and "RD$" not in text
    assert tools_called(outputs) == ["search_knowledge"]
    assert ctx.state[STATE_KEY].sources[-1].startswith("pasaporte.md")
    assert text.endswith(phrases.OFFER_BOOKING)
    text, _ = await say(brain, ctx, "sí")
    assert "oficina" in text and "Santiago" in text and "La Romana" not in text
    text, _ = await say(brain, ctx, "¿me pueden arreglar la nevera?")
    assert "no le entendí" in text.lower() or "no le puedo ayudar" in text


async def test_reschedule_by_spoken_code_and_cancel_by_caller_number(
    office: tuple[OfficeTools, BookingRepository],
) -> None:
    tools, repo = office
    service: BookingService = tools.bookings  # type: ignore[assignment]
    slot = (await service.available("cedula", "SDC", date(2026, 11, 24)))[0]
    info = await service.book(slot.id, "cedula", "Ana Gómez", "40212345678", "+18095551234")
    brain = OfflineBrain(tools, clock=clock)

    stranger = CallContext(call_id="CA-r", caller_number="+18095559999")
    text, _ = await say(brain, stranger, "quiero reprogramar mi cita")
    assert "código" in text
    text, _ = await say(brain, stranger, speak_code(info.code).replace(",", ""))
    assert "día" in text
    text, _ = await say(brain, stranger, "el viernes a las diez")
    assert text.startswith("¿Cambio su cita para el viernes 27 de noviembre a las diez")
    text, outputs = await say(brain, stranger, "sí")
    assert tools_called(outputs) == ["reschedule_appointment"]
    moved = await repo.get_by_code(info.code)
    assert moved is not None and moved.starts_at == datetime(2026, 11, 27, 10, 0, tzinfo=TZ)

    owner = CallContext(call_id="CA-c", caller_number="+18095551234")
    text, outputs = await say(brain, owner, "necesito cancelar una cita")
    assert tools_called(outputs) == ["find_my_appointments"]
    assert "viernes 27 de noviembre" in text and "cancelarla" in text
    text, outputs = await say(brain, owner, dtmf="1")
    assert "cancelada" in text
    cancelled = await repo.get_by_code(info.code)
    assert cancelled is not None and cancelled.status == "cancelled"


class SlowBookingTools:
    """Stub tools whose booking takes a while, to cut the reply off in the middle of it."""

    def __init__(self, real: OfficeTools) -> None:
        self.real = real
        self.catalog = CATALOG
        self.started = asyncio.Event()

    def now(self) -> datetime:
        return NOW

    async def call(self, name: str, arguments: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        if name == "book_appointment":
            self.started.set()
            await asyncio.sleep(0.2)
        return await self.real.call(name, arguments, ctx)


async def test_a_barge_in_during_booking_never_loses_the_booking(
    office: tuple[OfficeTools, BookingRepository],
) -> None:
    tools, repo = office
    slow = SlowBookingTools(tools)
    brain = OfflineBrain(slow, clock=clock)  # type: ignore[arg-type]
    ctx = CallContext(call_id="CA-b", caller_number="+18095551234")
    for line in (
        "quiero una cita de pasaporte en santiago",
        "el lunes a las nueve",
        "Marta Reyes",
        CEDULA_WORDS,
        "sí",
    ):
        await say(brain, ctx, line)

    async def reply() -> None:
        async for _ in brain.respond(ctx, UserInput(text="sí")):
            pass

    task = asyncio.create_task(reply())
    await slow.started.wait()
    task.cancel()  # the caller talks over the assistant while it books
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.4)
    bookings = await repo.list_bookings()
    assert len(bookings) == 1
    state = ctx.state[STATE_KEY]
    assert state.last_booking["code"] == bookings[0].code and state.task is None
    text, _ = await say(brain, ctx, "¿cómo? no le escuché")
    assert speak_code(bookings[0].code) in text  # the confirmation is repeated


async def test_takes_over_mid_call_from_another_brain(
    office: tuple[OfficeTools, BookingRepository],
) -> None:
    """As the LLM's fallback it starts with history but none of its own state."""
    tools, _ = office
    brain = OfflineBrain(tools, clock=clock)
    ctx = CallContext(
        call_id="CA-f",
        history=[Message("assistant", "Hola, ¿en qué le ayudo?"), Message("user", "hola")],
        state={"llm": {"messages": 3}},
    )
    text, _ = await say(brain, ctx, "¿dónde queda la oficina de La Romana?")
    assert "calle Duarte número 45" in text
    assert ctx.state["llm"] == {"messages": 3} and STATE_KEY in ctx.state


async def test_tool_failures_are_spoken_not_raised() -> None:
    class Failing:
        catalog = CATALOG

        def now(self) -> datetime:
            return NOW

        async def call(self, name: str, arguments: dict[str, Any], ctx: CallContext) -> dict:
            if name == "check_availability":
                return {"error": "El sistema está tardando en responder.", "reason": "timeout"}
            raise RuntimeError("boom")

    brain = OfflineBrain(Failing(), clock=clock)  # type: ignore[arg-type]
    ctx = CallContext(call_id="CA-x")
    text, outputs = await say(brain, ctx, "quiero una cita de cédula en santiago el lunes a las 9")
    assert "tardando" in text and "?" in text
    assert tools_called(outputs) == ["check_availability"]
    text, outputs = await say(brain, ctx, "¿cuánto cuesta?")
    assert text  # the raising tool became an apology, not a crash
    assert tools_called(outputs) == ["search_knowledge"]


def utterance_pool() -> list[tuple[str, str]]:
    """Every caller turn of the evaluation set, plus odd keypresses."""
    set_path = Path(__file__).resolve().parents[1] / "eval" / "dialogue_set.jsonl"
    pool: list[tuple[str, str]] = [("", "5"), ("", "1"), ("", "2"), ("", "12345"), ("???", "")]
    for line in set_path.read_text("utf-8").splitlines():
        for turn in json.loads(line)["turns"]:
            if isinstance(turn, dict):
                pool.append((turn.get("text", ""), turn.get("dtmf", "")))
            else:
                pool.append((turn.replace("{code}", "TA-7K3P9").replace("{code_spoken}", ""), ""))
    return pool


async def test_any_sequence_of_utterances_gets_an_answer(
    office: tuple[OfficeTools, BookingRepository],
) -> None:
    """Callers say unexpected things at every step: the engine must never fail or go silent."""
    tools, _ = office
    pool = utterance_pool()
    rng = random.Random(7)
    brain = OfflineBrain(tools, clock=clock)
    for call in range(30):
        ctx = CallContext(call_id=f"CA-fuzz-{call}", caller_number="+18095551234")
        await brain.greeting(ctx)
        for _ in range(12):
            text, dtmf = rng.choice(pool)
            if dtmf == "0":
                continue
            spoken, outputs = await say(brain, ctx, text, dtmf)
            ended = any(isinstance(o, EndCall | Transfer) for o in outputs)
            assert spoken or ended, (text, dtmf, ctx.state[STATE_KEY].awaiting)
            if ended:
                break


async def test_a_follow_up_question_keeps_the_service_asked_about(
    office: tuple[OfficeTools, BookingRepository],
) -> None:
    """Heard in a spoken call: "¿Cuándo me la entregan?" right after a question about an acta
    de nacimiento got "¿cédula, licencia o pasaporte?"; and "un asa de nacimiento" (the line's
    "acta") was not recognised."""
    tools, _ = office
    brain = OfflineBrain(tools, clock=clock)
    ctx = CallContext(call_id="CA-follow")
    text, _ = await say(brain, ctx, "Necesito un asa venacimiento.")
    assert "acta" in text.lower()
    text, _ = await say(brain, ctx, "¿Cuándo me la entregan?")
    assert "mismo día" in text and "pasaporte" not in text
