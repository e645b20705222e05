"""The call review against the real server (SQLite and PostgreSQL): a recorded phone call over
the Twilio protocol, then ``GET /api/calls/{sid}/review`` — where each turn sits in the
recording, where each reply's time went, slow replies marked, the knowledge passage the answer
came from — and staff tags and notes with their role rules and audit entries.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from app.api import review_routes
from app.storage import TurnRecord
from app.users import list_audit
from pipeline.instant_engines import EnergyVad, FixedSTT, ToneTTS
from pipeline.session import Engines
from tests.integration.staff_fixtures import database_url, staff_api  # noqa: F401
from tests.integration.test_admin_api import Api
from tests.integration.test_call_recording import recorded_call


def _engines() -> Engines:
    return Engines(
        vad=EnergyVad(),
        stt=FixedSTT(text="¿A qué hora abren las oficinas?"),
        tts=ToneTTS(ms_per_char=5),
        brain=None,  # the app builds it (and adds the consent notice: calls are recorded)
    )


async def test_review_lines_turns_up_with_the_recording(
    staff_api: Callable[..., Api],  # noqa: F811
) -> None:
    client = await asyncio.to_thread(staff_api, _engines(), record_calls=True, slow_turn_ms=1.0)
    agent = await asyncio.to_thread(client.token, "agente@example.org", "agent")
    sid = await recorded_call(client.server)

    r = await asyncio.to_thread(client.get, f"/api/calls/{sid}/review", agent)
    assert r.status_code == 200, r.text
    review = r.json()
    assert review["recording_seconds"] and review["recording_seconds"] > 3
    assert [s["key"] for s in review["stages"]][:4] == [
        "endpoint_ms",
        "stt_wait_ms",
        "brain_first_sentence_ms",
        "tts_first_audio_ms",
    ]
    turns = review["turns"]
    assert [t["speaker"] for t in turns[:3]] == ["bot", "caller", "bot"]
    greeting, caller, reply = turns[:3]

    # Positions in the recording, checked against the WAV itself: the caller's burst (left
    # channel) lies inside the caller turn, and the reply's audio (right channel) starts where
    # the reply turn says.
    wav = await asyncio.to_thread(client.http.get, f"/api/calls/{sid}/recording", headers=agent)
    assert wav.status_code == 200
    with wave.open(io.BytesIO(wav.content)) as w:
        rate = w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    left, right = np.abs(frames[:, 0].astype(np.int32)), np.abs(frames[:, 1].astype(np.int32))
    burst = np.flatnonzero(left > 3000)
    burst_start, burst_end = burst[0] / rate, burst[-1] / rate
    greeting_audio = np.flatnonzero(right > 0)[0] / rate
    assert greeting["start_s"] == pytest.approx(greeting_audio, abs=0.1) and greeting_audio < 0.5
    assert caller["start_s"] <= burst_start and burst_end <= caller["end_s"], (caller, burst)
    after = np.flatnonzero(right[int(burst_end * rate) :] > 0)
    reply_audio = burst_end + after[0] / rate
    assert reply["start_s"] == pytest.approx(reply_audio, abs=0.15), (reply, reply_audio)
    assert reply["start_s"] >= caller["end_s"] - 0.05
    assert reply["end_s"] <= review["recording_seconds"]

    # Where the reply's time went, and the slow mark (threshold 1 ms: every reply is slow,
    # never the greeting, which is not an answer to anyone).
    assert set(reply["stages"]) >= {
        "endpoint_ms",
        "stt_wait_ms",
        "brain_first_sentence_ms",
        "tts_first_audio_ms",
    }
    assert reply["first_byte_ms"] >= reply["stages"]["endpoint_ms"]
    assert reply["slow"] is True and greeting["slow"] is False and caller["slow"] is False
    assert review["slow_turns"] == sum(t["slow"] for t in turns) >= 1

    # The answer came from the knowledge base: which passage.
    used = [p for p in reply["passages"] if p["used"]]
    assert len(used) == 1 and used[0]["source"].endswith(".md") and used[0]["heading"]
    assert greeting["passages"] == [] and caller["passages"] == []


async def test_slow_mark_follows_the_setting(
    staff_api: Callable[..., Api],  # noqa: F811
) -> None:
    client = await asyncio.to_thread(staff_api, slow_turn_ms=1000.0)
    admin = await asyncio.to_thread(client.token, "admin@example.org", "admin")
    t0 = datetime.now(UTC) - timedelta(minutes=5)

    def bot(seq: int, first_byte: float, at: float) -> TurnRecord:
        return TurnRecord(
            seq=seq,
            speaker="bot",
            text="Abrimos de lunes a viernes de ocho a cuatro.",
            heard_text="Abrimos de lunes a viernes de ocho a cuatro.",
            interrupted=False,
            started_at=t0 + timedelta(seconds=at),
            ended_at=t0 + timedelta(seconds=at + 3),
            timings={
                "endpoint_ms": 300.0,
                "stt_wait_ms": 200.0,
                "brain_first_sentence_ms": first_byte - 700,
                "tts_first_audio_ms": 150.0,
                "first_byte_ms": first_byte,
            },
        )

    async def write() -> None:
        calls = client.services.calls
        await calls.start_call("CA-slow", "twilio", started_at=t0)
        await calls.add_turn("CA-slow", bot(1, 900.0, 5))
        await calls.add_turn("CA-slow", bot(3, 2400.0, 12))

    client.server.run(write())
    review = (await asyncio.to_thread(client.get, "/api/calls/CA-slow/review", admin)).json()
    assert review["slow_turn_ms"] == 1000.0
    assert [(t["seq"], t["slow"]) for t in review["turns"]] == [(1, False), (3, True)]
    # No recording: positions count from the call's start; the bot's audio began
    # first_byte - (endpoint + stt wait) after the row's start.
    assert review["turns"][0]["start_s"] == pytest.approx(5 + (900 - 500) / 1000, abs=0.01)
    assert review["recording_seconds"] is None
    missing = await asyncio.to_thread(client.get, "/api/calls/CA-nope/review", admin)
    assert missing.status_code == 404 and missing.json()["detail"] == "No se encontró la llamada."


def test_tags_and_notes_roles_and_audit(staff_api: Callable[..., Api]) -> None:  # noqa: F811
    client = staff_api()
    agent = client.token("agente@example.org", "agent")
    other = client.token("otra@example.org", "agent")
    admin = client.token("admin@example.org", "admin")
    client.server.run(
        client.services.calls.start_call("CA-tag", "twilio", started_at=datetime.now(UTC))
    )
    http = client.http

    r = http.post(
        "/api/calls/CA-tag/tags", json={"tag": "  Respuesta   Incorrecta "}, headers=agent
    )
    assert r.status_code == 200 and r.json()["tags"] == ["respuesta incorrecta"]
    r = http.post("/api/calls/CA-tag/tags", json={"tag": "respuesta incorrecta"}, headers=other)
    assert r.json()["tags"] == ["respuesta incorrecta"]  # one tag, however it was typed
    http.post("/api/calls/CA-tag/tags", json={"tag": "queja"}, headers=other)
    assert (
        http.post("/api/calls/CA-tag/tags", json={"tag": "   "}, headers=agent).status_code == 422
    )
    assert http.post("/api/calls/CA-x/tags", json={"tag": "a"}, headers=agent).status_code == 404
    suggestions = client.get("/api/quality/tags", agent).json()
    assert {"tag": "respuesta incorrecta", "count": 1} in suggestions

    listed = http.get(
        "/api/quality/call-tags", params=[("sid", "CA-tag"), ("sid", "CA-none")], headers=agent
    )
    assert listed.json() == {"CA-tag": ["queja", "respuesta incorrecta"]}

    r = http.delete("/api/calls/CA-tag/tags/queja", headers=agent)
    assert r.json()["tags"] == ["respuesta incorrecta"]

    note = http.post(
        "/api/calls/CA-tag/notes",
        json={"text": "Dio la cédula 001-1234567-8 y no la entendió."},
        headers=agent,
    )
    assert note.status_code == 201 and note.json()["author"] == "agente@example.org"
    assert "1234567" not in note.json()["text"]  # masked for an agent, as the review shows it
    note_id = note.json()["id"]
    assert http.post("/api/calls/CA-tag/notes", json={"text": ""}, headers=agent).status_code == 422

    seen_by_other = client.get("/api/calls/CA-tag/review", other).json()["notes"]
    assert seen_by_other[0]["can_delete"] is False
    assert "1234567" not in seen_by_other[0]["text"]  # agents: numbers masked, like transcripts
    seen_by_admin = client.get("/api/calls/CA-tag/review", admin).json()["notes"]
    assert "001-1234567-8" in seen_by_admin[0]["text"] and seen_by_admin[0]["can_delete"]

    refused = http.delete(f"/api/calls/CA-tag/notes/{note_id}", headers=other)
    assert refused.status_code == 403 and "Solo quien escribió" in refused.json()["detail"]
    assert http.delete(f"/api/calls/CA-tag/notes/{note_id}", headers=agent).status_code == 204
    assert http.delete(f"/api/calls/CA-tag/notes/{note_id}", headers=admin).status_code == 404
    assert client.get("/api/calls/CA-tag/review", agent).json()["notes"] == []

    citizen = client.token("ciudadano@example.org", "citizen")
    assert (
        http.post("/api/calls/CA-tag/tags", json={"tag": "x"}, headers=citizen).status_code == 403
    )
    assert http.post("/api/calls/CA-tag/tags", json={"tag": "x"}).status_code == 401

    audit = client.server.run(list_audit(client.services.db, limit=50))
    actions = [(a.action, a.actor, a.target) for a in audit]
    for expected in [
        ("call.tagged", "agente@example.org", "CA-tag"),
        ("call.untagged", "agente@example.org", "CA-tag"),
        ("call.note_added", "agente@example.org", "CA-tag"),
        ("call.note_deleted", "agente@example.org", "CA-tag"),
    ]:
        assert expected in actions, actions


def test_notes_per_call_are_bounded(
    staff_api: Callable[..., Api],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every note is read with the review: one account must not be able to add them without
    end (before the fix there was no bound)."""
    monkeypatch.setattr(review_routes, "MAX_NOTES_PER_CALL", 2)
    client = staff_api()
    agent = client.token("agente@example.org", "agent")
    client.server.run(
        client.services.calls.start_call("CA-notes", "twilio", started_at=datetime.now(UTC))
    )
    url = "/api/calls/CA-notes/notes"
    for text in ("primera", "segunda"):
        assert client.http.post(url, json={"text": text}, headers=agent).status_code == 201
    refused = client.http.post(url, json={"text": "tercera"}, headers=agent)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Una llamada puede tener como máximo 2 notas."
    notes = client.get("/api/calls/CA-notes/review", agent).json()["notes"]
    assert [n["text"] for n in notes] == ["primera", "segunda"]
