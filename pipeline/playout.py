"""What has the caller actually heard?

Every chunk of bot audio is sent with a mark; the far end echoes the mark when that audio has
played (or was flushed by a ``clear``). Each chunk covers a span of the reply's text,
proportional to its share of the sentence's audio, so when the caller interrupts we know — to
within one chunk — which words reached their ear. Only those go into the conversation history.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Chunk:
    text_end: int  # characters of the reply text heard once this chunk has played
    duration_s: float


class PlayoutTracker:
    def __init__(self) -> None:
        self._pending: OrderedDict[str, _Chunk] = OrderedDict()
        self._heard_chars = 0
        self._text = ""
        self._queued_s = 0.0
        self.played_s = 0.0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- producing ------------------------------------------------------------------------
    def start_reply(self) -> None:
        self._pending.clear()
        self._heard_chars = 0
        self._text = ""
        self._queued_s = 0.0
        self.played_s = 0.0
        self._idle.set()

    def add_text(self, sentence: str) -> tuple[int, int]:
        """Append a sentence to the reply text; returns its character span."""
        start = len(self._text) + (1 if self._text else 0)
        self._text = f"{self._text} {sentence}" if self._text else sentence
        return start, len(self._text)

    def add_chunk(self, mark: str, text_end: int, duration_s: float) -> None:
        self._pending[mark] = _Chunk(text_end, duration_s)
        self._queued_s += duration_s
        self._idle.clear()

    # --- consuming ------------------------------------------------------------------------
    def played(self, mark: str) -> bool:
        """Marks come back in order; an echo also confirms every chunk sent before it.
        Unknown names (late echoes after a clear, or a peer's junk) are ignored."""
        if mark not in self._pending:
            return False
        while self._pending:
            name, chunk = self._pending.popitem(last=False)
            self._heard_chars = max(self._heard_chars, chunk.text_end)
            self.played_s += chunk.duration_s
            self._queued_s -= chunk.duration_s
            if name == mark:
                break
        if not self._pending:
            self._idle.set()
        return True

    def flush(self) -> None:
        """After a clear: whatever was still pending was never heard."""
        self._pending.clear()
        self._queued_s = 0.0
        self._idle.set()

    # --- state ----------------------------------------------------------------------------
    @property
    def speaking(self) -> bool:
        return bool(self._pending)

    @property
    def unplayed_s(self) -> float:
        return max(self._queued_s, 0.0)

    @property
    def text(self) -> str:
        return self._text

    def heard_text(self) -> str:
        """The heard prefix of the reply, cut back to a whole word."""
        n = self._heard_chars
        if n >= len(self._text):
            return self._text
        cut = self._text.rfind(" ", 0, n + 1)
        return self._text[:cut].rstrip(" ,;:") if cut > 0 else ""

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False
