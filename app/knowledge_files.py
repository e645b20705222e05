r"""The knowledge base's Markdown files as staff manage them: list, validate, upload.

Where uploads go: ``TAINA_KNOWLEDGE_DIR`` when set (the operator owns that folder; it must be
writable). Otherwise the packaged ``knowledge_data/`` is never written to — it belongs to the
installed code and is replaced by an upgrade — so the first upload copies the packaged documents
into ``{data_dir}/knowledge_data`` and points the knowledge base there. From then on that copy
is the office's knowledge base: :func:`knowledge_source_dir` makes a restarted server load it.

Everything here touches the disk and is blocking: call it from a worker thread.

Uploaded text is parsed by plain line scanning, linear in its length; no backtracking regular
expression ever runs on it. (The title pattern used before, ``^#\s+(.+?)\s*#*\s*$`` in
multi-line mode, took cubic time on a crafted 40 KB first line: 13 s with the interpreter lock
held, once at upload and again at every later listing.) Lines are also bounded
(:data:`MAX_LINE_CHARS`): a Markdown document has no reason for a 20,000-character line.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from knowledge.chunking import parse_heading, source_files

DATA_SUBDIR = "knowledge_data"
# Letters of any alphabet (accents included: "licencia_conducción.md"), digits, "_" and "-":
# no dots, slashes, spaces or control characters, so a name can never leave the folder.
_SAFE_NAME = re.compile(r"^[^\W_][\w-]{0,99}\.md$")
MAX_LINE_CHARS = 20_000
MAX_TITLE_CHARS = 200


class UploadRejected(ValueError):
    """An upload that cannot go into the knowledge base; ``detail`` is for people (Spanish)."""

    def __init__(self, detail: str, status_code: int = 422) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class DocumentFile:
    path: str  # file name inside the knowledge folder, e.g. "cedula.md"
    title: str | None  # the first "# " heading
    sha256: str
    modified_at: datetime
    size: int


def data_copy_dir(settings: Any) -> Path:
    return Path(settings.data_dir) / DATA_SUBDIR


def knowledge_source_dir(settings: Any) -> Path | None:
    """The folder the knowledge base should load at start-up (None: the packaged default).

    An explicit ``knowledge_dir`` wins; else the data-dir copy made by the first upload, if
    there is one, so uploaded documents survive a restart.
    """
    if settings.knowledge_dir:
        return Path(settings.knowledge_dir)
    copy = data_copy_dir(settings)
    return copy if copy.is_dir() and source_files(copy) else None


def upload_dir(settings: Any, current_source: Path) -> Path:
    """A writable knowledge folder, creating the data-dir copy on first use.

    Raises :class:`UploadRejected` (409) when an operator-chosen folder is read-only.
    """
    if settings.knowledge_dir:
        target = Path(settings.knowledge_dir)
        if not (target.is_dir() and os.access(target, os.W_OK)):
            raise UploadRejected(
                "La carpeta de documentos configurada no permite escribir.", status_code=409
            )
        return target
    target = data_copy_dir(settings)
    if target.is_dir() and source_files(target):
        return target
    _copy_documents(Path(current_source), target)
    return target


def _copy_documents(source: Path, target: Path) -> None:
    """Copy the Markdown files into a temp folder beside ``target``, then rename it into
    place, so a crash half-way never leaves a partial knowledge base that would be loaded."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for path in source_files(source):
            shutil.copy2(path, tmp / path.name)
        tmp.chmod(0o755)
        if target.exists():  # an empty leftover folder
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def document_name(filename: str | None) -> str:
    """The stored name of an uploaded file: NFC-normalized (macOS sends "ó" decomposed), so
    one name is one file whatever the browser's platform."""
    return unicodedata.normalize("NFC", (filename or "").strip())


def validate_upload(filename: str | None, data: bytes, max_bytes: int) -> str:
    """The document's text, or :class:`UploadRejected` saying what is wrong with it."""
    name = document_name(filename)
    if not _SAFE_NAME.fullmatch(name):
        raise UploadRejected(
            "Nombre de archivo no válido: use letras (con o sin tilde), números, guiones y la "
            "extensión .md, sin espacios ni puntos (por ejemplo, licencia_conducción.md)."
        )
    if len(data) > max_bytes:
        raise UploadRejected(
            f"El archivo pasa del límite de {max_bytes // 1024} KB.", status_code=413
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadRejected("El archivo debe estar en texto UTF-8.", status_code=415) from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise UploadRejected("El archivo no es texto Markdown.", status_code=415)
    if any(len(line) > MAX_LINE_CHARS for line in text.splitlines()):
        raise UploadRejected(
            f"El documento tiene líneas demasiado largas (más de {MAX_LINE_CHARS} "
            "caracteres): divida el texto en párrafos."
        )
    if not has_heading_with_text(text):
        raise UploadRejected(
            "El documento necesita al menos un título (# Título) seguido de texto: "
            "sin títulos no se puede buscar en él."
        )
    return text


def document_title(text: str) -> str | None:
    """The first level-1 heading ("# Título"), at most :data:`MAX_TITLE_CHARS`; linear."""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = parse_heading(line[: MAX_LINE_CHARS + 1])
            if heading is not None and heading[0] == 1:
                return heading[1][:MAX_TITLE_CHARS]
    return None


def has_heading_with_text(text: str) -> bool:
    """True when some heading ("#" to "######" and a title) is followed, after blank lines,
    by a line of text (not another heading): without one, nothing in the file is searchable.
    One pass over the lines."""
    after_heading = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            after_heading = line.startswith("#") and parse_heading(line) is not None
            continue
        if after_heading:
            return True
    return False


def write_document(folder: Path, name: str, text: str) -> bool:
    """Write atomically (a search never sees half a file); True when it replaced one."""
    path = folder / name
    existed = path.exists()
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return existed


def list_documents(folder: Path) -> list[DocumentFile]:
    docs = []
    for path in source_files(folder):
        data = path.read_bytes()
        text = data.decode("utf-8", errors="replace")
        docs.append(
            DocumentFile(
                path=path.name,
                title=document_title(text),
                sha256=hashlib.sha256(data).hexdigest(),
                modified_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
                size=len(data),
            )
        )
    return docs
