"""The offline brain takes over when the LLM fails or is too slow, mid-call.

The primary is the real LLM brain on the real ``openai`` SDK against the local fake server
(slow first token, HTTP 500 / 429, a connection dropped mid-stream); the fallback is a stub
that implements the Brain interface, so these tests do not depend on the offline engine's
dialogue rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from prometheus_client import CollectorRegistry, Counter

from pipeline.brain.base import (
    BrainOutput,
    CallContext,
    EndCall,
    Message,
    TextChunk,
    ToolEvent,
    UserInput,
)
from pipeline.brain.fallback import MID_REPLY_APOLOGY, FallbackBrain
from pipeline.brain.llm import LLMBrain
from tests.fake_openai import FakeOpenAI, Reply, ToolCall

OFFLINE_TEXT = "Le responde el asistente sin conexión."


class StubBrain:
    """A Brain that yields scripted outputs (with optional pauses) and records its turns."""

    def __init__(self, name: str, script: list[BrainOutput | float | Exception] | None = None):
        self.name = name
        self.script = script if script is not None else [TextChunk(OFFLINE_TEXT)]
        self.turns: list[str] = []
        self.closed = 0

    async def greeting(self, ctx: CallContext) -> str:
        return f"Saludo de {self.name}."

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        self.turns.append(user.text)
        try:
            for step in self.script:
                if isinstance(step, float):
                    await asyncio.sleep(step)
                elif isinstance(step, Exception):
                    raise step
                else:
                    yield step
        finally:
            self.closed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
    yield sdk
    await sdk.close()


def llm(client: AsyncOpenAI, budget_s: float = 0.3, **kw: Any) -> LLMBrain:
    return LLMBrain(client, prompt_provider="Usted es Taína.", first_token_budget_s=budget_s, **kw)


async def reply(brain: FallbackBrain, ctx: CallContext, text: str) -> list[BrainOutput]:
    ctx.history.append(Message("user", text))
    return [out async for out in brain.respond(ctx, UserInput(text=text))]


def text_of(outputs: list[BrainOutput]) -> str:
    return "".join(o.text for o in outputs if isinstance(o, TextChunk))


# --- the LLM on the wire fails -----------------------------------------------------------------


async def test_budget_miss_lets_the_fallback_answer(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="Demasiado tarde.", first_token_delay_s=30))
    offline = StubBrain("offline")
    events: list[tuple[str, str]] = []
    registry = CollectorRegistry()
    counter = Counter("fallbacks", "LLM fallbacks", ["reason"], registry=registry)
    brain = FallbackBrain(
        llm(client, budget_s=5.0),  # the wrapper's budget is the one that fires here
        offline,
        first_token_budget_s=0.3,
        on_fallback=lambda call_id, reason: events.append((call_id, reason)),
        counter=counter,
    )
    ctx = CallContext(call_id="CA-budget")
    outputs = await reply(brain, ctx, "¿A qué hora abren?")
    assert outputs == [TextChunk(OFFLINE_TEXT)]
    assert offline.turns == ["¿A qué hora abren?"]  # the same turn, answered by the fallback
    assert events == [("CA-budget", "budget")]
    assert brain.fallbacks == {"budget": 1}
    assert registry.get_sample_value("fallbacks_total", {"reason": "budget"}) == 1.0


async def test_slow_response_headers_also_miss_the_budget(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Reply(text="Tarde.", headers_delay_s=30))
    offline = StubBrain("offline")
    brain = FallbackBrain(llm(client, budget_s=0.3), offline, first_token_budget_s=0.3)
    outputs = await reply(brain, CallContext(call_id="CA1"), "Hola")
    assert outputs == [TextChunk(OFFLINE_TEXT)]
    assert sum(brain.fallbacks.values()) == 1


@pytest.mark.parametrize("status", [500, 429])
async def test_http_errors_let_the_fallback_answer(
    fake: FakeOpenAI, client: AsyncOpenAI, status: int
) -> None:
    fake.script(Reply(status=status))
    offline = StubBrain("offline")
    brain = FallbackBrain(llm(client), offline, first_token_budget_s=2.0)
    outputs = await reply(brain, CallContext(call_id="CA1"), "Quiero una cita")
    assert outputs == [TextChunk(OFFLINE_TEXT)]
    assert brain.fallbacks == {"error": 1}


async def test_dropped_stream_mid_reply_ends_gracefully(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Reply(text="Para renovar la cédula usted necesita", drop_after_chunks=4))
    offline = StubBrain("offline")
    brain = FallbackBrain(llm(client, budget_s=2.0), offline, first_token_budget_s=2.0)
    outputs = await reply(brain, CallContext(call_id="CA1"), "¿Qué necesito?")
    assert text_of(outputs) == f"Para renovar… {MID_REPLY_APOLOGY}"
    assert outputs[-1] == TextChunk(f"… {MID_REPLY_APOLOGY}")
    assert offline.turns == []  # the caller already heard the LLM: no second voice mid-turn
    assert brain.fallbacks == {"mid_reply": 1}


async def test_stall_mid_reply_ends_gracefully(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="Claro. Le explico los requisitos", chunk_chars=7, hang_after_chunks=2))
    offline = StubBrain("offline")
    primary = llm(client, budget_s=2.0, stall_timeout_s=0.2)
    brain = FallbackBrain(primary, offline, first_token_budget_s=2.0)
    outputs = await reply(brain, CallContext(call_id="CA1"), "¿Requisitos?")
    assert text_of(outputs) == f"Claro. {MID_REPLY_APOLOGY}"  # after a full stop: no ellipsis
    assert brain.fallbacks == {"mid_reply": 1}


async def test_tool_activity_then_failure_before_text_falls_back(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(
        Reply(tool_calls=[ToolCall("search_knowledge", {"query": "horario"})]),
        Reply(status=500),
    )
    offline = StubBrain("offline")
    brain = FallbackBrain(llm(client, budget_s=2.0), offline, first_token_budget_s=2.0)
    outputs = await reply(brain, CallContext(call_id="CA1"), "¿Horario?")
    assert isinstance(outputs[0], ToolEvent)
    assert outputs[1:] == [TextChunk(OFFLINE_TEXT)]
    assert brain.fallbacks == {"error": 1}


async def test_healthy_llm_is_used_and_resets_the_failure_streak(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    offline = StubBrain("offline")
    brain = FallbackBrain(llm(client, budget_s=2.0), offline, 2.0, failure_threshold=2)
    ctx = CallContext(call_id="CA1")
    fake.script(Reply(status=500), Reply(text="Aquí estoy."), Reply(status=500))
    await reply(brain, ctx, "uno")
    assert text_of(await reply(brain, ctx, "dos")) == "Aquí estoy."
    await reply(brain, ctx, "tres")
    assert not brain.cooling_down  # two failures, but not in a row
    assert offline.turns == ["uno", "tres"]


async def test_repeated_failures_skip_the_llm_for_a_cool_down(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    clock = Clock()
    offline = StubBrain("offline")
    brain = FallbackBrain(
        llm(client, budget_s=2.0), offline, 2.0, failure_threshold=2, cooldown_s=60, clock=clock
    )
    ctx = CallContext(call_id="CA1")
    fake.script(Reply(status=500), Reply(status=500))
    await reply(brain, ctx, "uno")
    await reply(brain, ctx, "dos")
    assert brain.cooling_down
    requests = len(fake.chat_requests)
    assert text_of(await reply(brain, ctx, "tres")) == OFFLINE_TEXT
    assert len(fake.chat_requests) == requests  # the LLM was not even asked
    assert brain.fallbacks == {"error": 2, "cooldown": 1}

    clock.now += 61
    fake.script(Reply(text="De vuelta."))
    assert text_of(await reply(brain, ctx, "cuatro")) == "De vuelta."
    assert len(fake.chat_requests) == requests + 1


# --- the wrapper's own contract, with stub primaries ---------------------------------------


async def test_slow_primary_is_cancelled_when_the_fallback_takes_over() -> None:
    primary = StubBrain("llm", [30.0, TextChunk("nunca")])
    offline = StubBrain("offline")
    brain = FallbackBrain(primary, offline, first_token_budget_s=0.1)
    outputs = await reply(brain, CallContext(call_id="CA1"), "hola")
    assert outputs == [TextChunk(OFFLINE_TEXT)]
    assert primary.closed == 1  # its generator was closed, not left running


async def test_tool_activity_meets_the_budget() -> None:
    event = ToolEvent("check_availability", {"service": "cedula"}, {"slots": []})
    primary = StubBrain("llm", [event, 0.3, TextChunk("No hay horarios.")])
    offline = StubBrain("offline")
    brain = FallbackBrain(primary, offline, first_token_budget_s=0.1, stall_timeout_s=10)
    outputs = await reply(brain, CallContext(call_id="CA1"), "cita")
    assert outputs == [event, TextChunk("No hay horarios.")]
    assert offline.turns == [] and brain.fallbacks == {}


async def test_empty_primary_reply_lets_the_fallback_answer() -> None:
    primary = StubBrain("llm", [TextChunk("  ")])
    offline = StubBrain("offline")
    brain = FallbackBrain(primary, offline, first_token_budget_s=1.0)
    outputs = await reply(brain, CallContext(call_id="CA1"), "hola")
    assert outputs == [TextChunk("  "), TextChunk(OFFLINE_TEXT)]
    assert brain.fallbacks == {"empty": 1}


async def test_end_call_from_the_primary_passes_through() -> None:
    primary = StubBrain("llm", [TextChunk("Adiós."), EndCall("completed")])
    brain = FallbackBrain(primary, StubBrain("offline"), first_token_budget_s=1.0)
    outputs = await reply(brain, CallContext(call_id="CA1"), "adiós")
    assert outputs == [TextChunk("Adiós."), EndCall("completed")]
    assert brain.fallbacks == {}


async def test_barge_in_cancellation_closes_the_primary() -> None:
    primary = StubBrain("llm", [TextChunk("Uno. "), 30.0, TextChunk("Dos.")])
    brain = FallbackBrain(primary, StubBrain("offline"), first_token_budget_s=1.0)
    got: list[BrainOutput] = []
    speaking = asyncio.Event()

    async def consume() -> None:
        async for out in brain.respond(CallContext(call_id="CA1"), UserInput(text="x")):
            got.append(out)
            speaking.set()

    task = asyncio.create_task(consume())
    await speaking.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [TextChunk("Uno. ")]
    assert primary.closed == 1
    assert brain.fallbacks == {}  # a barge-in is not a failure


async def test_greeting_falls_back_when_the_primary_cannot_greet() -> None:
    class Broken(StubBrain):
        async def greeting(self, ctx: CallContext) -> str:
            raise RuntimeError("boom")

    brain = FallbackBrain(Broken("llm"), StubBrain("offline"), first_token_budget_s=1.0)
    assert await brain.greeting(CallContext(call_id="CA1")) == "Saludo de offline."
    ok = FallbackBrain(StubBrain("llm"), StubBrain("offline"), first_token_budget_s=1.0)
    assert await ok.greeting(CallContext(call_id="CA1")) == "Saludo de llm."


async def test_unlabelled_counter_is_incremented() -> None:
    registry = CollectorRegistry()
    counter = Counter("llm_fallbacks", "LLM fallbacks", registry=registry)
    brain = FallbackBrain(
        StubBrain("llm", [RuntimeError("down")]),
        StubBrain("offline"),
        first_token_budget_s=1.0,
        counter=counter,
    )
    await reply(brain, CallContext(call_id="CA1"), "hola")
    assert registry.get_sample_value("llm_fallbacks_total") == 1.0
