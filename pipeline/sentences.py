"""Cut a stream of text into sentences so each can be spoken as soon as it is complete.

The first sentence reaches TTS while the brain is still producing the rest; that is most of
the latency an LLM adds. Very short fragments are held back and joined to the next sentence so
TTS is not asked to say "Sí." on its own with an unnatural pause after it.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? … or a newline, followed by whitespace. Decimal numbers ("1.500"),
# times ("8:30") and common abbreviations do not end sentences.
_END_RE = re.compile(r"(?<=[.!?…:;])\s+|\n+")
_ABBREVIATIONS = (
    "sr.",
    "sra.",
    "srta.",
    "dr.",
    "dra.",
    "lic.",
    "ing.",
    "av.",
    "no.",
    "núm.",
    "ud.",
    "uds.",
    "etc.",
    "aprox.",
    "tel.",
    "c/",
    "p.",
    "a.",
    "m.",
    "e.",
    "ej.",
    "sto.",
    "dgo.",
    "sta.",
)


def _ends_with_abbreviation(text: str) -> bool:
    tail = text.rstrip().lower().rsplit(" ", 1)[-1]
    return tail in _ABBREVIATIONS


class SentenceSplitter:
    def __init__(self, min_chars: int = 12, max_chars: int = 240) -> None:
        self._buf = ""
        self._min_chars = min_chars
        self._max_chars = max_chars

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the sentences that are now complete."""
        self._buf += text
        out: list[str] = []
        start = 0
        for match in _END_RE.finditer(self._buf):
            candidate = self._buf[start : match.start()].strip()
            if not candidate:
                start = match.end()
                continue
            if candidate.endswith((":", ";")) and len(candidate) < self._max_chars // 2:
                continue  # keep lists and clauses with what follows
            if _ends_with_abbreviation(candidate) or len(candidate) < self._min_chars:
                continue
            out.append(candidate)
            start = match.end()
        self._buf = self._buf[start:]
        tail = self._buf.strip()
        if self._ends_sentence_now(tail):
            # An LLM streams "…mañana." and the next token (" ¿Desea…") comes 15-50 ms later:
            # a sentence that already ends unambiguously goes to TTS without waiting for it.
            out.append(tail)
            self._buf = ""
            return out
        if len(self._buf) > self._max_chars:
            # No sentence end in sight (a long list): cut at the last comma or space.
            cut = max(
                self._buf.rfind(", ", 0, self._max_chars), self._buf.rfind(" ", 0, self._max_chars)
            )
            if cut > self._min_chars:
                out.append(self._buf[: cut + 1].strip())
                self._buf = self._buf[cut + 1 :]
        return out

    def _ends_sentence_now(self, tail: str) -> bool:
        if len(tail) < self._min_chars or not tail.endswith(("?", "!", "…", ".")):
            return False
        if tail.endswith("."):
            before = tail[-2:-1]
            # "1." may be the start of "1.500"; "Sr." and friends are not sentence ends.
            if before.isdigit() or before == "." or _ends_with_abbreviation(tail):
                return False
        return True

    def flush(self) -> list[str]:
        rest = self._buf.strip()
        self._buf = ""
        return [rest] if rest else []
