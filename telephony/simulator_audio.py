"""The phone side of a simulated call: a 20 ms clock, the caller's voice, the earpiece.

A real phone plays the bot's audio at exactly real time, whatever burst the server sends, and
only then reports a ``mark`` as reached. Latency and barge-in numbers are only honest if the
simulator does the same, so these pieces are kept pure (no sockets) and tested on their own.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from telephony.audio_codec import (
    audioop,
    mulaw_silence,
    mulaw_to_pcm16,
    pcm16_to_mulaw,
    resample_once,
    rms,
)

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_S = FRAME_MS / 1000
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # mu-law: one byte per sample
SILENCE_FRAME = mulaw_silence(FRAME_BYTES)
# PCM16 RMS below which audio counts as silence (-58 dBFS: far under any speech, far over the
# +-1 LSB dither a resampler leaves in "silent" TTS output).
AUDIBLE_RMS = 40

Tag = Hashable


def is_audible(ulaw: bytes) -> bool:
    """True when a mu-law chunk carries sound rather than (near) digital silence."""
    return bool(ulaw) and rms(mulaw_to_pcm16(ulaw)) >= AUDIBLE_RMS


# --- clock ---------------------------------------------------------------------------------------


class FrameClock:
    """Calls ``on_tick(n, deadline)`` at ``start + n * 20 ms``.

    The schedule is absolute: a tick that runs late (a slow send, a busy loop) does not push
    later ticks back, the next ones simply run immediately until the clock has caught up, just
    as a phone keeps producing 50 frames a second whatever the network does.
    """

    def __init__(
        self,
        frame_s: float = FRAME_S,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.frame_s = frame_s
        self._now = now
        self._sleep = sleep
        self.start: float | None = None
        self.ticks = 0
        self.late_ticks = 0  # ticks that ran more than half a frame after their deadline
        self.max_lag_s = 0.0

    def deadline(self, n: int) -> float:
        if self.start is None:
            raise RuntimeError("clock not started")
        return self.start + n * self.frame_s

    async def run(
        self, on_tick: Callable[[int, float], Awaitable[bool]], start: float | None = None
    ) -> None:
        """Tick until ``on_tick`` returns False. ``start`` defaults to now."""
        self.start = self._now() if start is None else start
        n = 0
        while True:
            deadline = self.start + n * self.frame_s
            delay = deadline - self._now()
            if delay > 0:
                await self._sleep(delay)
            lag = self._now() - deadline
            if lag > self.max_lag_s:
                self.max_lag_s = lag
            if lag > self.frame_s / 2:
                self.late_ticks += 1
            self.ticks = n + 1
            if not await on_tick(n, deadline):
                return
            n += 1


# --- caller's voice ------------------------------------------------------------------------------


class CallerVoice:
    """What the caller's microphone produces: speech when told to talk, silence otherwise."""

    def __init__(self) -> None:
        self._audio = b""
        self._pos = 0

    @property
    def speaking(self) -> bool:
        return self._pos < len(self._audio)

    def say(self, ulaw: bytes) -> None:
        if self.speaking:
            raise RuntimeError("the caller is already speaking")
        self._audio = ulaw
        self._pos = 0

    def next_frame(self) -> tuple[bytes, bool, bool]:
        """(160-byte frame, is speech, is the last frame of the utterance)."""
        if not self.speaking:
            return SILENCE_FRAME, False, False
        frame = self._audio[self._pos : self._pos + FRAME_BYTES]
        self._pos += FRAME_BYTES
        if len(frame) < FRAME_BYTES:
            frame += mulaw_silence(FRAME_BYTES - len(frame))
        return frame, True, not self.speaking


# --- earpiece ------------------------------------------------------------------------------------


@dataclass
class PlayedFrame:
    """One 20 ms tick of the earpiece."""

    frame: bytes  # always FRAME_BYTES (bot audio, padded with silence)
    pieces: list[tuple[Tag, bytes]]  # which bot turn each played byte belonged to
    marks: list[str]  # marks whose audio has finished playing: echo them now

    @property
    def audio_bytes(self) -> int:
        return sum(len(p) for _, p in self.pieces)


@dataclass
class ClearResult:
    marks: list[str]  # every pending mark, to echo at once
    discarded: dict[Tag, int] = field(default_factory=dict)  # unplayed bytes flushed, per tag


class PlaybackBuffer:
    """Twilio's outbound buffer: audio plays in arrival order at 8 bytes/ms.

    Positions are counted in bytes ever written. A mark sits at the position where it arrived
    and is due once every byte before it has *finished* playing, i.e. at the tick after the
    frame that carried its last byte (or at once when nothing was buffered before it).
    """

    def __init__(self) -> None:
        self._segments: deque[list] = deque()  # [tag, data, offset]
        self._marks: deque[tuple[int, str]] = deque()  # (position, name)
        self.written = 0
        self.consumed = 0  # bytes taken for playback or discarded by clear
        self.played_audio_bytes = 0
        self._sounding = False  # the last tick handed bot audio to the speaker

    @property
    def buffered(self) -> int:
        return self.written - self.consumed

    @property
    def pending_marks(self) -> list[str]:
        return [name for _, name in self._marks]

    def feed(self, ulaw: bytes, tag: Tag = None) -> None:
        if ulaw:
            self._segments.append([tag, ulaw, 0])
            self.written += len(ulaw)

    def add_mark(self, name: str) -> list[str]:
        """Queue a mark; returns the marks to echo right now: this one when no audio is
        buffered or still sounding before it and no earlier mark is waiting."""
        if not self._marks and self.buffered == 0 and not self._sounding:
            return [name]
        self._marks.append((self.written, name))
        return []

    def tick(self) -> PlayedFrame:
        # Everything consumed by earlier ticks has now finished playing.
        marks = self._pop_due(self.consumed)
        pieces: list[tuple[Tag, bytes]] = []
        need = FRAME_BYTES
        while need and self._segments:
            seg = self._segments[0]
            tag, data, off = seg
            take = data[off : off + need]
            pieces.append((tag, take))
            need -= len(take)
            if off + len(take) >= len(data):
                self._segments.popleft()
            else:
                seg[2] = off + len(take)
        got = FRAME_BYTES - need
        self.consumed += got
        self.played_audio_bytes += got
        self._sounding = got > 0  # that audio plays until the next tick
        if got == 0:
            frame = SILENCE_FRAME
        else:
            frame = b"".join(p for _, p in pieces)
            if need:
                frame += mulaw_silence(need)
        return PlayedFrame(frame=frame, pieces=pieces, marks=marks)

    def clear(self) -> ClearResult:
        """Flush unplayed audio; every pending mark is returned to be echoed immediately."""
        discarded: dict[Tag, int] = {}
        for tag, data, off in self._segments:
            discarded[tag] = discarded.get(tag, 0) + len(data) - off
        self._segments.clear()
        self.consumed = self.written
        self._sounding = False  # Twilio stops the audio at once
        marks = [name for _, name in self._marks]
        self._marks.clear()
        return ClearResult(marks=marks, discarded=discarded)

    def _pop_due(self, position: int) -> list[str]:
        due: list[str] = []
        while self._marks and self._marks[0][0] <= position:
            due.append(self._marks.popleft()[1])
        return due


class GapCounter:
    """Holes the caller hears inside a bot turn: 20 ms slots when the earpiece had nothing
    left to play although more of the same turn arrived later (the server sent it late).

    Pauses that are part of the audio (silence the TTS produced) are not holes: they arrive as
    bytes and play. A tick that ran dry part-way through its frame counts as one hole once
    the turn resumes; the end of a turn is not a hole.
    """

    def __init__(self) -> None:
        self.frames: dict[Tag, int] = {}  # hole frames per turn tag
        self._last: dict[Tag, int] = {}  # last tick that played the tag's audio
        self._short: Tag | None = None  # tag whose audio ran out part-way through a tick

    def tick(self, n: int, played: PlayedFrame) -> None:
        for tag, _ in played.pieces:
            last = self._last.get(tag)
            if last is not None and last != n:
                holes = n - last - 1 + (1 if self._short == tag else 0)
                if holes:
                    self.frames[tag] = self.frames.get(tag, 0) + holes
            self._last[tag] = n
        if played.pieces:
            self._short = played.pieces[-1][0] if played.audio_bytes < FRAME_BYTES else None


# --- audio files ---------------------------------------------------------------------------------


def pcm16_to_ulaw8k(pcm16: bytes, sample_rate: int) -> bytes:
    return pcm16_to_mulaw(resample_once(pcm16, sample_rate, SAMPLE_RATE))


def load_wav_as_ulaw8k(path: str | Path) -> bytes:
    """Any PCM WAV (8/16/24/32-bit, mono or stereo, any rate) -> 8 kHz mu-law."""
    with wave.open(str(path), "rb") as wav:
        channels = wav.getnchannels()
        width = wav.getsampwidth()
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    if width == 1:  # 8-bit WAV is unsigned
        data = audioop.bias(data, 1, -128)
    if width != 2:
        data = audioop.lin2lin(data, width, 2)
    if channels == 2:
        data = audioop.tomono(data, 2, 0.5, 0.5)
    elif channels != 1:
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
        data = samples.mean(axis=1).astype("<i2").tobytes()
    return pcm16_to_ulaw8k(data, rate)


def trim_silence(ulaw: bytes) -> bytes:
    """Drop silent 20 ms frames at both ends, so "end of speech" is the last frame with sound
    (what the server's VAD also sees) rather than a file's trailing silence."""
    n = len(ulaw) // FRAME_BYTES + (1 if len(ulaw) % FRAME_BYTES else 0)
    loud = [i for i in range(n) if is_audible(ulaw[i * FRAME_BYTES : (i + 1) * FRAME_BYTES])]
    if not loud:
        return b""
    return ulaw[loud[0] * FRAME_BYTES : (loud[-1] + 1) * FRAME_BYTES]


def write_stereo_wav(path: str | Path, caller_ulaw: bytes, bot_ulaw: bytes) -> None:
    """8 kHz 16-bit stereo: left = caller as sent, right = bot as played.

    Both tracks were recorded one 20 ms frame per tick, so sample ``k`` of each channel
    happened at the same instant.
    """
    n = max(len(caller_ulaw), len(bot_ulaw))
    left = np.frombuffer(mulaw_to_pcm16(caller_ulaw.ljust(n, b"\xff")), dtype="<i2")
    right = np.frombuffer(mulaw_to_pcm16(bot_ulaw.ljust(n, b"\xff")), dtype="<i2")
    stereo = np.empty(2 * n, dtype="<i2")
    stereo[0::2] = left
    stereo[1::2] = right
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(stereo.tobytes())
