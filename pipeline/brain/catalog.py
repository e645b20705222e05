"""What the office offers, in the shape a dialogue needs: codes, spoken names, and the words
callers use for each service and office.

The data itself belongs to the deployment (``app/booking.py`` builds the sample office's
catalog from its knowledge base); this module only defines the shape and the matching, so the
brains stay independent of the app and its database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from pipeline.brain.heard import (
    Vocabulary,
    build_vocabulary,
    repair_for_matching,
    repair_transcript,
)
from pipeline.brain.spanish_text import normalize

__all__ = ["Catalog", "CatalogOffice", "CatalogService", "join_es"]


@dataclass(frozen=True, slots=True)
class CatalogService:
    code: str  # the tool contract: cedula, pasaporte, licencia, actas, no_antecedentes, apostilla
    name: str  # as written: "Cédula de identidad y electoral"
    spoken: str  # as said in a sentence: "la cédula", "el pasaporte"
    aliases: tuple[str, ...]  # how callers say it (matched on normalised text)
    duration_min: int = 30
    fee_text: str | None = None
    description: str | None = None
    offices: tuple[str, ...] = ()  # office codes that provide it; empty = all
    plural: bool = False  # "las actas": agreement in "no hace ..." sentences


@dataclass(frozen=True, slots=True)
class CatalogOffice:
    code: str
    name: str  # "Punto Ciudadano Santiago"
    short: str  # "Santiago": how the office is named in a question ("¿Santiago o La Romana?")
    aliases: tuple[str, ...]
    address: str = ""
    city: str = ""
    phone: str | None = None
    saturday: bool = False  # open on Saturday mornings
    hours: dict[str, str] = field(default_factory=dict)


_ANY_OFFICE = re.compile(
    r"\b(?:cualquier(?:a)?|la que sea|donde sea|me da igual|da lo mismo|no importa|"
    r"la mas cerca(?:na)?|la que tenga|la que haya|la primera que haya)\b"
)


@dataclass(frozen=True)
class Catalog:
    services: tuple[CatalogService, ...]
    offices: tuple[CatalogOffice, ...]

    # --- lookups ----------------------------------------------------------------------------
    def service(self, code: str | None) -> CatalogService | None:
        return self._services_by_code.get(code or "")

    def office(self, code: str | None) -> CatalogOffice | None:
        return self._offices_by_code.get((code or "").upper())

    def offices_for(self, service_code: str) -> list[CatalogOffice]:
        """Offices that provide the service, in catalog order."""
        service = self.service(service_code)
        if service is None:
            return []
        if not service.offices:
            return list(self.offices)
        return [o for o in self.offices if o.code in service.offices]

    def offers(self, office_code: str, service_code: str) -> bool:
        return any(o.code == office_code.upper() for o in self.offices_for(service_code))

    def not_offered_sentence(self, office_code: str, service_code: str) -> str:
        """ "En Santo Domingo Este no se hace el trámite de pasaporte. Ese servicio se da en
        Santo Domingo Centro y en Santiago." """
        office = self.office(office_code)
        service = self.service(service_code)
        where = [o.short for o in self.offices_for(service_code)]
        name = office.short if office else office_code
        what = service.spoken if service else service_code
        if not where:
            return f"En {name} no se hace el trámite de {what}."
        only = "solo " if len(where) == 1 else ""
        return (
            f"En {name} no se hace el trámite de {what}. Ese servicio se da {only}en "
            f"{join_es(where)}."
        )

    # --- understanding what callers (or an LLM) say -------------------------------------------
    def resolve_service(self, value: str | None) -> str | None:
        """A service code from a code, a name or a caller's words ("renovar la cédula")."""
        if not value:
            return None
        if value in self._services_by_code:
            return value
        # A bare value is the answer to "which service?": "la fe" is the cédula there.
        found = self.find_services(normalize(repair_transcript(value, self, "service")))
        return found[0] if found else None

    def resolve_office(self, value: str | None) -> str | None:
        """An office code from a code, a name or a caller's words; None when ambiguous."""
        if not value:
            return None
        if value.upper() in self._offices_by_code:
            return value.upper()
        found = self.find_offices(normalize(repair_transcript(value, self, "office")))
        return found[0] if len(found) == 1 else None

    def find_services(self, norm: str, *, exact: bool = False) -> list[str]:
        """Service codes mentioned in normalised text, in order of mention. Misheard words
        ("sédula", "pasa porte", "antesedentes", "renovar mi fe") count as the service,
        unless ``exact``."""
        text = norm if exact else repair_for_matching(norm, self)
        return self._find(text, self._service_patterns)

    def find_offices(self, norm: str, *, exact: bool = False) -> list[str]:
        """Office codes mentioned in normalised text. "santo domingo" alone matches both
        Santo Domingo offices, which the caller then has to tell apart. Misheard words
        ("oficia principal", "Santiago de los Cabayeros") count as the office, unless
        ``exact``."""
        text = norm if exact else repair_for_matching(norm, self)
        return self._find(text, self._office_patterns)

    @staticmethod
    def says_any_office(norm: str) -> bool:
        return bool(_ANY_OFFICE.search(norm))

    # --- internals ----------------------------------------------------------------------------
    @cached_property
    def heard_vocabulary(self) -> Vocabulary:
        """The catalog's words spelled and keyed by sound, for :mod:`pipeline.brain.heard`."""
        return build_vocabulary(self)

    @cached_property
    def _services_by_code(self) -> dict[str, CatalogService]:
        return {s.code: s for s in self.services}

    @cached_property
    def _offices_by_code(self) -> dict[str, CatalogOffice]:
        return {o.code.upper(): o for o in self.offices}

    @cached_property
    def _service_patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(s.code, _alias_regex(s.aliases)) for s in self.services]

    @cached_property
    def _office_patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(o.code, _alias_regex(o.aliases)) for o in self.offices]

    @staticmethod
    def _find(norm: str, patterns: list[tuple[str, re.Pattern[str]]]) -> list[str]:
        hits: list[tuple[int, int, str]] = []
        for code, pattern in patterns:
            m = pattern.search(norm)
            if m:
                hits.append((m.start(), -len(m.group(0)), code))
        hits.sort()
        # A longer alias starting at the same place wins ("santo domingo este" over "santo
        # domingo"), but both survive when they are genuinely different mentions.
        out: list[str] = []
        taken: list[tuple[int, int]] = []
        for start, neg_len, code in hits:
            end = start - neg_len
            if any(s <= start and end <= e and e - s > end - start for s, e in taken):
                continue
            taken.append((start, end))
            if code not in out:
                out.append(code)
        return out


def join_es(items: list[str], last: str = "y") -> str:
    """ "a", "a y b", "a, b y c" (``last`` may be "o", "y en", …)."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def _alias_regex(aliases: tuple[str, ...]) -> re.Pattern[str]:
    words = sorted({normalize(a) for a in aliases if a.strip()}, key=len, reverse=True)
    if not words:
        return re.compile(r"(?!x)x")
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b")
