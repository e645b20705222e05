"""Whole phone calls with the embedded engines: Silero VAD, Whisper, eSpeak, offline brain.

``taina call``'s engine places each call over the Twilio protocol in real time against the
server on loopback, and transcribes what it heard with the local Whisper.
"""

from __future__ import annotations

import asyncio
import unicodedata
import wave
from pathlib import Path

import pytest

from telephony.simulator import CallOptions, run_call
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.slow


def fold(text: str | None) -> str:
    text = unicodedata.normalize("NFKD", (text or "").lower())
    return "".join(c for c in text if not unicodedata.combining(c))


HOURS_WORDS = ("lunes", "viernes", "sabado", "ocho", "cuatro", "tarde", "manana", "atienden")


def sounds_like_opening_hours(text: str | None) -> bool:
    """At least two words of the opening-hours answer, as Whisper heard eSpeak say them."""
    heard = fold(text)
    return sum(word in heard for word in HOURS_WORDS) >= 2


def options(server: LiveServer, *says: str, **kw: object) -> CallOptions:
    return CallOptions(server=server.url, says=list(says), timeout_s=30, **kw)


async def test_a_spoken_question_gets_a_spoken_spanish_answer(
    embedded_server: LiveServer, tmp_path: Path
) -> None:
    out = tmp_path / "call.wav"
    result = await run_call(
        options(embedded_server, "¿A qué hora abren las oficinas?", out=str(out))
    )
    assert result.exit_code == 0, result.error
    assert result.greeting is not None and result.greeting.answered
    turn = result.turns[0]
    assert turn.answered and turn.latency_ms is not None
    assert sounds_like_opening_hours(turn.bot_text), turn.bot_text
    assert result.marks_echoed > 0 and result.clears == 0

    with wave.open(str(out)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        assert wav.getnframes() > 8000 * 5

    stored = await asyncio.to_thread(embedded_server.stored_call, result.call_sid)
    assert stored is not None
    caller = next(t for t in stored.turns if t.speaker == "caller")
    assert "hora" in fold(caller.text)
    bot = stored.turns[-1]
    assert bot.speaker == "bot" and "lunes a viernes" in bot.text and not bot.interrupted
    for stage in (
        "endpoint_ms",
        "stt_ms",
        "brain_first_text_ms",
        "tts_first_audio_ms",
        "first_byte_ms",
    ):
        assert stage in bot.timings, stage


async def test_barge_in_cuts_the_reply_and_records_what_was_heard(
    embedded_server: LiveServer,
) -> None:
    result = await run_call(
        options(
            embedded_server,
            "¿A qué hora abren las oficinas?",
            "¿Dónde queda la oficina principal?",
            barge_in_ms=2000,
        )
    )
    assert result.exit_code == 0, result.error
    assert result.clears >= 1
    assert result.turns[0].interrupted
    assert result.turns[1].answered

    stored = await asyncio.to_thread(embedded_server.stored_call, result.call_sid)
    bots = [t for t in stored.turns if t.speaker == "bot"]
    cut = [t for t in bots if t.interrupted]
    assert cut, [(t.text, t.interrupted) for t in bots]
    assert len(cut[0].heard_text) < len(cut[0].text)
    assert cut[0].text.startswith(cut[0].heard_text)


async def test_a_garbage_call_leaves_a_concurrent_call_unharmed(
    embedded_server: LiveServer,
) -> None:
    garbage: list[str | bytes] = ["{not json", '{"event":"media"}', "\x00\xff" * 50, "[]"] * 20
    good, bad = await asyncio.gather(
        run_call(options(embedded_server, "¿A qué hora abren las oficinas?")),
        run_call(options(embedded_server, "Hola", inject=garbage, transcribe=False)),
    )
    assert good.exit_code == 0, good.error
    assert good.turns[0].answered
    assert sounds_like_opening_hours(good.turns[0].bot_text), good.turns[0].bot_text
    # The misbehaving stream was cut off by the server.
    assert bad.hung_up_by_server or bad.exit_code != 0
