"""JSON encoding of graph values for the API, SSE streams and storage.

Graph state holds LangChain messages, pydantic models, dataclasses, Interrupts and other objects
that plain ``json`` cannot encode. They are turned into the same JSON shapes that the LangGraph
Agent Server sends, so clients see messages as ``{"type": "ai", "content": ..., ...}``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(obj: Any) -> Any:
    # langgraph types first: their dataclass fields need custom shapes.
    from langgraph.types import Command, Interrupt, Send

    if isinstance(obj, Interrupt):
        return {"value": obj.value, "id": obj.id}
    if isinstance(obj, Send):
        return {"node": obj.node, "arg": obj.arg}
    if isinstance(obj, Command):
        return {
            k: v
            for k, v in (
                ("graph", obj.graph),
                ("update", obj.update),
                ("resume", obj.resume),
                ("goto", obj.goto),
            )
            if v not in (None, (), [])
        }
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if hasattr(obj, "to_json") and hasattr(obj, "lc_serializable"):
        # A LangChain Serializable that is not a pydantic model.
        return obj.to_json()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bytes | bytearray):
        return base64.b64encode(bytes(obj)).decode()
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    return repr(obj)


def json_dumps(value: Any) -> bytes:
    """Encode any graph value as JSON bytes; unknown objects fall back to their repr."""
    try:
        return orjson.dumps(value, default=_default, option=_OPTS)
    except TypeError:
        # orjson rejects e.g. int keys mixed with str keys or >64-bit ints: go through a
        # pure-python pass that converts such values first.
        return orjson.dumps(_coerce(value), default=_default, option=_OPTS)


def _coerce(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _coerce(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_coerce(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    return value


def to_jsonable(value: Any) -> Any:
    """A deep copy of ``value`` made only of JSON types."""
    return orjson.loads(json_dumps(value))


def json_loads(data: bytes | str) -> Any:
    return orjson.loads(data)
