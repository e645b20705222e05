"""argon2 in its own small, bounded pool of threads.

A password hash costs ~0.1 s of CPU and 64 MiB on purpose. Run in the default executor (what
``asyncio.to_thread`` uses) a flood of sign-ins filled it, and everything else waiting there
waited behind the hashes. Here the hashes get their own ``workers`` threads (default 1) and at
most ``queue`` more may wait; beyond that :class:`PasswordPoolBusy` (a 429 with
``Retry-After``) is raised at once, so no request ever queues behind a flood and the work in
flight is bounded whatever the clients do.

A waiting slot is given back when the hash *finishes*, not when its caller stops waiting: a
client that disconnects mid-sign-in cannot free its slot early and stack more work behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from fastapi import HTTPException, status

T = TypeVar("T")

MSG_BUSY = "Hay demasiados inicios de sesión en curso. Intente de nuevo en unos segundos."
BUSY_RETRY_AFTER_S = 2


class PasswordPoolBusy(HTTPException):
    """Every hashing slot is taken: try again shortly (a 429 when it reaches a client)."""

    def __init__(self) -> None:
        super().__init__(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=MSG_BUSY,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )


class PasswordPool:
    """``workers`` threads for password hashing and at most ``queue`` jobs waiting for them."""

    def __init__(self, workers: int = 1, queue: int = 8) -> None:
        self.workers = max(1, workers)
        self.queue = max(0, queue)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="argon2")
        self._slots = threading.BoundedSemaphore(self.workers + self.queue)
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs running or waiting (for tests and logs)."""
        return self._pending

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` in the pool; :class:`PasswordPoolBusy` when it is full."""
        if not self._slots.acquire(blocking=False):
            raise PasswordPoolBusy()
        with self._lock:
            self._pending += 1
        try:
            future: Future[T] = self._executor.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1
        self._slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_pool = PasswordPool()


def password_pool() -> PasswordPool:
    return _pool


def configure_password_pool(workers: int, queue: int) -> PasswordPool:
    """Replace the process-wide pool when the settings ask for another size (start-up)."""
    global _pool
    if (_pool.workers, _pool.queue) != (max(1, workers), max(0, queue)):
        old, _pool = _pool, PasswordPool(workers, queue)
        old.shutdown()
    return _pool
