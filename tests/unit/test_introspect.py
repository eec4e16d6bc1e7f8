"""The assistant endpoints' graph descriptions: drawing, schemas, subgraphs."""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import Pregel
from pydantic import BaseModel
from typing_extensions import TypedDict

from dockyard.errors import DockyardError, InvalidInput
from dockyard.runtime.introspect import graph_json, graph_schemas, subgraph_schemas

SCHEMA_KEYS = {
    "graph_id",
    "input_schema",
    "output_schema",
    "state_schema",
    "config_schema",
    "context_schema",
}


class State(TypedDict):
    count: int
    log: Annotated[list[str], operator.add]


def _bump(state: State) -> dict[str, Any]:
    return {"count": state["count"] + 1, "log": ["bump"]}


def _review(state: State) -> dict[str, Any]:
    return {"log": ["review"]}


def _route(state: State) -> str:
    return "review" if state["count"] > 1 else END


def _branching_graph() -> Pregel:
    builder = StateGraph(State)
    # An object in node metadata is legal in LangGraph and not JSON: it must not leak.
    builder.add_node("bump", _bump, metadata={"owner": object(), "tags": ("a", "b")})
    builder.add_node("review", _review)
    builder.add_edge(START, "bump")
    builder.add_conditional_edges("bump", _route, {"review": "review", END: END})
    builder.add_edge("review", END)
    return builder.compile(interrupt_before=["review"], name="branching")


def _parent_graph() -> Pregel:
    builder = StateGraph(State)
    builder.add_node("child", _branching_graph())
    builder.add_edge(START, "child")
    builder.add_edge("child", END)
    return builder.compile()


def _grandparent_graph() -> Pregel:
    builder = StateGraph(State)
    builder.add_node("parent", _parent_graph())
    builder.add_edge(START, "parent")
    return builder.compile()


def _roundtrip(value: Any) -> Any:
    """Every result must be JSON data, exactly as the API will send it."""
    return json.loads(json.dumps(value, allow_nan=False))


def _node_ids(drawn: dict[str, Any]) -> set[str]:
    return {node["id"] for node in drawn["nodes"]}


# --- graph_json ------------------------------------------------------------------------------


def test_graph_json_has_conditional_edges_and_interrupts() -> None:
    drawn = _roundtrip(graph_json(_branching_graph()))

    assert set(drawn) == {"nodes", "edges"}
    assert _node_ids(drawn) == {"__start__", "bump", "review", "__end__"}
    edges = {(e["source"], e["target"]): e for e in drawn["edges"]}
    assert edges["bump", "review"]["conditional"] is True
    assert edges["bump", "__end__"]["conditional"] is True
    assert "conditional" not in edges["__start__", "bump"]
    assert "conditional" not in edges["review", "__end__"]

    nodes = {node["id"]: node for node in drawn["nodes"]}
    assert set(nodes["bump"]) <= {"id", "type", "data", "metadata"}
    assert nodes["bump"]["type"] == "runnable"
    assert nodes["bump"]["data"] == {"name": "bump"}
    assert nodes["bump"]["metadata"]["tags"] == ["a", "b"]
    assert isinstance(nodes["bump"]["metadata"]["owner"], str)
    assert nodes["review"]["metadata"] == {"__interrupt": "before"}
    assert nodes["__end__"] == {"id": "__end__"}


def test_graph_json_xray_shows_subgraph_nodes() -> None:
    parent = _parent_graph()

    flat = _roundtrip(graph_json(parent))
    assert _node_ids(flat) == {"__start__", "child", "__end__"}

    deep = _roundtrip(graph_json(parent, xray=True))
    assert {"child:bump", "child:review"} <= _node_ids(deep)
    assert "child" not in _node_ids(deep)
    assert any(e["source"] == "child:bump" and e.get("conditional") for e in deep["edges"])


def test_graph_json_xray_depth_limits_nesting() -> None:
    graph = _grandparent_graph()

    one = _node_ids(_roundtrip(graph_json(graph, xray=1)))
    assert "parent:child" in one
    assert not any(node.startswith("parent:child:") for node in one)

    everything = _node_ids(_roundtrip(graph_json(graph, xray=True)))
    assert "parent:child:bump" in everything

    assert _node_ids(_roundtrip(graph_json(graph, xray=0))) == {"__start__", "parent", "__end__"}


def test_graph_json_rejects_negative_xray() -> None:
    with pytest.raises(InvalidInput) as info:
        graph_json(_branching_graph(), xray=-1)
    assert info.value.status == 422


def test_graph_json_reports_drawing_failure() -> None:
    class Broken(Pregel):
        def get_graph(self, config: Any = None, *, xray: int | bool = False) -> Any:
            raise NotImplementedError("no drawing here")

    graph = _branching_graph()
    broken = Broken(
        nodes=graph.nodes,
        channels=graph.channels,
        input_channels=graph.input_channels,
        output_channels=graph.output_channels,
    )
    with pytest.raises(DockyardError) as info:
        graph_json(broken)
    assert info.value.code == "graph_draw_failed"
    assert info.value.status == 422
    assert "no drawing here" in info.value.message


# --- graph_schemas ---------------------------------------------------------------------------


def test_graph_schemas_of_a_state_graph() -> None:
    schemas = _roundtrip(graph_schemas(_branching_graph(), "agent"))

    assert set(schemas) == SCHEMA_KEYS
    assert schemas["graph_id"] == "agent"
    assert set(schemas["input_schema"]["properties"]) == {"count", "log"}
    assert set(schemas["output_schema"]["properties"]) == {"count", "log"}
    state = schemas["state_schema"]
    assert state["properties"]["count"]["type"] == "integer"
    assert state["properties"]["count"]["title"] == "Count"
    assert state["properties"]["log"]["items"] == {"type": "string"}
    assert schemas["config_schema"] == {}
    assert schemas["context_schema"] is None


class Ctx(BaseModel):
    model: str = "fake"
    temperature: float = 0.0
    thread_id: str | None = None


@dataclass
class DataCtx:
    user: str


def test_graph_schemas_with_context_schema() -> None:
    builder = StateGraph(State, context_schema=Ctx)
    builder.add_node("bump", _bump)
    builder.add_edge(START, "bump")
    schemas = _roundtrip(graph_schemas(builder.compile(), "ctx"))

    context = schemas["context_schema"]
    assert context["title"] == "Ctx"
    assert set(context["properties"]) == {"model", "temperature", "thread_id"}
    assert context["properties"]["model"]["default"] == "fake"
    # the configurable part: the same fields, without those LangGraph sets itself
    config = schemas["config_schema"]
    assert set(config["properties"]) == {"model", "temperature"}


def test_graph_schemas_with_dataclass_context() -> None:
    builder = StateGraph(State, context_schema=DataCtx)
    builder.add_node("bump", _bump)
    builder.add_edge(START, "bump")
    schemas = _roundtrip(graph_schemas(builder.compile(), "dc"))

    assert schemas["context_schema"]["required"] == ["user"]
    assert set(schemas["config_schema"]["properties"]) == {"user"}


class In(TypedDict):
    question: str


class Out(TypedDict):
    answer: str


class Full(TypedDict):
    question: str
    scratch: list[str]
    answer: str


def test_graph_schemas_with_input_and_output_differing_from_state() -> None:
    def answer(state: In) -> dict[str, Any]:
        return {"answer": state["question"].upper(), "scratch": ["thought"]}

    builder = StateGraph(Full, input_schema=In, output_schema=Out)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    schemas = _roundtrip(graph_schemas(builder.compile(), "qa"))

    assert set(schemas["input_schema"]["properties"]) == {"question"}
    assert set(schemas["output_schema"]["properties"]) == {"answer"}
    assert set(schemas["state_schema"]["properties"]) == {"question", "scratch", "answer"}


def test_graph_schemas_of_a_functional_graph() -> None:
    @task
    def double(x: int) -> int:
        return x * 2

    @entrypoint()
    def workflow(value: Any) -> dict[str, Any]:
        return {"doubled": double(value).result()}

    schemas = _roundtrip(graph_schemas(workflow, "func"))

    assert set(schemas) == SCHEMA_KEYS
    assert isinstance(schemas["input_schema"], dict)  # Any: a schema without a type
    assert "type" not in schemas["input_schema"]
    assert schemas["output_schema"]["type"] == "object"
    assert isinstance(schemas["state_schema"], dict)
    assert schemas["context_schema"] is None

    drawn = _roundtrip(graph_json(workflow))
    assert "workflow" in _node_ids(drawn)


def test_graph_schemas_degrade_to_none_per_schema() -> None:
    graph = _branching_graph()

    def boom(config: Any = None) -> dict[str, Any]:
        raise TypeError("cannot describe")

    graph.get_input_jsonschema = boom  # type: ignore[method-assign]
    schemas = _roundtrip(graph_schemas(graph, "agent"))

    assert schemas["input_schema"] is None
    assert schemas["output_schema"] is not None
    assert schemas["state_schema"] is not None


class Opaque:
    """Not a type pydantic can describe."""


class OpaqueState(TypedDict):
    handle: Opaque
    count: int


def test_state_schema_falls_back_to_any_for_undescribable_channels() -> None:
    builder = StateGraph(OpaqueState)
    builder.add_node("noop", lambda state: {})
    builder.add_edge(START, "noop")
    state = _roundtrip(graph_schemas(builder.compile(), "opaque"))["state_schema"]

    assert set(state["properties"]) == {"handle", "count"}
    assert "type" not in state["properties"]["handle"]
    assert state["properties"]["count"]["type"] == "integer"


def test_input_and_output_schemas_of_a_typing_typeddict_state() -> None:
    # pydantic refuses typing.TypedDict before Python 3.12; the schemas come from the channels.
    import typing

    class PlainState(typing.TypedDict, total=False):
        items: Annotated[list[str], operator.add]
        handle: Opaque

    builder = StateGraph(PlainState)
    builder.add_node("noop", lambda state: {})
    builder.add_edge(START, "noop")
    schemas = _roundtrip(graph_schemas(builder.compile(), "plain"))

    for key in ("input_schema", "output_schema"):
        assert set(schemas[key]["properties"]) == {"items", "handle"}
        assert schemas[key]["properties"]["items"]["type"] == "array"


# --- subgraph_schemas ------------------------------------------------------------------------


def test_subgraph_schemas_lists_children() -> None:
    subgraphs = _roundtrip(subgraph_schemas(_parent_graph(), "parent"))

    assert list(subgraphs) == ["child"]
    child = subgraphs["child"]
    assert set(child) == SCHEMA_KEYS
    assert child["graph_id"] == "parent"
    assert set(child["state_schema"]["properties"]) == {"count", "log"}

    assert subgraph_schemas(_branching_graph(), "leaf") == {}


def test_subgraph_schemas_recurse_and_namespace() -> None:
    graph = _grandparent_graph()

    assert list(subgraph_schemas(graph, "g")) == ["parent"]
    assert sorted(subgraph_schemas(graph, "g", recurse=True)) == ["parent", "parent|child"]

    only = _roundtrip(subgraph_schemas(graph, "g", namespace="parent|child", recurse=True))
    assert list(only) == ["parent|child"]
    assert list(subgraph_schemas(graph, "g", namespace="parent")) == ["parent"]
    assert subgraph_schemas(graph, "g", namespace="missing", recurse=True) == {}
