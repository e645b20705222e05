"""Small audio helpers shared by the cloud voices: byte alignment and streaming resampling.

Cloud providers stream raw PCM16 over HTTP, and network chunks split samples anywhere; these
helpers keep the odd byte for the next chunk and resample with filter state carried across
chunks, so the joins are click-free and the tail of the sentence is flushed, not lost.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import soxr


class PcmStream:
    """PCM16 bytes in at ``in_rate``, whole samples out at ``out_rate``.

    Quality "HQ": the voice is what the caller hears, and soxr's extra ~40 ms of filter delay
    over "MQ" is paid once per sentence (it is flushed at the end), not once per chunk.
    """

    __slots__ = ("_carry", "_in_rate", "_out_rate", "_stream")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._carry = b""
        self._stream = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
            if in_rate != out_rate
            else None
        )

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def push(self, data: bytes) -> bytes:
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) % 2:
            self._carry = data[-1:]
            data = data[:-1]
        if self._stream is None or not data:
            return data
        return self._stream.resample_chunk(np.frombuffer(data, dtype=np.int16)).tobytes()

    def finish(self) -> bytes:
        """The resampler's held-back tail (a dangling half sample is dropped)."""
        self._carry = b""
        if self._stream is None:
            return b""
        return self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes()


def nearest_rate(wanted: int, offered: Iterable[int]) -> int:
    """The offered rate to resample from: ``wanted`` itself when offered, else the lowest
    offered rate above it (no band is lost), else the highest one."""
    rates = sorted(set(offered))
    if wanted in rates:
        return wanted
    above = [r for r in rates if r > wanted]
    return above[0] if above else rates[-1]
