"""G.711 mu-law and streaming resampling at the transport edge.

One ``StreamResampler`` per call per direction: ``audioop.ratecv`` carries filter state between
calls, so 20 ms frames join without clicks at the frame boundaries.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 13):  # pragma: no cover - audioop-lts provides the same module
    import audioop
else:  # pragma: no cover - stdlib on 3.11/3.12 (deprecated, still the fastest option)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

MULAW_SILENCE = 0xFF
SAMPLE_WIDTH = 2  # PCM16


def mulaw_to_pcm16(data: bytes) -> bytes:
    return audioop.ulaw2lin(data, SAMPLE_WIDTH)


def pcm16_to_mulaw(data: bytes) -> bytes:
    return audioop.lin2ulaw(data, SAMPLE_WIDTH)


def mulaw_silence(n_bytes: int) -> bytes:
    return bytes([MULAW_SILENCE]) * n_bytes


def rms(pcm16: bytes) -> int:
    return audioop.rms(pcm16, SAMPLE_WIDTH) if pcm16 else 0


class StreamResampler:
    """Stateful PCM16 mono resampler for one direction of one call."""

    __slots__ = ("_in_rate", "_out_rate", "_state")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._in_rate = in_rate
        self._out_rate = out_rate
        self._state: object | None = None

    @property
    def passthrough(self) -> bool:
        return self._in_rate == self._out_rate

    def process(self, pcm16: bytes) -> bytes:
        if self._in_rate == self._out_rate or not pcm16:
            return pcm16
        out, self._state = audioop.ratecv(
            pcm16, SAMPLE_WIDTH, 1, self._in_rate, self._out_rate, self._state
        )
        return out

    def reset(self) -> None:
        """Forget history, e.g. after a ``clear`` so the next reply starts clean."""
        self._state = None


def resample_once(pcm16: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample a whole buffer (not a stream)."""
    if in_rate == out_rate:
        return pcm16
    return audioop.ratecv(pcm16, SAMPLE_WIDTH, 1, in_rate, out_rate, None)[0]
