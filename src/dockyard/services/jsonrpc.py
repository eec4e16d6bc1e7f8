"""JSON-RPC 2.0 envelopes shared by the MCP and A2A endpoints.

Both protocols answer every failure, however malformed the request, with a JSON-RPC error
object; `RpcError` carries the code, and `parse` turns raw bytes into validated requests so the
routes never answer a protocol client with a 500 or a REST-style ``detail`` body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from dockyard.errors import DockyardError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

RequestId = str | int | None


class RpcError(Exception):
    """A JSON-RPC error answer: ``code`` is the protocol's number, ``data`` optional detail."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


@dataclass(frozen=True)
class RpcRequest:
    """One validated request or notification (``is_notification``: no ``id`` member)."""

    method: str
    params: dict[str, Any]
    id: RequestId
    is_notification: bool


def result(request_id: RequestId, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def error(request_id: RequestId, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": err.to_dict()}


def decode(body: bytes) -> Any:
    """The body as JSON, or a -32700 parse error."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RpcError(PARSE_ERROR, f"Parse error: {exc}") from exc


def validate(message: Any) -> RpcRequest:
    """One JSON-RPC request object, checked member by member (-32600 / -32602)."""
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: a JSON-RPC message must be an object")
    if message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "Invalid Request: 'jsonrpc' must be \"2.0\"")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, "Invalid Request: 'method' must be a non-empty string")
    has_id = "id" in message
    rid = message.get("id")
    if has_id and (isinstance(rid, bool) or not isinstance(rid, str | int | None)):
        raise RpcError(INVALID_REQUEST, "Invalid Request: 'id' must be a string, a number or null")
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: 'params' must be an object")
    return RpcRequest(method=method, params=params, id=rid, is_notification=not has_id)


def request_id_of(message: Any) -> RequestId:
    """The id to answer a malformed request with: its own when readable, else null."""
    if isinstance(message, dict):
        rid = message.get("id")
        if isinstance(rid, str | int) and not isinstance(rid, bool):
            return rid
    return None


def from_dockyard_error(exc: DockyardError) -> RpcError:
    """A Dockyard error met while serving a JSON-RPC request: the caller's fault (4xx other
    than 429) is -32602, anything else -32603; ``data.code`` keeps Dockyard's stable code."""
    code = INVALID_PARAMS if 400 <= exc.status < 500 and exc.status != 429 else INTERNAL_ERROR
    return RpcError(code, exc.message, {"code": exc.code})
