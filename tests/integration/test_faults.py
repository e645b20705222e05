"""Fault injection against the real server on loopback (issue 7, "Faults").

Each test breaks one thing under a live phone call — a provider that refuses, stalls or dies
mid-stream, a slow brain, the database gone for 30 s, a caller who hangs up mid-sentence or
whose connection vanishes — and checks what the promise is: the caller is still answered in
Spanish, nothing crashes or leaks, and the call is on record.

Faults already covered elsewhere are not repeated here:

* Deepgram live refused (401/500), dropped mid-utterance (reconnects), stalled, garbage:
  ``tests/integration/test_deepgram_call.py``.
* ElevenLabs stalling, OpenAI's voice answering within the budget:
  ``tests/integration/test_provider_call.py``.
* The LLM answering HTTP 500, the offline brain taking the turn: ``test_llm_call.py``.
* Each chain in isolation: ``tests/unit/test_failover_stt.py``, ``test_failover_tts.py``,
  ``test_fallback_brain.py``, ``test_llm_brain.py``, ``test_deepgram_stt.py``.
* SIGTERM, restarts: ``test_drain.py``, ``test_restart.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator

import numpy as np
import pytest
import websockets
from sqlalchemy.engine import make_url

from pipeline.brain.fallback import MID_REPLY_APOLOGY
from pipeline.brain.offline import OfflineBrain
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.providers.deepgram_stt import DeepgramLiveSTT
from pipeline.providers.elevenlabs_tts import ElevenLabsTTS
from pipeline.providers.failover_stt import FailoverSTT
from pipeline.providers.failover_tts import FailoverTTS
from pipeline.providers.openai_stt import OpenAISTT
from pipeline.providers.openai_tts import OpenAITTS
from pipeline.session import Engines
from pipeline.tts import EspeakTTS
from tests.fake_deepgram import FakeDeepgram
from tests.fake_elevenlabs import API_KEY as EL_KEY
from tests.fake_elevenlabs import Behaviour, FakeElevenLabs
from tests.fake_openai import FakeOpenAI, Reply
from tests.fake_openai_audio import API_KEY as OA_KEY
from tests.fake_openai_audio import AudioBehaviour, FakeOpenAIAudio
from tests.faults.calls import drop_connection, until
from tests.faults.engines import PacedTTS, SlowSTT
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.conftest import LiveServer, instant_engines
from tests.integration.pg_scratch import scratch_database_async
from tests.integration.test_twilio_stream import RawStream, frames_of

pytestmark = pytest.mark.timeout(150)

QUESTION = "¿A qué hora abren las oficinas?"  # what the stand-in for Whisper "hears"
HOURS = "lunes a viernes"  # in the offline brain's answer to it


# --- helpers --------------------------------------------------------------------------------


def media_bytes(msgs: list[dict]) -> int:
    return sum(len(base64.b64decode(m["media"]["payload"])) for m in msgs if m["event"] == "media")


async def start_server(live_server_factory, **kwargs: object) -> LiveServer:
    """Start the app off the test's loop: its startup may call the fake servers running on
    this loop (the knowledge base embeds its sections when an OpenAI key is set)."""
    return await asyncio.to_thread(live_server_factory, **kwargs)


async def listen(call: RawStream, max_s: float = 4.0, quiet_s: float = 0.5) -> list[dict]:
    """Read like an instant phone (marks echoed at once) until the bot has spoken and then
    been quiet for ``quiet_s``, or ``max_s`` has passed."""
    assert call.ws is not None
    loop = asyncio.get_running_loop()
    end = loop.time() + max_s
    got: list[dict] = []
    spoke = False
    while (left := end - loop.time()) > 0:
        try:
            raw = await asyncio.wait_for(call.ws.recv(), min(left, quiet_s) if spoke else left)
        except TimeoutError:
            break
        msg = json.loads(raw)
        got.append(msg)
        if msg["event"] == "mark":
            await call.send({"event": "mark", "streamSid": call.stream_sid, "mark": msg["mark"]})
        spoke = spoke or msg["event"] == "media"
    call.received += got
    return got


async def begin(server: LiveServer, max_s: float = 4.0) -> RawStream:
    call = RawStream(server)
    await call.connect()
    await call.start(await call.webhook())
    greeting = await listen(call, max_s)
    assert media_bytes(greeting) > 0, "no greeting"
    return call


async def ask(call: RawStream, max_s: float = 4.0, speech_ms: int = 600) -> list[dict]:
    """The caller says one thing (noise to the energy VAD), then listens to the answer."""
    await call.media(frames_of(True, speech_ms) + frames_of(False, 800))
    return await listen(call, max_s)


async def ended(server: LiveServer, call_sid: str, timeout: float = 10.0):
    view = server.call_view(call_sid)
    assert view is not None
    await until(lambda: view.end_reason is not None, timeout)
    return view


async def stored(server: LiveServer, call_sid: str):
    call = await asyncio.to_thread(server.stored_call, call_sid)
    assert call is not None
    return call


def sample(server: LiveServer, name: str, **labels: str) -> float:
    return server.services.metrics.registry.get_sample_value(name, labels) or 0.0


def bots(view) -> list:
    return [t for t in view.turns if t.speaker == "bot"]


def callers(view) -> list:
    return [t for t in view.turns if t.speaker == "caller"]


async def close_engines(server: LiveServer, *engines: object) -> None:
    """Provider clients live on the server's loop: close them there."""
    for engine in engines:
        for provider in getattr(engine, "providers", [engine]):
            closer = getattr(provider, "aclose", None)
            if closer is not None:
                await asyncio.to_thread(server.run, closer())


# --- 1. providers that refuse, stall or die mid-stream -------------------------------------


@pytest.mark.parametrize(
    "fault",
    [AudioBehaviour(status=500), AudioBehaviour(stall=True), AudioBehaviour(drop_after_chunks=0)],
    ids=["refused", "stalled", "dropped"],
)
async def test_batch_stt_fails_and_the_local_recognizer_completes_the_same_turn(
    live_server_factory, fault: AudioBehaviour
) -> None:
    """OpenAI's transcription refuses, never answers, or drops the connection: Whisper (here
    its stand-in) recognises the same audio, the caller gets the answer, the turn is kept;
    the next turn goes back to OpenAI (no cool-down configured)."""
    async with FakeOpenAIAudio() as oa:
        oa.script(fault)
        stt = FailoverSTT(
            [OpenAISTT(api_key=OA_KEY, base_url=oa.base_url), FixedSTT(QUESTION)],
            first_result_budget_s=1.0,
            cooldown_s=0.0,
        )
        engines = Engines(vad=EnergyVad(), stt=stt, tts=ToneTTS(ms_per_char=10), brain=None)
        server = await start_server(live_server_factory, engines=engines)
        stt.metrics = server.services.metrics
        call = await begin(server)
        first = await ask(call)
        second = await ask(call)
        await call.stop()
        view = await ended(server, call.call_sid)
        await close_engines(server, stt)

    assert media_bytes(first) > 0 and media_bytes(second) > 0
    assert [t.text for t in callers(view)] == [QUESTION, oa.transcript]
    answer = bots(view)[1]
    assert HOURS in answer.text and not answer.interrupted
    assert "stt_ms.fixed" in answer.timings
    assert answer.timings["stt_wait_ms"] < 1000 + 1500  # budget + slack at most
    assert "stt_ms.openai" in bots(view)[2].timings
    assert sample(
        server, "taina_provider_failovers_total", kind="stt", from_provider="openai",
        to_provider="fixed",
    ) == 1  # fmt: skip
    record = await stored(server, call.call_sid)
    assert [t.text for t in record.turns if t.speaker == "caller"] == [QUESTION, oa.transcript]
    print(
        f"\nFIGURE batch STT {fault_name(fault)}: the turn's text was ready "
        f"{answer.timings['stt_wait_ms']:.0f} ms after the end of turn; first answer byte "
        f"{answer.timings['first_byte_ms']:.0f} ms after the end of speech"
    )


def fault_name(fault: AudioBehaviour) -> str:
    return "refused" if fault.status != 200 else "stalled" if fault.stall else "dropped"


async def test_deepgram_dies_mid_call_and_stays_down_batch_stt_serves_the_rest(
    live_server_factory,
) -> None:
    """The live socket is cut in the middle of the caller's words and Deepgram refuses every
    reconnect: the interrupted turn and every later one are recognised locally."""
    fallback = "Quisiera saber el horario, por favor."
    async with FakeDeepgram(
        "dg-key", texts=[QUESTION, QUESTION], fault="drop", drop_after_bytes=15 * 160,
        after_drop="refuse", refuse_status=503,
    ) as fake:  # fmt: skip
        live = DeepgramLiveSTT("dg-key", model="nova-2", language="es", base_url=fake.url)
        batch = FixedSTT(fallback)
        engines = Engines(
            vad=EnergyVad(), stt=batch, tts=ToneTTS(ms_per_char=10), brain=None, live_stt=live
        )
        server = await start_server(live_server_factory, engines=engines)
        live.metrics = server.services.metrics
        call = await begin(server)
        first = await ask(call)
        second = await ask(call)
        await call.stop()
        view = await ended(server, call.call_sid)

    assert media_bytes(first) > 0 and media_bytes(second) > 0
    assert [t.text for t in callers(view)] == [fallback, fallback]
    assert len(batch.calls) == 2 and len(bots(view)) == 3
    assert fake.connections[0].closed == "dropped" and fake.refused
    assert all("stt_ms.fixed" in t.timings for t in bots(view)[1:])
    record = await stored(server, call.call_sid)
    assert [t.speaker for t in record.turns] == ["bot", "caller", "bot", "caller", "bot"]


@pytest.fixture
async def el() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(ms_per_char=15) as server:
        yield server


@pytest.fixture
async def oa_voice() -> AsyncIterator[FakeOpenAIAudio]:
    async with FakeOpenAIAudio(ms_per_char=15) as server:
        yield server


@pytest.mark.parametrize("cut", ["elevenlabs", "openai"])
async def test_voice_cut_mid_sentence_and_the_next_cloud_down_espeak_finishes(
    live_server_factory, el: FakeElevenLabs, oa_voice: FakeOpenAIAudio, cut: str
) -> None:
    """One cloud voice's HTTP body is cut after some audio, the other cloud refuses: the
    sentence restarts in the embedded eSpeak voice and the caller hears the whole answer."""
    tts = FailoverTTS(
        [
            ElevenLabsTTS(EL_KEY, "voz-dominicana", base_url=el.base_url),
            OpenAITTS(api_key=OA_KEY, base_url=oa_voice.base_url),
            EspeakTTS(),
        ],
        first_byte_budget_s=0.8,
        cooldown_s=60.0,
    )
    engines = Engines(vad=EnergyVad(), stt=FixedSTT(QUESTION), tts=tts, brain=None)
    server = await start_server(live_server_factory, engines=engines)
    tts.attach_metrics(server.services.metrics)
    call = await begin(server)  # greeted by ElevenLabs, healthy
    if cut == "elevenlabs":
        el.script(Behaviour(drop_after_chunks=2))
        oa_voice.default = AudioBehaviour(status=500)
    else:
        el.default = Behaviour(status=401)
        oa_voice.script(AudioBehaviour(drop_after_chunks=2))
    answer_msgs = await ask(call)
    await call.stop()
    view = await ended(server, call.call_sid)
    await close_engines(server, tts)

    reply = bots(view)[1]
    assert HOURS in reply.text and not reply.interrupted and reply.heard_text == reply.text
    assert "tts_ttfb_ms.espeak" in reply.timings
    assert media_bytes(answer_msgs) > 8000  # more than a second of speech reached the caller
    dropped = sample(
        server, "taina_provider_failures_total", kind="tts", provider=cut, reason="dropped"
    )
    assert dropped == 1
    other = "openai" if cut == "elevenlabs" else "elevenlabs"
    assert sample(server, "taina_provider_failures_total", kind="tts", provider=other,
                  reason="refused") >= 1  # fmt: skip
    record = await stored(server, call.call_sid)
    assert record.turns[2].text == reply.text and record.end_reason == "caller-hangup"
    print(
        f"\nFIGURE voice cut ({cut}): first answer audio {reply.timings['first_byte_ms']:.0f} ms "
        f"after the end of speech (eSpeak's first audio {reply.timings['tts_ttfb_ms.espeak']:.0f}"
        f" ms after it was asked)"
    )


async def test_llm_stream_cut_after_a_few_tokens_the_reply_closes_with_an_apology(
    live_server_factory,
) -> None:
    """The LLM's stream dies after a few tokens: the half-said sentence trails off into a
    Spanish apology (the offline brain cannot take over mid-sentence), the turn is recorded,
    and the next turn is the LLM's again."""
    async with FakeOpenAI() as fake:
        fake.script(
            Reply(text="Para renovar la cédula usted necesita su acta", drop_after_chunks=5),
            Reply(text="Abrimos de lunes a viernes, de ocho a cuatro."),
        )
        engines = Engines(
            vad=EnergyVad(),
            stt=FixedSTT(text_for=_script("¿Qué necesito para la cédula?", QUESTION)),
            tts=ToneTTS(ms_per_char=10),
            brain=None,
        )
        server = await start_server(
            live_server_factory,
            engines=engines,
            openai_api_key="sk-test",
            openai_base_url=fake.base_url,
        )
        call = await begin(server)
        first = await ask(call)
        second = await ask(call)
        await call.stop()
        view = await ended(server, call.call_sid)

    cut, after = bots(view)[1], bots(view)[2]
    assert media_bytes(first) > 0 and media_bytes(second) > 0
    assert cut.text.startswith("Para renovar") and cut.text.endswith(MID_REPLY_APOLOGY)
    assert not cut.interrupted  # the caller heard all of it, apology included
    assert after.text == "Abrimos de lunes a viernes, de ocho a cuatro."
    assert sample(server, "taina_llm_fallbacks_total", reason="mid_reply") == 1
    record = await stored(server, call.call_sid)
    assert [t.text for t in record.turns if t.speaker == "bot"][1] == cut.text


def _script(*texts: str):
    queue = list(texts)
    return lambda _audio: queue.pop(0) if queue else ""


# --- 2. a slow brain ------------------------------------------------------------------------

BUDGET_S = 1.5


async def test_a_slow_llm_costs_the_caller_its_budget_then_the_offline_brain_answers(
    live_server_factory,
) -> None:
    """The LLM's first token would come after 8 s. The caller hears silence for the
    first-token budget (1.5 s here, 2.5 s by default), then the offline brain's answer; the
    abandoned LLM request is closed. What the caller heard, and when, is printed."""
    async with FakeOpenAI() as fake:
        fake.script(Reply(text="Demasiado tarde.", first_token_delay_s=8.0))
        engines = Engines(
            vad=EnergyVad(), stt=FixedSTT(QUESTION), tts=ToneTTS(ms_per_char=10), brain=None
        )
        server = await start_server(
            live_server_factory,
            engines=engines,
            openai_api_key="sk-test",
            openai_base_url=fake.base_url,
            llm_first_token_budget_s=BUDGET_S,
        )
        call = await begin(server)
        t_speech = time.monotonic()
        await call.media(frames_of(True, 600) + frames_of(False, 800))
        t_spoke = time.monotonic()
        heard: list[tuple[float, int]] = []
        deadline = t_spoke + 5.0
        while time.monotonic() < deadline:
            msgs = await call.collect(0.05)
            n = media_bytes(msgs)
            if n:
                heard.append((time.monotonic(), n))
        await until(lambda: fake.disconnects >= 1, 5)  # the LLM request was abandoned
        await call.stop()
        view = await ended(server, call.call_sid)

    reply = bots(view)[1]
    assert HOURS in reply.text  # the offline brain's answer, in Spanish
    first_audio = heard[0][0] - t_spoke
    timings = reply.timings
    assert BUDGET_S * 1000 <= timings["brain_first_text_ms"] <= BUDGET_S * 1000 + 1000
    assert timings["first_byte_ms"] <= timings["endpoint_ms"] + BUDGET_S * 1000 + 1500
    assert sample(server, "taina_llm_fallbacks_total", reason="budget") == 1
    audio_s = sum(n for _, n in heard) / 8000
    print(
        f"\nFIGURE slow brain: caller stopped talking at +{(t_spoke - t_speech) * 1000:.0f} ms; "
        f"end of turn detected after {timings['endpoint_ms']:.0f} ms of silence; brain's first "
        f"text after {timings['brain_first_text_ms']:.0f} ms (budget {BUDGET_S * 1000:.0f} ms); "
        f"first answer audio on the wire {timings['first_byte_ms']:.0f} ms after the end of "
        f"speech ({first_audio * 1000:.0f} ms after the last frame was sent); "
        f"{audio_s:.1f} s of answer audio"
    )


async def test_while_the_brain_is_slow_audio_is_processed_and_barge_in_works(
    live_server_factory,
) -> None:
    """While the LLM has not produced a token yet, the caller speaks again: the pending reply
    is abandoned (its HTTP stream closed), the new utterance is a turn of its own and is
    answered. The session kept listening the whole time."""
    async with FakeOpenAI() as fake:
        fake.script(
            Reply(text="Demasiado tarde.", first_token_delay_s=8.0),
            Reply(text="Abrimos de lunes a viernes, de ocho a cuatro."),
        )
        engines = Engines(
            vad=EnergyVad(),
            stt=FixedSTT(text_for=_script(QUESTION, "¿Y los sábados?")),
            tts=ToneTTS(ms_per_char=10),
            brain=None,
        )
        server = await start_server(
            live_server_factory,
            engines=engines,
            openai_api_key="sk-test",
            openai_base_url=fake.base_url,
            llm_first_token_budget_s=5.0,
        )
        call = await begin(server)
        await call.media(frames_of(True, 600) + frames_of(False, 800))
        await until(lambda: len(fake.chat_requests) == 1, 5)  # the brain is thinking
        silent = await call.collect(0.7)
        assert media_bytes(silent) == 0
        t_barge = time.monotonic()
        await call.media(frames_of(True, 600) + frames_of(False, 800))
        await until(lambda: fake.disconnects >= 1, 3)  # the pending LLM request was closed
        abandoned_after = time.monotonic() - t_barge
        answer = await call.collect(3.0)
        await call.stop()
        view = await ended(server, call.call_sid)

    assert [t.text for t in callers(view)] == [QUESTION, "¿Y los sábados?"]
    assert [t.text for t in bots(view)][1:] == ["Abrimos de lunes a viernes, de ocho a cuatro."]
    assert media_bytes(answer) > 0
    assert sample(server, "taina_llm_fallbacks_total", reason="budget") == 0
    assert abandoned_after < 3.0


# --- 3. the database unavailable for 30 s mid-call --------------------------------------------

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
OUTAGE_S = 30.0


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A scratch PostgreSQL database for one test, dropped afterwards."""
    async with scratch_database_async("taina_faults") as url:
        yield url


async def _turns_in_db(url: str, call_sid: str) -> int:
    """Count a call's turns straight from PostgreSQL (not through the proxy)."""
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        user=u.username, password=u.password, host=u.host, port=u.port or 5432, database=u.database
    )
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM turns t JOIN calls c ON c.id = t.call_id "
                "WHERE c.call_sid = $1",
                call_sid,
            )
        )
    finally:
        await conn.close()


def _turn_keys(turns) -> list[tuple]:
    return [(t.seq, t.speaker, t.text, t.heard_text, t.interrupted) for t in turns]


@pytest.mark.skipif(
    not TEST_DATABASE_URL,
    reason="TEST_DATABASE_URL is not set: PostgreSQL outage test skipped "
    "(e.g. TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test)",
)
async def test_database_gone_for_30_s_mid_call_loses_no_turn(live_server_factory, pg_url) -> None:
    """PostgreSQL becomes unreachable (every connection reset, new ones refused) for 30 s
    while a caller keeps talking and a second call comes and goes entirely inside the
    outage. The calls never wait for the database; every turn is queued and written once it
    is back, in order, nothing lost."""
    target = make_url(pg_url)
    async with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = target.set(host="127.0.0.1", port=proxy.port)
        server = await start_server(
            live_server_factory,
            engines=instant_engines(),
            database_url=proxied.render_as_string(hide_password=False),
        )
        recorder = server.services.recorder
        call = await begin(server)
        assert media_bytes(await ask(call)) > 0
        await asyncio.to_thread(server.run, recorder.flushed(), 10)
        written_before = await _turns_in_db(pg_url, call.call_sid)
        assert written_before == 3  # greeting, question, answer

        reset = await proxy.cut()
        t_cut = time.monotonic()
        assert reset >= 1 and proxy.probe_refused()
        answered = 0
        other: RawStream | None = None
        while time.monotonic() - t_cut < OUTAGE_S:
            # Each turn is timed on its own: the audio is sent at real time (paced), so a
            # turn and a whole second call together take longer than one turn.
            latency_t0 = time.monotonic()
            reply = await ask(call)
            assert media_bytes(reply) > 0, "a turn went unanswered during the outage"
            assert time.monotonic() - latency_t0 < 4.0  # the database is never waited for
            answered += 1
            if other is None and time.monotonic() - t_cut > OUTAGE_S / 3:
                other = await begin(server)  # a whole call inside the outage
                other_t0 = time.monotonic()
                assert media_bytes(await ask(other)) > 0
                assert time.monotonic() - other_t0 < 4.0
                await other.stop()
        assert other is not None
        await ended(server, other.call_sid)
        assert recorder.pending > 0 and recorder.retries > 0
        assert await _turns_in_db(pg_url, call.call_sid) == written_before  # nothing got through
        pending_at_restore = recorder.pending

        await proxy.restore()
        t_back = time.monotonic()
        await call.stop()
        view = await ended(server, call.call_sid)
        await asyncio.to_thread(server.run, recorder.flushed(), 60)
        flushed_after = time.monotonic() - t_back

        assert recorder.dropped == 0
        for sid in (call.call_sid, other.call_sid):
            live = server.call_view(sid)
            record = await stored(server, sid)
            assert _turn_keys(record.turns) == _turn_keys(live.turns), sid
            assert record.end_reason == "caller-hangup" and record.ended_at is not None
        assert len(view.turns) == 3 + 2 * answered
    print(
        f"\nFIGURE database outage: {OUTAGE_S:.0f} s, {answered} caller turns answered during "
        f"it (plus a whole second call); {pending_at_restore} records queued; all written "
        f"{flushed_after:.1f} s after the database came back; 0 lost"
    )


# --- 4 and 5. the caller hangs up mid-sentence, mid-recognition, or vanishes -------------------


async def _loop_tasks() -> list[str]:
    current = asyncio.current_task()
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not current)


async def server_tasks(server: LiveServer) -> list[str]:
    return await asyncio.to_thread(server.run, _loop_tasks())


async def assert_ended_cleanly(
    server: LiveServer,
    call_id: str,
    baseline: list[str],
    caplog: pytest.LogCaptureFixture,
    reason: str = "caller-hangup",
    ingress: str = "twilio",
) -> object:
    """The call is over and nothing of it is left: end reason on record (memory and
    database), no task of it still running on the server, the active-call gauge back to 0,
    nothing logged at ERROR."""
    view = await ended(server, call_id)
    assert view.end_reason == reason
    record = await stored(server, call_id)
    assert record.end_reason == reason and record.ended_at is not None
    assert _turn_keys(record.turns) == _turn_keys(view.turns)
    leftover: list[str] = []
    for _ in range(100):
        leftover = await server_tasks(server)
        if Counter(leftover) - Counter(baseline) == Counter():
            break
        await asyncio.sleep(0.05)
    assert not Counter(leftover) - Counter(baseline), f"tasks left: {leftover}"
    assert sample(server, "taina_calls_active", ingress=ingress) == 0
    assert server.services.recent.active == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    return record


async def hangup_server(
    live_server_factory, stt: FixedSTT | None = None
) -> tuple[LiveServer, PacedTTS]:
    tts = PacedTTS(ms_per_char=20)
    engines = Engines(vad=EnergyVad(), stt=stt or FixedSTT(QUESTION), tts=tts, brain=OfflineBrain())
    return await start_server(live_server_factory, engines=engines), tts


async def test_caller_hangs_up_while_the_bot_is_speaking(
    live_server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    server, tts = await hangup_server(live_server_factory)
    baseline = await server_tasks(server)
    call = await begin(server)
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    await call.collect(0.8)  # the answer is being synthesized and played
    assert tts.active == 1
    await call.stop()
    record = await assert_ended_cleanly(server, call.call_sid, baseline, caplog)
    assert tts.active == 0 and tts.abandoned == 1  # the voice was stopped, not left running
    answer = record.turns[-1]
    assert answer.speaker == "bot" and answer.interrupted
    assert answer.heard_text and len(answer.heard_text) < len(answer.text)


async def test_caller_hangs_up_while_speech_is_being_recognised(
    live_server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    stt = SlowSTT(QUESTION, delay_s=3.0)
    server, _ = await hangup_server(live_server_factory, stt)
    baseline = await server_tasks(server)
    call = await begin(server)
    await call.media(frames_of(True, 600) + frames_of(False, 800))
    await until(lambda: stt.active == 1, 3)
    await asyncio.sleep(0.5)
    await call.stop()
    record = await assert_ended_cleanly(server, call.call_sid, baseline, caplog)
    assert stt.active == 0 and stt.cancelled == 1
    assert [t.speaker for t in record.turns] == ["bot"]  # the words never came back


@pytest.mark.parametrize("moment", ["bot-speaking", "recognising", "listening"])
async def test_connection_dropped_without_a_stop_message(
    live_server_factory, caplog: pytest.LogCaptureFixture, moment: str
) -> None:
    """The TCP connection is reset under the call (no close frame, no ``stop``): the
    session ends as a hang-up and leaves nothing behind."""
    stt = SlowSTT(QUESTION, delay_s=3.0 if moment == "recognising" else 0.0)
    server, tts = await hangup_server(live_server_factory, stt)
    baseline = await server_tasks(server)
    call = await begin(server)
    if moment != "listening":
        await call.media(frames_of(True, 600) + frames_of(False, 800))
        if moment == "recognising":
            await until(lambda: stt.active == 1, 3)
        else:
            await call.collect(0.8)
            assert tts.active == 1
    drop_connection(call)
    await assert_ended_cleanly(server, call.call_sid, baseline, caplog)
    assert stt.active == 0 and tts.active == 0


async def test_web_visitor_connection_dropped_mid_answer(
    live_server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    server, tts = await hangup_server(live_server_factory)
    baseline = await server_tasks(server)
    ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/web/stream")
    await ws.send(json.dumps({"type": "start", "session": "faults"}))
    call_id = None
    while call_id is None:
        msg = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(msg, str) and json.loads(msg)["type"] == "started":
            call_id = json.loads(msg)["call_id"]
    rng = np.random.default_rng(2)  # 600 ms of noise (speech to the energy VAD), 800 ms quiet
    speech = (rng.standard_normal(16 * 600) * 6000).astype(np.int16).tobytes() + bytes(2 * 16 * 800)
    for i in range(0, len(speech), 640):  # the page's 20 ms frames, within its rate limit
        await ws.send(speech[i : i + 640])
        await asyncio.sleep(0.02)  # real time: inbound audio is paced
    view = server.call_view(call_id)
    await until(lambda: bool(callers(view)) and tts.active == 1, 5)  # answering the question
    ws.transport.abort()
    await assert_ended_cleanly(server, call_id, baseline, caplog, ingress="web")
    assert tts.active == 0
