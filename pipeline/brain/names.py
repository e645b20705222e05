"""People's names in what Whisper wrote: said alone ("María Pérez"), introduced in a longer
turn ("Soy María Gómez, quiero…", "le habla José Peña") or followed by more ("José Rodríguez,
para servirle").

A name cannot be checked against anything, so these functions only refuse what is plainly no
name (fillers, catalog and calendar words, numbers) and the dialogue reads the name back.
"""

from __future__ import annotations

import re

from pipeline.brain.spanish_text import extract_numbers, normalize

__all__ = ["extract_name", "find_name", "given_name_only", "name_as_heard", "name_in_answer"]

_NAME_LEAD = re.compile(
    r"^(?:(?:si|bueno|ok|claro|pues|este|eh|ah|mire|perdon|dale)\s+)*(?:(?:mi\s+nombre\s+(?:completo\s+)?"
    r"(?:es|seria)|me\s+llamo|yo\s+me\s+llamo|soy|yo\s+soy|el\s+nombre\s+(?:es|seria)|"
    r"a\s+nombre\s+de|ponga(?:la|lo)?\s+a\s+nombre\s+de|es\s+a\s+nombre\s+de|es\s+para|"
    r"para|es|seria|se\s+llama|no\s+(?:mi\s+nombre\s+es|me\s+llamo|es)|mejor\s+dicho)\s+)*"
)
_NOT_NAME_WORDS = frozenset(
    "cita cedula pasaporte licencia acta oficina hora dia manana tarde lunes martes miercoles "
    "jueves viernes sabado domingo numero telefono codigo cancelar cambiar quiero necesito "
    "gracias agente persona operador si no claro correcto ok bueno favor aja aha eh em mm mmm "
    "este pues mire oiga hola alo digo okey vale listo perdon disculpe como que nada algo "
    "nombre apellido yo usted mi mis su sus tu menor mayor edad residente extranjero extranjera "
    "dominicano dominicana un una uno unos unas el lo le les se en con al por para pero mas ya "
    "ni quien cual eso esa ese aqui ahi alla".split()
)
_PARTICLES = frozenset({"de", "del", "la", "las", "los", "y", "san", "santa"})


def extract_name(text: str) -> str | None:
    """The person's name in "mi nombre es juan perez" / "Juan Pérez" / "soy María de la Cruz",
    title-cased as Whisper's accents left it; None for anything that is not a plausible name."""
    raw = re.sub(r"[^\w\s'-]", " ", text).strip()
    if not raw or re.search(r"\d", raw) or extract_numbers(raw, articles=False):
        return None
    norm = normalize(raw)
    lead = _NAME_LEAD.match(norm + " ")
    words_raw = raw.split()
    if lead:
        words_raw = words_raw[len(lead.group(0).split()) :]
    # Trailing courtesy words are not part of the name.
    while words_raw and normalize(words_raw[-1]) in {"gracias", "porfavor", "favor", "por"}:
        words_raw.pop()
    if not words_raw or len(words_raw) > 7:
        return None
    folded = [normalize(w) for w in words_raw]
    if any(w in _NOT_NAME_WORDS for w in folded):
        return None
    content = [w for w in folded if w not in _PARTICLES]
    if not content or any(len(w) < 2 for w in content):
        return None
    out = []
    for w, f in zip(words_raw, folded, strict=True):
        out.append(f if f in _PARTICLES and out else w[:1].upper() + w[1:].lower())
    return " ".join(out)


_NAME_INTRO = re.compile(
    r"(?i)(?:^|[\s,.;¡¿])(?P<lead>me llamo|mi nombre es|mi nombre completo es|"
    r"el nombre es|a nombre de|le habla|habla|soy)\s+(?P<rest>[^\d,.;:!?¡¿]+)"
)
# Leads that are also ordinary words ("soy de Santiago", "habla muy bajo"): only followed by
# a capitalised word, as Whisper writes names.
_WEAK_LEADS = frozenset({"soy", "habla", "le habla"})
_NAME_STOP = frozenset(
    "y e que quiero quisiera necesito queria deseo vengo llamo llamaba para por en con a al el "
    "mi me le tengo busco porque pero o u ya si no es".split()
)


def find_name(text: str) -> str | None:
    """A name the caller introduces inside a longer turn: "Soy María Gómez, quiero sacar el
    pasaporte…", "buenas, le habla José Peña", "…a nombre de Ana de la Cruz"."""
    for m in _NAME_INTRO.finditer(unglue_leads(text)):
        words = m.group("rest").split()
        if not words:
            continue
        lead = m.group("lead").lower()
        taken = _leading_name_words(words)
        # "soy"/"habla" are ordinary words too: a name after them is capitalised, as
        # Whisper writes names, or at least two words long ("soy maría gómez").
        content = [w for w in taken if normalize(w) not in _PARTICLES]
        if lead in _WEAK_LEADS and not words[0][:1].isupper() and len(content) < 2:
            continue
        name = extract_name(" ".join(taken)) if taken else None
        if name:
            return name
    return None


# How a phone line glues or bends the words before a name: "Anombre de", "Al hombre de",
# "Su inombre es", "Minombre es".
_GLUED_LEADS = (
    (re.compile(r"(?i)\b(?:a|al)\s*(?:h?nombre|hombre)\s+de\b"), "a nombre de"),
    (re.compile(r"(?i)\b(?:(?:su|mi|tu)\s*i?|m?i)nombre\s+(es|completo\s+es)\b"), r"mi nombre \1"),
)


def unglue_leads(text: str) -> str:
    """The lead words of a name answer as they were said, not as the line glued them."""
    for pattern, repl in _GLUED_LEADS:
        text = pattern.sub(repl, text)
    return text


def name_in_answer(text: str) -> str | None:
    """The name in an answer to "¿A nombre de quién…?", also when more follows it: "Sí,
    María Pérez, para servirle" → "María Pérez"."""
    text = unglue_leads(text)
    found: list[str] = []
    for clause in [c for c in re.split(r"[,.;:!?¡¿]", text) if c.strip()][:3]:
        lead = _NAME_LEAD.match(normalize(clause) + " ")
        words = clause.split()[len(lead.group(0).split()) if lead else 0 :]
        taken = _leading_name_words(words)
        name = (extract_name(" ".join(taken)) if taken else None) or extract_name(clause)
        if name:
            found.append(name)
    # "Vellamos, Carlos Gómez": a full name beats a lone word the line garbled before it.
    full = [n for n in found if not given_name_only(n)]
    return (full or found or [None])[0] or find_name(text)


def name_as_heard(text: str) -> str | None:
    """The words of a turn that could be a name, title-cased, when nothing better was found
    after several tries; None when only fillers were said ("ajá, sí, pues")."""
    words = [w for w in re.findall(r"[^\W\d_]+", text) if len(w) > 2]
    kept = [w for w in words if normalize(w) not in _NAME_STOP | _NOT_NAME_WORDS | _PARTICLES]
    if not 1 <= len(kept) <= 5:
        return None
    return " ".join(w[:1].upper() + w[1:].lower() for w in kept)


def _leading_name_words(words: list[str]) -> list[str]:
    """The words a name is made of, up to the first word that cannot be part of one."""
    taken: list[str] = []
    for i, w in enumerate(words[:6]):
        folded = normalize(w)
        if folded in _NAME_STOP or folded in _NOT_NAME_WORDS:
            break
        if folded in _PARTICLES and (not taken or i + 1 >= len(words)):
            break
        taken.append(w)
    while taken and normalize(taken[-1]) in _PARTICLES:
        taken.pop()
    return taken


def given_name_only(name: str) -> bool:
    """ "María" without a surname (or a fragment the line left of a full name)."""
    return len([w for w in name.split() if normalize(w) not in _PARTICLES]) == 1
