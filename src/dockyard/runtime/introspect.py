"""Describe a compiled graph for the assistant endpoints: its drawing, its schemas, its subgraphs.

The shapes match what the LangGraph Agent Server answers on ``GET /assistants/{id}/graph``,
``/schemas`` and ``/subgraphs[/{namespace}]``, so ``langgraph-sdk`` clients (and Studio-like UIs)
work unchanged. Everything returned is plain JSON data: the API layer can encode it as is.

Schemas are best effort, as in the reference server: a schema that cannot be derived is ``None``
(and logged), never an error, because a graph whose state holds an exotic type must still be
runnable and inspectable. Drawing is different: a graph that cannot be drawn is an error the
caller sees (422, as the reference server answers).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from langgraph.pregel import Pregel
from pydantic import TypeAdapter

from dockyard.errors import InvalidInput

__all__ = ["graph_json", "graph_schemas", "subgraph_schemas"]

logger = logging.getLogger(__name__)

# Keys LangGraph injects into ``configurable`` itself; a client never sets them in an
# assistant's config, so the config schema does not offer them (same list as the reference).
_EXCLUDED_CONFIG_KEYS = (
    "__pregel_checkpointer",
    "__pregel_store",
    "checkpoint_id",
    "checkpoint_ns",
    "thread_id",
)

# Node metadata and edge data are user-supplied; nesting deeper than this is cut, which also
# protects against self-referencing structures.
_MAX_DEPTH = 32

Schema = dict[str, Any]


class GraphDrawError(InvalidInput):
    """The graph could not be turned into its drawable form (a server-side graph problem)."""

    code = "graph_draw_failed"


class SubgraphsError(InvalidInput):
    """The graph's subgraphs could not be listed."""

    code = "subgraphs_unavailable"


# --------------------------------------------------------------------------------------------
# The drawing


def graph_json(graph: Pregel, *, xray: bool | int = False) -> dict[str, Any]:
    """Return ``{"nodes": [...], "edges": [...]}``: the graph as ``GET .../graph`` answers it.

    ``xray`` includes the inner nodes of subgraphs: ``True`` at every depth, a positive int up to
    that depth, ``False`` or ``0`` not at all. Nodes keep the ``{"id", "type", "data",
    "metadata"}`` shape of ``Graph.to_json()`` (keys absent there stay absent); conditional edges
    carry ``"conditional": true``; interrupt points show as ``metadata.__interrupt``.
    """
    depth = _check_xray(xray)
    try:
        drawn = graph.get_graph(xray=depth).to_json()
    except Exception as exc:
        raise GraphDrawError(f"Graph could not be drawn: {exc}", error=type(exc).__name__) from exc
    return {
        "nodes": [_node_json(node) for node in drawn.get("nodes", [])],
        "edges": [_edge_json(edge) for edge in drawn.get("edges", [])],
    }


def _check_xray(xray: bool | int) -> bool | int:
    # bool is an int subclass: test it first so True is not read as depth 1.
    if isinstance(xray, bool):
        return xray
    if isinstance(xray, int):
        if xray < 0:
            raise InvalidInput("xray must be a boolean or a non-negative integer depth", xray=xray)
        return xray
    raise InvalidInput("xray must be a boolean or a non-negative integer depth", xray=repr(xray))


def _node_json(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": _jsonable(node.get("id"))}
    if "type" in node:
        out["type"] = _jsonable(node["type"])
    if "data" in node:
        data = node["data"]
        if isinstance(data, Mapping):
            # ``data.id`` is the Python class path of the node's runnable (for example
            # ``langgraph._internal._runnable.RunnableCallable``): internal, and dropped by the
            # reference server too. ``data.name`` (or a schema) is what clients use.
            data = {k: v for k, v in data.items() if k != "id"}
        out["data"] = _jsonable(data)
    if node.get("metadata") is not None:
        out["metadata"] = _jsonable(node["metadata"])
    return out


def _edge_json(edge: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": _jsonable(edge.get("source")),
        "target": _jsonable(edge.get("target")),
    }
    if edge.get("data") is not None:
        out["data"] = _jsonable(edge["data"])
    if edge.get("conditional"):
        out["conditional"] = True
    return out


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Reduce ``value`` to JSON data; anything unknown becomes its ``str()``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, type):
        return value.__name__
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


# --------------------------------------------------------------------------------------------
# The schemas


def graph_schemas(graph: Pregel, graph_id: str) -> dict[str, Any]:
    """Return the ``GraphSchema`` of ``graph``, as ``GET /assistants/{id}/schemas`` answers it.

    Keys: ``graph_id``, ``input_schema``, ``output_schema``, ``state_schema``, ``config_schema``
    and ``context_schema``. Each schema is a JSON schema, or ``None`` when it cannot be derived.
    ``config_schema`` is the schema of ``config["configurable"]``: the context schema minus the
    keys LangGraph fills itself, ``{}`` when the graph declares none (as the reference server).
    """
    return {"graph_id": graph_id, **_schemas_of(graph)}


def subgraph_schemas(
    graph: Pregel,
    graph_id: str,
    *,
    namespace: str | None = None,
    recurse: bool = False,
) -> dict[str, dict[str, Any]]:
    """Map each subgraph's namespace (``"child"``, ``"parent|child"``) to its ``GraphSchema``.

    Follows ``Pregel.get_subgraphs``: without ``namespace``, the immediate subgraphs (all of them,
    at every depth, with ``recurse``); with one, only that subgraph, and a nested namespace is
    only found with ``recurse=True``. An unknown namespace gives ``{}``. Every entry carries the
    assistant's ``graph_id``, the graph the subgraph belongs to.
    """
    try:
        found = list(graph.get_subgraphs(namespace=namespace, recurse=recurse))
    except Exception as exc:
        raise SubgraphsError(
            f"Subgraphs could not be listed: {exc}", namespace=namespace, error=type(exc).__name__
        ) from exc
    return {ns: {"graph_id": graph_id, **_schemas_of(sub)} for ns, sub in found}


def _schemas_of(graph: object) -> dict[str, Schema | None]:
    # ``graph`` is a Pregel or any PregelProtocol (a subgraph can be a RemoteGraph), so every
    # method is looked up defensively.
    return {
        "input_schema": _best_effort(graph, "input", _input_schema),
        "output_schema": _best_effort(graph, "output", _output_schema),
        "state_schema": _best_effort(graph, "state", _state_schema),
        "config_schema": _best_effort(graph, "config", _config_schema),
        "context_schema": _best_effort(graph, "context", _context_schema),
    }


def _best_effort(graph: object, kind: str, derive: Callable[[Any], Schema | None]) -> Schema | None:
    try:
        schema = derive(graph)
    except Exception as exc:
        logger.warning(
            "graph_schema_unavailable",
            extra={
                "graph": getattr(graph, "name", None),
                "schema": kind,
                "error": f"{type(exc).__name__}: {exc}",
            },
        )
        return None
    if schema is None:
        return None
    # A pydantic schema is JSON already, but a field default can be any object.
    result = _jsonable(schema)
    return result if isinstance(result, dict) else None


def _input_schema(graph: Any) -> Schema | None:
    try:
        return _call_schema_method(graph, "get_input_jsonschema")
    except pydantic.PydanticUserError as exc:
        return _builder_schema(graph, "input_schema", "Input", exc)


def _output_schema(graph: Any) -> Schema | None:
    try:
        return _call_schema_method(graph, "get_output_jsonschema")
    except pydantic.PydanticUserError as exc:
        return _builder_schema(graph, "output_schema", "Output", exc)


def _builder_schema(graph: Any, attr: str, suffix: str, error: Exception) -> Schema | None:
    """Fallback for a StateGraph whose input/output type pydantic cannot describe.

    The common case: a ``typing.TypedDict`` state on Python < 3.12, or a field of an opaque type.
    The schema is then built from the channels of that type's keys, the way the state schema is
    (an undescribable field becomes ``Any``); otherwise ``error`` stands.
    """
    builder = getattr(graph, "builder", None)
    schemas = getattr(builder, "schemas", None)
    typ = getattr(builder, attr, None)
    if not isinstance(schemas, Mapping) or typ not in schemas:
        raise error
    return _channels_schema(graph, list(schemas[typ]), suffix)


def _context_schema(graph: Any) -> Schema | None:
    return _call_schema_method(graph, "get_context_jsonschema")


def _call_schema_method(graph: Any, name: str) -> Schema | None:
    method = getattr(graph, name, None)
    if method is None:
        return None
    result = method()
    return result if isinstance(result, dict) else None


def _state_schema(graph: Any) -> Schema | None:
    """The state as the reference server describes it: one optional field per stream channel.

    Built from the channels rather than ``builder.state_schema`` so that every Pregel works
    (functional API, hand-built Pregel), and a channel whose type pydantic cannot describe
    degrades to ``Any`` instead of losing the whole schema.
    """
    native = getattr(graph, "get_state_jsonschema", None)  # not in langgraph 1.2; future-proof
    if callable(native):
        result = native()
        return result if isinstance(result, dict) else None
    channel_names = getattr(graph, "stream_channels_list", None)
    if channel_names is None:
        return None
    return _channels_schema(graph, channel_names, "State")


def _channels_schema(graph: Any, channel_names: list[str], suffix: str) -> Schema | None:
    channels = getattr(graph, "channels", None)
    if not isinstance(channels, Mapping):
        return None
    fields: dict[str, Any] = {}
    for index, key in enumerate(channel_names):
        # Python names are generated and the channel name is the alias: channel names may be
        # anything ("__end__", "my-key", "model_config") and must not clash with BaseModel.
        fields[f"channel_{index}"] = (
            _describable_type(channels.get(key)),
            pydantic.Field(default=None, alias=key, title=_field_title(key)),
        )
    model = pydantic.create_model(_graph_name(graph, suffix), **fields)
    return model.model_json_schema(by_alias=True)


def _describable_type(channel: object) -> Any:
    try:
        typ = getattr(channel, "UpdateType", Any)
        TypeAdapter(typ).json_schema()
    except Exception:
        return Any
    return typ


def _field_title(name: str) -> str:
    # pydantic's own rule for a field's default title, applied to the channel name.
    return name.title().replace("_", " ").strip()


def _graph_name(graph: Any, suffix: str) -> str:
    get_name = getattr(graph, "get_name", None)
    if callable(get_name):
        name = get_name(suffix)
        if isinstance(name, str) and name:
            return name
    return f"LangGraph{suffix}"


def _config_schema(graph: Any) -> Schema | None:
    """The ``configurable`` part of the config: LangGraph >= 1.0 types it by the context schema.

    Derived directly instead of through the deprecated ``Pregel.config_schema()``, which builds
    ``configurable: context_schema`` and nothing else.
    """
    if not hasattr(graph, "context_schema"):
        return None  # not a local Pregel (a RemoteGraph subgraph): nothing to derive from
    context = graph.context_schema
    if context is None:
        return {}
    schema = TypeAdapter(context).json_schema()
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key in _EXCLUDED_CONFIG_KEYS:
            properties.pop(key, None)
    return schema
