"""GraphRegistry: every kind of graph target, end to end, and every loading error."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.store.memory import InMemoryStore
from langgraph_sdk.runtime import _ExecutionRuntime, _ReadRuntime

from dockyard.config import load_project
from dockyard.errors import ConfigError, NotFound
from dockyard.runtime.loader import GraphRegistry, make_runtime, wrap_callable

STATE_GRAPH = """
from typing import TypedDict
from langgraph.graph import StateGraph, START, END

class State(TypedDict):
    n: int

def inc(state: State) -> dict:
    return {"n": state["n"] + 1}

def build() -> StateGraph:
    g = StateGraph(State)
    g.add_node("inc", inc)
    g.add_edge(START, "inc")
    g.add_edge("inc", END)
    return g
"""


@pytest.fixture(autouse=True)
def isolate_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Undo sys.path additions and forget modules loaded from this test's project."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if name.startswith("dockyard_graph_") or file.startswith(str(tmp_path)):
            del sys.modules[name]


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def project(root: Path, graphs: dict[str, Any], files: dict[str, str], **config: Any) -> Path:
    """Write a langgraph.json project and return its directory."""
    write(root, files)
    (root / "langgraph.json").write_text(json.dumps({"graphs": graphs, **config}))
    return root


def registry(root: Path) -> GraphRegistry:
    reg = GraphRegistry(load_project(root))
    reg.load_all()
    return reg


def thread(tid: str = "t1") -> dict[str, Any]:
    return {"configurable": {"thread_id": tid}}


async def run_with_saver(graph: Pregel, value: Any, tid: str = "t1") -> tuple[Any, InMemorySaver]:
    saver = InMemorySaver()
    attached = graph.copy(update={"checkpointer": saver})
    out = await attached.ainvoke(value, thread(tid))
    assert await saver.aget_tuple(thread(tid)) is not None
    assert graph.checkpointer is None, "the registry's graph must not be mutated"
    return out, saver


# ----------------------------------------------------------------- graph kinds


async def test_compiled_state_graph_from_langgraph_json(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"agent": "./agent.py:graph"},
        {"agent.py": STATE_GRAPH + "\ngraph = build().compile()\n"},
    )
    reg = registry(root)
    assert reg.graph_ids == ["agent"]
    assert reg.kind("agent") == "compiled"
    assert not reg.is_factory("agent")
    graph = await reg.get("agent")
    assert graph is await reg.get("agent")
    out, _ = await run_with_saver(graph, {"n": 1})
    assert out == {"n": 2}


async def test_uncompiled_state_graph_from_dockyard_toml(tmp_path: Path) -> None:
    write(tmp_path, {"graphs/agent.py": STATE_GRAPH + "\nbuilder = build()\n"})
    (tmp_path / "dockyard.toml").write_text('[graphs]\nagent = "./graphs/agent.py:builder"\n')
    reg = registry(tmp_path)
    assert reg.kind("agent") == "state_graph"
    graph = await reg.get("agent")
    out, saver = await run_with_saver(graph, {"n": 41})
    assert out == {"n": 42}
    state = await graph.copy(update={"checkpointer": saver}).aget_state(thread())
    assert state.values == {"n": 42}


async def test_module_target_with_dependency_dir(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"agent": "mypkg_loader_test.agents:graph"},
        {
            "src/mypkg_loader_test/__init__.py": "",
            "src/mypkg_loader_test/agents.py": "from .state import build\ngraph = build()\n",
            "src/mypkg_loader_test/state.py": STATE_GRAPH,
        },
        dependencies=["./src"],
    )
    reg = registry(root)
    assert sys.path[:2] == [str((root / "src").resolve()), str(root.resolve())]
    out, _ = await run_with_saver(await reg.get("agent"), {"n": 0})
    assert out == {"n": 1}


async def test_functional_entrypoint_used_as_is(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"fn": "./flow.py:workflow"},
        {
            "flow.py": """
            from langgraph.func import entrypoint, task

            @task
            def double(x: int) -> int:
                return x * 2

            @entrypoint()
            async def workflow(x: int) -> int:
                return await double(x)
            """
        },
    )
    reg = registry(root)
    assert reg.kind("fn") == "compiled"
    out, _ = await run_with_saver(await reg.get("fn"), 21)
    assert out == 42


CALLABLES = """
import asyncio

def sync_fn(value):
    return {"echo": value}

async def async_fn(value, config):
    await asyncio.sleep(0)
    return {"thread": config["configurable"]["thread_id"], "value": value}

def sync_gen(value):
    yield "first"
    yield {"last": value}

async def async_gen(value):
    for i in range(3):
        yield {"chunk": i}

class Agent:
    def __call__(self, value):
        return value * 3

agent_obj = Agent()
"""


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [
        ("sync_fn", {"a": 1}, {"echo": {"a": 1}}),
        ("async_fn", "hi", {"thread": "t1", "value": "hi"}),
        ("sync_gen", 7, {"last": 7}),
        ("async_gen", "go", {"chunk": 2}),
        ("agent_obj", 2, 6),
    ],
)
async def test_plain_callables_become_one_node_graphs(
    tmp_path: Path, attr: str, value: Any, expected: Any
) -> None:
    root = project(tmp_path, {"g": f"./plain.py:{attr}"}, {"plain.py": CALLABLES})
    reg = registry(root)
    assert reg.kind("g") == "callable"
    graph = await reg.get("g")
    node_name = "Agent" if attr == "agent_obj" else attr
    assert list(graph.nodes) == [node_name]
    out, saver = await run_with_saver(graph, value)
    assert out == expected
    state = await graph.copy(update={"checkpointer": saver}).aget_state(thread())
    assert state.values == expected


async def test_generators_emit_custom_stream_events(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"a": "./plain.py:async_gen", "s": "./plain.py:sync_gen"},
        {"plain.py": CALLABLES},
    )
    reg = registry(root)
    graph = (await reg.get("a")).copy(update={"checkpointer": InMemorySaver()})
    events = [e async for e in graph.astream("go", thread(), stream_mode="custom")]
    assert events == [{"chunk": 0}, {"chunk": 1}, {"chunk": 2}]

    graph = (await reg.get("s")).copy(update={"checkpointer": InMemorySaver()})
    chunks = [c async for c in graph.astream(5, thread(), stream_mode=["custom", "values"])]
    assert chunks == [("custom", "first"), ("custom", {"last": 5}), ("values", {"last": 5})]


def test_wrapped_callable_schemas_follow_annotations() -> None:
    def typed(value: dict[str, int]) -> str:
        return str(value)

    graph = wrap_callable(typed)
    assert graph.get_input_jsonschema()["type"] == "object"
    assert graph.get_output_jsonschema()["type"] == "string"
    assert graph.name == "typed"


# ----------------------------------------------------------------- factories

FACTORIES = """
from langgraph.graph import StateGraph
from langchain_core.runnables import RunnableConfig

calls = []

def one_arg(config):
    calls.append(("one_arg", config))
    return build().compile()

def annotated(cfg: RunnableConfig):
    calls.append(("annotated", cfg))
    return build()

async def two_args(config, runtime):
    calls.append(("two_args", config, runtime))
    return build().compile()

def two_args_sync(config, runtime):
    calls.append(("two_args_sync", config, runtime))
    return build()

async def no_args():
    calls.append(("no_args",))
    return build()

def runtime_only(runtime):
    calls.append(("runtime_only", runtime))
    return build().compile()

def bad(config):
    return 42

def cm(config):
    import contextlib
    return contextlib.nullcontext(build().compile())
"""


@pytest.mark.parametrize(
    "attr", ["one_arg", "annotated", "two_args", "two_args_sync", "no_args", "runtime_only"]
)
async def test_factories_are_called_per_use(tmp_path: Path, attr: str) -> None:
    root = project(
        tmp_path,
        {"f": f"./factories.py:{attr}"},
        {"factories.py": STATE_GRAPH + FACTORIES},
    )
    reg = registry(root)
    assert reg.is_factory("f")
    module = sys.modules[next(n for n in sys.modules if n.startswith("dockyard_graph_factories"))]
    store = InMemoryStore()
    config = {"configurable": {"thread_id": "t1", "model": "fake"}}
    graph = await reg.get("f", config, store=store)
    await reg.get("f", config, access_context="assistants.read", store=store)
    assert len(module.calls) == 2
    assert all(call[0] == attr for call in module.calls)

    first, second = module.calls
    if attr in ("one_arg", "annotated", "two_args", "two_args_sync"):
        assert first[1]["configurable"]["model"] == "fake"
    if attr in ("two_args", "two_args_sync", "runtime_only"):
        runtime, read_runtime = first[-1], second[-1]
        assert isinstance(runtime, _ExecutionRuntime)
        assert runtime.access_context == "threads.create_run"
        assert runtime.store is store
        assert runtime.user is None
        assert runtime.execution_runtime is runtime
        assert isinstance(read_runtime, _ReadRuntime)
        assert read_runtime.access_context == "assistants.read"
        assert read_runtime.execution_runtime is None

    out, _ = await run_with_saver(graph, {"n": 1})
    assert out == {"n": 2}


@pytest.mark.parametrize(
    ("attr", "message"),
    [("bad", "returned int"), ("cm", "context-manager graph factories are not supported")],
)
async def test_factory_with_bad_result(tmp_path: Path, attr: str, message: str) -> None:
    root = project(
        tmp_path, {"f": f"./factories.py:{attr}"}, {"factories.py": STATE_GRAPH + FACTORIES}
    )
    reg = registry(root)
    with pytest.raises(ConfigError) as info:
        await reg.get("f", {})
    assert message in str(info.value)
    assert "langgraph.json" in str(info.value)
    assert "graphs.f" in str(info.value)


def test_make_runtime_passes_context() -> None:
    runtime = make_runtime("threads.create_run", context={"user_tier": "pro"})
    assert runtime.execution_runtime.context == {"user_tier": "pro"}
    assert make_runtime("threads.read").execution_runtime is None


# ----------------------------------------------------------------- registry behaviour


async def test_unknown_graph_is_not_found(tmp_path: Path) -> None:
    root = project(tmp_path, {"g": "./plain.py:sync_fn"}, {"plain.py": CALLABLES})
    reg = registry(root)
    with pytest.raises(NotFound, match="Graph 'nope' not found"):
        await reg.get("nope")
    with pytest.raises(NotFound):
        reg.spec("nope")
    assert reg.spec("g").target == "./plain.py:sync_fn"


async def test_get_loads_lazily(tmp_path: Path) -> None:
    root = project(tmp_path, {"g": "./plain.py:sync_fn"}, {"plain.py": CALLABLES})
    reg = GraphRegistry(load_project(root))
    out, _ = await run_with_saver(await reg.get("g"), 1)
    assert out == {"echo": 1}


async def test_sibling_imports_pickling_and_one_module_per_file(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"a": "./agents/main.py:graph", "b": "./agents/main.py:other"},
        {
            "agents/helpers_loader_test.py": "def answer():\n    return 42\n",
            "agents/main.py": """
            from dataclasses import dataclass
            from helpers_loader_test import answer

            @dataclass
            class Point:
                x: int

            LOADS = [1]

            def graph(value):
                return answer()

            def other(value):
                return len(LOADS)
            """,
        },
    )
    reg = registry(root)
    assert str((root / "agents").resolve()) in sys.path
    out, _ = await run_with_saver(await reg.get("a"), "x")
    assert out == 42
    names = [n for n in sys.modules if n.startswith("dockyard_graph_main_")]
    assert len(names) == 1
    module = sys.modules[names[0]]
    point = module.Point(3)
    assert pickle.loads(pickle.dumps(point)) == point


def test_load_all_twice_adds_no_duplicate_paths(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"g": "./plain.py:sync_fn"},
        {"plain.py": CALLABLES, "lib/.keep": ""},
        dependencies=[".", "./lib", "some-pypi-package"],
    )
    reg = registry(root)
    reg.load_all()
    for entry in (str(root.resolve()), str((root / "lib").resolve())):
        assert sys.path.count(entry) == 1


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("target", "files", "expected"),
    [
        ("./missing.py:graph", {}, "file './missing.py' not found"),
        ("no_such_module_xyz:graph", {}, "ModuleNotFoundError: No module named"),
        ("./plain.py:nope", {"plain.py": CALLABLES}, "has no attribute 'nope'"),
        ("./plain.py:Agent", {"plain.py": CALLABLES}, "is a class, not a graph"),
        ("./consts.py:VALUE", {"consts.py": "VALUE = 3\n"}, "is int, not a graph"),
        (
            "./broken.py:graph",
            {"broken.py": "x = 1\ndef f(:\n"},
            "SyntaxError",
        ),
        (
            "./imports.py:graph",
            {"imports.py": "x = 1\nimport not_installed_pkg_xyz\n"},
            "ModuleNotFoundError: No module named 'not_installed_pkg_xyz' (at ",
        ),
        (
            "./raises.py:graph",
            {"raises.py": "\n\nraise RuntimeError('boom at import')\n"},
            "RuntimeError: boom at import (at ",
        ),
    ],
)
def test_load_errors_name_file_key_and_cause(
    tmp_path: Path, target: str, files: dict[str, str], expected: str
) -> None:
    root = project(tmp_path, {"agent": target}, files)
    reg = GraphRegistry(load_project(root))
    with pytest.raises(ConfigError) as info:
        reg.load_all()
    message = str(info.value)
    assert "langgraph.json" in message
    assert "key 'graphs.agent'" in message
    assert expected in message
    assert info.value.code == "config_error"


@pytest.mark.parametrize(
    ("file", "content", "location"),
    [
        ("imports.py", "x = 1\nimport not_installed_pkg_xyz\n", "imports.py:2"),
        ("raises.py", "\n\nraise RuntimeError('boom')\n", "raises.py:3"),
        ("broken.py", "x = 1\ndef f(:\n", "broken.py:2"),
    ],
)
def test_import_errors_point_at_the_line(
    tmp_path: Path, file: str, content: str, location: str
) -> None:
    root = project(tmp_path, {"agent": f"./{file}:graph"}, {file: content})
    with pytest.raises(ConfigError, match=location.replace(".", r"\.")):
        GraphRegistry(load_project(root)).load_all()
