"""An append-only overflow file for the call recorder's queue.

When the database is slow or gone and the in-memory queue is full, records go to a JSON-lines
file in the data dir instead of being dropped; the writer reads them back, in order, once it
has caught up. One file per process, held with an exclusive ``flock`` for as long as the
process lives, so a file whose lock can be taken belongs to a process that died: the next
process to start adopts it and writes what it holds (``SpillFile.orphans``).

Appends are one ``os.write`` of a whole line on a file opened with ``O_APPEND`` (a few
microseconds into the page cache, done on the event loop so the order of records is the order
of events); reads happen in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "records-"
SUFFIX = ".jsonl"
_READ_CHUNK = 256 * 1024


class SpillFile:
    """``append`` whole lines, ``read_batch`` them back in order, ``clear`` when caught up."""

    def __init__(self, path: Path, fd: int, written: int = 0) -> None:
        self.path = path
        self._fd = fd
        self.written = written  # bytes appended (or found, for an adopted file)
        self.read = 0  # bytes handed back by read_batch
        self.unread_lines = 0  # lines appended and not yet read back (own file only)

    @classmethod
    def create(cls, directory: Path) -> SpillFile:
        """A new file for this process, locked until ``close``."""
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        path = directory / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return cls(path, fd)

    @classmethod
    def orphans(cls, directory: Path) -> list[SpillFile]:
        """Files left by processes that are gone (their lock is free), oldest first, each
        locked by us now."""
        found: list[tuple[float, SpillFile]] = []
        if not directory.is_dir():
            return []
        for path in directory.glob(f"{PREFIX}*{SUFFIX}"):
            try:
                fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live process owns it
                continue
            st = os.fstat(fd)
            if st.st_size == 0:
                with contextlib.suppress(OSError):
                    path.unlink()
                os.close(fd)
                continue
            found.append((st.st_mtime, cls(path, fd, written=st.st_size)))
        return [f for _, f in sorted(found, key=lambda x: x[0])]

    @property
    def unread_bytes(self) -> int:
        return self.written - self.read

    def append(self, line: bytes) -> None:
        """Append one record (no newline in ``line``). Raises OSError (disk full…)."""
        data = line + b"\n"
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.written += len(data)
        self.unread_lines += 1

    async def read_batch(self, max_lines: int) -> list[bytes]:
        """Up to ``max_lines`` whole lines after the last ones read (a torn last line left by a
        crash is skipped)."""
        if self.unread_bytes <= 0:
            return []
        offset, end = self.read, self.written
        lines, consumed = await asyncio.to_thread(_read_lines, self._fd, offset, end, max_lines)
        self.read += consumed
        self.unread_lines = max(0, self.unread_lines - len(lines))
        return lines

    def clear(self) -> None:
        """Everything was read back and written: start the file over (it stays ours)."""
        os.ftruncate(self._fd, 0)
        self.written = self.read = self.unread_lines = 0

    def remaining(self) -> bytes:
        """The unread rest, as is (used at shutdown to carry it over to the next process)."""
        return os.pread(self._fd, self.unread_bytes, self.read) if self.unread_bytes > 0 else b""

    def close(self, remove: bool) -> None:
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)


def write_leftovers(directory: Path, lines: list[bytes], tail: bytes) -> Path:
    """At shutdown with records still unwritten: put them (then ``tail``, the unread part of
    the spill file) in one unlocked file that the next process adopts."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PREFIX}{os.getpid()}-left-{int(time.time())}{SUFFIX}"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for line in lines:
            fh.write(line + b"\n")
        fh.write(tail)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def _read_lines(fd: int, offset: int, end: int, max_lines: int) -> tuple[list[bytes], int]:
    lines: list[bytes] = []
    consumed = 0
    chunk = _READ_CHUNK
    while len(lines) < max_lines and offset + consumed < end:
        data = os.pread(fd, min(chunk, end - offset - consumed), offset + consumed)
        if not data:
            break
        cut = data.rfind(b"\n")
        if cut < 0:
            if offset + consumed + len(data) >= end:  # a torn last line: skip it
                log.warning("spill file %d: torn last record skipped", fd)
                consumed = end - offset
                break
            chunk *= 2  # one record longer than the chunk
            continue
        for line in data[:cut].split(b"\n"):
            consumed += len(line) + 1
            if line:
                lines.append(line)
            if len(lines) >= max_lines:
                break
    return lines, consumed
