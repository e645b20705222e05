"""The opt-in Kokoro voice: model assembled once from the part wheels, shipped styles, real
synthesis at the phone rate (skipped only when the optional packages are not installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.tts_kokoro import (
    KOKORO_RATE,
    KokoroTTS,
    KokoroUnavailable,
    ensure_kokoro_model,
    kokoro_render,
    model_ready,
    resolve_voice,
    voices_path,
)

try:
    voices_path()
    HAVE_KOKORO = True
except KokoroUnavailable:
    HAVE_KOKORO = False

needs_kokoro = pytest.mark.skipif(not HAVE_KOKORO, reason="taina[kokoro] not installed")
MODELS = Path("data/models")


@pytest.mark.parametrize(
    ("asked", "style"),
    [(None, "jf_alpha"), ("jm_kumo", "jm_kumo"), ("em_alex", "jm_kumo"), ("ef_dora", "jf_alpha")],
)
def test_voice_names_map_to_shipped_styles(asked: str | None, style: str) -> None:
    assert resolve_voice(asked) == style


@needs_kokoro
def test_model_is_assembled_once_and_verified(tmp_path: Path) -> None:
    model = ensure_kokoro_model(tmp_path)
    assert model_ready(tmp_path) and model.stat().st_size > 90_000_000
    mtime = model.stat().st_mtime_ns
    assert ensure_kokoro_model(tmp_path) == model and model.stat().st_mtime_ns == mtime
    model.with_suffix(".sha256").write_text("not the checksum\n")
    assert not model_ready(tmp_path)  # a stale marker forces a rebuild


@needs_kokoro
def test_render_and_stream_at_the_phone_rate() -> None:
    audio, rate = kokoro_render("Buenos días.")
    assert rate == KOKORO_RATE and audio.dtype == np.int16
    assert 0.4 < audio.size / rate < 3.0 and np.abs(audio).max() > 3000


@needs_kokoro
async def test_kokoro_tts_reads_digits_in_groups() -> None:
    tts = KokoroTTS(models_dir=MODELS)
    short = await tts.synthesize_all("Su cédula.", 8000)
    long = await tts.synthesize_all("Su cédula es 00112345678.", 8000)
    # Eleven digit words take seconds; "once mil millones..." or nothing would not.
    assert len(long) / 2 / 8000 > len(short) / 2 / 8000 + 2.5
