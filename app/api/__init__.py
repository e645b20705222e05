"""The admin REST API under ``/api`` (OpenAPI at ``/docs``).

Roles: admin does everything; agent reads calls, bookings, analytics, prompts and knowledge
documents, tags and notes calls, acts on bookings (cancel, reschedule, attendance) and uses
the quality report (issue 14); citizen (and anyone without a valid token) gets 403 (401) on
every endpoint except ``POST /api/auth/login`` and ``GET /api/auth/me``.
"""

from fastapi import APIRouter

from app.api import (
    analytics_routes,
    auth_routes,
    bookings_routes,
    calendar_routes,
    calls_routes,
    knowledge_routes,
    prompts_routes,
    quality_routes,
    review_routes,
)

# JSON bodies here are small (the longest is a prompt); the cap keeps a stranger from making the
# server read megabytes before the token is even checked. Uploads set their own cap.
MAX_BODY_BYTES = 1024 * 1024

router = APIRouter(prefix="/api", max_body_size=MAX_BODY_BYTES)
for _module in (
    auth_routes,
    calls_routes,
    bookings_routes,
    prompts_routes,
    knowledge_routes,
    analytics_routes,
    review_routes,
    calendar_routes,
    quality_routes,
):
    router.include_router(_module.router)

__all__ = ["MAX_BODY_BYTES", "router"]
