"""What a CallSession reports about a call as it happens.

The session hands these to a ``CallObserver`` the moment each thing happens (a turn is
reported when it ends), so storage, live dashboards and tests all see the same facts. Observer
methods must return at once: slow work (a database write) is the observer's to queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Speaker = Literal["caller", "bot"]


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    ingress: str
    caller_number: str | None
    called_number: str | None
    stream_id: str | None
    started_at: datetime
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnRecord:
    seq: int
    speaker: Speaker
    text: str  # bot: everything it meant to say; caller: what was recognised
    heard_text: str  # bot: what the caller actually heard
    interrupted: bool
    started_at: datetime
    ended_at: datetime
    timings: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    tools: list[dict[str, Any]] = field(default_factory=list)
    dtmf: str = ""


class CallObserver(Protocol):
    def call_started(self, info: CallInfo) -> None: ...

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None: ...

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None: ...


class NullObserver:
    def call_started(self, info: CallInfo) -> None:
        pass

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        pass

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        pass


class FanOutObserver:
    """Send every report to several observers; one failing observer never stops the others."""

    def __init__(self, *observers: CallObserver) -> None:
        self._observers = observers

    def call_started(self, info: CallInfo) -> None:
        for o in self._observers:
            _safe(o.call_started, info)

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        for o in self._observers:
            _safe(o.turn_ended, call_id, turn)

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        for o in self._observers:
            _safe(o.call_ended, call_id, ended_at, reason, outcome)


def _safe(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # an observer bug must not end a call
        import logging

        logging.getLogger("taina.records").exception("call observer failed")
