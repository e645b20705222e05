"""A brain that never leaves the caller in silence: the LLM first, the offline brain behind it.

The primary (the LLM) gets a budget to show a sign of life — text or a tool call. If it raises
or misses the budget before the caller has heard anything, it is cancelled and the fallback
(the offline dialogue engine) answers the same turn: the caller notices a slightly longer pause,
nothing more. If the primary breaks after it has started speaking, the fallback cannot take
over mid-sentence, so the reply is closed with a short apology and the next turn proceeds.

After several failures in a row the primary is skipped for a cool-down, so a provider outage
costs each caller one budget's worth of waiting at most a few times, not on every turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pipeline.brain.base import (
    Brain,
    BrainOutput,
    CallContext,
    EndCall,
    TextChunk,
    ToolEvent,
    Transfer,
    UserInput,
)

log = logging.getLogger("taina.brain.fallback")

# Said when the LLM breaks mid-reply. After a half-said sentence it is preceded by an ellipsis
# so the fragment ends as a trailing-off instead of being glued to the apology.
MID_REPLY_APOLOGY = "Disculpe, tuve un problema técnico. ¿Me repite, por favor, lo último?"
_SENTENCE_ENDS = (".", "!", "?", "…", ":", ";")


def _joiner(said: str) -> str:
    """What goes between the end of the half-said reply and the apology."""
    stripped = said.rstrip()
    if stripped.endswith(_SENTENCE_ENDS):
        return "" if stripped != said else " "
    return "… "


FallbackCallback = Callable[[str, str], Any]  # (call_id, reason)


class FallbackBrain:
    """``primary`` with ``fallback`` behind it. Reasons reported: ``error``, ``budget``,
    ``empty``, ``stall``, ``mid_reply``, ``cooldown``."""

    name = "llm+offline"

    def __init__(
        self,
        primary: Brain,
        fallback: Brain,
        first_token_budget_s: float = 2.5,
        *,
        stall_timeout_s: float = 15.0,
        failure_threshold: int = 3,
        cooldown_s: float = 60.0,
        on_fallback: FallbackCallback | None = None,
        counter: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self._budget_s = first_token_budget_s
        self._stall_s = stall_timeout_s
        self._threshold = max(1, failure_threshold)
        self._cooldown_s = cooldown_s
        self._on_fallback = on_fallback
        self._counter = counter
        self._clock = clock
        self._failures = 0  # consecutive, across calls: a provider outage is not per call
        self._skip_until = float("-inf")
        self.fallbacks: dict[str, int] = {}

    @property
    def cooling_down(self) -> bool:
        return self._clock() < self._skip_until

    async def greeting(self, ctx: CallContext) -> str:
        try:
            return await asyncio.wait_for(self.primary.greeting(ctx), self._budget_s)
        except Exception as exc:
            self._record(ctx, "error", exc)
            return await self.fallback.greeting(ctx)

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        if self.cooling_down:
            self._record(ctx, "cooldown", None)
            async for out in self.fallback.respond(ctx, user):
                yield out
            return

        replies = self.primary.respond(ctx, user)
        deadline = asyncio.get_running_loop().time() + self._budget_s
        spoke = False  # the caller has been sent text
        said = ""  # the end of that text, to join the apology to it cleanly
        alive = False  # text or tool activity: the budget is met
        acted = False  # an EndCall/Transfer came through
        failure: tuple[str, BaseException | None] | None = None
        try:
            while True:
                try:
                    if alive:
                        async with asyncio.timeout(self._stall_s):
                            out = await anext(replies)
                    else:
                        async with asyncio.timeout_at(deadline):
                            out = await anext(replies)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    failure = ("stall" if alive else "budget", exc)
                    break
                except Exception as exc:
                    failure = ("error", exc)
                    break
                if isinstance(out, TextChunk):
                    if out.text.strip():
                        spoke = alive = True
                    said = (said + out.text)[-16:]
                elif isinstance(out, ToolEvent):
                    alive = True
                elif isinstance(out, EndCall | Transfer):
                    alive = acted = True
                yield out
        finally:
            # Cancelled by barge-in, failed, or finished: the primary must not linger.
            try:
                await replies.aclose()  # type: ignore[attr-defined]
            except Exception:
                log.debug("closing the primary brain's reply failed", exc_info=True)

        if failure is None and (spoke or acted):
            self._failures = 0
            return
        if failure is None:
            failure = ("empty", None)
        reason, exc = failure
        if spoke:
            self._record(ctx, "mid_reply", exc)
            yield TextChunk(_joiner(said) + MID_REPLY_APOLOGY)
            return
        self._record(ctx, reason, exc)
        async for out in self.fallback.respond(ctx, user):
            yield out

    def _record(self, ctx: CallContext, reason: str, exc: BaseException | None) -> None:
        """Log, count and update the cool-down for one fallback."""
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        if reason != "cooldown":
            self._failures += 1
            if self._failures >= self._threshold:
                self._skip_until = self._clock() + self._cooldown_s
                log.warning(
                    "call %s: %d primary brain failures in a row; using %s only for %.0f s",
                    ctx.call_id,
                    self._failures,
                    self.fallback.name,
                    self._cooldown_s,
                )
                self._failures = 0
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else "-"
        outcome = "reply closed" if reason == "mid_reply" else f"{self.fallback.name} answers"
        log.warning(
            "call %s: %s brain fallback (%s), %s; %s",
            ctx.call_id,
            self.primary.name,
            reason,
            outcome,
            detail,
        )
        if self._counter is not None:
            try:
                try:
                    self._counter.labels(reason).inc()
                except ValueError:  # a Counter without labels
                    self._counter.inc()
            except Exception:
                log.debug("fallback counter failed", exc_info=True)
        if self._on_fallback is not None:
            try:
                self._on_fallback(ctx.call_id, reason)
            except Exception:
                log.debug("fallback callback failed", exc_info=True)
