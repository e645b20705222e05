"""Spanish text analysis shared by indexing and querying.

Callers' words arrive from speech recognition or typed without accents ("cedula", "renovacion"),
in Dominican colloquial forms ("pa", "ta"), and inflected ("renovar", "renovación"). The index and
the query must reduce all of these to the same terms, so both go through :class:`SpanishAnalyzer`.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence

import Stemmer
from bm25s.stopwords import STOPWORDS_SPANISH

# The same pattern bm25s uses by default: words of two or more characters.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_TOKEN_RE = re.compile(TOKEN_PATTERN)

# Bumped whenever tokens change, so persisted indexes built with older rules are rebuilt.
ANALYZER_VERSION = "es-4"

# Words that carry no meaning for retrieval in a caller's question. Question words such as
# "cuánto" or "dónde" are kept out of this list on purpose: query expansion uses them.
_EXTRA_STOPWORDS = (
    # Dominican and colloquial fillers
    "pa",
    "pal",
    "ta",
    "toy",
    "tamo",
    "q",
    "ke",
    "oiga",
    "mire",
    "dígame",
    "digame",
    "bueno",
    "buenas",
    "buenos",
    "hola",
    "ok",
    "okey",
    "favor",
    "gracias",
    "usted",
    "ustedes",
    "señor",
    "señora",
    "mami",
    "papi",
    "mija",
    "mijo",
    "quisiera",
    "quiero",
    "queria",
    "quería",
    "saber",
    "preguntar",
    "pregunta",
    "información",
    "informacion",
    "ahí",
    "ahi",
    "allá",
    "alla",
    "aquí",
    "aqui",
    "eso",
    "esto",
    "ese",
    "cosa",
    "vaina",
    "entonces",
    "también",
    "tambien",
    "ya",
    "si",
    "sí",
    "no",
    # question words and auxiliary verbs: every question has them, no answer is about them
    "cuánto",
    "cuánta",
    "cuántos",
    "cuántas",
    "cuanto",
    "cuanta",
    "cuantos",
    "cuantas",
    "qué",
    "cuál",
    "ir",
    "voy",
    "va",
    "van",
    "puedo",
    "puede",
    "pueden",
    "podría",
    "tengo",
    "hacer",
    "hago",
)


def fold_accents(text: str) -> str:
    """Remove diacritics (á → a, ñ → n, ü → u) so spellings without accents still match."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# Stopwords that are content here: "Este" is part of an office's name (Santo Domingo Este).
_KEEP = frozenset({"este", "esté"})


def _build_stopwords() -> frozenset[str]:
    words = {w.lower() for w in (*STOPWORDS_SPANISH, *_EXTRA_STOPWORDS)} - _KEEP
    # bm25s compares raw (accented) tokens against the list, so keep both spellings.
    return frozenset((words | {fold_accents(w) for w in words}) - _KEEP)


STOPWORDS: frozenset[str] = _build_stopwords()

# Words the Snowball stemmer splits from their family: "primer" → "prim" but "primera" →
# "primer", "actas" keeps its "s" while "acta" has none. Applied before stemming.
_STEM_FIXES = {"primer": "primer", "actas": "acta"}

# Unaccented spellings of the commonest accented suffixes, restored before stemming so that
# "renovacion" and "renovación" reduce to the same stem as "renovar".
_REACCENT = (
    (re.compile(r"cion$"), "ción"),
    (re.compile(r"sion$"), "sión"),
)


def _expansion_source() -> dict[str, tuple[str, ...]]:
    """How callers ask for something → the words the documents use for it.

    Written as plain words for readability; the analyzer stems both sides.
    """
    return {
        "cuesta": ("costo", "gratis"),
        "cobran": ("costo",),
        "precio": ("costo",),
        "pagar": ("costo",),
        "vale": ("costo",),
        "tarifa": ("costo",),
        "necesito": ("requisitos",),
        "llevar": ("requisitos",),
        "papeles": ("requisitos", "documentos"),
        "tarda": ("entrega", "duración", "tiempo"),
        "demora": ("entrega", "duración", "tiempo"),
        "dura": ("duración",),
        "dónde": ("dirección",),
        "queda": ("dirección",),
        "ubicada": ("dirección",),
        "abren": ("horario",),
        "cierran": ("horario",),
        "hora": ("horario",),
        "sacar": ("solicitar",),
        "renuevo": ("renovar",),
        "renueva": ("renovar",),
        "renuevan": ("renovar",),
        "perdí": ("pérdida", "duplicado"),
        "perdi": ("pérdida", "duplicado"),
        "perdió": ("pérdida", "duplicado"),
        "robaron": ("robo", "duplicado"),
        "niño": ("menor",),
        "niños": ("menor",),
        "adolescente": ("menor",),
        "muchacho": ("menor",),
        "muchacha": ("menor",),
        "menorcito": ("menor",),
        "vencido": ("renovar",),
        "vencida": ("renovar",),
        "venció": ("renovar",),
        "nació": ("nacimiento",),
        "nací": ("nacimiento",),
        "nacer": ("nacimiento",),
        "boda": ("matrimonio",),
        "rápido": ("urgente",),
        "rapido": ("urgente",),
        "rápida": ("urgente",),
        "rapida": ("urgente",),
        "apuro": ("urgente",),
        "sirve": ("usa",),
        "sirven": ("usa",),
        "difunto": ("defunción",),
        "falleció": ("defunción",),
        "niña": ("menor",),
        "hijo": ("menor",),
        "hija": ("menor",),
        "bebé": ("menor",),
        "papá": ("padre",),
        "mamá": ("madre",),
        "carro": ("licencia",),
        "manejar": ("licencia", "conducir"),
        "brevete": ("licencia", "conducir"),
        "taxista": ("taxis", "categoría"),
        "camionero": ("camiones", "categoría"),
        "motoconchista": ("motocicletas", "categoría"),
        "partida": ("acta",),
        "casamiento": ("matrimonio",),
        "murió": ("defunción",),
        "fallecido": ("defunción",),
        "conducta": ("antecedentes",),
        "récord": ("antecedentes",),
        "policial": ("antecedentes",),
        "queja": ("reclamación",),
        "reclamo": ("reclamación", "queja"),
        "agente": ("persona",),
        "humano": ("persona", "agente"),
        "turno": ("cita",),
        "reservar": ("cita",),
        "anular": ("cancelar",),
        "envejeciente": ("preferencial", "mayores"),
        "viejito": ("preferencial", "mayores"),
        "embarazada": ("preferencial",),
        "silla": ("accesibilidad",),
        "ruedas": ("accesibilidad",),
        "parquear": ("parqueo",),
        "estacionar": ("parqueo",),
        "estacionamiento": ("parqueo",),
        "extranjero": ("apostilla",),
        "afuera": ("apostilla", "extranjero"),
    }


class SpanishAnalyzer:
    """Lower-case, drop stopwords, stem with Snowball Spanish and fold accents.

    Folding happens after stemming because the Snowball suffix rules are written with accents;
    the re-accenting step above covers the commonest unaccented spellings.
    """

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("spanish")
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self.stopwords = STOPWORDS
        self.expansion_words: frozenset[str] = frozenset(_expansion_source())
        self._expansions = {
            self.stem(word): tuple(self.stem(t) for t in targets)
            for word, targets in _expansion_source().items()
        }

    def stem(self, word: str) -> str:
        """Reduce one lower-case word to its index term (memoised: queries repeat words)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        term = word
        fixed = _STEM_FIXES.get(word)
        if fixed is not None:
            term = fixed
        elif not word.isdigit():
            if word == fold_accents(word):
                for pattern, replacement in _REACCENT:
                    term = pattern.sub(replacement, term)
            with self._lock:  # PyStemmer objects are not safe to share between threads
                term = fold_accents(self._stemmer.stemWord(term))
        if len(self._cache) < 50_000:
            self._cache[word] = term
        return term

    def stemWords(self, words: Sequence[str]) -> list[str]:
        """The PyStemmer interface bm25s calls while tokenizing the corpus."""
        return [self.stem(w) for w in words]

    def words(self, text: str) -> list[str]:
        """Lower-case tokens minus stopwords, before stemming (what bm25s does first)."""
        return [t for t in _TOKEN_RE.findall(text.lower()) if t not in self.stopwords]

    def tokenize(self, text: str) -> list[str]:
        """Index terms of a text, in order, with repetitions."""
        return [self.stem(w) for w in self.words(text)]

    def query_terms(self, text: str) -> list[str]:
        """Index terms of a caller's question plus the document vocabulary it implies.

        Expansions are looked up on every word, stopwords included: "¿dónde queda?" asks for
        an address although "dónde" itself is too common to index.
        """
        raw = _TOKEN_RE.findall(text.lower())
        terms = [self.stem(w) for w in raw if w not in self.stopwords]
        extra = [t for w in raw for t in self._expansions.get(self.stem(w), ())]
        return terms + [t for t in dict.fromkeys(extra) if t not in terms]


_DEFAULT: SpanishAnalyzer | None = None


def default_analyzer() -> SpanishAnalyzer:
    """One shared analyzer: building the expansion table stems ~100 words."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SpanishAnalyzer()
    return _DEFAULT


def overlap(query_terms: Iterable[str], text_terms: Iterable[str]) -> int:
    """How many distinct query terms a text contains."""
    return len(set(query_terms) & set(text_terms))
