"""Liveness, readiness and Prometheus metrics.

``/healthz`` is liveness: 200 as long as the process serves (also while it drains, so an
orchestrator does not kill it mid-drain). ``/readyz`` is readiness: 503 while the server
drains for a shutdown, so a load balancer stops sending it new calls (app/drain.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.connection_limits import active_calls
from pipeline.metrics import render as render_metrics

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the server is up and its engines are loaded")
async def healthz(request: Request) -> dict[str, object]:
    services = request.app.state.services
    engines = services.engines
    return {
        "status": "ok",
        "draining": services.drain.draining,
        # Counted where calls live (the sessions on the line), the same count the call cap uses.
        "active_calls": active_calls(request.app).active,
        # "redis": replay cache and call cap shared by the deployment (app/shared_state.py);
        # deployment_calls is every process's calls at this process's last renewal.
        "shared_state": services.shared.backend,
        "deployment_calls": services.shared.fleet.fleet_size if services.shared.fleet else None,
        "engines": {
            "stt": getattr(engines.stt, "name", type(engines.stt).__name__),
            "tts": getattr(engines.tts, "name", type(engines.tts).__name__),
            "brain": getattr(engines.brain, "name", type(engines.brain).__name__),
        },
    }


@router.get(
    "/readyz",
    summary="Readiness: 200 while taking new calls, 503 while draining for a shutdown",
    responses={503: {"description": "Draining: calls in progress finish, new ones go elsewhere"}},
)
async def readyz(request: Request) -> JSONResponse:
    services = request.app.state.services
    draining = services.drain.draining
    return JSONResponse(
        {
            "status": "draining" if draining else "ready",
            "active_calls": active_calls(request.app).active,
        },
        status_code=503 if draining else 200,
    )


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = request.app.state.services.metrics.registry
    # Rendered off the event loop; label sets are closed, so the page stays small.
    return Response(await render_metrics(registry), media_type=CONTENT_TYPE_LATEST)
