"""The one function the Pico worker process runs (kept tiny: the process imports only this).

``py_nanotts.speak`` holds the GIL for its whole synthesis; in the server process that would
stall the event loop (and every other call's audio) for tens of milliseconds per sentence,
hundreds under CPU contention. A separate process makes Pico's work invisible to the loop.
"""

from __future__ import annotations

from typing import Any

_tts: Any = None


def speak(text: str, voice: str, speed: float, pitch: float, volume: float) -> bytes:
    """PCM16 16 kHz mono bytes for ``text`` (Pico markup allowed)."""
    global _tts
    if _tts is None:
        import py_nanotts

        _tts = py_nanotts.NanoTTS()
    return bytes(_tts.speak(text, voice=voice, speed=speed, pitch=pitch, volume=volume))
