"""The LLM brain against a local OpenAI-compatible server, through the real ``openai`` SDK.

The fake server streams content and tool calls exactly as the API does (role chunk, content
deltas, tool-call fragments, finish reason, [DONE]); what the brain sent is read back from the
server's record of the requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openai import AsyncOpenAI

from app.prompts import DEFAULT_SYSTEM_PROMPT, PromptStore
from app.storage import Database
from knowledge import KnowledgeBase
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
from pipeline.brain.llm import (
    BAD_ARGUMENTS_ERROR,
    GOODBYE_TEXT,
    INTERRUPTED_NOTE,
    NOT_RUN_ERROR,
    TOOL_TIMEOUT_ERROR,
    TRANSFER_TEXT,
    LLMBrain,
    LLMTimeout,
)
from tests.fake_openai import FakeOpenAI, Reply, ToolCall

NOW = datetime(2030, 3, 4, 10, 15, tzinfo=ZoneInfo("America/Santo_Domingo"))  # a Monday

DOCS = {
    "cedula.md": (
        "# Cédula de identidad\n\n## Renovación de la cédula\n\n"
        "Para renovar la cédula lleve la cédula anterior o el acta de nacimiento. "
        "La renovación no tiene costo.\n"
    ),
    "pasaporte.md": (
        "# Pasaporte\n\n## Costo del pasaporte\n\n"
        "El pasaporte de adulto cuesta RD$2,800 y se entrega en diez días laborables.\n"
    ),
    "oficinas.md": (
        "# Oficinas\n\n## Horario\n\n"
        "Las oficinas abren de lunes a viernes de 8:00 a.m. a 4:00 p.m.\n"
    ),
}


class FakeTools:
    """A Tools implementation that records calls; results and delays are set per tool."""

    def __init__(
        self, results: dict[str, Any] | None = None, delays: dict[str, float] | None = None
    ):
        self.results = results or {}
        self.delays = delays or {}
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    async def call(self, name: str, arguments: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        self.calls.append((name, arguments, ctx.call_id))
        if name in self.delays:
            await asyncio.sleep(self.delays[name])
        return self.results.get(name, {"ok": True})


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
    yield sdk
    await sdk.close()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    source = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (source / name).write_text(text, encoding="utf-8")
    return KnowledgeBase.load(tmp_path_factory.mktemp("data"), source)


def make_brain(client: AsyncOpenAI, **kw: Any) -> LLMBrain:
    kw.setdefault("prompt_provider", "Usted es Taína.")
    kw.setdefault("now", lambda: NOW)
    return LLMBrain(client, **kw)


def turn(ctx: CallContext, text: str, dtmf: str = "") -> UserInput:
    """What the session does before calling the brain: the caller's words join the history."""
    ctx.history.append(Message("user", f"{text} [DTMF: {dtmf}]" if dtmf else text))
    return UserInput(text=text, dtmf=dtmf)


async def collect(brain: LLMBrain, ctx: CallContext, user: UserInput) -> list[BrainOutput]:
    return [out async for out in brain.respond(ctx, user)]


def text_of(outputs: list[BrainOutput]) -> str:
    return "".join(o.text for o in outputs if isinstance(o, TextChunk))


# --- streaming ---------------------------------------------------------------------------------


async def test_text_streams_in_pieces_and_request_is_well_formed(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    answer = "Claro que sí. Atendemos de lunes a viernes, de ocho a cuatro."
    fake.script(Reply(text=answer, chunk_chars=5))
    brain = make_brain(client, temperature=0.7, tools=FakeTools())
    ctx = CallContext(call_id="CA1", caller_number="+18095551234")
    outputs = await collect(brain, ctx, turn(ctx, "¿A qué hora abren?"))

    chunks = [o for o in outputs if isinstance(o, TextChunk)]
    assert len(chunks) == len(range(0, len(answer), 5))  # one TextChunk per streamed delta
    assert text_of(outputs) == answer
    (request,) = fake.chat_requests
    assert request["model"] == "gpt-4o-mini"
    assert request["stream"] is True
    assert request["temperature"] == 0.7
    assert request["tool_choice"] == "auto"
    assert {t["function"]["name"] for t in request["tools"]} >= {"search_knowledge", "end_call"}
    system, user = request["messages"]
    assert system["role"] == "system" and system["content"].startswith("Usted es Taína.")
    assert "2030-03-04" in system["content"] and "+18095551234" in system["content"]
    assert user == {"role": "user", "content": "¿A qué hora abren?"}  # not sent twice


async def test_markup_is_stripped_from_spoken_text(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="**Claro**, la cédula es `gratis`."))
    ctx = CallContext(call_id="CA1")
    outputs = await collect(make_brain(client), ctx, turn(ctx, "¿Cuánto cuesta la cédula?"))
    assert text_of(outputs) == "Claro, la cédula es gratis."


async def test_missing_first_token_budget_raises_llm_timeout(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Reply(text="Tarde.", first_token_delay_s=30))
    ctx = CallContext(call_id="CA1")
    brain = make_brain(client, first_token_budget_s=0.2)
    with pytest.raises(LLMTimeout):
        await collect(brain, ctx, turn(ctx, "Hola"))


async def test_stall_mid_stream_raises_llm_timeout(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="Para renovar la cédula necesita", hang_after_chunks=3))
    ctx = CallContext(call_id="CA1")
    brain = make_brain(client, first_token_budget_s=1.0, stall_timeout_s=0.2)
    seen: list[BrainOutput] = []
    with pytest.raises(LLMTimeout):
        async for out in brain.respond(ctx, turn(ctx, "¿Qué necesito?")):
            seen.append(out)
    assert text_of(seen) == "Para ren"  # role chunk + two deltas came before the stall


async def test_barge_in_closes_the_http_stream(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(
        Reply(text="Una respuesta larga que el cliente no va a oír. " * 5, chunk_delay_s=0.05)
    )
    ctx = CallContext(call_id="CA1")
    replies = make_brain(client).respond(ctx, turn(ctx, "Hola"))
    assert isinstance(await anext(replies), TextChunk)
    await replies.aclose()  # what cancelling the session's reply task does
    await asyncio.wait_for(fake.disconnected.wait(), 10)
    assert fake.disconnects == 1


# --- tools -------------------------------------------------------------------------------------


async def test_tool_call_round_trip(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    result = {"results": [{"text": "Lleve su acta de nacimiento.", "source": "cedula.md"}]}
    tools = FakeTools({"search_knowledge": result})
    fake.script(
        Reply(tool_calls=[ToolCall("search_knowledge", {"query": "requisitos cédula"}, "call_1")]),
        Reply(text="Necesita su acta de nacimiento."),
    )
    ctx = CallContext(call_id="CA7")
    outputs = await collect(make_brain(client, tools=tools), ctx, turn(ctx, "¿Qué necesito?"))

    assert outputs[0] == ToolEvent("search_knowledge", {"query": "requisitos cédula"}, result)
    assert text_of(outputs) == "Necesita su acta de nacimiento."
    assert tools.calls == [("search_knowledge", {"query": "requisitos cédula"}, "CA7")]
    first, second = fake.chat_requests
    assistant, tool_msg = second["messages"][-2:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "search_knowledge", "arguments": '{"query": "requisitos cédula"}'},
        }
    ]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_1"
    assert json.loads(tool_msg["content"]) == result
    assert second["messages"][:-2] == first["messages"]


async def test_parallel_tool_calls_in_one_response(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    tools = FakeTools({"check_availability": {"slots": []}, "find_my_appointments": {"n": 0}})
    fake.script(
        Reply(
            tool_calls=[
                ToolCall("check_availability", {"service": "cedula"}),
                ToolCall("find_my_appointments", {"cedula": "00112345678"}),
            ],
            args_chars=3,
        ),
        Reply(text="No hay horarios libres."),
    )
    ctx = CallContext(call_id="CA1")
    outputs = await collect(make_brain(client, tools=tools), ctx, turn(ctx, "Una cita"))
    events = [o for o in outputs if isinstance(o, ToolEvent)]
    assert [(e.name, e.arguments) for e in events] == [
        ("check_availability", {"service": "cedula"}),
        ("find_my_appointments", {"cedula": "00112345678"}),
    ]
    messages = fake.chat_requests[1]["messages"]
    calls = messages[-3]["tool_calls"]
    assert [m["tool_call_id"] for m in messages[-2:]] == [c["id"] for c in calls]


async def test_end_call_comes_after_the_goodbye_text(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(
        Reply(
            text="Con mucho gusto. ¡Que tenga un buen día!",
            tool_calls=[ToolCall("end_call", {"reason": "la persona terminó"})],
        )
    )
    tools = FakeTools()
    ctx = CallContext(call_id="CA1")
    outputs = await collect(make_brain(client, tools=tools), ctx, turn(ctx, "Eso es todo"))
    assert text_of(outputs) == "Con mucho gusto. ¡Que tenga un buen día!"
    assert isinstance(outputs[-1], EndCall) and outputs[-1].reason == "completed"
    assert ToolEvent("end_call", {"reason": "la persona terminó"}, {"ok": True}) in outputs
    assert len(fake.chat_requests) == 1  # no second round after hanging up
    assert tools.calls == []  # the brain acts on end_call itself


async def test_end_call_without_text_still_says_goodbye(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Reply(tool_calls=[ToolCall("end_call", {})]))
    ctx = CallContext(call_id="CA1")
    outputs = await collect(make_brain(client), ctx, turn(ctx, "Adiós"))
    texts = [o for o in outputs if isinstance(o, TextChunk)]
    assert texts == [TextChunk(GOODBYE_TEXT)]
    assert outputs.index(texts[0]) < len(outputs) - 1 and isinstance(outputs[-1], EndCall)


async def test_transfer_to_human(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(
        Reply(
            text="Claro, le comunico con un agente.",
            tool_calls=[ToolCall("transfer_to_human", {"reason": "lo pidió"})],
        )
    )
    ctx = CallContext(call_id="CA1")
    outputs = await collect(make_brain(client), ctx, turn(ctx, "Quiero hablar con una persona"))
    assert text_of(outputs) == "Claro, le comunico con un agente."
    assert isinstance(outputs[-1], Transfer)

    fake.script(Reply(tool_calls=[ToolCall("transfer_to_human", {})]))
    outputs = await collect(make_brain(client), ctx, turn(ctx, "Un agente"))
    assert text_of(outputs) == TRANSFER_TEXT and isinstance(outputs[-1], Transfer)


async def test_tool_timeout_is_reported_to_the_model(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    tools = FakeTools(delays={"check_availability": 30})
    fake.script(
        Reply(tool_calls=[ToolCall("check_availability", {"service": "pasaporte"})]),
        Reply(text="Disculpe, no pude consultar los horarios."),
    )
    ctx = CallContext(call_id="CA1")
    brain = make_brain(client, tools=tools, tool_timeout_s=0.2)
    outputs = await collect(brain, ctx, turn(ctx, "Cita para pasaporte"))
    (event,) = [o for o in outputs if isinstance(o, ToolEvent)]
    assert event.result == {"error": TOOL_TIMEOUT_ERROR}
    assert json.loads(fake.chat_requests[1]["messages"][-1]["content"]) == event.result
    assert text_of(outputs) == "Disculpe, no pude consultar los horarios."


async def test_invalid_tool_arguments_are_not_executed(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    tools = FakeTools()
    fake.script(
        Reply(tool_calls=[ToolCall("cancel_appointment", '{"code": "AB1')]),
        Reply(text="¿Me repite el código?"),
    )
    ctx = CallContext(call_id="CA1")
    outputs = await collect(make_brain(client, tools=tools), ctx, turn(ctx, "Cancelar"))
    (event,) = [o for o in outputs if isinstance(o, ToolEvent)]
    assert event.result == {"error": BAD_ARGUMENTS_ERROR}
    assert tools.calls == []
    assert text_of(outputs) == "¿Me repite el código?"


async def test_tool_rounds_are_bounded(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    looping = Reply(tool_calls=[ToolCall("check_availability", {"service": "cedula"})])
    fake.script(looping, looping, Reply(text="No encontré horarios."))
    ctx = CallContext(call_id="CA1")
    brain = make_brain(client, tools=FakeTools(), max_tool_rounds=2)
    outputs = await collect(brain, ctx, turn(ctx, "Una cita"))
    assert [r["tool_choice"] for r in fake.chat_requests] == ["auto", "auto", "none"]
    assert text_of(outputs) == "No encontré horarios."


# --- history -----------------------------------------------------------------------------------


async def test_history_marks_the_interrupted_turn(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    ctx = CallContext(call_id="CA1")
    ctx.history += [
        Message("assistant", "Buenos días, le habla Taína."),
        Message("user", "Quiero renovar la cédula"),
        Message("assistant", "Para renovar la cédula necesita", interrupted=True),
    ]
    fake.script(Reply(text="Con gusto."))
    await collect(make_brain(client), ctx, turn(ctx, "¿Y cuánto cuesta?"))
    messages = fake.chat_requests[0]["messages"][1:]
    assert messages == [
        {"role": "assistant", "content": "Buenos días, le habla Taína."},
        {"role": "user", "content": "Quiero renovar la cédula"},
        {"role": "assistant", "content": "Para renovar la cédula necesita"},
        {"role": "system", "content": INTERRUPTED_NOTE},
        {"role": "user", "content": "¿Y cuánto cuesta?"},
    ]


async def test_user_turn_missing_from_history_is_sent_once(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    ctx = CallContext(call_id="CA1")
    fake.script(Reply(text="Recibido."))
    await collect(make_brain(client), ctx, UserInput(text="", dtmf="1"))
    assert fake.chat_requests[0]["messages"][-1] == {"role": "user", "content": " [DTMF: 1]"}


async def test_tool_exchanges_are_remembered_across_turns(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    slots = {"slots": [{"slot_id": 42, "when": "el martes 5 de marzo a las nueve"}]}
    brain = make_brain(client, tools=FakeTools({"check_availability": slots}))
    ctx = CallContext(call_id="CA1")
    fake.script(
        Reply(tool_calls=[ToolCall("check_availability", {"service": "cedula"}, "call_a")]),
        Reply(text="Tengo el martes a las nueve. ¿Le sirve?"),
    )
    outputs = await collect(brain, ctx, turn(ctx, "Una cita para la cédula"))
    ctx.history.append(Message("assistant", text_of(outputs)))  # the session does this
    fake.script(Reply(text="Perfecto. ¿Su nombre completo?"))
    await collect(brain, ctx, turn(ctx, "Sí, me sirve"))

    messages = fake.chat_requests[-1]["messages"][1:]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[1]["tool_calls"][0]["id"] == "call_a"
    assert messages[1]["content"] is None  # the words live in the heard assistant message
    assert json.loads(messages[2]["content"]) == slots
    assert messages[3]["content"] == "Tengo el martes a las nueve. ¿Le sirve?"


async def test_barge_in_between_tool_calls_leaves_a_valid_history(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    tools = FakeTools()
    brain = make_brain(client, tools=tools)
    ctx = CallContext(call_id="CA1")
    fake.script(
        Reply(
            tool_calls=[
                ToolCall("check_availability", {"service": "cedula"}, "call_1"),
                ToolCall("find_my_appointments", {"cedula": "00112345678"}, "call_2"),
            ]
        )
    )
    replies = brain.respond(ctx, turn(ctx, "Una cita"))
    first = await anext(replies)
    assert isinstance(first, ToolEvent) and first.name == "check_availability"
    await replies.aclose()  # the caller barged in: the session cancels the reply here
    assert [name for name, _, _ in tools.calls] == ["check_availability"]

    fake.script(Reply(text="Dígame."))
    await collect(brain, ctx, turn(ctx, "Perdón, otra cosa"))
    messages = fake.chat_requests[-1]["messages"]
    tool_results = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    assert tool_results["call_1"] == json.dumps({"ok": True})
    assert json.loads(tool_results["call_2"]) == {"error": NOT_RUN_ERROR}


# --- system prompt -----------------------------------------------------------------------------


async def test_system_prompt_comes_from_the_prompt_store(
    fake: FakeOpenAI, client: AsyncOpenAI, tmp_path: Path
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'taina.db'}")
    await db.migrate()
    try:
        store = PromptStore(db, cache_s=0)
        brain = make_brain(client, prompt_provider=store.active)
        ctx = CallContext(call_id="CA1")
        fake.script(Reply(text="Hola."), Reply(text="Hola otra vez."))
        await collect(brain, ctx, turn(ctx, "Hola"))
        version = await store.create_version("Usted es Marisol, de la oficina.", author="admin")
        await store.activate(version)
        await collect(brain, ctx, turn(ctx, "Hola de nuevo"))
    finally:
        await db.dispose()
    first, second = (r["messages"][0]["content"] for r in fake.chat_requests)
    assert first.startswith(DEFAULT_SYSTEM_PROMPT.strip())
    assert second.startswith("Usted es Marisol, de la oficina.")
    assert DEFAULT_SYSTEM_PROMPT.strip() not in second


async def test_failing_prompt_provider_keeps_the_last_prompt(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    prompts = iter(["Prompt uno."])

    async def provider() -> str:
        return next(prompts)  # StopIteration → RuntimeError inside a coroutine the 2nd time

    brain = make_brain(client, prompt_provider=provider)
    ctx = CallContext(call_id="CA1")
    fake.script(Reply(text="a."), Reply(text="b."))
    await collect(brain, ctx, turn(ctx, "uno"))
    await collect(brain, ctx, turn(ctx, "dos"))
    assert all(r["messages"][0]["content"].startswith("Prompt uno.") for r in fake.chat_requests)


# --- knowledge modes ---------------------------------------------------------------------------


async def test_rag_prompt_adds_retrieved_context(
    fake: FakeOpenAI, client: AsyncOpenAI, kb: KnowledgeBase
) -> None:
    fake.script(Reply(text="Cuesta dos mil ochocientos pesos."))
    brain = make_brain(client, knowledge=kb, knowledge_mode="rag_prompt")
    ctx = CallContext(call_id="CA1")
    await collect(brain, ctx, turn(ctx, "¿Cuánto cuesta el pasaporte?"))
    system = fake.chat_requests[0]["messages"][0]["content"]
    assert "pasaporte.md — Pasaporte > Costo del pasaporte" in system
    assert "RD$2,800" in system
    # Without a Tools implementation only the tools the brain runs itself are offered.
    names = {t["function"]["name"] for t in fake.chat_requests[0]["tools"]}
    assert names == {"search_knowledge", "end_call", "transfer_to_human"}


async def test_short_follow_up_retrieves_with_the_previous_question(
    fake: FakeOpenAI, client: AsyncOpenAI, kb: KnowledgeBase
) -> None:
    ctx = CallContext(call_id="CA1")
    ctx.history += [Message("user", "Quiero sacar el pasaporte"), Message("assistant", "Bien.")]
    fake.script(Reply(text="Cuesta dos mil ochocientos pesos."))
    await collect(make_brain(client, knowledge=kb), ctx, turn(ctx, "¿Y cuánto cuesta?"))
    assert "Costo del pasaporte" in fake.chat_requests[0]["messages"][0]["content"]


async def test_local_search_tool_without_tools(
    fake: FakeOpenAI, client: AsyncOpenAI, kb: KnowledgeBase
) -> None:
    fake.script(
        Reply(tool_calls=[ToolCall("search_knowledge", {"query": "horario de las oficinas"})]),
        Reply(text="Abrimos a las ocho."),
    )
    ctx = CallContext(call_id="CA1")
    outputs = await collect(make_brain(client, knowledge=kb), ctx, turn(ctx, "¿Horario?"))
    (event,) = [o for o in outputs if isinstance(o, ToolEvent)]
    assert event.result["results"][0]["source"] == "oficinas.md — Oficinas > Horario"


async def test_query_engine_answers_search_with_a_synthesised_answer(
    fake: FakeOpenAI, client: AsyncOpenAI, kb: KnowledgeBase
) -> None:
    tools = FakeTools()
    fake.script(
        Reply(tool_calls=[ToolCall("search_knowledge", {"query": "costo del pasaporte"})]),
        Reply(text="El pasaporte cuesta 2800 pesos."),  # the query engine's own completion
        Reply(text="Le cuesta dos mil ochocientos pesos."),
    )
    brain = make_brain(client, tools=tools, knowledge=kb, knowledge_mode="query_engine")
    ctx = CallContext(call_id="CA1")
    outputs = await collect(brain, ctx, turn(ctx, "¿Cuánto sale el pasaporte?"))
    (event,) = [o for o in outputs if isinstance(o, ToolEvent)]
    assert event.result["answer"] == "El pasaporte cuesta 2800 pesos."
    assert "pasaporte.md — Pasaporte > Costo del pasaporte" in event.result["sources"]
    first, synthesis, final = fake.chat_requests
    assert "Información de la base" not in first["messages"][0]["content"]  # no RAG prompt
    assert synthesis.get("stream") is not True
    assert "RD$2,800" in synthesis["messages"][1]["content"]
    assert tools.calls == []  # the query engine answered, not the Tools implementation
    assert text_of(outputs) == "Le cuesta dos mil ochocientos pesos."


async def test_chat_engine_condenses_the_follow_up_before_retrieval(
    fake: FakeOpenAI, client: AsyncOpenAI, kb: KnowledgeBase
) -> None:
    ctx = CallContext(call_id="CA1")
    ctx.history += [
        Message("user", "Necesito renovar la cédula"),
        Message("assistant", "Con gusto le ayudo."),
    ]
    fake.script(
        Reply(text="¿Qué documentos necesito para renovar la cédula?"),  # condensed question
        Reply(text="Lleve la cédula anterior."),
    )
    brain = make_brain(client, knowledge=kb, knowledge_mode="chat_engine")
    outputs = await collect(brain, ctx, turn(ctx, "¿Y qué llevo?"))
    condense, answer = fake.chat_requests
    assert condense.get("stream") is not True
    assert "Ciudadano: Necesito renovar la cédula" in condense["messages"][1]["content"]
    assert "Ciudadano: ¿Y qué llevo?" in condense["messages"][1]["content"]
    assert "Cédula de identidad > Renovación de la cédula" in answer["messages"][0]["content"]
    assert text_of(outputs) == "Lleve la cédula anterior."


def test_unknown_knowledge_mode_is_refused(client: AsyncOpenAI) -> None:
    with pytest.raises(ValueError):
        LLMBrain(client, knowledge_mode="magic")


async def test_greeting_is_fixed_and_local(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    greeting = await make_brain(client, office_name="Punto Ciudadano").greeting(CallContext("x"))
    assert greeting.startswith("Buenos días, gracias por llamar a Punto Ciudadano.")
    assert fake.requests == []
