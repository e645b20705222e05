"""The FastAPI application factory."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import PlatformCollector, ProcessCollector

from app import (
    api_live,
    error_answers,
    routes_admin,
    routes_health,
    routes_livekit,
    routes_livekit_webhook,
    routes_twilio,
    routes_web,
)
from app.api import router as api_router
from app.auth import token_verifiers
from app.body_limit import BodyLimitMiddleware, route_limits
from app.call_factory import WebhookClock
from app.connection_limits import active_calls
from app.forwarded import ForwardedHeadersMiddleware
from app.live_events import LiveObserver, live_events_from_settings
from app.password_pool import configure_password_pool
from app.services import Services, build_services
from app.settings import Settings
from app.supabase_auth import supabase_verifier_from_settings
from pipeline.session import Engines
from telephony.signatures import warn_if_unsigned

log = logging.getLogger("taina.app")


def create_app(settings: Settings | None = None, *, engines: Engines | None = None) -> FastAPI:
    """Build the app. ``engines`` replaces the embedded engines (tests, instant-engine bench)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = live_events_from_settings(settings)
        await live.start()
        services: Services = await build_services(
            settings, engines=engines, extra_observers=[LiveObserver(live)]
        )
        services.closers.insert(0, live.aclose)
        app.state.live_events = live
        supabase = supabase_verifier_from_settings(settings)
        if supabase is not None:
            await supabase.start()
            token_verifiers(app).append(supabase)
        ProcessCollector(registry=services.metrics.registry)
        PlatformCollector(registry=services.metrics.registry)
        app.state.services = services
        services.shared.start(active_calls(app).live_ids)  # renews this process's cap slots
        warn_if_unsigned(settings.twilio_auth_token)
        configure_password_pool(settings.password_hash_workers, settings.password_hash_queue)
        # Everything built so far (models, indexes, catalogs) lives as long as the process:
        # moving it out of the collector's generations keeps full collections — which stop
        # every call at once — short.
        gc.freeze()
        log.info(
            "TAINA ready: stt=%s tts=%s brain=%s",
            services.engines.stt.name,
            services.engines.tts.name,
            services.engines.brain.name,
        )
        try:
            yield
        finally:
            await services.aclose()

    app = FastAPI(
        title="TAINA",
        description="Asistente de voz en español para servicios al ciudadano.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.webhook_clock = WebhookClock()
    app.include_router(routes_health.router)
    app.include_router(routes_twilio.router)
    app.include_router(api_router)
    app.include_router(api_live.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_livekit.router)
    app.include_router(routes_livekit_webhook.router)
    app.include_router(routes_web.router)
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_request_body_bytes,
        routes=route_limits(settings),
    )
    # Outermost: Host and X-Forwarded-* are settled before anything reads them (issue 13).
    app.add_middleware(ForwardedHeadersMiddleware, trusted_proxies=settings.trusted_proxies)
    error_answers.install(app)
    return app
