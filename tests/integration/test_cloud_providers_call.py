"""A whole phone call with the production providers chosen by settings — Deepgram live STT
and ElevenLabs TTS, each a local server speaking its documented protocol, reached through
the real SDKs — placed with ``taina call``'s engine over the Twilio protocol."""

from __future__ import annotations

import asyncio

import pytest

from telephony.simulator import CallOptions, run_call
from tests.fake_deepgram import FakeDeepgram
from tests.fake_elevenlabs import API_KEY as ELEVENLABS_KEY
from tests.fake_elevenlabs import FakeElevenLabs

pytestmark = pytest.mark.slow

QUESTION = "¿A qué hora abren las oficinas?"
GOODBYE = "Eso es todo, gracias. Adiós."
# Said without pauses: the fake "recognises" by loudness, one scripted text per utterance.
GOODBYE_SPOKEN = "Eso es todo gracias adiós"


async def test_deepgram_and_elevenlabs_from_settings_complete_a_call(live_server_factory) -> None:
    async with (
        FakeDeepgram("dg-key", texts=[QUESTION, GOODBYE]) as deepgram,
        FakeElevenLabs(ms_per_char=20) as elevenlabs,
    ):
        server = live_server_factory(
            engines=None,  # built from the settings below, like a production deployment
            deepgram_api_key="dg-key",
            deepgram_base_url=deepgram.url,
            elevenlabs_api_key=ELEVENLABS_KEY,
            elevenlabs_voice_id="voz-dominicana",
            elevenlabs_base_url=elevenlabs.base_url,
        )
        settings = server.services.settings
        assert settings.stt_provider_chain == ["deepgram", "whisper"]
        assert settings.tts_provider_chain == ["elevenlabs", "pico", "espeak"]

        result = await run_call(
            CallOptions(
                server=server.url, says=[QUESTION, GOODBYE_SPOKEN], transcribe=False, timeout_s=30
            )
        )
        assert result.exit_code == 0, result.error
        assert result.greeting is not None and result.greeting.answered
        assert all(t.answered for t in result.turns)
        assert result.hung_up_by_server  # the goodbye was understood through Deepgram

        stored = await asyncio.to_thread(server.stored_call, result.call_sid)
        callers = [t for t in stored.turns if t.speaker == "caller"]
        bots = [t for t in stored.turns if t.speaker == "bot"]
        assert [t.text for t in callers] == [QUESTION, GOODBYE]  # Deepgram's words, verbatim
        assert "lunes a viernes" in bots[1].text
        assert any(k.startswith("tts_ttfb_ms.elevenlabs") for k in bots[1].timings)
        assert all("stt_ms.deepgram" in t.timings for t in bots[1:])

        [conn] = deepgram.connections
        assert conn.query["encoding"] == "mulaw" and conn.query["sample_rate"] == "8000"
        assert conn.query["language"] == "es" and conn.query["model"] == "nova-2"
        assert conn.authorization == "Token dg-key"
        assert conn.audio_bytes > 8000 * 5  # the call's audio went to Deepgram untouched
        formats = {r.query.get("output_format") for r in elevenlabs.requests if r.kind == "http"}
        assert formats == {"ulaw_8000"}  # phone audio straight from ElevenLabs, no transcoding
