"""Would ending the caller's turn here cut them off mid-sentence? Judged from the transcript.

A model that listens to intonation (pipeline/smart_turn.py) ends most turns well, but Spanish
callers pause inside sentences exactly where intonation is least telling: before what they are
about to say ("Quiero una cita para… el martes"), and between the groups of a number they are
dictating ("cero cero uno… uno dos tres…"). This guard vetoes an early end when the words so
far cannot be a whole turn:

- the last word is one that needs a continuation (a preposition, article, conjunction,
  possessive, "que", a verb like "quiero"/"necesito", a filler like "eh"/"este");
- the transcript trails off ("…");
- a number is still being dictated (several digit groups at the end, fewer than a phone's 10);
- the bot just asked for a cédula (11 digits) or a phone number (10) and fewer digits have been
  said: this hold is *longer* than the silence rule, since callers read these in groups.

Pure function on strings, no I/O: the same code serves the live shadow log and the offline bench.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pipeline.brain.spanish_text import extract_digits_sequence, normalize, words_to_digits

GuardReason = Literal["complete", "empty", "connector", "trailing_off", "number", "slot_digits"]
Slot = Literal["cedula", "phone"]

SLOT_DIGITS: dict[str, int] = {"cedula": 11, "phone": 10}
# Silence to wait before ending when the guard holds: the silence rule's own wait for an
# unfinished sentence; longer for a cédula or phone number being dictated in groups.
HOLD_MS = 550
SLOT_HOLD_MS = 1500

# Words after which a Spanish sentence cannot end (normalized: lower case, no accents).
CONTINUATION_WORDS = frozenset(
    """
    para de del y e o u que mi mis tu tus su sus nuestro nuestra el la los las un una unos unas
    al a en con por sin sobre entre hasta desde hacia segun pero porque aunque como cuando donde
    si ni se le les lo me te nos es son era fue sea soy estoy tengo tiene quiero quisiera
    necesito necesitaba puedo pueda podria seria hay cual cuales muy mas tan otro otra cuyo
    eh em emm mm mmm este osea digamos entonces
    """.split()
)
_SLOT_PROMPTS: tuple[tuple[re.Pattern[str], Slot], ...] = (
    (re.compile(r"\bcedula\b"), "cedula"),
    (re.compile(r"\b(?:telefono|celular|numero de contacto|numero de telefono)\b"), "phone"),
)
_TOKEN = re.compile(r"[a-zñ]+|\d+")
_DIGIT_RUN_SEP = re.compile(r"[\s\-]+")


@dataclass(frozen=True)
class GuardDecision:
    hold: bool  # True: do not end the turn at this pause
    reason: GuardReason
    min_silence_ms: int = 0  # when holding: silence to wait before the turn may end
    digits: int = 0  # digits said so far in a trailing number / for the slot


def slot_from_prompt(prompt: str | None) -> Slot | None:
    """The digit slot the bot's last question asked for ("¿Me dice su cédula?" → cedula)."""
    if not prompt:
        return None
    norm = normalize(prompt)
    for pattern, slot in _SLOT_PROMPTS:
        if pattern.search(norm):
            return slot
    return None


def _trailing_digit_run(norm: str) -> tuple[int, int]:
    """(digits, groups) of the number the normalized text ends with, e.g. "es 0 0 1" → (3, 3)."""
    tokens = _DIGIT_RUN_SEP.split(words_to_digits(norm).strip())
    digits = groups = 0
    for tok in reversed(tokens):
        if not tok.isdigit():
            break
        digits += len(tok)
        groups += 1
    return digits, groups


def judge_transcript(
    text: str, *, slot: Slot | None = None, prompt: str | None = None
) -> GuardDecision:
    """Whether the caller may be finished after saying ``text`` (their whole turn so far).

    ``slot`` is the digit field being asked for, or inferred from the bot's last ``prompt``.
    """
    raw = text.strip()
    norm = normalize(raw)
    if not norm:
        return GuardDecision(True, "empty", HOLD_MS)
    slot = slot or slot_from_prompt(prompt)
    if slot is not None:
        need = SLOT_DIGITS[slot]
        said = len(extract_digits_sequence(raw))
        if 0 < said < need:
            return GuardDecision(True, "slot_digits", SLOT_HOLD_MS, said)
    if raw.endswith(("...", "…")):
        return GuardDecision(True, "trailing_off", HOLD_MS)
    question = raw.endswith("?")
    digits, groups = _trailing_digit_run(norm)
    if digits and (groups >= 2 or digits >= 3) and digits < SLOT_DIGITS["phone"]:
        return GuardDecision(True, "number", HOLD_MS, digits)
    tokens = _TOKEN.findall(norm)
    last = tokens[-1] if tokens else ""
    # "¿Qué?" / "¿Cómo?" are whole questions; a lone "Si." is almost always Whisper's "Sí".
    if not question and last in CONTINUATION_WORDS and not (last == "si" and len(tokens) == 1):
        return GuardDecision(True, "connector", HOLD_MS)
    return GuardDecision(False, "complete", 0, digits)
