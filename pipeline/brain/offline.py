"""The offline brain: a rule-based Spanish dialogue engine that needs no network and no keys.

This first version greets, answers the office's most common questions, hands over to a human
on request and says goodbye. It implements the same ``Brain`` interface the LLM brain will, so
the session cannot tell them apart.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pipeline.brain.base import (
    BrainOutput,
    CallContext,
    EndCall,
    TextChunk,
    Transfer,
    UserInput,
)


def fold(text: str) -> str:
    """Lowercase without accents (keeping ñ), for matching what STT heard."""
    text = text.lower().replace("ñ", "\0")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).replace("\0", "ñ")
    return re.sub(r"[^\w\s]", " ", text)


@dataclass(frozen=True)
class Answer:
    keywords: tuple[str, ...]  # any of these (folded) words or phrases
    text: str


FAQ: tuple[Answer, ...] = (
    Answer(
        ("hora", "horario", "abren", "abre", "cierran", "cierra", "atienden"),
        "Nuestras oficinas atienden de lunes a viernes, de ocho de la mañana a cuatro de la "
        "tarde, y la oficina principal también abre los sábados de ocho de la mañana a doce "
        "del mediodía.",
    ),
    Answer(
        ("direccion", "donde queda", "donde estan", "ubicad", "ubicacion", "como llego"),
        "La oficina principal queda en la Avenida 27 de Febrero número 419, en Santo Domingo. "
        "También tenemos oficinas en Santiago y en La Romana.",
    ),
    Answer(
        ("cedula",),
        "Para renovar la cédula necesita su cédula anterior o un acta de nacimiento, y pagar "
        "la tasa correspondiente. El trámite se hace con cita previa.",
    ),
    Answer(
        ("pasaporte",),
        "Para el pasaporte necesita su cédula vigente, una foto reciente y el recibo de pago. "
        "Los menores de edad deben ir con ambos padres.",
    ),
    Answer(
        ("cita", "turno", "agendar", "reservar"),
        "Con gusto. Las citas se dan de lunes a sábado. Dígame qué trámite desea hacer y le "
        "busco un horario disponible.",
    ),
)

TRANSFER_WORDS = ("agente", "persona", "operador", "operadora", "humano", "representante")
GOODBYE_WORDS = ("adios", "hasta luego", "chao", "eso es todo", "nada mas", "bye", "colgar")
THANKS_WORDS = ("gracias",)


class OfflineBrain:
    name = "offline"

    def __init__(
        self, office_name: str = "Punto Ciudadano", timezone: str = "America/Santo_Domingo"
    ):
        self._office = office_name
        self._tz = ZoneInfo(timezone)

    async def greeting(self, ctx: CallContext) -> str:
        hour = datetime.now(self._tz).hour
        salute = "Buenos días" if hour < 12 else "Buenas tardes" if hour < 19 else "Buenas noches"
        return (
            f"{salute}, gracias por llamar a {self._office}. Le habla Taína, su asistente "
            "virtual. ¿En qué le puedo ayudar?"
        )

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        text = f" {fold(user.text)} "
        if user.dtmf == "0" or any(f" {w} " in text for w in TRANSFER_WORDS):
            yield TextChunk("Con gusto. Le comunico con un agente, por favor espere un momento.")
            yield Transfer(reason="caller-request")
            return
        answer = self._faq(text)
        is_goodbye = any(f" {w} " in text for w in GOODBYE_WORDS)
        if answer is None and (is_goodbye or self._only_thanks(text)):
            yield TextChunk(f"Gracias por llamar a {self._office}. ¡Que tenga un buen día!")
            yield EndCall(reason="completed")
            return
        if answer is None:
            misses = int(ctx.state.get("misses", 0)) + 1
            ctx.state["misses"] = misses
            yield TextChunk(
                "Disculpe, no tengo esa información. Puedo ayudarle con horarios, direcciones, "
                "requisitos de trámites y citas. ¿Qué desea saber?"
            )
            return
        ctx.state["misses"] = 0
        yield TextChunk(answer.text)
        yield TextChunk(" ¿Le puedo ayudar en algo más?")

    @staticmethod
    def _faq(text: str) -> Answer | None:
        best: tuple[int, Answer] | None = None
        for answer in FAQ:
            hits = sum(1 for k in answer.keywords if k in text)
            if hits and (best is None or hits > best[0]):
                best = (hits, answer)
        return best[1] if best else None

    @staticmethod
    def _only_thanks(text: str) -> bool:
        words = text.split()
        return bool(words) and all(
            w in ("gracias", "muchas", "muy", "amable", "ok", "bien") for w in words
        )
