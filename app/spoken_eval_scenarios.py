"""Scenarios of the spoken evaluation: what each simulated citizen wants and how they talk.

A scenario is one line of JSON (``tests/spoken/scenarios.jsonl``). Dates are written as a
citizen says them ("el jueves", "mañana", "el 15") and resolved against the day the
evaluation runs, so the file never goes stale. The catalog's rules (which offices provide
which service, Saturdays only where the office opens) are the scenario author's business:
an impossible request is a scenario mistake, not a product failure.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "tests" / "spoken" / "scenarios.jsonl"
KINDS = ("booking", "question", "goodbye", "human")
WEEKDAYS = ("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo")
MONTHS = (
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
    "septiembre", "octubre", "noviembre", "diciembre",
)  # fmt: skip
SERVICE_SPOKEN = {
    "cedula": "cédula",
    "pasaporte": "pasaporte",
    "licencia": "licencia de conducir",
    "actas": "acta de nacimiento",
    "no_antecedentes": "certificado de no antecedentes penales",
    "apostilla": "apostilla",
}
OFFICE_SPOKEN = {
    "SDC": "Santo Domingo Centro",
    "SDE": "Santo Domingo Este",
    "STI": "Santiago",
    "LRO": "La Romana",
}


def fold(text: str | None) -> str:
    text = unicodedata.normalize("NFKD", (text or "").lower())
    return "".join(c for c in text if not unicodedata.combining(c))


@dataclass
class Scenario:
    id: str
    kind: str
    voice: str
    seed: int = 0
    digits_voice: str | None = None  # a human voice for cédula/phone digits (spliced)
    # booking
    service: str | None = None
    office: str | None = None
    say_service: str | None = None  # how this citizen names the service
    say_office: str | None = None
    date: str | None = None  # as said: "el jueves", "mañana", "el 15"
    alt_date: str | None = None  # offered when the bot says the first day is not possible
    time: str | None = None  # "en la mañana", "a las diez", "por la tarde"
    name: str | None = None
    cedula: str | None = None
    phone: str | None = None  # None: "yes, the number I'm calling from"
    opening: list[str] = field(default_factory=list)  # facts volunteered in the first breath
    correction: dict[str, str] | None = None  # {"slot": "date", "wrong": "el lunes"}
    cedula_by: str = "voice"  # "voice" or "dtmf"
    # question
    question: str | None = None
    clarify: str | None = None  # answer when the bot asks which variant
    facts: list[list[str]] = field(default_factory=list)  # each fact: acceptable spellings
    # goodbye / human
    says: list[str] = field(default_factory=list)  # fixed lines (goodbye, human scenarios)
    tags: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scenario:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"scenario {d.get('id')}: unknown fields {sorted(unknown)}")
        s = cls(**d)
        if s.kind not in KINDS:
            raise ValueError(f"scenario {s.id}: kind must be one of {KINDS}")
        if s.kind == "booking":
            for name in ("service", "office", "date", "name", "cedula"):
                if not getattr(s, name):
                    raise ValueError(f"scenario {s.id}: booking without {name}")
        if s.kind == "question" and not (s.question and s.facts):
            raise ValueError(f"scenario {s.id}: question without text or facts")
        return s


def load_scenarios(path: Path | str = DEFAULT_FILE) -> list[Scenario]:
    out: list[Scenario] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(Scenario.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: {exc}") from exc
    ids = [s.id for s in out]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: duplicate scenario ids")
    return out


def select(scenarios: list[Scenario], spec: str | None) -> list[Scenario]:
    """``spec``: None (all), a count ("12": the first twelve) or ids/prefixes, comma-separated."""
    if not spec:
        return scenarios
    if spec.isdigit():
        return scenarios[: int(spec)]
    wanted = [w.strip() for w in spec.split(",") if w.strip()]
    chosen = [s for s in scenarios if any(s.id == w or s.id.startswith(w) for w in wanted)]
    if not chosen:
        raise ValueError(f"no scenario matches {spec!r}")
    return chosen


# --- dates as citizens say them ------------------------------------------------------------


def resolve_date(phrase: str, today: dt.date) -> set[dt.date]:
    """The days a person could mean by ``phrase`` (several when it is ambiguous, e.g. "el
    próximo martes" said on a Monday). Empty when the phrase names no day."""
    p = fold(phrase)
    if "pasado manana" in p:
        return {today + dt.timedelta(days=2)}
    if re.search(r"\bmanana\b", p) and not re.search(r"(en|por|de) la manana", p):
        return {today + dt.timedelta(days=1)}
    for i, name in enumerate(WEEKDAYS):
        if re.search(rf"\b{name}\b", p):
            ahead = (i - today.weekday()) % 7 or 7
            first = today + dt.timedelta(days=ahead)
            if re.search(r"proximo|que viene|siguiente", p) and ahead <= 2:
                return {first, first + dt.timedelta(days=7)}
            if "semana que viene" in p or "otra semana" in p:
                return {first, first + dt.timedelta(days=7)}
            return {first}
    m = re.search(r"\b(?:el|dia)\s+(\d{1,2})\b", p)
    if m:
        day = int(m.group(1))
        month = next((i + 1 for i, name in enumerate(MONTHS) if name in p), None)
        for add in range(0, 3):
            y, mo = today.year, (month or today.month) + (0 if month else add)
            if month and add:
                y += add  # "el 3 de enero" said in December: next year
            while mo > 12:
                y, mo = y + 1, mo - 12
            try:
                d = dt.date(y, mo, day)
            except ValueError:
                continue
            if d > today:
                return {d}
    return set()
