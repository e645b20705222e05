"""Turn an accepted Twilio stream into a CallSession — or refuse it."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from app.recordings import with_recording
from app.services import Services
from pipeline.brain.base import CallContext
from pipeline.session import AudioSink, CallSession
from telephony.twilio_protocol import Start

log = logging.getLogger("taina.calls")


class WebhookClock:
    """Remembers when each call's webhook arrived, so the greeting latency covers the whole
    path Twilio sees (webhook → stream → first audio). Bounded: stale entries expire."""

    def __init__(self, ttl_s: float = 120.0) -> None:
        self._times: dict[str, float] = {}
        self._ttl = ttl_s

    def mark(self, call_sid: str) -> None:
        now = time.monotonic()
        if len(self._times) > 1000:
            self._times = {k: v for k, v in self._times.items() if now - v < self._ttl}
        self._times[call_sid] = now

    def pop(self, call_sid: str) -> float | None:
        t = self._times.pop(call_sid, None)
        return t if t is not None and time.monotonic() - t < self._ttl else None


def twilio_session_factory(services: Services, clock: WebhookClock):
    async def make(start: Start, sink: AudioSink) -> CallSession | None:
        params = start.custom_parameters
        check = await services.tokens.verify_shared(params.get("token"), start.call_sid)
        if not check.ok:
            log.warning(
                "stream refused: call token %s", check.reason, extra={"call_id": start.call_sid}
            )
            return None
        ctx = CallContext(
            call_id=start.call_sid,
            ingress="twilio",
            caller_number=params.get("from") or None,
            started_at=datetime.now(UTC),
        )
        session = CallSession(
            ctx=ctx,
            sink=sink,
            engines=services.engines,
            config=services.session_config(services.settings.phone_pipeline_rate),
            observer=services.observer,
            metrics=services.metrics,
            called_number=params.get("to") or None,
            stream_id=start.stream_sid,
            accepted_at=clock.pop(start.call_sid),
        )
        services.drain.track(session)  # a graceful shutdown sees this call through
        return session

    if services.recordings is not None:
        return with_recording(make, services.recordings)
    return make
