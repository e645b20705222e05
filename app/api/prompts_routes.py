"""The LLM's system prompt: history, new versions, activation and rollback.

Changes go through the app's one :class:`~app.prompts.PromptStore`, whose cache is dropped on
activation, so the next turn of any call in this process uses the new text; other processes
pick it up when their few-second cache expires.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from app.api.deps import ApiRoute, ServicesDep
from app.auth import AdminUser, AgentUser
from app.prompts import PromptNotFound, PromptVersion
from app.users import audit

router = APIRouter(prefix="/prompts", tags=["prompts"], route_class=ApiRoute)

MAX_PROMPT_CHARS = 20_000


class PromptItem(BaseModel):
    version: int
    text: str
    created_at: datetime
    created_by: str | None
    active: bool


class PromptList(BaseModel):
    active_version: int | None = Field(description="None: se usa el prompt incorporado")
    items: list[PromptItem]  # newest first
    default_text: str  # the built-in prompt, used while no version is active
    llm_configured: bool = Field(
        description="False: las llamadas las responde el motor sin conexión y el prompt no "
        "tiene efecto hasta que se configure un modelo de lenguaje (OPENAI_API_KEY)"
    )
    rollback_version: int | None = Field(
        description="La versión a la que volvería «rollback» (None: no hay anterior)"
    )


class PromptCreate(BaseModel):
    text: str
    activate: bool = False


def _item(v: PromptVersion) -> PromptItem:
    return PromptItem(
        version=v.version,
        text=v.text,
        created_at=v.created_at,
        created_by=v.created_by,
        active=v.active,
    )


async def _version(services: ServicesDep, version: int) -> PromptItem:
    for v in await services.prompts.list_versions():
        if v.version == version:
            return _item(v)
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No existe la versión {version}.")


@router.get("", response_model=PromptList, summary="Historial del prompt del sistema")
async def list_prompts(services: ServicesDep, _: AgentUser) -> PromptList:
    versions = await services.prompts.list_versions()
    active = next((v.version for v in versions if v.active), None)
    earlier = [v.version for v in versions if active is not None and v.version < active]
    return PromptList(
        active_version=active,
        items=[_item(v) for v in versions],
        default_text=services.prompts.default,
        llm_configured=llm_configured(services),
        rollback_version=max(earlier) if earlier else None,
    )


def llm_configured(services: ServicesDep) -> bool:
    """Whether calls are answered by a language model, the only brain that reads the prompt
    (the offline dialogue engine has its own fixed wording)."""
    brain = getattr(services.engines, "brain", None)
    return brain is not None and getattr(brain, "name", "offline") != "offline"


@router.post(
    "",
    response_model=PromptItem,
    status_code=status.HTTP_201_CREATED,
    summary="Guardar una nueva versión (activa solo si se pide)",
)
async def create_prompt(body: PromptCreate, services: ServicesDep, user: AdminUser) -> PromptItem:
    if not body.text.strip():
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="El prompt no puede estar vacío."
        )
    if len(body.text) > MAX_PROMPT_CHARS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"El prompt no puede pasar de {MAX_PROMPT_CHARS} caracteres.",
        )
    store = services.prompts
    version = await store.create_version(body.text, author=user.email)
    await audit(services.db, user.email, "prompt.created", f"v{version}", {"chars": len(body.text)})
    if body.activate:
        await store.activate(version)
        await audit(services.db, user.email, "prompt.activated", f"v{version}", {})
    return await _version(services, version)


@router.post(
    "/rollback",
    response_model=PromptItem,
    summary="Volver a la versión anterior a la activa",
    responses={409: {"description": "No hay versión anterior"}},
)
async def rollback_prompt(services: ServicesDep, user: AdminUser) -> PromptItem:
    before = await services.prompts.active_version()
    try:
        version = await services.prompts.rollback()
    except PromptNotFound:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="No hay una versión anterior a la cual volver."
        ) from None
    await audit(
        services.db, user.email, "prompt.rolled_back", f"v{version}", {"from_version": before}
    )
    return await _version(services, version)


@router.post(
    "/default",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Volver al texto incorporado: ninguna versión queda activa",
)
async def use_default_prompt(services: ServicesDep, user: AdminUser) -> None:
    before = await services.prompts.active_version()
    await services.prompts.use_default()
    await audit(services.db, user.email, "prompt.default", "default", {"from_version": before})


@router.post(
    "/{version}/activate",
    response_model=PromptItem,
    summary="Activar una versión: las llamadas la usan desde su próximo turno",
    responses={404: {"description": "Versión desconocida"}},
)
async def activate_prompt(version: int, services: ServicesDep, user: AdminUser) -> PromptItem:
    before = await services.prompts.active_version()
    try:
        await services.prompts.activate(version)
    except PromptNotFound:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"No existe la versión {version}."
        ) from None
    await audit(
        services.db, user.email, "prompt.activated", f"v{version}", {"from_version": before}
    )
    return await _version(services, version)
