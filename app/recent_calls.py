"""An in-memory view of recent and live calls.

Answers "what is happening right now" without a database round trip (health checks, the
simulator's tests, drain); the database stays the record of truth, and the dashboard reads
turns from it (``/api/calls/{sid}``) or from the live event hub (``app/live_events.py``).

Memory is bounded whatever the traffic (issue 13): a live call keeps its turns (at most
``max_turns`` of them, the newest), a finished call keeps a summary — its info, counts, end —
and its turns only while it is among the ``keep_turns`` most recently finished, so a test or a
drain can compare what was said with what was stored; at most ``keep`` calls are remembered.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.records import CallInfo, TurnRecord

DEFAULT_KEEP = 200
DEFAULT_KEEP_TURNS = 20
DEFAULT_MAX_TURNS = 1000  # per call; the session's own cap ends a call long before this


@dataclass(slots=True)
class CallView:
    info: CallInfo
    turns: list[TurnRecord] = field(default_factory=list)
    ended_at: datetime | None = None
    end_reason: str | None = None
    outcome: str | None = None
    turn_count: int = 0  # every turn reported, kept or not
    caller_turns: int = 0
    last_turn_at: datetime | None = None
    turns_released: bool = False  # a finished call whose turns were let go (see the database)

    @property
    def active(self) -> bool:
        return self.ended_at is None


class RecentCalls:
    def __init__(
        self,
        keep: int = DEFAULT_KEEP,
        keep_turns: int = DEFAULT_KEEP_TURNS,
        max_turns: int = DEFAULT_MAX_TURNS,
    ) -> None:
        self._calls: OrderedDict[str, CallView] = OrderedDict()
        self._keep = keep
        self._keep_turns = keep_turns
        self._max_turns = max_turns
        self._finished_with_turns: deque[str] = deque()
        self._active = 0

    def call_started(self, info: CallInfo) -> None:
        old = self._calls.pop(info.call_id, None)
        if old is not None and old.active:
            self._active -= 1
        self._calls[info.call_id] = CallView(info)
        self._active += 1
        while len(self._calls) > self._keep:
            # The oldest call goes first; a live one is kept (it still reports), unless
            # every remembered call is live.
            sid = next((s for s, v in self._calls.items() if not v.active), None)
            if sid is None:
                sid = next(iter(self._calls))
            dropped = self._calls.pop(sid)
            if dropped.active:
                self._active -= 1

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        view = self._calls.get(call_id)
        if view is None:
            return
        view.turn_count += 1
        view.caller_turns += turn.speaker == "caller"
        view.last_turn_at = turn.ended_at
        if view.turns_released:
            return
        view.turns.append(turn)
        if len(view.turns) > self._max_turns:
            del view.turns[: len(view.turns) - self._max_turns]

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        view = self._calls.get(call_id)
        if view is None or not view.active:
            return
        self._active -= 1
        view.ended_at, view.end_reason, view.outcome = ended_at, reason, outcome
        self._finished_with_turns.append(call_id)
        while len(self._finished_with_turns) > self._keep_turns:
            older = self._calls.get(self._finished_with_turns.popleft())
            if older is not None and not older.active:
                older.turns = []
                older.turns_released = True

    def get(self, call_id: str) -> CallView | None:
        return self._calls.get(call_id)

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def active(self) -> int:
        return self._active

    @property
    def turns_held(self) -> int:
        """Turns held in memory across all remembered calls (bounded; for tests and benches)."""
        return sum(len(v.turns) for v in self._calls.values())
