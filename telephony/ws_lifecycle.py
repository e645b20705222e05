"""The life of one media WebSocket, the same for every transport (Twilio, browser).

Accept, start the single writer, run the transport's receive loop, turn however it ended into
the call's end reason, and always shut down: the session closes and the socket is released
even when the loop raised.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from telephony.ws_outbox import WebSocketOutbox


async def serve_socket(
    ws: WebSocket,
    outbox: WebSocketOutbox,
    receive_loop: Callable[[], Awaitable[str]],
    shutdown: Callable[[str], Awaitable[None]],
    *,
    started: Callable[[], bool],
    log: logging.LoggerAdapter[Any] | logging.Logger,
) -> None:
    """``receive_loop`` returns the end reason; a disconnect is the caller hanging up once
    the call had started, a plain disconnect before; anything else is an ``error``."""
    await ws.accept()
    outbox.start()
    reason = "disconnected"
    try:
        reason = await receive_loop()
    except WebSocketDisconnect:
        reason = "caller-hangup" if started() else "disconnected"
    except Exception:
        log.exception("stream failed")
        reason = "error"
    finally:
        await shutdown(reason)
