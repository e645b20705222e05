"""A whole booking over the phone path with the embedded engines (issue 3, item 7).

The simulated caller speaks with eSpeak over Twilio's protocol; the server hears it through
Silero VAD and Whisper, the offline brain books with the real tools, eSpeak speaks back. The
cédula is keyed in (as the bot invites callers to do) and the offered time is picked by key;
everything else is said. Success is judged where it matters: the booking is in the server's
database, the bot read back the date and the confirmation code, and the call record shows the
``book_appointment`` tool call.

The caller's phrases were chosen because Whisper hears eSpeak's voice say them reliably over
the 8 kHz band; the dialogue tolerates the usual slips (a garbled "quiero una", a misheard time).
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata

import pytest

from app.storage import BookingInfo
from app.storage.records import CallDetail
from pipeline.brain.spanish_dates import speak_date, speak_time
from pipeline.brain.spoken import speak_code
from telephony.simulator import CallOptions, Step, run_call
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.slow


def fold(text: str | None) -> str:
    text = unicodedata.normalize("NFKD", (text or "").lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def script(cedula: str) -> list[Step]:
    return [
        Step("say", "Quiero una cita para renovar la cédula."),
        Step("say", "En Santiago, el lunes por la mañana."),
        Step("dtmf", "1"),  # the first of the times offered
        Step("say", "Juan Pérez."),
        Step("dtmf", cedula + "#"),
        Step("say", "Sí."),  # yes, call me back at the number I am calling from
        Step("say", "Sí."),  # yes, the details read back are right
    ]


def transcript(call: CallDetail | None) -> str:
    if call is None:
        return "(no call record)"
    return "\n".join(f"{t.speaker}: {t.dtmf or t.text}" for t in call.turns)


async def test_a_phone_call_books_a_cedula_appointment(embedded_server: LiveServer) -> None:
    cedula = "4" + "".join(secrets.choice("0123456789") for _ in range(10))  # fresh per run
    result = await run_call(
        CallOptions(
            server=embedded_server.url,
            steps=script(cedula),
            transcribe=False,
            timeout_s=45,
        )
    )
    stored = await asyncio.to_thread(embedded_server.stored_call, result.call_sid)
    said = transcript(stored)
    assert result.exit_code == 0, f"{result.error}\n{said}"
    assert result.steps_skipped == 0, said

    found: list[BookingInfo] = await asyncio.to_thread(
        embedded_server.run, embedded_server.services.bookings.find_by_cedula(cedula)
    )
    assert len(found) == 1, said
    booking = found[0]
    assert booking.status == "confirmed", said
    assert booking.service_code == "cedula", said
    assert booking.office_code == "STI", said
    assert booking.call_sid == result.call_sid, said

    assert stored is not None
    bots = [t for t in stored.turns if t.speaker == "bot"]
    booked = [
        t
        for t in bots
        if any(tool["name"] == "book_appointment" and tool["result"].get("ok") for tool in t.tools)
    ]
    assert len(booked) == 1, said
    tool = next(x for x in booked[0].tools if x["name"] == "book_appointment")
    assert tool["arguments"]["cedula"] == cedula
    assert tool["result"]["code"] == booking.code

    # The last turns read the booking back: the date spoken naturally and the code.
    closing = fold(" ".join(t.text for t in bots[-2:]))
    assert booked[0] in bots[-2:], said
    assert fold(speak_date(booking.starts_at.date())) in closing, said  # "el lunes 23 de …"
    assert fold(speak_time(booking.starts_at.time())) in closing, said
    assert fold(speak_code(booking.code)) in closing, said
    assert not booked[0].interrupted, said
