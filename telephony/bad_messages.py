"""Counting a stream's malformed messages: each is logged (the first ten, then every
hundredth, so a flood cannot flood the logs) and counted; past the limit the stream is closed.
One bad caller never costs the server more than that."""

from __future__ import annotations

import logging

from pipeline.metrics import PipelineMetrics


class BadMessages:
    def __init__(
        self,
        transport: str,
        limit: int,
        metrics: PipelineMetrics,
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.transport = transport
        self.limit = limit
        self.count = 0
        self._metrics = metrics
        self.log = log  # replaced once the call id is known

    def record(self, reason: str, kind: str) -> bool:
        """Log and count one; True when the stream has misbehaved enough to be closed."""
        self.count += 1
        self._metrics.bad_messages_total.labels(self.transport, kind[:20]).inc()
        if self.count <= 10 or self.count % 100 == 0:
            self.log.warning("ignored message: %s", reason)
        if self.count > self.limit:
            self.log.error(
                "closing the %s stream after %d bad messages", self.transport, self.count
            )
            return True
        return False
