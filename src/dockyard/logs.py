"""Logging set-up: text for people (dev), one JSON object per line for machines (production).

Dockyard's log messages are an event name and ``key=value`` fields
(``run_failed run_id=… error=ValueError: boom``). The JSON formatter turns that into
``{"ts", "level", "logger", "event", "run_id", "error", …, "message"}``, so log pipelines can
filter on fields without parsing text. Both formats mask credentials in URLs, in messages and
tracebacks alike (``postgresql://user:***@host/db``): secrets are never logged.

``logging_config`` returns a ``logging.config.dictConfig`` dict; uvicorn receives it as its
``log_config``, so its own loggers (and a reloaded child process) use the same format.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

LOG_FORMATS = ("text", "json")

# scheme://user:password@host → scheme://user:***@host (also a password-only userinfo).
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s@/]*@")
# "word " at the start: snake_case event names (``run_failed``), not prose ("Started …").
_EVENT = re.compile(r"^([a-z][a-z0-9_]*)(?=\s|$)")
# A field starts at " key=" and runs until the next " key=" (values may hold spaces).
_FIELD_START = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_.]*)=")

# Attributes every LogRecord has; anything else came from ``extra=`` and is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message", "taskName",
}
_RESERVED = frozenset({"ts", "level", "logger", "event", "message", "exc_type", "exc_info"})


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "://" not in text:
        return text
    return _URL_CREDENTIALS.sub(r"\g<head>:***@", text)


def parse_message(message: str) -> tuple[str | None, dict[str, str]]:
    """Split ``event k1=v1 k2=v2 …`` into the event name and its fields (strings)."""
    m = _EVENT.match(message)
    event = m.group(1) if m else None
    fields: dict[str, str] = {}
    starts = list(_FIELD_START.finditer(message))
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(message)
        fields[match.group(1)] = message[match.end():end].strip()
    return event, fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, the message's fields, exc info."""

    def format(self, record: logging.LogRecord) -> str:
        message = mask_secrets(record.getMessage())
        event, fields = parse_message(message)
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if event is not None:
            out["event"] = event
        for key, value in fields.items():
            out[f"{key}_" if key in _RESERVED else key] = value
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out.setdefault(f"{key}_" if key in _RESERVED else key,
                               mask_secrets(value) if isinstance(value, str) else value)
        out["message"] = message
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc_info"] = mask_secrets(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc_info"] = mask_secrets(record.exc_text)
        if record.stack_info:
            out["stack_info"] = record.stack_info
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``LEVEL logger message`` for people, with credentials masked."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def _level(level: str) -> int | str:
    return 5 if level.lower() == "trace" else level.upper()  # uvicorn's TRACE level is 5


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """A dictConfig for the root logger and uvicorn's loggers (which propagate to it)."""
    formatter = "dockyard.logs.JsonFormatter" if fmt == "json" else "dockyard.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"dockyard": {"()": formatter}},
        "handlers": {
            "dockyard": {"class": "logging.StreamHandler", "formatter": "dockyard",
                         "stream": "ext://sys.stderr"},
        },
        "root": {"handlers": ["dockyard"], "level": _level(level)},
        "loggers": {
            # Their own handlers would print a second, differently formatted line.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            "watchfiles": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    import logging.config

    logging.config.dictConfig(logging_config(level, fmt))
