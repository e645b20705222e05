"""Smart Turn v3 is taken out of the pipecat-ai wheel, checksum-verified, and cached."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from pipeline.model_files import (
    SMART_TURN_MEMBER,
    ModelFilesError,
    ensure_smart_turn_model,
    smart_turn_path,
    smart_turn_ready,
)

PAYLOAD = b"not really an onnx model" * 100
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _wheel(tmp_path: Path, member: str = SMART_TURN_MEMBER, data: bytes = PAYLOAD) -> Path:
    wheel = tmp_path / "pipecat_ai-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pipecat/__init__.py", "")
        zf.writestr(member, data)
    return wheel


def test_extracts_verifies_and_caches(tmp_path: Path) -> None:
    models = tmp_path / "models"
    wheel = _wheel(tmp_path)
    assert not smart_turn_ready(models, PAYLOAD_SHA)
    path = ensure_smart_turn_model(models, wheel=wheel, expected_sha256=PAYLOAD_SHA)
    assert path == smart_turn_path(models) and path.read_bytes() == PAYLOAD
    assert smart_turn_ready(models, PAYLOAD_SHA)
    assert not list(path.parent.glob("tmp*")), "no temporary left behind"
    wheel.unlink()  # a verified model is not extracted again
    assert ensure_smart_turn_model(models, wheel=wheel, expected_sha256=PAYLOAD_SHA) == path


def test_corrupt_wheel_installs_nothing(tmp_path: Path) -> None:
    models = tmp_path / "models"
    wheel = _wheel(tmp_path, data=PAYLOAD + b"tampered")
    with pytest.raises(ModelFilesError, match="checksum mismatch"):
        ensure_smart_turn_model(models, wheel=wheel, expected_sha256=PAYLOAD_SHA)
    assert not smart_turn_path(models).exists()
    assert not smart_turn_ready(models, PAYLOAD_SHA)


def test_wheel_without_the_model(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, member="pipecat/other.onnx")
    with pytest.raises(ModelFilesError, match="not found"):
        ensure_smart_turn_model(tmp_path / "m", wheel=wheel, expected_sha256=PAYLOAD_SHA)


def test_a_model_changed_after_install_is_not_ready(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ensure_smart_turn_model(models, wheel=_wheel(tmp_path), expected_sha256=PAYLOAD_SHA)
    assert not smart_turn_ready(models, "0" * 64)  # another pinned version expected
