"""Repair words that speech recognition misspells before they reach BM25.

Whisper writes what it hears: "sedula", "lisencia", "apostiya", "duplicao", or splits a word
in two ("pasa porte"). BM25 matches exact terms, so such a query finds nothing or the wrong
document. :class:`QueryCorrector` knows the knowledge base's own vocabulary and adds, for each
word it does not know, the vocabulary word that sounds the same in Latin-American Spanish
(seseo, b/v, silent h, ll/y, dropped "d" of "-ado") or is spelled almost the same. It only
*adds* words, so a correct query keeps its meaning.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable

from rapidfuzz import fuzz, process

from knowledge.text import fold_accents

_WORD = re.compile(r"\w+", re.UNICODE)
# Fuzzy matches below this rapidfuzz ratio are not the same word.
FUZZY_CUTOFF = 85.0
# Shorter words have too many neighbours to correct safely.
MIN_FUZZY_LEN = 5
MIN_SOUND_LEN = 4

_SOUND_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"ch"), "X"),  # keep "ch" before the silent-h rule
    (re.compile(r"h"), ""),
    (re.compile(r"qu(?=[ei])"), "k"),
    (re.compile(r"c(?=[ei])"), "s"),
    (re.compile(r"g(?=[ei])"), "j"),
    (re.compile(r"gu(?=[ei])"), "g"),
    (re.compile(r"c"), "k"),
    (re.compile(r"z"), "s"),
    (re.compile(r"v"), "b"),
    (re.compile(r"ll"), "y"),
    (re.compile(r"x"), "ks"),
    (re.compile(r"ado$"), "ao"),
    (re.compile(r"ada$"), "aa"),
    (re.compile(r"(.)\1+"), r"\1"),
)


def sound_key(word: str) -> str:
    """How a word sounds in Latin-American Spanish, as a spelling-free key."""
    key = fold_accents(word.lower())
    for pattern, replacement in _SOUND_RULES:
        key = pattern.sub(replacement, key)
    return key


class QueryCorrector:
    """Adds the knowledge base's spelling of misheard words to a query."""

    def __init__(
        self,
        texts: Iterable[str],
        keep: Iterable[str] = (),
        stem: Callable[[str], str] | None = None,
    ) -> None:
        # With a stemmer, a respelling that stems like the word heard adds nothing to BM25
        # ("cobrando" → "cobran") and is left out: it would only double that word's weight.
        self._stem = stem
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(fold_accents(w.lower()) for w in _WORD.findall(text))
        self._counts = counts
        self._known = {w for w in counts if not w.isdigit()} | {
            fold_accents(w.lower()) for w in keep
        }
        self._long = sorted(w for w in self._known if len(w) >= MIN_FUZZY_LEN)
        by_sound: dict[str, str] = {}
        for word, _count in counts.most_common():  # the commonest spelling wins a shared key
            if len(word) >= MIN_SOUND_LEN and not word.isdigit():
                by_sound.setdefault(sound_key(word), word)
        self._by_sound = by_sound

    def known(self, word: str) -> bool:
        return fold_accents(word.lower()) in self._known

    def correction(self, word: str) -> str | None:
        """The vocabulary word a misheard ``word`` stands for, or None."""
        folded = fold_accents(word.lower())
        if folded in self._known or folded.isdigit() or len(folded) < MIN_SOUND_LEN:
            return None
        by_sound = self._by_sound.get(sound_key(folded))
        if by_sound is not None:
            return by_sound
        if len(folded) < MIN_FUZZY_LEN:
            return None
        matches = process.extract(
            folded, self._long, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF, limit=5
        )
        if not matches:
            return None
        # Equally close spellings: the word the documents use most ("oficia" → "oficina").
        return max(matches, key=lambda m: (round(m[1]), self._counts[m[0]]))[0]

    def corrections(self, query: str) -> list[str]:
        """Vocabulary words to add to ``query``: respellings and words split in two."""
        words = _WORD.findall(query)
        extra: list[str] = []
        for word in words:
            fixed = self.correction(word)
            if fixed and not (self._stem and self._stem(fixed) == self._stem(word.lower())):
                extra.append(fixed)
        for first, second in itertools.pairwise(words):
            if len(first) < 2 or len(second) < 2 or (self.known(first) and self.known(second)):
                continue  # two real words side by side ("pasaporte vencido") stay two words
            # Only exact or same-sound joins: a fuzzy one would glue articles onto words.
            joined = fold_accents((first + second).lower())
            if len(joined) < 6:
                continue
            fixed = joined if joined in self._known else self._by_sound.get(sound_key(joined))
            if fixed:
                extra.append(fixed)
        return list(dict.fromkeys(extra))

    def correct(self, query: str) -> str:
        """``query`` followed by the corrections it needs (unchanged when it needs none)."""
        extra = self.corrections(query)
        return f"{query} {' '.join(extra)}" if extra else query
