"""The office's knowledge documents: list, read, download, upload (Markdown), delete, reindex.

An upload only writes the file; searches keep using the loaded index until
``POST /api/knowledge/reindex`` swaps in a new one (atomically, while calls go on). Several
documents can so be uploaded and published together. Uploads, reindexing and the choice of
folder are serialized per process by one lock; see :mod:`app.knowledge_files` for where
uploads are stored and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import delete, select
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.deps import ApiRoute, ServicesDep
from app.auth import AdminUser, AgentUser
from app.knowledge_files import (
    DocumentFile,
    UploadRejected,
    document_name,
    list_documents,
    upload_dir,
    validate_upload,
    write_document,
)
from app.services import Services
from app.storage.models import KnowledgeDocument, utcnow
from app.users import audit
from knowledge import IndexInfo

log = logging.getLogger("taina.api.knowledge")
router = APIRouter(prefix="/knowledge", tags=["knowledge"], route_class=ApiRoute)

# Multipart framing around the file (boundaries, headers) on top of the document itself.
MULTIPART_OVERHEAD = 16 * 1024
# Hard cap on an upload request whatever the settings say; the configured document limit
# (``knowledge_upload_max_bytes``, 200 KB by default) is checked on top of it.
UPLOAD_MAX_BODY_BYTES = 8 * 1024 * 1024


class DocumentOut(BaseModel):
    path: str
    title: str | None
    sha256: str
    updated_at: datetime
    sections: int  # sections of this file in the loaded index (0: not indexed yet)
    size: int


class IndexOut(BaseModel):
    fingerprint: str
    files: int
    sections: int
    rebuilt: bool
    hybrid: bool
    index_dir: str


class KnowledgeList(BaseModel):
    documents: list[DocumentOut]
    index: IndexOut
    stale: bool  # the files changed since the loaded index was built: reindex to publish
    source_dir: str


class UploadOut(BaseModel):
    document: DocumentOut
    replaced: bool
    reindex_needed: bool = True


def _lock(app: FastAPI) -> asyncio.Lock:
    lock: asyncio.Lock | None = getattr(app.state, "knowledge_lock", None)
    if lock is None:
        lock = app.state.knowledge_lock = asyncio.Lock()
    return lock


def _index_out(info: IndexInfo) -> IndexOut:
    return IndexOut(
        fingerprint=info.fingerprint,
        files=info.files,
        sections=info.sections,
        rebuilt=info.rebuilt,
        hybrid=info.hybrid,
        index_dir=str(info.index_dir),
    )


def _section_counts(services: Services) -> Counter[str]:
    return Counter(str(n.metadata.get("file_name", "")) for n in services.knowledge.nodes)


async def _sync_table(services: Services, docs: list[DocumentFile]) -> None:
    """Mirror the folder into ``knowledge_documents``: the record of which document changed
    when (``updated_at`` moves only when a file's content does)."""
    now = utcnow()
    by_path = {d.path: d for d in docs}
    async with services.db.session(write=True) as s:
        rows = {r.path: r for r in (await s.scalars(select(KnowledgeDocument))).all()}
        for path, doc in by_path.items():
            row = rows.get(path)
            if row is None:
                # First seen: the file's own modification time (a copied folder keeps it), not
                # "now", or the first upload would date every document to that moment.
                s.add(
                    KnowledgeDocument(
                        path=path,
                        sha256=doc.sha256,
                        title=doc.title,
                        updated_at=min(doc.modified_at, now),
                    )
                )
            elif row.sha256 != doc.sha256 or row.title != doc.title:
                row.sha256, row.title, row.updated_at = doc.sha256, doc.title, now
        gone = [p for p in rows if p not in by_path]
        if gone:
            await s.execute(delete(KnowledgeDocument).where(KnowledgeDocument.path.in_(gone)))


async def _documents(services: Services, *, sync: bool = False) -> list[DocumentOut]:
    """The folder's documents; ``updated_at`` comes from the table when it knows this exact
    content (a file edited by hand since the last sync shows its modification time)."""
    docs = await asyncio.to_thread(list_documents, services.knowledge.source_dir)
    if sync:
        await _sync_table(services, docs)
    async with services.db.session() as s:
        known = {
            r.path: (r.sha256, r.updated_at)
            for r in (await s.scalars(select(KnowledgeDocument))).all()
        }
    sections = _section_counts(services)
    out = []
    for d in docs:
        sha, updated_at = known.get(d.path, (None, None))
        out.append(
            DocumentOut(
                path=d.path,
                title=d.title,
                sha256=d.sha256,
                updated_at=updated_at if sha == d.sha256 and updated_at else d.modified_at,
                sections=sections.get(d.path, 0),
                size=d.size,
            )
        )
    return out


@router.get("", response_model=KnowledgeList, summary="Documentos de la base de conocimiento")
async def list_knowledge(services: ServicesDep, _: AgentUser) -> KnowledgeList:
    kb = services.knowledge
    documents = await _documents(services)
    stale = await asyncio.to_thread(kb.is_stale)
    return KnowledgeList(
        documents=documents,
        index=_index_out(kb.info),
        stale=stale,
        source_dir=str(kb.source_dir),
    )


@router.post(
    "",
    response_model=UploadOut,
    status_code=status.HTTP_201_CREATED,
    max_body_size=UPLOAD_MAX_BODY_BYTES,
    summary="Subir un documento Markdown (.md, UTF-8, hasta 200 KB)",
    description="Reemplaza el documento si ya existe uno con ese nombre. Para que las llamadas "
    "lo usen, reindexe después con `POST /api/knowledge/reindex`.",
    responses={
        413: {"description": "Archivo demasiado grande"},
        415: {"description": "No es texto UTF-8"},
        422: {"description": "Nombre o contenido no válido"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
)
async def upload_document(request: Request, services: ServicesDep, user: AdminUser) -> UploadOut:
    # The form is parsed here, after the role check, not by a File() parameter: FastAPI reads
    # bodies before dependencies run, which would let anyone spool large uploads to disk.
    limit = services.settings.knowledge_upload_max_bytes
    too_big = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"El archivo pasa del límite de {limit // 1024} KB.",
    )
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit + MULTIPART_OVERHEAD):
        raise too_big
    try:
        form = await request.form(max_files=1, max_fields=4)
    except StarletteHTTPException as exc:  # a malformed multipart body (Starlette's 400)
        if exc.status_code != status.HTTP_400_BAD_REQUEST:
            raise
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="Envíe un solo archivo como multipart/form-data."
        ) from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail="Falta el archivo (campo «file»)."
            )
        data = await upload.read(limit + 1)
        # Off the event loop: parsing is linear, but a 200 KB document still takes a moment.
        text = await asyncio.to_thread(validate_upload, upload.filename, data, limit)
        name = document_name(upload.filename)
    except UploadRejected as exc:
        raise HTTPException(exc.status_code, detail=exc.detail) from None
    finally:
        await form.close()

    kb = services.knowledge
    async with _lock(request.app):
        try:
            folder = await asyncio.to_thread(upload_dir, services.settings, kb.source_dir)
        except UploadRejected as exc:
            raise HTTPException(exc.status_code, detail=exc.detail) from None
        # Searches never read the folder (only reindex does), so switching it is safe.
        kb.source_dir = folder
        replaced = await asyncio.to_thread(write_document, folder, name, text)
        documents = await _documents(services, sync=True)
    document = next(d for d in documents if d.path == name)
    await audit(
        services.db,
        user.email,
        "knowledge.replaced" if replaced else "knowledge.uploaded",
        name,
        {"sha256": document.sha256, "bytes": document.size, "folder": str(folder)},
    )
    return UploadOut(document=document, replaced=replaced)


def _find(docs: list[DocumentFile], name: str) -> DocumentFile:
    wanted = document_name(name)
    for doc in docs:
        if doc.path == wanted:
            return doc
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No existe ese documento.")


@router.get(
    "/documents/{name}",
    summary="El texto de un documento (Markdown); con download=true, como archivo",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}}, 404: {"description": "No existe"}},
)
async def read_document(
    name: str,
    services: ServicesDep,
    _: AgentUser,
    download: Annotated[bool, Query(description="Descargar como archivo")] = False,
) -> Response:
    folder = services.knowledge.source_dir
    doc = _find(await asyncio.to_thread(list_documents, folder), name)
    data = await asyncio.to_thread((folder / doc.path).read_bytes)
    disposition = "attachment" if download else "inline"
    return Response(
        content=data,
        media_type="text/markdown; charset=utf-8",
        headers={
            # RFC 6266/5987: the UTF-8 name for browsers, an ASCII fallback for the rest.
            "Content-Disposition": f'{disposition}; filename="{quote(doc.path)}"; '
            f"filename*=UTF-8''{quote(doc.path)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@router.delete(
    "/documents/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Borrar un documento (las llamadas lo usan hasta el próximo reindexado)",
    responses={404: {"description": "No existe"}, 409: {"description": "Es el último"}},
)
async def delete_document(
    name: str, request: Request, services: ServicesDep, user: AdminUser
) -> None:
    kb = services.knowledge
    async with _lock(request.app):
        _find(await asyncio.to_thread(list_documents, kb.source_dir), name)
        try:
            # Never delete from the packaged folder: work on the office's writable copy.
            folder = await asyncio.to_thread(upload_dir, services.settings, kb.source_dir)
        except UploadRejected as exc:
            raise HTTPException(exc.status_code, detail=exc.detail) from None
        kb.source_dir = folder
        docs = await asyncio.to_thread(list_documents, folder)
        doc = _find(docs, name)
        if len(docs) == 1:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail="No se puede borrar el último documento: el asistente se quedaría sin "
                "base de conocimiento.",
            )
        await asyncio.to_thread((folder / doc.path).unlink)
        await _documents(services, sync=True)
    await audit(services.db, user.email, "knowledge.deleted", doc.path, {"sha256": doc.sha256})


@router.post(
    "/reindex",
    response_model=IndexOut,
    summary="Reconstruir el índice con los documentos actuales",
    responses={422: {"description": "Los documentos no forman un índice válido"}},
)
async def reindex_knowledge(
    request: Request,
    services: ServicesDep,
    user: AdminUser,
    force: Annotated[bool, Query(description="Reconstruir aunque nada haya cambiado")] = False,
) -> IndexOut:
    kb = services.knowledge
    async with _lock(request.app):
        try:
            info = await asyncio.to_thread(kb.reindex, force)
        except (FileNotFoundError, ValueError) as exc:
            log.warning("knowledge reindex failed: %s", exc)
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail="No se pudo reconstruir el índice: no hay documentos con texto "
                "bajo algún título.",
            ) from None
        await _documents(services, sync=True)
    await audit(
        services.db,
        user.email,
        "knowledge.reindexed",
        str(kb.source_dir),
        {"files": info.files, "sections": info.sections, "rebuilt": info.rebuilt},
    )
    return _index_out(info)
