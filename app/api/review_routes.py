"""Reviewing one call: the per-turn timeline and passages, and staff tags and notes.

Roles: agents and admins both read the review, add and remove tags and write notes (reviewing
calls is the agents' daily work); a note can be deleted by its author or by an admin. Every
change is written to the audit log.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from app.api.deps import ApiRoute, ServicesDep
from app.auth import AgentUser, Principal, has_role
from app.call_review import STAGES, recording_origin, review_turns
from app.personal_data import Redactor
from app.services import Services
from app.storage.models import AuditLog, Call, CallNote, CallTag

router = APIRouter(prefix="/calls", tags=["calls"], route_class=ApiRoute)

MAX_TAGS_PER_CALL = 20
MAX_NOTE_CHARS = 4000
# Every note is read with the review; without a bound one account could make it unreadable.
MAX_NOTES_PER_CALL = 200


class PassageOut(BaseModel):
    source: str  # knowledge document, e.g. "cedula.md"
    heading: str  # section heading path inside it
    score: float | None
    used: bool  # the passage the spoken answer came from


class TurnReviewOut(BaseModel):
    seq: int
    speaker: str
    start_s: float | None  # seconds from the start of the recording (or of the call)
    end_s: float | None
    first_byte_ms: float | None  # bot: end of the caller's speech → first reply audio
    stages: dict[str, float]  # endpoint_ms, stt_wait_ms, brain_first_sentence_ms, …
    slow: bool
    passages: list[PassageOut]


class StageOut(BaseModel):
    key: str
    label: str


class NoteOut(BaseModel):
    id: int
    author: str | None
    text: str
    created_at: datetime
    can_delete: bool


class CallReviewOut(BaseModel):
    call_sid: str
    slow_turn_ms: float
    origin: datetime  # what start_s/end_s count from
    recording_seconds: float | None
    stages: list[StageOut]
    turns: list[TurnReviewOut]
    slow_turns: int
    tags: list[str]
    notes: list[NoteOut]


class TagIn(BaseModel):
    tag: str = Field(min_length=1, max_length=40)

    @field_validator("tag")
    @classmethod
    def _clean(cls, value: str) -> str:
        tag = normalize_tag(value)
        if not tag:
            raise ValueError("empty tag")
        return tag


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)


class TagsOut(BaseModel):
    tags: list[str]


def normalize_tag(value: str) -> str:
    """Tags group calls, so "Queja " and "queja" are one tag: lower case, single spaces."""
    return re.sub(r"\s+", " ", value).strip().casefold()[:40]


async def _call_id(services: Services, call_sid: str) -> int:
    async with services.db.session() as s:
        call_id = await s.scalar(select(Call.id).where(Call.call_sid == call_sid))
    if call_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No se encontró la llamada.")
    return int(call_id)


async def _tags(services: Services, call_id: int) -> list[str]:
    async with services.db.session() as s:
        rows = await s.scalars(
            select(CallTag.tag).where(CallTag.call_id == call_id).order_by(CallTag.tag)
        )
        return list(rows.all())


async def _notes(services: Services, call_id: int, principal: Principal) -> list[NoteOut]:
    async with services.db.session() as s:
        rows = (
            await s.scalars(
                select(CallNote)
                .where(CallNote.call_id == call_id)
                .order_by(CallNote.created_at, CallNote.id)
            )
        ).all()
    admin = has_role(principal, "admin")
    redact = Redactor.for_principal(principal)  # a note may quote a cédula
    return [
        NoteOut(
            id=n.id,
            author=n.author,
            text=redact.text(n.text) or "",
            created_at=n.created_at,
            can_delete=admin or n.author == principal.email,
        )
        for n in rows
    ]


@router.get(
    "/{call_sid}/review",
    response_model=CallReviewOut,
    summary="Revisión de una llamada: tiempos por turno, pasajes usados, etiquetas y notas",
    responses={404: {"description": "Llamada desconocida"}},
)
async def get_review(call_sid: str, services: ServicesDep, principal: AgentUser) -> CallReviewOut:
    call = await services.calls.get_call(call_sid)
    if call is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No se encontró la llamada.")
    slow_ms = float(services.settings.slow_turn_ms)
    origin = recording_origin(call.meta, call.started_at)
    rows = review_turns(list(call.turns), origin, slow_ms)
    rec = call.meta.get("recording") if isinstance(call.meta, dict) else None
    seconds = rec.get("seconds") if isinstance(rec, dict) else None
    limit = float(seconds) if isinstance(seconds, int | float) else None

    def clamp(value: float | None) -> float | None:
        # A reply still playing when the line closed ends with the recording.
        return min(value, limit) if value is not None and limit is not None else value

    return CallReviewOut(
        call_sid=call.call_sid,
        slow_turn_ms=slow_ms,
        origin=origin,
        recording_seconds=limit,
        stages=[StageOut(key=k, label=v) for k, v in STAGES],
        turns=[
            TurnReviewOut(
                seq=r.seq,
                speaker=r.speaker,
                start_s=clamp(r.start_s),
                end_s=clamp(r.end_s),
                first_byte_ms=r.first_byte_ms,
                stages=r.stages,
                slow=r.slow,
                passages=[PassageOut(**p.__dict__) for p in r.passages],
            )
            for r in rows
        ],
        slow_turns=sum(r.slow for r in rows),
        tags=await _tags(services, call.id),
        notes=await _notes(services, call.id, principal),
    )


@router.post(
    "/{call_sid}/tags",
    response_model=TagsOut,
    summary="Etiquetar una llamada (agentes y administradores)",
    responses={404: {"description": "Llamada desconocida"}},
)
async def add_tag(
    call_sid: str, body: TagIn, services: ServicesDep, principal: AgentUser
) -> TagsOut:
    call_id = await _call_id(services, call_sid)
    current = await _tags(services, call_id)
    if body.tag in current:
        return TagsOut(tags=current)
    if len(current) >= MAX_TAGS_PER_CALL:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"Una llamada puede tener como máximo {MAX_TAGS_PER_CALL} etiquetas.",
        )
    try:
        async with services.db.session(write=True) as s:
            s.add(CallTag(call_id=call_id, tag=body.tag, created_by=principal.email))
            s.add(
                AuditLog(
                    actor=principal.email,
                    action="call.tagged",
                    target=call_sid,
                    details={"tag": body.tag},
                )
            )
    except IntegrityError:
        pass  # the same tag added at the same moment by someone else: it is there
    return TagsOut(tags=await _tags(services, call_id))


@router.delete(
    "/{call_sid}/tags/{tag}",
    response_model=TagsOut,
    summary="Quitar una etiqueta de una llamada",
    responses={404: {"description": "Llamada desconocida"}},
)
async def remove_tag(
    call_sid: str,
    tag: Annotated[str, Path(max_length=200)],
    services: ServicesDep,
    principal: AgentUser,
) -> TagsOut:
    call_id = await _call_id(services, call_sid)
    clean = normalize_tag(tag)
    async with services.db.session(write=True) as s:
        gone = await s.execute(
            delete(CallTag).where(CallTag.call_id == call_id, CallTag.tag == clean)
        )
        if gone.rowcount:
            s.add(
                AuditLog(
                    actor=principal.email,
                    action="call.untagged",
                    target=call_sid,
                    details={"tag": clean},
                )
            )
    return TagsOut(tags=await _tags(services, call_id))


@router.post(
    "/{call_sid}/notes",
    response_model=NoteOut,
    status_code=status.HTTP_201_CREATED,
    summary="Añadir una nota a una llamada (agentes y administradores)",
    responses={
        404: {"description": "Llamada desconocida"},
        409: {"description": "La llamada ya tiene el máximo de notas"},
    },
)
async def add_note(
    call_sid: str, body: NoteIn, services: ServicesDep, principal: AgentUser
) -> NoteOut:
    text = body.text.strip()
    if not text:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="La nota está vacía.")
    call_id = await _call_id(services, call_sid)
    async with services.db.session(write=True) as s:
        count = await s.scalar(select(func.count(CallNote.id)).where(CallNote.call_id == call_id))
        if (count or 0) >= MAX_NOTES_PER_CALL:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=f"Una llamada puede tener como máximo {MAX_NOTES_PER_CALL} notas.",
            )
        note = CallNote(call_id=call_id, author=principal.email, text=text)
        s.add(note)
        await s.flush()
        s.add(
            AuditLog(
                actor=principal.email,
                action="call.note_added",
                target=call_sid,
                details={"note_id": note.id},
            )
        )
        return NoteOut(
            id=note.id,
            author=note.author,
            text=Redactor.for_principal(principal).text(note.text) or "",  # as the review shows it
            created_at=note.created_at,
            can_delete=True,
        )


@router.delete(
    "/{call_sid}/notes/{note_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Borrar una nota (su autor o un administrador)",
    responses={
        403: {"description": "La nota es de otra persona"},
        404: {"description": "Nota desconocida"},
    },
)
async def delete_note(
    call_sid: str, note_id: int, services: ServicesDep, principal: AgentUser
) -> Response:
    call_id = await _call_id(services, call_sid)
    async with services.db.session(write=True) as s:
        note = await s.scalar(
            select(CallNote).where(CallNote.id == note_id, CallNote.call_id == call_id)
        )
        if note is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No se encontró la nota.")
        if note.author != principal.email and not has_role(principal, "admin"):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail="Solo quien escribió la nota o un administrador puede borrarla.",
            )
        await s.delete(note)
        s.add(
            AuditLog(
                actor=principal.email,
                action="call.note_deleted",
                target=call_sid,
                details={"note_id": note_id},
            )
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def tag_counts(services: Services) -> list[tuple[str, int]]:
    """Every tag in use with its number of calls, most used first (for suggestions)."""
    async with services.db.session() as s:
        rows = (
            await s.execute(
                select(CallTag.tag, func.count(CallTag.id))
                .group_by(CallTag.tag)
                .order_by(func.count(CallTag.id).desc(), CallTag.tag)
                .limit(200)
            )
        ).all()
    return [(str(t), int(n)) for t, n in rows]


__all__: list[Any] = ["normalize_tag", "router", "tag_counts"]
