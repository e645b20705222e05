"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the server is up and its engines are loaded")
async def healthz(request: Request) -> dict[str, object]:
    services = request.app.state.services
    engines = services.engines
    return {
        "status": "ok",
        "active_calls": services.recent.active,
        "engines": {
            "stt": getattr(engines.stt, "name", type(engines.stt).__name__),
            "tts": getattr(engines.tts, "name", type(engines.tts).__name__),
            "brain": getattr(engines.brain, "name", type(engines.brain).__name__),
        },
    }


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = request.app.state.services.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
