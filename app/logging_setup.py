"""Structured logs: every line names the call it belongs to.

Call-scoped code logs through a LoggerAdapter carrying ``call_id``; lines from elsewhere get
"-". ``TAINA_LOG_FORMAT=json`` emits one JSON object per line for log shippers.
"""

from __future__ import annotations

import logging
import sys

import orjson


class _CallIdDefault(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "call_id": getattr(record, "call_id", "-"),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)  # structured fields (e.g. the turn-model shadow)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    from app.personal_data import MaskingLogFilter  # late: keeps this module import-light

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CallIdDefault())
    handler.addFilter(MaskingLogFilter())  # no caller's cédula or phone number in the logs
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(call_id)s] %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "faster_whisper", "uvicorn.access", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
