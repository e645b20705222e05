"""The offline brain: the default without an LLM key and the LLM brain's fallback mid-call.

It is the dialogue engine of :mod:`pipeline.brain.dialogue` under the name the rest of the
code knows. With ``tools`` (an :class:`~pipeline.brain.office_tools.OfficeTools`) it answers
from the knowledge base and books, moves, cancels and finds appointments; without, it still
greets, answers the commonest questions, hands over to a person and says goodbye.
``can_transfer=False`` (no transfer number configured) makes it offer the office's phone and
hours instead of promising a person it cannot reach.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pipeline.brain.catalog import Catalog
from pipeline.brain.dialogue import OfflineDialogueBrain
from pipeline.brain.tools import Tools

__all__ = ["OfflineBrain"]


class OfflineBrain(OfflineDialogueBrain):
    name = "offline"
    # Speech the recogniser found no words in is passed on as an empty turn, which the
    # dialogue answers by asking its pending question again, shorter (see CallSession).
    answers_unheard = True

    def __init__(
        self,
        tools: Tools | None = None,
        office_name: str = "Punto Ciudadano",
        timezone: str = "America/Santo_Domingo",
        clock: Callable[[], datetime] | None = None,
        *,
        catalog: Catalog | None = None,
        can_transfer: bool = True,
    ) -> None:
        super().__init__(
            tools, office_name, timezone, clock, catalog=catalog, can_transfer=can_transfer
        )
