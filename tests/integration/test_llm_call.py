"""A phone call driven by the LLM brain (the real ``openai`` SDK against a local
OpenAI-compatible server), with the offline engine taking over when the LLM fails."""

from __future__ import annotations

import httpx

from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines
from tests.fake_openai import FakeOpenAI, Reply, ToolCall
from tests.integration.test_twilio_stream import RawStream, _until, frames_of


def scripted_stt(*texts: str) -> FixedSTT:
    """Each caller turn is recognised as the next text."""
    queue = list(texts)
    return FixedSTT(text_for=lambda _audio: queue.pop(0) if queue else "")


async def test_llm_answers_with_tools_and_the_offline_brain_covers_a_failure(
    live_server_factory,
) -> None:
    async with FakeOpenAI() as fake:
        fake.script(
            Reply(tool_calls=[ToolCall("search_knowledge", {"query": "horario de las oficinas"})]),
            Reply(text="Abrimos de lunes a viernes, de ocho de la mañana a cuatro de la tarde."),
            Reply(status=500),  # the second turn: the LLM is down
        )
        engines = Engines(
            vad=EnergyVad(),
            stt=scripted_stt("¿A qué hora abren?", "¿Dónde queda la oficina principal?"),
            tts=ToneTTS(ms_per_char=10),
            brain=None,  # built from the settings: LLM + offline fallback
        )
        server = live_server_factory(
            engines=engines, openai_api_key="sk-test", openai_base_url=fake.base_url
        )
        call = RawStream(server)
        await call.connect()
        await call.start(await call.webhook())
        await call.collect(0.5)
        await call.media(frames_of(True, 600) + frames_of(False, 800))
        await call.collect(1.5)
        await call.media(frames_of(True, 600) + frames_of(False, 800))
        await call.collect(1.5)
        await call.stop()

        view = server.call_view(call.call_sid)
        await _until(lambda: view.end_reason is not None)
        bots = [t for t in view.turns if t.speaker == "bot"]
        assert len(bots) == 3, [t.text for t in view.turns]
        llm_turn, fallback_turn = bots[1], bots[2]
        assert "lunes a viernes" in llm_turn.text
        assert [tool["name"] for tool in llm_turn.tools] == ["search_knowledge"]
        assert llm_turn.tools[0]["result"]  # the knowledge base answered the tool call
        assert "avenida" in fallback_turn.text.lower()  # the offline engine's answer

        first, second = fake.chat_requests[0], fake.chat_requests[1]
        assert first["model"] == "gpt-4o-mini" and first["stream"] is True
        assert {t["function"]["name"] for t in first["tools"]} >= {
            "search_knowledge",
            "book_appointment",
            "end_call",
        }
        assert first["messages"][0]["role"] == "system"
        assert first["messages"][-1] == {"role": "user", "content": "¿A qué hora abren?"}
        assert second["messages"][-1]["role"] == "tool"  # the tool result went back

        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{server.url}/metrics")).text
        fallbacks = [
            line
            for line in metrics.splitlines()
            if line.startswith("taina_llm_fallbacks_total{") and line.endswith(" 1.0")
        ]
        assert fallbacks, metrics
