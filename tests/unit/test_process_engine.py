"""The process-wide engine holder shared by the embedded voices."""

from __future__ import annotations

import os

from pipeline.process_engine import ProcessEngine


def test_made_once_and_shared() -> None:
    made: list[object] = []
    holder: ProcessEngine[object] = ProcessEngine()
    first = holder.get(lambda: made.append(object()) or made[-1])
    assert holder.get(lambda: made.append(object()) or made[-1]) is first
    assert len(made) == 1


def test_a_forked_child_starts_afresh() -> None:
    holder: ProcessEngine[object] = ProcessEngine()
    parent = holder.get(object)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os._exit(0 if holder.get(object) is not parent else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
