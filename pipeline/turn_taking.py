"""When has the caller started talking, paused, and finished their turn?

``TurnDetector`` turns per-window speech probabilities into events with hysteresis (a higher
threshold to enter speech than to stay in it) and minimum durations, so line noise, a cough or
a breath does not count as a turn. ``UtteranceBuffer`` keeps the audio that goes with it,
including a little audio from just before speech was detected (the VAD needs a window or two to
notice speech, and Whisper misses the first syllable without it).

Pure logic on numbers: no clocks, no I/O, fully unit-testable.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class TurnEvent(enum.Enum):
    SPEECH_STARTED = "speech_started"
    PAUSED = "paused"  # short silence: a good moment to start transcribing speculatively
    RESUMED = "resumed"  # speech again after a pause: the speculative transcript is stale
    TURN_ENDED = "turn_ended"


@dataclass(frozen=True)
class TurnConfig:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_ms: int = 96
    speculative_silence_ms: int = 250
    end_of_turn_silence_ms: int = 550
    max_utterance_ms: int = 30_000


class TurnDetector:
    __slots__ = (
        "_candidate_ms",
        "_cfg",
        "_paused",
        "_window_ms",
        "silence_ms",
        "speaking",
        "speech_ms",
        "utterance_ms",
    )

    def __init__(self, cfg: TurnConfig, window_ms: float) -> None:
        self._cfg = cfg
        self._window_ms = window_ms
        self.speaking = False
        self.speech_ms = 0.0  # voiced time in the current utterance
        self.utterance_ms = 0.0  # total time since the utterance started
        self.silence_ms = 0.0  # trailing silence in the current utterance
        self._candidate_ms = 0.0
        self._paused = False

    def update(self, prob: float) -> TurnEvent | None:
        cfg, w = self._cfg, self._window_ms
        if not self.speaking:
            # Hysteresis from the first window, as in Silero's own segmentation: a window over
            # ``threshold`` opens a candidate, and windows over ``neg_threshold`` carry it on.
            # A short quiet answer ("Sí.") has an onset just over the threshold and a vowel
            # just under it: requiring ``min_speech_ms`` all over the threshold lost it.
            if prob >= cfg.threshold or (self._candidate_ms > 0.0 and prob >= cfg.neg_threshold):
                self._candidate_ms += w
                if self._candidate_ms >= cfg.min_speech_ms:
                    self.speaking = True
                    self.speech_ms = self._candidate_ms
                    self.utterance_ms = self._candidate_ms
                    self.silence_ms = 0.0
                    self._candidate_ms = 0.0
                    self._paused = False
                    return TurnEvent.SPEECH_STARTED
            elif prob < cfg.neg_threshold:
                self._candidate_ms = 0.0
            return None

        self.utterance_ms += w
        if prob >= cfg.neg_threshold:
            self.speech_ms += w
            self.silence_ms = 0.0
            if self.utterance_ms >= cfg.max_utterance_ms:
                return self._end()
            if self._paused:
                self._paused = False
                return TurnEvent.RESUMED
            return None
        self.silence_ms += w
        if (
            self.silence_ms >= cfg.end_of_turn_silence_ms
            or self.utterance_ms >= cfg.max_utterance_ms
        ):
            return self._end()
        if not self._paused and self.silence_ms >= cfg.speculative_silence_ms:
            self._paused = True
            return TurnEvent.PAUSED
        return None

    def end_now(self) -> TurnEvent | None:
        """End the utterance at once (another detector, e.g. the STT provider's endpointing,
        decided first); None when there is no utterance to end."""
        return self._end() if self.speaking else None

    def _end(self) -> TurnEvent:
        self.speaking = False
        self._paused = False
        self._candidate_ms = 0.0
        return TurnEvent.TURN_ENDED

    def reset(self) -> None:
        self.speaking = False
        self.speech_ms = self.utterance_ms = self.silence_ms = self._candidate_ms = 0.0
        self._paused = False


class UtteranceBuffer:
    """Audio of the utterance in progress plus a short pre-roll ring of what came before."""

    def __init__(self, preroll_windows: int) -> None:
        self._preroll: deque[bytes] = deque(maxlen=max(preroll_windows, 0) or None)
        self._preroll_enabled = preroll_windows > 0
        self._chunks: list[bytes] = []
        self.active = False

    def add(self, window: bytes) -> None:
        if self.active:
            self._chunks.append(window)
        elif self._preroll_enabled:
            self._preroll.append(window)

    def begin(self, carry: bytes = b"") -> None:
        """Start collecting; ``carry`` is audio of an earlier utterance this one continues."""
        self._chunks = [carry] if carry else []
        self._chunks.extend(self._preroll)
        self._preroll.clear()
        self.active = True

    def prepend(self, audio: bytes) -> None:
        """Put an earlier utterance's audio in front of the one in progress."""
        if audio and self.active:
            self._chunks.insert(0, audio)

    def snapshot(self) -> bytes:
        return b"".join(self._chunks)

    def finish(self) -> bytes:
        audio = b"".join(self._chunks)
        self._chunks = []
        self.active = False
        return audio

    def discard(self) -> None:
        self._chunks = []
        self.active = False
