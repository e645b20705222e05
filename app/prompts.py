"""The LLM's system prompt: a built-in default and admin-editable versions in the database.

Staff tune how the assistant speaks without a deploy: every edit is a new numbered version in
``system_prompts`` and at most one version is active (a partial unique index guarantees it).
Calls read the active text through :meth:`PromptStore.active`, which caches it for a few
seconds so a busy office does not query the database on every caller turn, and which never
fails: with no version stored, or with the database down, the built-in default is used — a
caller must get an answer either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.storage.database import Database
from app.storage.models import SystemPrompt

log = logging.getLogger("taina.prompts")

DEFAULT_SYSTEM_PROMPT = """\
Usted es Taína, la asistente virtual telefónica de una oficina de servicios al ciudadano de la \
República Dominicana. Atiende llamadas en español: responde preguntas sobre los servicios de la \
oficina (cédula, pasaporte, licencia de conducir, actas del estado civil, certificado de no \
antecedentes y otros trámites) y agenda, cambia o cancela citas.

Cómo hablar:
- Trate siempre de "usted", con cortesía y calidez dominicana, sin exagerar.
- Su respuesta se convierte en voz: use frases cortas y sencillas, de una o dos oraciones por \
turno. Nada de Markdown, listas, viñetas, asteriscos, emojis ni enlaces.
- Diga las cantidades, horas y fechas como se dicen en voz alta: "el lunes 23 de noviembre a \
las diez de la mañana", "dos mil ochocientos pesos". No use formatos como 23/11 o 10:00.
- Pregunte una sola cosa a la vez y espere la respuesta.
- Si la persona le interrumpe, no repita todo: retome desde lo que ella necesita.

Cómo trabajar:
- Antes de responder una pregunta sobre requisitos, costos, horarios, direcciones o reglas, \
use la herramienta search_knowledge. Responda solo con lo que digan las fuentes; si no está \
ahí, dígalo con honestidad. Nunca invente datos, precios, direcciones ni horarios. Lea el \
campo "answer" tal cual: ya está en forma hablada y cabe en dos oraciones. Si la herramienta \
devuelve "clarify", haga esa pregunta y, con la opción que elija la persona, vuelva a buscar \
añadiendo la opción a la consulta. Después de responder, pregunte si desea saber algo más.
- Para una cita: averigüe el trámite, la oficina y el día u hora que prefiere; consulte \
check_availability y ofrezca como máximo dos o tres horarios. Luego pida el nombre completo y \
la cédula.
- Antes de reservar, lea de vuelta el trámite, la oficina, la fecha y la hora, el nombre y la \
cédula, y pida confirmación. Solo después de un "sí" claro use book_appointment. Al final, \
diga el código de confirmación y la fecha de forma natural.
- Para cambiar o cancelar una cita, pida el código de confirmación o busque las citas con \
find_my_appointments, confirme con la persona y luego actúe.
- Si la persona pide hablar con un agente, o usted no puede ayudarle, use transfer_to_human. \
Si la herramienta responde que no hay agente disponible, dígalo una sola vez y ofrezca el \
teléfono y el horario de la oficina, o seguir ayudando; nunca prometa una transferencia.
- Si no entendió algo dos veces, ofrezca opciones cortas ("¿cédula, pasaporte o licencia?") en \
vez de repetir la misma pregunta.
- Cuando la persona no necesite nada más, despídase en una frase y use end_call.
- No hable de temas ajenos a la oficina; redirija con amabilidad.
"""


@dataclass(frozen=True)
class PromptVersion:
    version: int
    text: str
    created_at: datetime
    created_by: str | None
    active: bool


class PromptNotFound(LookupError):
    """No stored prompt has that version (or there is nothing to roll back to)."""


class PromptStore:
    """Versioned system prompts in the ``system_prompts`` table, with a built-in default."""

    def __init__(
        self,
        db: Database | None,
        *,
        default: str = DEFAULT_SYSTEM_PROMPT,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self.default = default
        self._cache_s = cache_s
        self._clock = clock
        self._cached: str | None = None
        self._cached_at = float("-inf")
        self._refresh_lock = asyncio.Lock()

    # --- reading (hot path: every LLM turn) ---------------------------------------------------
    async def active(self) -> str:
        """The active prompt's text; the default when none is active or the DB is down."""
        if self._cached is not None and self._clock() - self._cached_at < self._cache_s:
            return self._cached
        async with self._refresh_lock:  # one query per expiry, however many calls are live
            if self._cached is not None and self._clock() - self._cached_at < self._cache_s:
                return self._cached
            text = await self._load_active()
            self._cached, self._cached_at = text, self._clock()
            return text

    async def _load_active(self) -> str:
        if self._db is None:
            return self.default
        try:
            async with self._db.session() as s:
                text = await s.scalar(
                    select(SystemPrompt.text).where(SystemPrompt.active.is_(True)).limit(1)
                )
        except (SQLAlchemyError, OSError) as exc:
            # Keep the last good text if there is one: a prompt edit should not be undone by
            # a database hiccup in the middle of a call.
            fallback = "last known" if self._cached else "built-in default"
            log.warning("system prompt unavailable (%s); using the %s prompt", exc, fallback)
            return self._cached or self.default
        return text if text and text.strip() else self.default

    def invalidate(self) -> None:
        """Forget the cached text so the next turn reads the database again."""
        self._cached, self._cached_at = None, float("-inf")

    # --- administration -----------------------------------------------------------------------
    async def create_version(self, text: str, author: str | None = None) -> int:
        """Store ``text`` as the next version (not active yet) and return its number."""
        if not text.strip():
            raise ValueError("a system prompt cannot be empty")
        db = self._require_db()
        for attempt in range(3):
            try:
                async with db.session(write=True) as s:
                    latest = await s.scalar(select(func.max(SystemPrompt.version)))
                    version = (latest or 0) + 1
                    s.add(SystemPrompt(version=version, text=text, created_by=author))
                return version
            except IntegrityError:
                # Two admins saving at once on Postgres: the loser takes the next number.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def activate(self, version: int) -> None:
        """Make ``version`` the prompt every call uses from its next turn on."""
        db = self._require_db()
        async with db.session(write=True) as s:
            exists = await s.scalar(select(SystemPrompt.id).where(SystemPrompt.version == version))
            if exists is None:
                raise PromptNotFound(f"no system prompt version {version}")
            # Deactivate first: the partial unique index allows one active row at any moment.
            await s.execute(
                update(SystemPrompt).where(SystemPrompt.active.is_(True)).values(active=False)
            )
            await s.execute(
                update(SystemPrompt).where(SystemPrompt.version == version).values(active=True)
            )
        self.invalidate()

    async def use_default(self) -> None:
        """Deactivate every stored version: calls use the built-in default again."""
        db = self._require_db()
        async with db.session(write=True) as s:
            await s.execute(
                update(SystemPrompt).where(SystemPrompt.active.is_(True)).values(active=False)
            )
        self.invalidate()

    async def list_versions(self) -> list[PromptVersion]:
        """All stored versions, newest first."""
        db = self._require_db()
        async with db.session() as s:
            rows = (
                await s.scalars(select(SystemPrompt).order_by(SystemPrompt.version.desc()))
            ).all()
        return [
            PromptVersion(
                version=row.version,
                text=row.text,
                created_at=row.created_at,
                created_by=row.created_by,
                active=row.active,
            )
            for row in rows
        ]

    async def active_version(self) -> int | None:
        """The active version's number; None when the built-in default is in use."""
        db = self._require_db()
        async with db.session() as s:
            return await s.scalar(
                select(SystemPrompt.version).where(SystemPrompt.active.is_(True)).limit(1)
            )

    async def rollback(self) -> int:
        """Activate the version before the active one and return its number.

        Raises :class:`PromptNotFound` when nothing is active or the active version is the
        oldest one.
        """
        db = self._require_db()
        async with db.session() as s:
            current = await s.scalar(
                select(SystemPrompt.version).where(SystemPrompt.active.is_(True)).limit(1)
            )
            if current is None:
                raise PromptNotFound("no active system prompt to roll back from")
            previous = await s.scalar(
                select(func.max(SystemPrompt.version)).where(SystemPrompt.version < current)
            )
        if previous is None:
            raise PromptNotFound(f"version {current} is the oldest system prompt")
        await self.activate(previous)
        return previous

    def _require_db(self) -> Database:
        if self._db is None:
            raise RuntimeError("prompt versions need a database")
        return self._db
