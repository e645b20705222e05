"""A person dictating a cédula and a phone number over the phone, recognised digit for digit.

The voice is real: Debian's ``asterisk-core-sounds-es-wav`` holds a woman's es-MX recordings
of the digits (``digits/0.wav`` says "cero", …). They are spliced into numbers said digit by
digit with a person's uneven pauses (short inside a group, longer between groups), sent
through the phone band (300–3400 Hz, level change, light noise, 8 kHz μ-law), transcribed by
Whisper with the product's own settings, and read back with ``repair_transcript`` /
``spoken_digits`` exactly as the dialogue does when it has asked for a cédula.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.booking import CATALOG
from app.services import whisper_settings
from app.settings import Settings
from pipeline.brain.heard import repair_transcript, spoken_digits
from pipeline.stt import WhisperSTT
from telephony.caller_voices import ASTERISK_MX, VOICES, render_human
from telephony.phone_band import LINE_RATE, apply_phone_band

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ASTERISK_MX / "digits" / "0.wav").is_file(),
        reason="human es-MX recordings missing: apt-get install asterisk-core-sounds-es-wav",
    ),
]

_RNG = random.Random(2026)
CEDULAS = ["".join(_RNG.choice("0123456789") for _ in range(11)) for _ in range(4)]
PHONES = [_RNG.choice(("809", "829", "849")) + f"{_RNG.randrange(10**7):07d}" for _ in range(3)]


@pytest.fixture(scope="module")
def stt(whisper_model_dir: Path) -> Iterator[WhisperSTT]:
    engine = WhisperSTT(whisper_model_dir, **whisper_settings(Settings()))
    yield engine
    engine.close()


def _dictated(number: str, seed: int) -> bytes:
    """``number`` said digit by digit by a person, as the line delivers it (8 kHz PCM16)."""
    voice = VOICES["human-mx"]
    speech = render_human(voice, " ".join(number), LINE_RATE, seed=seed)
    pad = bytes(int(0.3 * LINE_RATE) * 2)
    return apply_phone_band(pad + speech + pad, LINE_RATE, seed=f"human|{number}")


async def _heard_digits(stt: WhisperSTT, number: str, seed: int, expect: str) -> str:
    transcript = await stt.transcribe(_dictated(number, seed), LINE_RATE)
    return spoken_digits(repair_transcript(transcript.text, CATALOG, expect))


async def test_cedulas_said_digit_by_digit(stt: WhisperSTT) -> None:
    heard = [await _heard_digits(stt, n, i, "cedula") for i, n in enumerate(CEDULAS)]
    assert heard == CEDULAS


async def test_phone_numbers_said_digit_by_digit(stt: WhisperSTT) -> None:
    heard = [await _heard_digits(stt, n, i, "phone") for i, n in enumerate(PHONES)]
    assert heard == PHONES


def test_the_recordings_are_the_words_their_names_say() -> None:
    """The premise of the test: every digit file exists and holds speech."""
    for digit in "0123456789":
        path = ASTERISK_MX / "digits" / f"{digit}.wav"
        assert path.is_file() and path.stat().st_size > 2000
