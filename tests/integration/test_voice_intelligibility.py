"""Can a caller understand the default voice over the phone? Whisper base as the listener.

The assistant's real sentences (36: questions, dates, times, cédula and phone read-backs,
codes, knowledge answers) are spoken by the default embedded voice at the phone pipeline's
8 kHz, band-limited to 300–3400 Hz and sent through G.711 μ-law, then transcribed with the
server's STT settings. The word error rate must stay ≤ 0.10 (all 36: a 20-sentence sample
swings by ±0.04 with Whisper's quirks); eSpeak as it was before (issue 12: ≈ 0.44–0.6) must
score clearly worse on a third of them, so the test can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.providers import embedded_voice
from app.services import whisper_settings
from app.settings import Settings
from bench.tts_voices_bench import PHRASES, normalize_for_wer, phone_path, wer
from pipeline.engines import TextToSpeech
from pipeline.speech_format import spoken_text
from pipeline.stt import WhisperSTT
from pipeline.tts import EspeakTTS

pytestmark = pytest.mark.slow

LINE_RATE = 8000
# eSpeak's comparison: every third sentence and a phone read-back (all kinds are represented).
SAMPLE = [*PHRASES[::3], next(p for p in PHRASES if "809-" in p)]


@pytest.fixture(scope="module")
def listener(whisper_model_dir: Path) -> WhisperSTT:
    return WhisperSTT(whisper_model_dir, **whisper_settings(Settings()))


async def heard(tts: TextToSpeech, stt: WhisperSTT, phrases: list[str]) -> list[str]:
    out = []
    for text in phrases:
        audio = b"".join([c async for c in tts.synthesize(text, LINE_RATE)])
        assert len(audio) > LINE_RATE  # at least half a second of speech per sentence
        out.append((await stt.transcribe(phone_path(audio), LINE_RATE)).text)
    return out


def test_sample_covers_the_hard_cases() -> None:
    for phrases in (PHRASES, SAMPLE):
        joined = " ".join(phrases)
        for needle in ("cédula", "TA-", "809-", "RD$", "de diciembre", "de la tarde"):
            assert needle in joined, needle
    assert len(PHRASES) >= 30 and len(SAMPLE) == 13


async def test_default_voice_is_understood_through_the_phone_band(listener: WhisperSTT) -> None:
    settings = Settings()
    voice = embedded_voice(settings, settings.tts_voice_engine)
    assert voice is not None, f"default voice {settings.tts_voice_engine} unavailable"
    references = [spoken_text(p) for p in PHRASES]
    default_heard = await heard(voice, listener, list(PHRASES))
    default_wer = wer(references, default_heard)
    sample_wer = wer(
        [spoken_text(p) for p in SAMPLE], [default_heard[PHRASES.index(p)] for p in SAMPLE]
    )
    espeak = EspeakTTS(settings.tts_voice, settings.tts_rate_wpm, settings.tts_pitch, spoken=False)
    espeak_wer = wer([spoken_text(p) for p in SAMPLE], await heard(espeak, listener, SAMPLE))
    print(
        f"\nFIGURE bot-speech WER after 8 kHz μ-law: {settings.tts_voice_engine} "
        f"{default_wer:.3f} ({len(PHRASES)} sentences; {sample_wer:.3f} on the {len(SAMPLE)} "
        f"of the comparison), eSpeak as before {espeak_wer:.3f}"
    )
    for ref, hyp in zip(references, default_heard, strict=True):
        if normalize_for_wer(ref) != normalize_for_wer(hyp):
            print(f"  said:  {ref}\n  heard: {hyp}")
    assert default_wer <= 0.10
    assert espeak_wer >= 0.25 and espeak_wer > 2.5 * sample_wer


def test_wer_normalizer_treats_digits_and_words_alike() -> None:
    assert normalize_for_wer("el lunes veintitrés a las diez y media") == normalize_for_wer(
        "El lunes 23, a las 10:30."
    )
    assert normalize_for_wer("cero cero uno, dos tres") == normalize_for_wer("001-23")
    assert normalize_for_wer("RD$3,500") == normalize_for_wer("tres mil quinientos pesos")
    assert normalize_for_wer("siete, ka, tres, pe, nueve") == normalize_for_wer("7K3P9")
    assert normalize_for_wer("el martes") != normalize_for_wer("el miércoles")


async def test_default_voice_is_understood_by_a_plain_ear_on_a_noisy_line() -> None:
    """What a caller lives through: the spoken evaluation's line (level 6-10 dB off, noise at
    25-30 dB SNR, μ-law) and a listener with no office vocabulary (Whisper base, no prompt).
    The voice shaping (presence + compression) is what keeps the consonants: without it the
    same voice is heard clearly worse, so this test fails if the shaping is lost."""
    from app.spoken_eval import Ears
    from bench.tts_voices_bench import noisy_line
    from pipeline.tts_pico import PicoTTS

    settings = Settings()
    ear = Ears()
    references = [spoken_text(p) for p in PHRASES]

    async def heard_noisy(tts: TextToSpeech) -> list[str]:
        out = []
        for i, text in enumerate(PHRASES):
            audio = b"".join([c async for c in tts.synthesize(text, LINE_RATE)])
            out.append(await ear.transcribe(noisy_line(audio, str(i)), LINE_RATE))
        return out

    try:
        shaped = wer(references, await heard_noisy(PicoTTS(speed=settings.tts_pico_speed)))
        plain = wer(
            references,
            await heard_noisy(PicoTTS(speed=settings.tts_pico_speed, phone_shaping=False)),
        )
    finally:
        ear.close()
    print(f"\nFIGURE noisy line, plain ear: Pico shaped {shaped:.3f}, unshaped {plain:.3f}")
    assert settings.tts_phone_shaping
    assert shaped <= 0.12
    assert plain > shaped + 0.03
