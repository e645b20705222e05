"""An in-memory view of recent and live calls.

Answers "what is happening right now" without a database round trip (health checks, the
simulator's tests, the live dashboard later); the database stays the record of truth.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.records import CallInfo, TurnRecord


@dataclass
class CallView:
    info: CallInfo
    turns: list[TurnRecord] = field(default_factory=list)
    ended_at: datetime | None = None
    end_reason: str | None = None
    outcome: str | None = None


class RecentCalls:
    def __init__(self, keep: int = 200) -> None:
        self._calls: OrderedDict[str, CallView] = OrderedDict()
        self._keep = keep

    def call_started(self, info: CallInfo) -> None:
        self._calls[info.call_id] = CallView(info)
        while len(self._calls) > self._keep:
            self._calls.popitem(last=False)

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        view = self._calls.get(call_id)
        if view is not None:
            view.turns.append(turn)

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        view = self._calls.get(call_id)
        if view is not None:
            view.ended_at, view.end_reason, view.outcome = ended_at, reason, outcome

    def get(self, call_id: str) -> CallView | None:
        return self._calls.get(call_id)

    @property
    def active(self) -> int:
        return sum(1 for v in self._calls.values() if v.ended_at is None)
