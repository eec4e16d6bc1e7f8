"""One exception root for Dockyard, with stable error codes.

Services and storage raise these; ``dockyard.api`` maps ``status`` to the HTTP response, so
framework-free code never imports FastAPI. Codes are stable strings that users can search for.
"""

from __future__ import annotations

from typing import Any


class DockyardError(Exception):
    """Base error: ``code`` is stable, ``status`` is the HTTP status the API answers with."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.message, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


class NotFound(DockyardError):
    code = "not_found"
    status = 404


class Conflict(DockyardError):
    code = "conflict"
    status = 409


class Unauthorized(DockyardError):
    """A request whose signature (or credentials) did not check out."""

    code = "unauthorized"
    status = 401


class InvalidInput(DockyardError):
    code = "invalid_input"
    status = 422


class BadRequest(DockyardError):
    code = "bad_request"
    status = 400


class PayloadTooLarge(DockyardError):
    code = "payload_too_large"
    status = 413


class TooManyRequests(DockyardError):
    """Backpressure: ``retry_after`` (seconds) becomes the ``Retry-After`` header."""

    code = "too_many_requests"
    status = 429


class ConfigError(DockyardError):
    """A problem in dockyard.toml / langgraph.json or in loading a graph it names.

    The message always names the file, the key and what is wrong.
    """

    code = "config_error"
    status = 500

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ""
        if file:
            where = f"{file}"
            if key:
                where += f": key '{key}'"
            where += ": "
        super().__init__(f"{where}{message}", file=file, key=key)


class StorageError(DockyardError):
    """A driver error translated at the storage boundary."""

    code = "storage_error"
    status = 503


class EventBusUnavailable(DockyardError):
    """The event bus (Redis) stayed unreachable for longer than its retry window."""

    code = "event_bus_unavailable"
    status = 503
