"""The Whisper model directory is assembled from the two wheels, verified, and cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.model_files import (
    MARKER_NAME,
    WHISPER_SIDE_FILES,
    ModelFilesError,
    ensure_whisper_model,
    main,
    silero_onnx_path,
    whisper_model_ready,
    whisper_part_paths,
)


def _copy_parts(dst: Path) -> list[Path]:
    dst.mkdir()
    copies = []
    for part in whisper_part_paths():
        shutil.copyfile(part, dst / part.name)
        copies.append(dst / part.name)
    for name in WHISPER_SIDE_FILES:
        shutil.copyfile(whisper_part_paths()[0].parent / name, dst / name)
    return copies


def test_assembles_verifies_and_caches(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base"
    messages: list[str] = []

    assert ensure_whisper_model(target, messages.append) == target

    sizes = sum(p.stat().st_size for p in whisper_part_paths())
    assert (target / "model.bin").stat().st_size == sizes
    for name in WHISPER_SIDE_FILES:
        assert (target / name).read_bytes() == (whisper_part_paths()[0].parent / name).read_bytes()
    assert whisper_model_ready(target)
    assert any(m.endswith("100%") for m in messages)
    assert not list(target.glob("*.tmp")) and not list(target.glob(".*.tmp"))

    # Second call: a cache hit that does not rewrite the file.
    mtime = (target / "model.bin").stat().st_mtime_ns
    messages.clear()
    ensure_whisper_model(target, messages.append)
    assert (target / "model.bin").stat().st_mtime_ns == mtime
    assert not any("%" in m for m in messages)


def test_truncated_file_is_reassembled(tmp_path: Path) -> None:
    target = ensure_whisper_model(tmp_path / "w")
    with (target / "model.bin").open("r+b") as f:
        f.truncate(1000)
    assert not whisper_model_ready(target)
    ensure_whisper_model(target)
    assert whisper_model_ready(target)


def test_existing_unmarked_model_is_only_hashed(tmp_path: Path) -> None:
    target = ensure_whisper_model(tmp_path / "w")
    (target / MARKER_NAME).unlink()
    messages: list[str] = []
    ensure_whisper_model(target, messages.append)
    assert whisper_model_ready(target)
    assert any(m.startswith("Hashing") for m in messages)
    assert not any(m.startswith("Assembling") for m in messages)


def test_corrupted_part_raises_and_leaves_nothing(tmp_path: Path) -> None:
    parts = _copy_parts(tmp_path / "parts")
    with parts[1].open("r+b") as f:
        f.truncate(parts[1].stat().st_size - 1)
    target = tmp_path / "models" / "whisper-base"

    with pytest.raises(ModelFilesError, match="checksum mismatch"):
        ensure_whisper_model(target, parts=parts, side_files_dir=parts[0].parent)

    assert not target.exists()


def test_flipped_byte_in_existing_dir_raises_and_keeps_dir_clean(tmp_path: Path) -> None:
    parts = _copy_parts(tmp_path / "parts")
    with parts[0].open("r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "existing"
    target.mkdir()

    with pytest.raises(ModelFilesError):
        ensure_whisper_model(target, parts=parts, side_files_dir=parts[0].parent)

    assert list(target.iterdir()) == []


def test_missing_part_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match="missing"):
        ensure_whisper_model(tmp_path / "w", parts=[tmp_path / "nope.part1"])
    assert not (tmp_path / "w").exists()


def test_cli_installs_under_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    target = tmp_path / "models" / "whisper-base"
    assert out.strip() == str(target)
    assert "100%" in err
    assert whisper_model_ready(target)


def test_silero_model_is_found() -> None:
    path = silero_onnx_path()
    assert path.name == "silero_vad.onnx" and path.stat().st_size > 100_000
