"""Execute one claimed run: load its graph, stream it with the checkpointer, record the outcome.

Crash recovery rests on one check: if the thread's latest checkpoint was written by this run,
the run had started before the process died, so it resumes from that checkpoint (input None)
and LangGraph re-runs only the tasks that had not finished. Only a run claimed before can have
written one, so a run's first claim skips the check (``first_claim``). Runs default to
``durability=sync`` so a step's checkpoint is on disk before the next step starts.

The run's own stream reports its root checkpoints (LangGraph's ``checkpoints`` mode, added to
the modes the client asked for and not published unless asked): the first tells where the run
started (its trace's base checkpoint), the last, when nothing is left to run, is the thread's
final state. Neither is read back from the checkpointer then (``CheckpointWatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from langchain_core._api import LangChainBetaWarning
from langgraph.channels.untracked_value import UntrackedValue
from langgraph.constants import START, TASKS
from langgraph.graph import StateGraph
from langgraph.types import Command, Send

from dockyard.errors import DockyardError
from dockyard.runtime.loader import GraphRegistry
from dockyard.runtime.protocol import ProtocolPublisher
from dockyard.runtime.streaming import (
    MessageAccumulator,
    event_name,
    langgraph_modes,
)
from dockyard.runtime.trace import TraceRecorder
from dockyard.runtime.tracing import run_span
from dockyard.serde import json_dumps, to_jsonable
from dockyard.storage.base import Storage, utcnow
from dockyard.storage.queue import RUN_THREAD_CHECKPOINTED, RunQueue, first_claim, public_run
from dockyard.storage.resources import Assistants, Threads
from dockyard.storage.traces import Traces, header_statement, span_statements
from dockyard.storage.webhooks import Statement
from dockyard.streams.base import RESULT_EVENT, EventBus

log = logging.getLogger("dockyard.executor")

RESUME = object()  # _input_for's answer when the run had started before: continue, don't restart


@dataclass
class ExecutionDeps:
    storage: Storage
    bus: EventBus
    registry: GraphRegistry
    store: Any
    webhooks: Any = None  # dockyard.runtime.webhooks.WebhookDeliverer
    metrics: Any = None  # dockyard.runtime.metrics.Metrics; None: not measured
    tracer: Any = None  # an OpenTelemetry Tracer when tracing is configured (runtime/tracing.py)
    record_traces: bool = True  # persisted run traces (runtime/trace.py), DOCKYARD_TRACES
    trace_max_value_bytes: int = 16384  # DOCKYARD_TRACE_MAX_VALUE_BYTES
    # Assistant versions by (tenant, assistant_id, version): versions are never changed once
    # written, so each worker process reads one at most once (bounded: cleared when full).
    versions: dict[tuple[str, str, int], dict[str, Any]] = field(init=False, default_factory=dict)
    queue: RunQueue = field(init=False)
    threads: Threads = field(init=False)
    assistants: Assistants = field(init=False)
    traces: Traces = field(init=False)

    def __post_init__(self) -> None:
        self.queue = RunQueue(self.storage)
        self.threads = Threads(self.storage)
        self.assistants = Assistants(self.storage)
        self.traces = Traces(self.storage)


class TransientRunError(Exception):
    """The run stopped on a transient infrastructure error; it should be retried, not failed."""


class RunCancelled(Exception):
    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


class FinalState(NamedTuple):
    """The parts of a ``StateSnapshot`` the executor reads, for a run that ran to its end."""

    values: Any
    next: tuple[str, ...] = ()
    interrupts: tuple[Any, ...] = ()
    tasks: tuple[Any, ...] = ()


@dataclass
class CheckpointWatch:
    """The run's root checkpoints, as its stream reports them (``checkpoints`` mode).

    ``base_from`` says where the run's trace starts, when it was not read before the run:
    ``"parent"`` of the first checkpoint (the run's input checkpoint, written on top of the
    thread's latest) or the first checkpoint ``"self"`` (a run without input continues the
    thread's latest). With ``durability=exit`` the parent of an unsaved checkpoint is unsaved
    too, so such runs read the base before they start instead.
    """

    recorder: TraceRecorder | None = None
    base_from: str | None = None
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None

    def saw(self, checkpoint: dict[str, Any]) -> None:
        if self.first is None:
            self.first = checkpoint
            if self.base_from is not None and self.recorder is not None:
                config = checkpoint.get("config" if self.base_from == "self" else "parent_config")
                self.recorder.base_checkpoint_id = _checkpoint_id(config)
        self.last = checkpoint

    def final_state(self, graph: Any) -> FinalState | None:
        """The thread's state after a run that ran to its end (nothing next, so no interrupt),
        or None: read it from the checkpointer."""
        last = self.last
        if last is None or last.get("next") or last.get("tasks"):
            return None
        if any(isinstance(ch, UntrackedValue) for ch in getattr(graph, "channels", {}).values()):
            return None  # live values the checkpoint does not hold
        return FinalState(values=last.get("values"))


def _checkpoint_id(config: Any) -> str | None:
    return ((config or {}).get("configurable") or {}).get("checkpoint_id")


def merge_configs(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    base, override = base or {}, override or {}
    out = {**base, **override}
    for key in ("configurable", "metadata"):
        if key in base or key in override:
            out[key] = {**base.get(key, {}), **override.get(key, {})}
    for key in ("tags",):
        if key in base or key in override:
            out[key] = list(dict.fromkeys([*base.get(key, []), *override.get(key, [])]))
    return out


def build_command(cmd: dict[str, Any]) -> Command[Any]:
    goto = cmd.get("goto")
    if goto is not None:
        items = goto if isinstance(goto, list) else [goto]
        goto = [
            Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in items
        ]
    return Command(update=cmd.get("update"), resume=cmd.get("resume"), goto=goto or ())


async def thread_graph_config(
    deps: ExecutionDeps, run: dict[str, Any]
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Resolve the assistant version the run recorded and build the graph and its config."""
    kwargs = run["kwargs"]
    key = (run["tenant_id"], run["assistant_id"], run["assistant_version"])
    version = deps.versions.get(key)
    if version is None:
        version = await deps.assistants.get_version(*key)
        if version is not None:
            if len(deps.versions) >= 1024:
                deps.versions.clear()
            deps.versions[key] = version
    if version is None:
        version = await deps.assistants.get(run["tenant_id"], run["assistant_id"])
    a_config = version["config"] if version else {}
    a_context = version["context"] if version else {}
    config = merge_configs(a_config, kwargs.get("config"))
    configurable = config.setdefault("configurable", {})
    configurable.update(
        {
            "thread_id": run["thread_id"],
            "run_id": run["run_id"],
            "assistant_id": run["assistant_id"],
            "graph_id": run["graph_id"],
        }
    )
    checkpoint = kwargs.get("checkpoint") or {}
    checkpoint_id = kwargs.get("checkpoint_id") or checkpoint.get("checkpoint_id")
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    if checkpoint.get("checkpoint_ns"):
        configurable["checkpoint_ns"] = checkpoint["checkpoint_ns"]
    config["metadata"] = {
        **(version or {}).get("metadata", {}),
        **config.get("metadata", {}),
        **run["metadata"],
        "run_id": run["run_id"],
        "thread_id": run["thread_id"],
        "assistant_id": run["assistant_id"],
        "graph_id": run["graph_id"],
        "run_attempt": run["attempts"],
    }
    config["run_id"] = run["run_id"]
    context = {**(a_context or {}), **(kwargs.get("context") or {})}
    # The run's tenant sees only its own store items (get_store() in a node).
    store = deps.store.for_tenant(run["tenant_id"]) if hasattr(deps.store, "for_tenant") \
        else deps.store
    graph = await deps.registry.get(run["graph_id"], config, store=store)
    graph = graph.copy(update={"checkpointer": deps.storage.checkpointer, "store": store})
    return graph, config, context


async def execute_run(deps: ExecutionDeps, run: dict[str, Any]) -> str:
    """Run to completion (or interrupt/cancel/error); returns the final run status."""
    if deps.tracer is None:
        return await _execute_run(deps, run)
    with run_span(deps.tracer, run) as span:
        try:
            status = await _execute_run(deps, run)
        except asyncio.CancelledError:
            span.set_attribute("dockyard.run.status", "abandoned")  # shutdown: re-queued
            raise
        span.set_attribute("dockyard.run.status", status)
        return status


async def _execute_run(deps: ExecutionDeps, run: dict[str, Any]) -> str:
    run_id, thread_id = run["run_id"], run["thread_id"]
    bus = deps.bus
    task = asyncio.current_task()
    cancel_action: list[str] = []

    handled: list[bool] = []

    def on_control(action: str) -> None:
        if not cancel_action:
            cancel_action.append(action)
            _cancel_until_handled()

    def _cancel_until_handled() -> None:
        # Code inside a graph (a node, a library) may catch CancelledError and carry on; keep
        # cancelling until the executor's own handler has taken it.
        if task is not None and not task.done() and not handled:
            task.cancel()
            asyncio.get_running_loop().call_later(0.2, _cancel_until_handled)

    bus.register_control(run_id, on_control)
    status, error = "success", None
    retry_later = False
    final_values: Any = None
    graph: Any = None
    # Runs started through the thread protocol (POST /threads/{id}/commands) stream protocol
    # events on the thread's channel instead of the run's SSE modes.
    proto = (
        ProtocolPublisher(bus, thread_id, run_id, run.get("graph_id") or run["assistant_id"])
        if run["kwargs"].get("protocol") == "v3" else None
    )
    pending: list[tuple[list[str], Any]] = []
    thread_outcome: Statement | None = None  # committed with the run's outcome
    recorder = _recorder(deps, run)
    watch: CheckpointWatch | None = None
    holding: Any = _NOT_HOLDING
    try:
        try:
            # Inside the try: a cancel can land on any await from here on, these included,
            # and must end as a cancelled run, not escape as a shutdown.
            await bus.send(
                run_id, "metadata", json_dumps({"run_id": run_id, "attempt": run["attempts"]})
            )
            graph, config, context = await thread_graph_config(deps, run)
            if recorder is not None:
                config["callbacks"] = [*(config.get("callbacks") or []), recorder]
            if proto is not None:
                await proto.started()
            async with _hold_checkpoints(deps, run, graph) as holding:
                if proto is not None:
                    await _stream_protocol(deps, run, graph, config, context, proto)
                else:
                    watch = _watch(run, recorder)
                    await _stream(deps, run, graph, config, context, watch)
            state: Any = watch.final_state(graph) if watch is not None else None
            if state is None:
                await holding.flush()  # the read must see the run's last checkpoint
                state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
            interrupted = bool(state.next) or bool(state.interrupts)
            pending = _pending_interrupts(state)
            final_values = to_jsonable(state.values)
            if state.interrupts:
                final_values = (
                    final_values if isinstance(final_values, dict) else {"__root__": final_values}
                )
                final_values["__interrupt__"] = to_jsonable(list(state.interrupts))
            status = "interrupted" if interrupted else "success"
            thread_outcome = deps.threads.update_statement(
                run["tenant_id"], thread_id,
                status="interrupted" if interrupted else "idle",
                values=to_jsonable(state.values),
                interrupts=_interrupt_map(state),
                error=None,
            )
        except asyncio.CancelledError:
            if not cancel_action:
                raise  # shutdown: leave the run claimed; it is re-queued at next start
            handled.append(True)
            while task is not None and task.cancelling():
                task.uncancel()  # the cancel was ours and is handled: later awaits run normally
            await holding.flush()  # before a rollback deletes the run's checkpoints
            status = await _on_cancel(deps, run, cancel_action[0])
            # `wait`/`join` of a cancelled run answer with the thread's values, as they stand.
            final_values = await _latest_values(graph, thread_id)
        except Exception as exc:
            if deps.storage.is_transient(exc):
                # The database blinked (restart, failover): not the graph's fault. Keep the
                # stream open and let the pool hand the run back to the queue.
                retry_later = True
                raise TransientRunError(str(exc)) from exc
            status = "error"
            error = {
                "error": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(limit=20),
            }
            final_values = {"__error__": {"error": error["error"], "message": error["message"]}}
            await _flush_quietly(holding, run_id)
            log.info("run_failed run_id=%s error=%s: %s", run_id, type(exc).__name__, exc)
            await bus.publish(
                run_id, "error", json_dumps({"error": error["error"], "message": error["message"]})
            )
            # Like the reference server, the thread shows the state of its last checkpoint.
            values = await _latest_values(graph, thread_id)
            await deps.threads.update(
                run["tenant_id"], thread_id, status="error", error=error["message"],
                **({"values": values} if values is not None else {}),
            )
        if status != "rolled_back":
            # The webhook delivery and the trace's last rows are written with the outcome: a
            # crash between the two cannot lose them (the delivery loop sends it, with retries,
            # from the table), and tracing costs the run no transaction of its own.
            hook = await _webhook_delivery(deps, run, status, final_values, error)
            # The thread's new state goes in the same transaction: one commit, and a run
            # queued behind this one (claimed once this commits) finds the thread settled.
            also = [s for s in (thread_outcome, hook) if s is not None]
            if recorder is not None:
                await recorder.stop_autoflush()
                if watch is not None and watch.base_from is not None and watch.first is None:
                    # It ended before its stream reported a checkpoint (an error, a cancel).
                    recorder.base_checkpoint_id = await _base_before(deps, run)
                recorder.finish(status, error)
                also.extend(_trace_statements(recorder, recorder.take()))
            # The run's last checkpoint, if the checkpointer held it back, commits with it too.
            if (last := holding.take()) is not None:
                also.insert(0, last)
            await deps.queue.finish(run_id, status, error, also=also)
            holding.committed()
            if hook:
                deps.webhooks.notify()
        await _after(deps, run, status)
        if proto is not None:
            await proto.finished(
                "cancelled" if cancel_action else status, interrupts=pending,
                error=error["message"] if error else None,
            )
        return status
    finally:
        if not retry_later:  # (the database is away: the run resumes before that step)
            await _flush_quietly(holding, run_id)  # held still: it stopped before its outcome
        bus.unregister_control(run_id)
        if recorder is not None:
            recorder.abandon()
        if not retry_later and not (task is not None and task.cancelling() and not cancel_action):
            # Internal event (never sent to clients): what `wait`/`join` return, even when a
            # stateless run's thread is already deleted.
            try:
                await bus.finish(run_id, [
                    (RESULT_EVENT, json_dumps({"status": status, "values": final_values})),
                    ("end", b"null"),
                ])
            except DockyardError as exc:
                # The outcome is already in storage; streams will notice the run is finished
                # (join falls back to the thread's values) rather than the run being retried.
                log.warning("run_end_not_published run_id=%s error=%s", run_id, exc.code)


async def _run_options(
    deps: ExecutionDeps, run: dict[str, Any], graph: Any, config: dict[str, Any],
    context: dict[str, Any], watch: CheckpointWatch | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The graph input, config and stream options of a run, for either way of streaming."""
    kwargs = run["kwargs"]
    recorder = next((c for c in config.get("callbacks") or () if isinstance(c, TraceRecorder)),
                    None)
    fork_id = config["configurable"].get("checkpoint_id")
    durability = kwargs.get("durability") or "sync"
    if first_claim(run) and (
        recorder is None or fork_id or (watch is not None and durability != "exit")
    ):
        # Nothing of the run ran before, so the thread has no checkpoint of it to resume
        # from; and the trace's base is the fork point, or comes from the run's stream.
        graph_input = (build_command(kwargs["command"]) if kwargs.get("command") is not None
                       else kwargs.get("input"))
        if recorder is not None and fork_id:
            recorder.base_checkpoint_id = fork_id
        elif recorder is not None and watch is not None:
            fresh = graph_input is not None and not isinstance(graph_input, Command)
            watch.base_from = "parent" if fresh else "self"
        return graph_input, config, _options(kwargs, durability, context)
    graph_input, latest_id = await _input_for(deps, run, graph)
    if recorder is not None and graph_input is not RESUME:
        # Where the run starts: the fork point of a replay with another input or config.
        recorder.base_checkpoint_id = config["configurable"].get("checkpoint_id") or latest_id
    if graph_input is RESUME:
        # Continue from the thread's latest checkpoint (this run's own), not the fork point.
        graph_input = None
        config = {**config, "configurable": {
            k: v for k, v in config["configurable"].items() if k != "checkpoint_id"
        }}
    return graph_input, config, _options(kwargs, durability, context)


def _options(kwargs: dict[str, Any], durability: str, context: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "interrupt_before": kwargs.get("interrupt_before"),
        "interrupt_after": kwargs.get("interrupt_after"),
        "durability": durability,
    }
    if context:
        options["context"] = context
    return options


class _NotHolding:
    """``Holding``'s interface for checkpointers that hold nothing back."""

    async def flush(self) -> None:
        pass

    def take(self) -> None:
        return None

    def committed(self) -> None:
        pass


_NOT_HOLDING = _NotHolding()


def _hold_checkpoints(
    deps: ExecutionDeps, run: dict[str, Any], graph: Any
) -> contextlib.AbstractAsyncContextManager[Any]:
    """The checkpointer's ``hold_checkpoints`` where it has one (storage/postgres_saver.py):
    the run's input checkpoint (with its start step's, when that runs no code of the graph's
    author) rides in its first node's statement, its last checkpoint in
    the statement of its outcome, and the latest checkpoint of a thread the claim found
    without one is not read."""
    hold = getattr(deps.storage.checkpointer, "hold_checkpoints", None)
    if hold is None:
        return contextlib.nullcontext(_NOT_HOLDING)
    empty = run.get(RUN_THREAD_CHECKPOINTED) is False
    return hold(  # type: ignore[no-any-return]
        thread_id=run["thread_id"], no_checkpoint=run["thread_id"] if empty else None,
        is_last=_last_test(graph), start_is_internal=_start_is_internal(graph))


def _start_is_internal(graph: Any) -> bool:
    """Whether the graph's ``__start__`` node runs no code of the graph's author: a
    ``StateGraph`` without conditional edges from START (their routing function runs in that
    node's task). Other graphs (the Functional API's entrypoint, plain Pregel) are not
    assumed to."""
    builder = getattr(graph, "builder", None)
    return isinstance(builder, StateGraph) and START not in builder.branches


def _last_test(graph: Any) -> Callable[[Any], bool] | None:
    """Whether a root checkpoint of ``graph``'s run is its last: no task follows it.

    LangGraph plans the next step's tasks from the channels the step updated (the
    checkpoint's ``updated_channels``): a node runs only if one of them triggers it
    (``trigger_to_nodes``), and a ``Send`` only if the tasks channel was written. None of
    them: nothing runs after it. Anything else (no ``updated_channels``, which makes LangGraph
    look at every node) is not taken for the last."""
    triggers = getattr(graph, "trigger_to_nodes", None)
    if not triggers:
        return None

    def is_last(checkpoint: Any) -> bool:
        updated = checkpoint.get("updated_channels")
        return bool(updated) and TASKS not in updated and not any(c in triggers for c in updated)

    return is_last


async def _flush_quietly(holding: Any, run_id: str) -> None:
    """Send a held last checkpoint on a path that does not commit it with the outcome."""
    try:
        await holding.flush()
    except Exception as exc:
        # The run ends without it, as if it had stopped before writing it: claimed again,
        # it runs that step again.
        log.warning("last_checkpoint_lost run_id=%s error=%s", run_id, exc)


def _watch(run: dict[str, Any], recorder: TraceRecorder | None) -> CheckpointWatch | None:
    """A ``CheckpointWatch`` for runs streamed with ``astream`` (not ``events``, whose
    ``astream_events`` would publish the extra mode's chunks)."""
    modes = run["kwargs"].get("stream_mode") or ["values"]
    return None if "events" in modes else CheckpointWatch(recorder=recorder)


async def _stream(
    deps: ExecutionDeps, run: dict[str, Any], graph: Any, config: dict[str, Any],
    context: dict[str, Any], watch: CheckpointWatch | None = None,
) -> None:
    kwargs = run["kwargs"]
    modes: list[str] = kwargs.get("stream_mode") or ["values"]
    lg_modes = langgraph_modes(modes)
    subgraphs = bool(kwargs.get("stream_subgraphs"))
    graph_input, config, options = await _run_options(deps, run, graph, config, context, watch)
    run_modes = lg_modes or ["values"]
    if watch is not None and "checkpoints" not in run_modes:
        run_modes = [*run_modes, "checkpoints"]
    options.update({"stream_mode": run_modes, "subgraphs": subgraphs})
    acc = MessageAccumulator() if "messages" in modes else None
    publish = deps.bus.send
    run_id = run["run_id"]

    async def emit(ns: tuple[str, ...], mode: str, chunk: Any) -> None:
        if mode == "checkpoints" and watch is not None and not ns:
            watch.saw(chunk)
        if mode == "messages":
            msg, meta = chunk
            if "messages-tuple" in modes:
                await publish(run_id, event_name("messages", ns), json_dumps([msg, meta]))
            if acc is not None:
                for name, data in acc.feed(msg, meta, ns):
                    await publish(run_id, event_name(name, ns), json_dumps(data))
        elif mode in modes:
            await publish(run_id, event_name(mode, ns), json_dumps(chunk))

    await _drive(graph, graph_input, config, options, modes, lg_modes, subgraphs, emit,
                 publish_event=lambda data: publish(run_id, "events", data))
    if acc is not None:
        for ns, name, data in acc.flush():
            await publish(run_id, event_name(name, ns), json_dumps(data))


async def _stream_protocol(
    deps: ExecutionDeps, run: dict[str, Any], graph: Any, config: dict[str, Any],
    context: dict[str, Any], proto: ProtocolPublisher,
) -> None:
    """Run the graph with LangGraph's v3 event stream and publish it on the thread's channel."""
    graph_input, config, options = await _run_options(deps, run, graph, config, context)
    compiled = set(getattr(graph, "stream_transformers", None) or ())
    extra = [t for t in protocol_transformers() if t not in compiled]
    with warnings.catch_warnings():
        # LangGraph marks its v3 stream experimental; the protocol is what clients speak.
        warnings.simplefilter("ignore", LangChainBetaWarning)
        events = await graph.astream_events(
            graph_input, config, version="v3", transformers=extra, **options
        )
    async for event in events:
        await proto.feed(event)


@functools.cache
def protocol_transformers() -> list[Any]:
    """The LangGraph stream transformers behind the protocol's channels (imported once:
    ``langgraph.prebuilt`` resolves its names lazily, on every import)."""
    from langgraph.prebuilt import ToolCallTransformer
    from langgraph.stream.transformers import (
        CheckpointsTransformer,
        CustomTransformer,
        TasksTransformer,
        UpdatesTransformer,
    )

    return [UpdatesTransformer, CustomTransformer, TasksTransformer, CheckpointsTransformer,
            ToolCallTransformer]


def _pending_interrupts(state: Any) -> list[tuple[list[str], Any]]:
    """(namespace, Interrupt) for every interrupt the thread waits on."""
    out: list[tuple[list[str], Any]] = []
    for task in state.tasks:
        ns: list[str] = [] if not task.state else [f"{task.name}:{task.id}"]
        out.extend((ns, intr) for intr in task.interrupts)
    if not out:
        out.extend(([], intr) for intr in state.interrupts)
    return out


async def _drive(
    graph: Any, graph_input: Any, config: dict[str, Any], options: dict[str, Any],
    modes: list[str], lg_modes: list[str], subgraphs: bool, emit: Any, publish_event: Any,
) -> None:
    """Iterate the graph's stream (or its astream_events when ``events`` is asked for)."""
    if "events" in modes:
        root_id: str | None = None
        async for ev in graph.astream_events(graph_input, config, version="v2", **options):
            if root_id is None:
                root_id = ev.get("run_id")
            if (
                ev.get("event") == "on_chain_stream"
                and ev.get("run_id") == root_id
                and lg_modes
            ):
                ns, mode, chunk = _split_chunk(ev["data"]["chunk"], subgraphs, lg_modes)
                await emit(ns, mode, chunk)
            else:
                await publish_event(json_dumps(ev))
        return
    async for item in graph.astream(graph_input, config, **options):
        ns, mode, chunk = _split_chunk(item, subgraphs, lg_modes)
        await emit(ns, mode, chunk)


def _split_chunk(item: Any, subgraphs: bool, lg_modes: list[str]) -> tuple[tuple[str, ...], str, Any]:
    if subgraphs:
        ns, mode, chunk = item
        return tuple(ns), mode, chunk
    mode, chunk = item
    return (), mode, chunk


async def _input_for(
    deps: ExecutionDeps, run: dict[str, Any], graph: Any
) -> tuple[Any, str | None]:
    """The graph input of the run (``RESUME``: continue its own checkpoint) and the id of the
    thread's latest checkpoint before it."""
    kwargs = run["kwargs"]
    # Checked on every claim, not only retries: a run released at shutdown is claimed again
    # with the same attempt count, and must resume rather than start over.
    latest = await deps.storage.checkpointer.aget_tuple(
        {"configurable": {"thread_id": run["thread_id"], "checkpoint_ns": ""}}
    )
    latest_id = latest.config["configurable"].get("checkpoint_id") if latest else None
    if latest is not None and latest.metadata.get("run_id") == run["run_id"]:
        log.info("run_resumed run_id=%s attempt=%s", run["run_id"], run["attempts"])
        return RESUME, latest_id
    if kwargs.get("command") is not None:
        return build_command(kwargs["command"]), latest_id
    return kwargs.get("input"), latest_id


async def _base_before(deps: ExecutionDeps, run: dict[str, Any]) -> str | None:
    """The thread's latest checkpoint before the run, read after it: the latest, or its
    parent when the run wrote it (its input checkpoint, before the stream reported it)."""
    latest = await deps.storage.checkpointer.aget_tuple(
        {"configurable": {"thread_id": run["thread_id"], "checkpoint_ns": ""}}
    )
    if latest is None:
        return None
    if latest.metadata.get("run_id") == run["run_id"]:
        return _checkpoint_id(latest.parent_config)
    return _checkpoint_id(latest.config)


def _recorder(deps: ExecutionDeps, run: dict[str, Any]) -> TraceRecorder | None:
    """The run's trace recorder, writing its rows every second while the run lasts."""
    if not deps.record_traces:
        return None
    recorder = TraceRecorder(run, max_value_bytes=deps.trace_max_value_bytes)

    async def write(rows: Any) -> None:
        await deps.traces.write(_trace_statements(recorder, rows))

    recorder.start_autoflush(write)
    return recorder


def _trace_statements(recorder: TraceRecorder, rows: Any) -> list[Statement]:
    return [*span_statements(rows), header_statement(
        recorder.run, base_checkpoint_id=recorder.base_checkpoint_id,
        span_count=len(recorder.spans), dropped=recorder.dropped, totals=recorder.totals())]


async def _latest_values(graph: Any, thread_id: str) -> Any:
    if graph is None:
        return None
    try:
        state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    except Exception:
        log.exception("state_read_failed thread_id=%s", thread_id)
        return None
    return to_jsonable(state.values) if state.config else None


def _interrupt_map(state: Any) -> dict[str, Any]:
    out: dict[str, list[Any]] = {}
    for task in state.tasks:
        if task.interrupts:
            out[task.id] = to_jsonable(list(task.interrupts))
    return out


async def _on_cancel(deps: ExecutionDeps, run: dict[str, Any], action: str) -> str:
    tenant, thread_id, run_id = run["tenant_id"], run["thread_id"], run["run_id"]
    if action == "rollback":
        await deps.storage.delete_checkpoints(thread_id, run_id=run_id)
        await deps.queue.delete(tenant, run_id)
        await _refresh_thread(deps, run)
        return "rolled_back"
    await _refresh_thread(deps, run)
    return "interrupted"


async def _refresh_thread(deps: ExecutionDeps, run: dict[str, Any]) -> None:
    """Recompute the thread's status and values from its latest checkpoint."""
    latest = await deps.storage.checkpointer.aget_tuple(
        {"configurable": {"thread_id": run["thread_id"], "checkpoint_ns": ""}}
    )
    if latest is None:
        await deps.threads.update(
            run["tenant_id"], run["thread_id"], status="idle", values=None, interrupts={}
        )
        return
    graph, _, _ = await thread_graph_config(deps, run)
    state = await graph.aget_state({"configurable": {"thread_id": run["thread_id"]}})
    await deps.threads.update(
        run["tenant_id"], run["thread_id"],
        status="interrupted" if state.interrupts else "idle",
        values=to_jsonable(state.values), interrupts=_interrupt_map(state),
    )


async def _webhook_delivery(
    deps: ExecutionDeps, run: dict[str, Any], status: str, values: Any,
    error: dict[str, Any] | None,
) -> Statement | None:
    """The delivery row of the run's ``webhook``, if it has one (see runtime/webhooks.py)."""
    kwargs = run["kwargs"]
    if not kwargs.get("webhook") or deps.webhooks is None:
        return None
    now = utcnow()
    # The reference payload: the run, its timings and the thread's values (for a failed run:
    # the values of its last checkpoint, and the error message).
    payload = {
        **public_run({**run, "status": status, "updated_at": now}),
        "run_started_at": run.get("started_at"), "run_ended_at": now,
        "webhook_sent_at": now, "values": values,
    }
    if error is not None:
        thread = await deps.threads.get(run["tenant_id"], run["thread_id"])
        payload["error"] = error["message"]
        payload["values"] = thread["values"] if thread else None
    statement: Statement = deps.webhooks.delivery_statement(
        run["tenant_id"], run, kwargs["webhook"], json_dumps(payload)
    )
    return statement


async def _after(deps: ExecutionDeps, run: dict[str, Any], status: str) -> None:
    kwargs = run["kwargs"]
    if run.get("temporary") and kwargs.get("on_completion", "delete") == "delete":
        if status in ("success", "error", "interrupted"):
            await deps.storage.delete_checkpoints(run["thread_id"])
            await deps.threads.delete(run["tenant_id"], run["thread_id"])
