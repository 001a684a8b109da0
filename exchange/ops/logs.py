"""`log_format: json`: every log line a JSON object, request lines with their own fields.

Request lines go to standard output (where uvicorn's text access log goes), the server's
other log lines to standard error, as in text mode.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    """One JSON object per line: a request's fields as the observer gave them, otherwise
    time, level, logger and message (and the error's traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            return orjson.dumps(fields, default=str).decode()
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def uvicorn_log_config(log_format: str, *, requests: bool = True) -> dict[str, Any] | None:
    """The logging configuration `serve` gives uvicorn (applied in each worker process):
    None keeps uvicorn's own (text)."""
    if log_format != "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"] = {"json": {"()": "exchange.ops.logs.JsonFormatter"}}
    config["handlers"] = {
        "default": {"formatter": "json", "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr"},
        "requests": {"formatter": "json", "class": "logging.StreamHandler",
                     "stream": "ext://sys.stdout"},
    }
    config["loggers"].update({
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        # As in text mode, where warnings reach standard error through the root logger.
        "exchange": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        "exchange.requests": {"handlers": ["requests"],
                              "level": "INFO" if requests else "WARNING", "propagate": False},
    })
    return config
