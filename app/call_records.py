"""Bridge from what a CallSession reports to the database, through the queued recorder.

The session's records live in ``pipeline`` (which knows nothing of storage); this adapter maps
them onto storage rows. The recorder queues every write, so a slow or absent database never
delays a call, and retries until the write lands.
"""

from __future__ import annotations

from datetime import datetime

from app.storage import CallRecorder
from app.storage import TurnRecord as StoredTurn
from pipeline.records import CallInfo, TurnRecord


class StorageObserver:
    def __init__(self, recorder: CallRecorder) -> None:
        self._recorder = recorder

    def call_started(self, info: CallInfo) -> None:
        self._recorder.call_started(
            info.call_id,
            info.ingress,
            caller_number=info.caller_number,
            called_number=info.called_number,
            stream_sid=info.stream_id,
            started_at=info.started_at,
            meta=info.meta,
        )

    def turn_ended(self, call_id: str, turn: TurnRecord) -> None:
        self._recorder.turn_ended(
            call_id,
            StoredTurn(
                seq=turn.seq,
                speaker=turn.speaker,
                text=turn.text,
                heard_text=turn.heard_text,
                interrupted=turn.interrupted,
                started_at=turn.started_at,
                ended_at=turn.ended_at,
                timings=dict(turn.timings),
                tools=list(turn.tools),
                dtmf=turn.dtmf or None,
            ),
        )
        if turn.seq == 0 and turn.speaker == "bot" and "first_byte_ms" in turn.timings:
            self._recorder.greeting_measured(call_id, turn.timings["first_byte_ms"])

    def call_ended(
        self, call_id: str, ended_at: datetime, reason: str, outcome: str | None
    ) -> None:
        self._recorder.call_ended(call_id, end_reason=reason, outcome=outcome, ended_at=ended_at)
