"""Fixtures shared across the test suite (keep this file small and generic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.model_files import ensure_whisper_model, whisper_model_ready
from pipeline.tts import EspeakTTS


@pytest.fixture(scope="session")
def whisper_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified Whisper base directory: the deployment's one if already assembled under
    ``TAINA_DATA_DIR`` (default ./data), else assembled once per session in a temp dir."""
    installed = Path(os.environ.get("TAINA_DATA_DIR", "./data")) / "models" / "whisper-base"
    if whisper_model_ready(installed):
        return installed
    return ensure_whisper_model(tmp_path_factory.mktemp("models") / "whisper-base")


@pytest.fixture
def tts() -> EspeakTTS:
    """The embedded Spanish voice with the default settings."""
    return EspeakTTS()


# Shared fixtures defined in their own modules (a fixture imported here is visible to all tests).
from tests.fake_twilio_rest import fake_twilio  # noqa: E402, F401
