"""Load the graphs a project names and turn each into a LangGraph ``Pregel``.

A graph target (``./agent.py:graph`` or ``my_pkg.agents:graph``) may name:

(a) a compiled graph — any ``Pregel``, including ``CompiledStateGraph`` and Functional API
    ``@entrypoint`` objects — used as is;
(b) an uncompiled ``StateGraph`` — compiled once, at load time;
(c) a graph *factory*, called on every use (each run, each introspection) and returning (a) or
    (b). A callable is a factory when its parameter list is empty, or its first parameter is
    named ``config`` or annotated ``RunnableConfig`` (it receives the run's config), or its first
    parameter is named ``runtime`` or annotated ``ServerRuntime`` (it receives the runtime). After
    a ``config`` parameter, a parameter named ``runtime`` receives the runtime too. The runtime
    is a ``langgraph_sdk.runtime.ServerRuntime`` (``access_context``, ``user``, ``store`` and, when
    executing, ``context``). Factories may be ``async``;
(d) any other callable — a plain Python agent. It becomes a one-node Functional API graph: the
    run input is its first argument, a second parameter named ``config`` gets the RunnableConfig,
    and what it returns is the output. A (sync or async) generator's items are emitted on the
    ``custom`` stream mode and the last item is the output.

Graphs are built without a checkpointer or store; the executor attaches its own with
``graph.copy(update={"checkpointer": ..., "store": ...})``. Graphs handed out by
:meth:`GraphRegistry.get` are shared, so callers must copy rather than mutate them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.func import entrypoint
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from dockyard.config import GraphSpec, ProjectConfig
from dockyard.errors import ConfigError, NotFound

AccessContext = Literal["threads.create_run", "threads.update", "threads.read", "assistants.read"]

GraphKind = Literal["compiled", "state_graph", "factory", "callable"]

_NON_IDENT = re.compile(r"\W")


@dataclass(frozen=True, kw_only=True)
class FactoryRuntime:
    """Stand-in for ``langgraph_sdk.runtime.ServerRuntime`` if that cannot be built."""

    access_context: str
    user: Any = None
    store: Any = None
    context: Any = None

    @property
    def execution_runtime(self) -> FactoryRuntime | None:
        return self if self.access_context == "threads.create_run" else None


def make_runtime(
    access_context: str, *, store: Any = None, user: Any = None, context: Any = None
) -> Any:
    """The runtime object a factory receives: the SDK's ``ServerRuntime`` when available."""
    try:
        from langgraph_sdk.runtime import _ExecutionRuntime, _ReadRuntime
    except ImportError:  # pragma: no cover - the SDK is a dependency of langgraph
        return FactoryRuntime(
            access_context=access_context, user=user, store=store, context=context
        )
    if access_context == "threads.create_run":
        return _ExecutionRuntime(
            access_context="threads.create_run", user=user, store=store, context=context
        )
    return _ReadRuntime(
        access_context=access_context,  # type: ignore[arg-type]
        user=user,
        store=store,
    )


@dataclass(frozen=True)
class _FactoryCall:
    """How to call a factory: which of config/runtime it takes, and positionally or by name."""

    params: tuple[tuple[str, bool], ...]  # ("config" | "runtime", by_keyword)


@dataclass
class _Loaded:
    kind: GraphKind
    graph: Pregel | None = None
    factory: Callable[..., Any] | None = None
    call: _FactoryCall | None = None


class GraphRegistry:
    """The project's graphs, by graph id. Call :meth:`load_all` once at startup."""

    def __init__(self, project: ProjectConfig) -> None:
        self.project = project
        self._loaded: dict[str, _Loaded] = {}
        self._file_modules: dict[Path, ModuleType] = {}

    # ---------------------------------------------------------------- loading

    def load_all(self) -> None:
        """Put the project on ``sys.path`` and import every graph target.

        Raises ConfigError (naming the config file and ``graphs.<id>``) for the first target that
        cannot be imported or is not something a graph can be made from.
        """
        # Inserted at the front, ending in config order: dependencies as listed, then the root.
        for path in reversed([*self.project.dependency_paths, self.project.root.resolve()]):
            _add_sys_path(path)
        loaded: dict[str, _Loaded] = {}
        for graph_id, spec in self.project.graphs.items():
            obj = self._import_target(spec)
            loaded[graph_id] = self._classify(spec, obj)
        self._loaded = loaded

    def _error(self, spec: GraphSpec, message: str) -> ConfigError:
        return ConfigError(message, file=str(self.project.source), key=f"graphs.{spec.graph_id}")

    def _import_target(self, spec: GraphSpec) -> Any:
        module = self._import_file(spec) if spec.is_file else self._import_module(spec)
        obj: Any = module
        for part in spec.attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise self._error(
                    spec, f"{spec.location!r} has no attribute {spec.attr!r}"
                ) from None
        return obj

    def _import_module(self, spec: GraphSpec) -> ModuleType:
        try:
            return importlib.import_module(spec.location)
        except Exception as exc:
            raise self._error(
                spec, f"cannot import module {spec.location!r}: {_describe(exc)}"
            ) from exc

    def _import_file(self, spec: GraphSpec) -> ModuleType:
        path = (self.project.root / spec.location).resolve()
        if path in self._file_modules:
            return self._file_modules[path]
        if not path.is_file():
            raise self._error(spec, f"file {spec.location!r} not found (looked at {path})")
        # Siblings of the file (``import utils``) must be importable, as when run as a script.
        _add_sys_path(path.parent)
        # A stable, unique name: pickled objects refer to it, and two projects' ``agent.py``
        # files must not collide. Registering it in sys.modules is what lets pickle find it.
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        name = f"dockyard_graph_{_NON_IDENT.sub('_', path.stem)}_{digest}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise self._error(spec, f"cannot load {spec.location!r} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        # Re-executed on each load_all of a new registry: `dockyard dev` reloads this way.
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise self._error(spec, f"cannot import {spec.location!r}: {_describe(exc)}") from exc
        self._file_modules[path] = module
        return module

    def _classify(self, spec: GraphSpec, obj: Any) -> _Loaded:
        if isinstance(obj, Pregel):
            return _Loaded(kind="compiled", graph=obj)
        if isinstance(obj, StateGraph):
            try:
                return _Loaded(kind="state_graph", graph=obj.compile())
            except Exception as exc:
                raise self._error(spec, f"cannot compile StateGraph: {_describe(exc)}") from exc
        if isinstance(obj, type) or not callable(obj):
            raise self._error(
                spec,
                f"{spec.attr!r} is {type(obj).__name__ if not isinstance(obj, type) else 'a class'}"
                ", not a graph: expected a compiled graph, a StateGraph, a graph factory or a"
                " function",
            )
        call = _factory_call(obj)
        if call is not None:
            return _Loaded(kind="factory", factory=obj, call=call)
        try:
            graph = wrap_callable(obj)
        except Exception as exc:
            raise self._error(spec, f"cannot wrap {spec.attr!r}: {_describe(exc)}") from exc
        return _Loaded(kind="callable", graph=graph)

    # ---------------------------------------------------------------- access

    def _entry(self, graph_id: str) -> _Loaded:
        if not self._loaded:
            self.load_all()
        entry = self._loaded.get(graph_id)
        if entry is None:
            raise NotFound(f"Graph '{graph_id}' not found")
        return entry

    @property
    def graph_ids(self) -> list[str]:
        """Graph ids in the order the config file lists them."""
        return list(self.project.graphs)

    def spec(self, graph_id: str) -> GraphSpec:
        try:
            return self.project.graphs[graph_id]
        except KeyError:
            raise NotFound(f"Graph '{graph_id}' not found") from None

    def is_factory(self, graph_id: str) -> bool:
        return self._entry(graph_id).kind == "factory"

    def kind(self, graph_id: str) -> GraphKind:
        """How the graph was defined: compiled, state_graph, factory or callable."""
        return self._entry(graph_id).kind

    async def get(
        self,
        graph_id: str,
        config: RunnableConfig | dict[str, Any] | None = None,
        *,
        access_context: AccessContext | str = "threads.create_run",
        store: Any = None,
        user: Any = None,
        context: Any = None,
    ) -> Pregel:
        """The graph for ``graph_id``; a factory is called now, with ``config`` and a runtime.

        The result is shared and has no checkpointer: copy it, never mutate it.
        """
        entry = self._entry(graph_id)
        if entry.graph is not None:
            return entry.graph
        assert entry.factory is not None and entry.call is not None
        runtime = make_runtime(access_context, store=store, user=user, context=context)
        values = {"config": dict(config or {}), "runtime": runtime}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, by_keyword in entry.call.params:
            if by_keyword:
                kwargs[name] = values[name]
            else:
                args.append(values[name])
        result = entry.factory(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return self._factory_result(self.spec(graph_id), result)

    def _factory_result(self, spec: GraphSpec, result: Any) -> Pregel:
        if isinstance(result, Pregel):
            return result
        if isinstance(result, StateGraph):
            return result.compile()
        if hasattr(result, "__aenter__") or hasattr(result, "__enter__"):
            raise self._error(
                spec, "context-manager graph factories are not supported; return the graph"
            )
        raise self._error(
            spec,
            f"graph factory returned {type(result).__name__}: expected a compiled graph or a"
            " StateGraph",
        )


# -------------------------------------------------------------------- helpers


def _add_sys_path(path: Path) -> None:
    entry = str(path)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _describe(exc: BaseException) -> str:
    """``Type: message``, plus where it was raised in user code (skipping import machinery)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{text} (at {exc.filename}:{exc.lineno})"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<frozen") and f.filename != __file__
    ]
    if frames:
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return text


def _annotation_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", None) or repr(annotation)


def _factory_call(obj: Callable[..., Any]) -> _FactoryCall | None:
    """How to call ``obj`` if it is a graph factory (see the module docstring), else None."""
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params:
        return _FactoryCall(params=())

    def role(p: inspect.Parameter) -> str | None:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return None
        ann = _annotation_name(p.annotation)
        if p.name == "config" or "RunnableConfig" in ann:
            return "config"
        if p.name == "runtime" or "ServerRuntime" in ann:
            return "runtime"
        return None

    first = role(params[0])
    if first is None:
        return None
    call = [(first, params[0].kind == inspect.Parameter.KEYWORD_ONLY)]
    if first == "config" and len(params) > 1 and role(params[1]) == "runtime":
        call.append(("runtime", params[1].kind == inspect.Parameter.KEYWORD_ONLY))
    return _FactoryCall(params=tuple(call))


def _evaluated_signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    for eval_str in (True, False):
        try:
            return inspect.signature(fn, eval_str=eval_str)
        except Exception:
            continue
    return None


def wrap_callable(fn: Callable[..., Any], name: str | None = None) -> Pregel:
    """A one-node Functional API graph around a plain function (see the module docstring).

    The graph's input/output schemas come from the function's annotations when they resolve.
    """
    node_name = name or getattr(fn, "__name__", None) or type(fn).__name__
    sig = _evaluated_signature(fn)
    params = list(sig.parameters.values()) if sig is not None else []
    wants_config = len(params) > 1 and params[1].name == "config"
    config_by_keyword = wants_config and params[1].kind == inspect.Parameter.KEYWORD_ONLY

    def call(value: Any, config: RunnableConfig) -> Any:
        if not wants_config:
            return fn(value)
        return fn(value, config=config) if config_by_keyword else fn(value, config)

    call_target = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    is_async_gen = inspect.isasyncgenfunction(fn) or inspect.isasyncgenfunction(call_target)
    is_gen = inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(call_target)
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call_target)

    node: Callable[..., Any]
    if is_async_gen:

        async def node_async_gen(value: Any, config: RunnableConfig) -> Any:
            writer = get_stream_writer()
            last: Any = None
            stream: AsyncIterator[Any] = call(value, config)
            async for item in stream:
                writer(item)
                last = item
            return last

        node = node_async_gen
    elif is_gen:

        def node_gen(value: Any, config: RunnableConfig) -> Any:
            writer = get_stream_writer()
            last: Any = None
            stream: Iterator[Any] = call(value, config)
            for item in stream:
                writer(item)
                last = item
            return last

        node = node_gen
    elif is_async:

        async def node_async(value: Any, config: RunnableConfig) -> Any:
            return await call(value, config)

        node = node_async
    else:

        def node_sync(value: Any, config: RunnableConfig) -> Any:
            return call(value, config)

        node = node_sync

    # The entrypoint reads the node's name and signature: name the node after the function and
    # expose the function's input/output annotations as the graph's schemas.
    input_type: Any = Any
    output_type: Any = Any
    if sig is not None:
        if params and params[0].annotation is not inspect.Parameter.empty:
            input_type = params[0].annotation
        if not (is_gen or is_async_gen) and sig.return_annotation is not inspect.Signature.empty:
            output_type = sig.return_annotation
    if isinstance(input_type, str):
        input_type = Any
    if isinstance(output_type, str):
        output_type = Any
    node.__name__ = node_name
    node.__signature__ = inspect.Signature(  # type: ignore[union-attr]
        [
            inspect.Parameter(
                "value", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=input_type
            ),
            inspect.Parameter(
                "config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=RunnableConfig
            ),
        ],
        return_annotation=output_type,
    )
    graph = entrypoint()(node)
    graph.name = node_name
    return graph
