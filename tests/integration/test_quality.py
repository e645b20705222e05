"""Quality work against the real server (SQLite and PostgreSQL): the report of questions the
assistant misunderstood or could not answer (grouped however they were spelled, with counts and
the calls), tags in the report, and "probar una pregunta" with the real offline brain and the
real knowledge base.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.api import quality_routes
from app.storage import TurnRecord
from pipeline.brain import phrases
from pipeline.brain.tools import SEARCH_KNOWLEDGE
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import SORRY_NOT_UNDERSTOOD, Engines
from tests.integration.staff_fixtures import database_url, staff_api  # noqa: F401
from tests.integration.test_admin_api import Api

NOW = datetime.now(UTC)
OUT_OF_SCOPE = f"{phrases.CANNOT_HELP_WITH_THAT} {phrases.CAPABILITIES} {phrases.WHAT_DO_YOU_NEED}"


def _turn(seq: int, speaker: str, text: str, **extra: object) -> TurnRecord:
    at = NOW - timedelta(minutes=30) + timedelta(seconds=seq * 5)
    return TurnRecord(
        seq=seq,
        speaker=speaker,  # type: ignore[arg-type]
        text=text,
        heard_text=text,
        interrupted=False,
        started_at=at,
        ended_at=at + timedelta(seconds=2),
        **extra,  # type: ignore[arg-type]
    )


def _call(client: Api, sid: str, minutes_ago: int, turns: list[TurnRecord]) -> None:
    async def write() -> None:
        calls = client.services.calls
        await calls.start_call(sid, "twilio", started_at=NOW - timedelta(minutes=minutes_ago))
        for t in turns:
            await calls.add_turn(sid, t)
        await calls.end_call(sid, end_reason="caller-hangup")

    client.server.run(write())


def _seed(client: Api) -> None:
    greeting = _turn(0, "bot", "Buenas tardes. ¿En qué le puedo ayudar?")
    empty_search = [{"name": SEARCH_KNOWLEDGE, "arguments": {"query": "x"}, "result": {"hits": []}}]
    _call(
        client,
        "CA-luz-1",
        50,
        [greeting, _turn(1, "caller", "¿Puedo pagar la luz aquí?"), _turn(2, "bot", OUT_OF_SCOPE)],
    )
    _call(
        client,
        "CA-luz-2",
        40,
        [
            greeting,
            _turn(1, "caller", "puedo pagar la luz aqui"),
            _turn(2, "bot", OUT_OF_SCOPE),
            _turn(3, "caller", "el toxi molaume"),
            _turn(4, "bot", f"{phrases.NOT_CAUGHT} ¿Qué trámite va a hacer?"),
        ],
    )
    _call(
        client,
        "CA-ok",
        30,
        [
            greeting,
            _turn(1, "caller", "¿A qué hora abren?"),
            _turn(2, "bot", "Abrimos de lunes a viernes de ocho a cuatro."),
            _turn(3, "caller", "Mi cédula es 00112345678"),
            _turn(4, "bot", SORRY_NOT_UNDERSTOOD),
            _turn(5, "caller", "", timings={"audio_ms": 900.0, "unheard": 1.0}),
            _turn(6, "bot", phrases.NOT_HEARD),
            _turn(7, "caller", "¿Tienen parqueo para bicicletas?"),
            _turn(8, "bot", "Déjeme ver.", tools=empty_search),
        ],
    )


def test_report_groups_misses_with_counts_and_calls(staff_api: Callable[..., Api]) -> None:  # noqa: F811
    client = staff_api()
    agent = client.token("agente@example.org", "agent")
    admin = client.token("admin@example.org", "admin")
    _seed(client)
    client.http.post("/api/calls/CA-luz-1/tags", json={"tag": "fuera de alcance"}, headers=agent)

    r = client.get("/api/quality/report", agent, days=7)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["caller_turns"] == 7
    assert report["unanswered"] == 3 and report["misunderstood"] == 3
    groups = report["groups"]
    top = groups[0]
    # Two spellings, one question: the most common (first) spelling, both calls, newest first.
    assert top["kind"] == "sin_respuesta" and top["kind_label"] == "Sin respuesta"
    assert top["count"] == 2 and top["call_count"] == 2
    assert [c["call_sid"] for c in top["calls"]] == ["CA-luz-2", "CA-luz-1"]
    by_text = {g["text"]: g for g in groups}
    assert by_text["el toxi molaume"]["kind"] == "no_entendida"
    assert by_text["(no se reconocieron palabras)"]["kind"] == "no_entendida"
    assert by_text["¿Tienen parqueo para bicicletas?"]["kind"] == "sin_respuesta"
    assert "¿A qué hora abren?" not in by_text  # answered: not a problem
    # Callers' numbers are masked for agents, as in transcripts; admins see them.
    masked = [g["text"] for g in groups if g["text"].startswith("Mi cédula")]
    assert masked and "00112345678" not in masked[0] and masked[0].endswith("5678")
    full = client.get("/api/quality/report", admin, days=7).json()
    assert any(g["text"] == "Mi cédula es 00112345678" for g in full["groups"])

    assert report["tags"] == [{"tag": "fuera de alcance", "count": 1}]
    assert [c["call_sid"] for c in report["tagged_calls"]["fuera de alcance"]] == ["CA-luz-1"]

    assert client.get("/api/quality/report", agent, days=0).status_code == 422
    citizen = client.token("ciudadano@example.org", "citizen")
    assert client.get("/api/quality/report", citizen).status_code == 403


def test_try_a_question_answers_from_a_passage(staff_api: Callable[..., Api]) -> None:  # noqa: F811
    # The brain the app builds for calls (with its tools and the real knowledge base).
    engines = Engines(vad=EnergyVad(), stt=FixedSTT(text=""), tts=ToneTTS(), brain=None)
    client = staff_api(engines)
    agent = client.token("agente@example.org", "agent")

    r = client.http.post(
        "/api/quality/try", json={"question": "¿A qué hora abren las oficinas?"}, headers=agent
    )
    assert r.status_code == 200, r.text
    trial = r.json()
    assert "lunes a viernes" in trial["answer"]
    used = [p for p in trial["passages"] if p["used"]]
    assert len(used) == 1 and used[0]["source"].endswith(".md") and used[0]["text"]
    assert SEARCH_KNOWLEDGE in trial["tools"]

    out = client.http.post(
        "/api/quality/try", json={"question": "¿Puedo pagar la factura de la luz?"}, headers=agent
    ).json()
    assert out["answer"].startswith(phrases.CANNOT_HELP_WITH_THAT)
    assert not any(p["used"] for p in out["passages"])

    blank = client.http.post("/api/quality/try", json={"question": "   "}, headers=agent)
    assert blank.status_code == 422 and blank.json()["detail"] == "Escriba una pregunta."
    assert client.http.post("/api/quality/try", json={"question": "hola"}).status_code == 401


def test_openapi_documents_the_staff_endpoints(staff_api: Callable[..., Api]) -> None:  # noqa: F811
    spec = staff_api().http.get("/openapi.json").json()["paths"]
    expected = {
        "/api/calls/{call_sid}/review": {"get"},
        "/api/calls/{call_sid}/tags": {"post"},
        "/api/calls/{call_sid}/tags/{tag}": {"delete"},
        "/api/calls/{call_sid}/notes": {"post"},
        "/api/calls/{call_sid}/notes/{note_id}": {"delete"},
        "/api/calendar": {"get"},
        "/api/bookings/{code}/cancel": {"post"},
        "/api/bookings/{code}/reschedule": {"post"},
        "/api/bookings/{code}/attendance": {"post"},
        "/api/quality/report": {"get"},
        "/api/quality/tags": {"get"},
        "/api/quality/try": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(spec.get(path, {})), path


class _SlowBrain:
    """A brain that takes a second to answer: trials pile up."""

    name = "lenta"

    async def greeting(self, ctx: object) -> str:
        return "Hola."

    async def respond(self, ctx: object, user: object):  # type: ignore[no-untyped-def]
        import asyncio

        from pipeline.brain.base import TextChunk

        await asyncio.sleep(1.0)
        yield TextChunk("Respuesta lenta.")


def test_trials_run_a_few_at_a_time(staff_api: Callable[..., Api]) -> None:  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    client = staff_api()
    agent = client.token("agente@example.org", "agent")
    client.services.engines.brain = _SlowBrain()

    def ask(_: int) -> httpx.Response:
        with httpx.Client(base_url=client.server.url, timeout=30) as http:
            return http.post("/api/quality/try", json={"question": "¿Hola?"}, headers=agent)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 429, 429], codes
    busy = next(r for r in answers if r.status_code == 429)
    assert busy.json()["detail"].startswith("Hay otras pruebas en curso")
    assert busy.headers["Retry-After"] == "2"
    done = next(r for r in answers if r.status_code == 200).json()
    assert done["answer"] == "Respuesta lenta." and done["brain"] == "lenta"


def test_report_is_judged_off_the_event_loop(
    staff_api: Callable[..., Api],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Judging a year of turns is CPU work: it must not run on the loop that serves live calls
    (before the fix every turn was classified inside the request's coroutine)."""
    judged_on_loop: list[bool] = []
    real_classify = quality_routes.classify

    def spy(caller: Any, reply: Any) -> Any:
        try:
            asyncio.get_running_loop()
            judged_on_loop.append(True)
        except RuntimeError:  # a worker thread has no running loop
            judged_on_loop.append(False)
        return real_classify(caller, reply)

    monkeypatch.setattr(quality_routes, "classify", spy)
    client = staff_api()
    agent = client.token("agente@example.org", "agent")
    _seed(client)
    r = client.get("/api/quality/report", agent, days=7)
    assert r.status_code == 200, r.text
    assert r.json()["caller_turns"] == 7  # the same report as before
    assert judged_on_loop and not any(judged_on_loop)
