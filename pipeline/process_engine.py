"""One engine object per process, created lazily, forgotten in a forked child.

The embedded voices (eSpeak, Pico, Kokoro) each wrap a library that keeps global state and
must be driven from a single worker thread (or process). A forked child inherits the object
but not its worker, so it must start afresh; this holder does that once for all of them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ProcessEngine"]

T = TypeVar("T")


class ProcessEngine(Generic[T]):
    """A lazily created, process-wide ``T``; reset in the child after ``os.fork``."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self, factory: Callable[[], T]) -> T:
        """The engine, made with ``factory`` on first use."""
        with self._lock:
            if self._value is None:
                self._value = factory()
            return self._value

    def _forget(self) -> None:
        self._value = None
        self._lock = threading.Lock()
