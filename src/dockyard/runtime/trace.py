"""Record a run's trace: every node task, LLM call and tool call, with timings and values.

``TraceRecorder`` is a LangChain callback handler that the executor adds to the run's config.
LangGraph gives each node task's runnable the non-inheritable tag ``graph:step:<n>`` and the
metadata ``langgraph_step`` / ``langgraph_node`` / ``langgraph_triggers`` /
``langgraph_checkpoint_ns`` (``<node>:<task id>``, ``|``-joined in subgraphs), so a task is a
chain run carrying that tag; every other chain run (the graph itself, a subgraph, a node's inner
runnables) only links its children to the nearest task. A task retried by a ``RetryPolicy``
starts again under the same task id: each attempt is a span, numbered by ``retry``.

Costs stay off the hot path: callbacks run inline (``run_inline``: no thread hop per event) and
only touch dicts and lists; values are encoded once, capped at ``max_value_bytes`` (a preview
beyond); nothing is written per node. The executor takes the rows in batches (``take``): at the
end of the run inside the transaction that records its outcome, and every second while a long
run executes (``autoflush``), so a run's page can follow it from storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import orjson
import xxhash
from langchain_core.callbacks import BaseCallbackHandler

from dockyard.serde import json_dumps

log = logging.getLogger("dockyard.trace")

STEP_TAG = "graph:step:"


def capture(value: Any, limit: int) -> tuple[Any, str | None]:
    """``value`` as JSON (embedded as is, or a preview when larger than ``limit``) and a short
    hash of it, so two runs' outputs compare without reading them; (None, None) at limit 0."""
    if limit <= 0:
        return None, None
    try:
        raw = json_dumps(value)
    except Exception:  # a value no encoder knows: its repr says enough for a trace
        raw = json_dumps(repr(value))
    # Not a security hash: it tells equal values apart from different ones. xxh3 hashes a
    # 600 KB state in ~0.02 ms where blake2b took ~1 ms, at every node of a long thread.
    digest = xxhash.xxh3_64_hexdigest(raw)
    if len(raw) <= limit:
        return orjson.Fragment(raw), digest
    return {"__truncated__": True, "bytes": len(raw),
            "preview": raw[:limit].decode("utf-8", errors="ignore")}, digest


def _error(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """(span status, error fields) of an exception that ended a span."""
    from langgraph.errors import GraphBubbleUp

    if isinstance(exc, GraphBubbleUp):  # interrupt() or a Command to the parent: not a failure
        return "interrupted", {}
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled", {}
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=30))
    return "error", {"error": {"type": type(exc).__name__, "message": str(exc)[:2000]},
                     "traceback": tb[-20000:]}


class Span:
    __slots__ = ("detail", "end_ms", "kind", "meta", "name", "namespace",
                 "parent", "seq", "start_ms", "status", "step")

    def __init__(self, seq: int, kind: str, name: str, parent: Span | None, namespace: str,
                 step: int | None) -> None:
        self.seq, self.kind, self.name, self.parent = seq, kind, name, parent
        self.namespace, self.step = namespace, step
        self.status = "running"
        self.start_ms = time.time() * 1000
        self.end_ms: float | None = None
        self.meta: dict[str, Any] = {}
        self.detail: dict[str, Any] = {}


class TraceRecorder(BaseCallbackHandler):
    """Collects a run's spans in memory; ``take`` hands out the rows written since last time."""

    run_inline = True  # called on the caller's thread/loop: no executor hop per event
    raise_error = False  # a recording bug must never fail the run

    def __init__(self, run: dict[str, Any], *, max_value_bytes: int = 16384,
                 max_spans: int = 10000) -> None:
        self.run = run
        self.attempt = int(run.get("attempts") or 1)
        self.limit = max_value_bytes
        self.max_spans = max_spans
        self.base_checkpoint_id: str | None = None
        self.spans: list[Span] = []
        self.dropped = 0
        self._owner: dict[UUID, Span | None] = {}  # every open run → its nearest span
        self._open_spans: dict[UUID, Span] = {}  # the runs that are spans themselves
        self._dirty: dict[int, Span] = {}
        self._by_step: dict[tuple[int | None, str, int], list[Span]] = {}
        self._tries: dict[tuple[int | None, str], int] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stop = asyncio.Event()

    # ---- spans ----------------------------------------------------------------------------
    def _open(self, run_id: UUID, parent_run_id: UUID | None, kind: str, name: str,
              metadata: dict[str, Any] | None, step: int | None = None) -> Span | None:
        parent = self._owner.get(parent_run_id) if parent_run_id else None
        if len(self.spans) >= self.max_spans:
            self.dropped += 1
            self._owner[run_id] = parent
            return None
        ns = (metadata or {}).get("checkpoint_ns") or ""
        span = Span(len(self.spans), kind, name, parent, ns, step)
        self.spans.append(span)
        self._owner[run_id] = span
        self._open_spans[run_id] = span
        self._dirty[span.seq] = span
        return span

    def _close(self, run_id: UUID, status: str, **detail: Any) -> Span | None:
        self._owner.pop(run_id, None)
        span = self._open_spans.pop(run_id, None)
        if span is None or span.status != "running":
            return None
        span.status = status
        span.end_ms = time.time() * 1000
        span.detail.update(detail)
        self._dirty[span.seq] = span
        return span

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        step_tag = next((t for t in tags or () if t.startswith(STEP_TAG)), None)
        if step_tag is None or not metadata or "langgraph_node" not in metadata:
            # The graph, a subgraph, or a runnable inside a node: it only links its children.
            self._owner[run_id] = self._owner.get(parent_run_id) if parent_run_id else None
            return
        step = metadata.get("langgraph_step")
        name = str(metadata.get("langgraph_node") or kwargs.get("name") or "node")
        span = self._open(run_id, parent_run_id, "node", name, metadata, step)
        if span is None:
            return
        task_ns = str(metadata.get("langgraph_checkpoint_ns") or "")
        parent_seq = span.parent.seq if span.parent else None
        key = (parent_seq, task_ns)
        retry = self._tries.get(key, -1) + 1
        self._tries[key] = retry
        span.meta = {"task_id": task_ns.rpartition(":")[2] or None,
                     "triggers": [t for t in metadata.get("langgraph_triggers") or ()
                                  if not t.startswith("__")], "next": []}
        if retry:
            span.meta["retry"] = retry
        span.detail["input"], span.meta["input_hash"] = capture(inputs, self.limit)
        if isinstance(step, int):
            # The nodes of step n are where the nodes of step n - 1 (same graph) led.
            for prev in self._by_step.get((parent_seq, span.namespace, step - 1), ()):
                if name not in prev.meta["next"]:
                    prev.meta["next"].append(name)
                    self._dirty[prev.seq] = prev
            siblings = self._by_step.setdefault((parent_seq, span.namespace, step), [])
            if retry == 0:
                siblings.append(span)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._open_spans.get(run_id)
        if span is None:
            self._owner.pop(run_id, None)
            return
        out, span.meta["output_hash"] = capture(outputs, self.limit)
        self._close(run_id, "success", output=out)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(error, run_id)

    def _fail(self, error: BaseException, run_id: UUID) -> None:
        span = self._open_spans.get(run_id)
        if span is None:
            self._owner.pop(run_id, None)
            return
        status, fields = _error(error)
        if "error" in fields:
            span.meta["error"] = fields["error"]
        self._close(run_id, status, **fields)

    def on_chat_model_start(self, serialized: Any, messages: list[list[Any]], *, run_id: UUID,
                            parent_run_id: UUID | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._llm_start(serialized, messages[0] if len(messages) == 1 else messages, run_id,
                        parent_run_id, metadata, kwargs)

    def on_llm_start(self, serialized: Any, prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                     **kwargs: Any) -> None:
        self._llm_start(serialized, prompts, run_id, parent_run_id, metadata, kwargs)

    def _llm_start(self, serialized: Any, messages: Any, run_id: UUID, parent_run_id: UUID | None,
                   metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> None:
        meta = metadata or {}
        name = (meta.get("ls_model_name") or kwargs.get("name")
                or (serialized or {}).get("name") or "llm")
        span = self._open(run_id, parent_run_id, "llm", str(name), meta, meta.get("langgraph_step"))
        if span is None:
            return
        span.meta = {k: meta[k] for k in ("ls_provider", "ls_model_name") if meta.get(k)}
        span.detail["input"] = capture(messages, self.limit)[0]

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._open_spans.get(run_id)
        if span is None:
            self._owner.pop(run_id, None)
            return
        gen = response.generations[0][0] if response.generations and response.generations[0] \
            else None
        message = getattr(gen, "message", None)
        usage = getattr(message, "usage_metadata", None) or \
            (response.llm_output or {}).get("token_usage") or (response.llm_output or {}).get("usage")
        if usage:
            span.meta["usage"] = dict(usage)
        calls = getattr(message, "tool_calls", None)
        if calls:
            span.meta["tool_calls"] = [c.get("name") for c in calls]
        out, span.meta["output_hash"] = capture(
            message if message is not None else getattr(gen, "text", None), self.limit)
        self._close(run_id, "success", output=out)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(error, run_id)

    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, metadata: dict[str, Any] | None = None,
                      inputs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        span = self._open(run_id, parent_run_id, "tool", str(name), metadata,
                          (metadata or {}).get("langgraph_step"))
        if span is not None:
            span.detail["input"] = capture(inputs if inputs is not None else input_str,
                                           self.limit)[0]

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._open_spans.get(run_id)
        if span is None:
            self._owner.pop(run_id, None)
            return
        out, span.meta["output_hash"] = capture(output, self.limit)
        self._close(run_id, "success", output=out)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(error, run_id)

    # ---- rows -----------------------------------------------------------------------------
    def finish(self, status: str, run_error: dict[str, Any] | None = None) -> None:
        """The run ended: spans still open end with it; the node that raised the run's error
        carries the run's traceback if its own was not captured."""
        end = time.time() * 1000
        for span in self.spans:
            if span.status == "running":
                span.status = "cancelled"  # the run ended around it (a failure elsewhere,
                # a cancel, an interrupt): it never finished
                span.end_ms = end
                self._dirty[span.seq] = span
        if run_error and not any(s.status == "error" for s in self.spans) and self.spans:
            last = self.spans[-1]
            last.meta["error"] = {"type": run_error.get("error"),
                                  "message": run_error.get("message")}
            last.detail.setdefault("traceback", run_error.get("traceback"))
            last.status = "error"
            self._dirty[last.seq] = last
        self._owner.clear()
        self._open_spans.clear()

    def totals(self) -> dict[str, Any]:
        """Counts and token usage over the run's spans (the trace header's ``metadata``)."""
        out: dict[str, Any] = {"nodes": 0, "llm_calls": 0, "tool_calls": 0, "errors": 0,
                               "retries": 0}
        tokens: dict[str, int] = {}
        for s in self.spans:
            out[{"node": "nodes", "llm": "llm_calls", "tool": "tool_calls"}[s.kind]] += 1
            out["errors"] += s.status == "error"
            out["retries"] += bool(s.meta.get("retry"))
            for key, value in (s.meta.get("usage") or {}).items():
                if isinstance(value, int) and not isinstance(value, bool):
                    tokens[key] = tokens.get(key, 0) + value
        if tokens:
            out["tokens"] = tokens
        return out

    def take(self) -> list[tuple[Any, ...]]:
        """Rows (``storage.traces.SPAN_COLS`` order) of the spans changed since the last call."""
        if not self._dirty:
            return []
        dirty, self._dirty = self._dirty, {}
        run_id, tenant = self.run["run_id"], self.run["tenant_id"]
        return [(
            run_id, self.attempt, s.seq, tenant, s.parent.seq if s.parent else None, s.kind,
            s.name, s.namespace, s.step, s.status, s.start_ms, s.end_ms,
            json_dumps(s.meta).decode(), json_dumps(s.detail).decode(),
        ) for s in sorted(dirty.values(), key=lambda s: s.seq)]

    # ---- background flush -----------------------------------------------------------------
    def start_autoflush(
        self, write: Callable[[Sequence[tuple[Any, ...]]], Awaitable[None]], every: float = 1.0
    ) -> None:
        """Write the changed rows every ``every`` seconds while the run lasts. Only a timer
        until then: a run shorter than ``every`` writes its trace once, with its outcome."""

        async def loop() -> None:
            while not self._stop.is_set():
                rows = self.take()
                if rows:
                    try:
                        await write(rows)
                    except Exception as exc:  # the final write carries these spans again
                        for row in rows:
                            self._dirty.setdefault(row[2], self.spans[row[2]])
                        log.warning("trace_flush_failed run_id=%s error=%s",
                                    self.run["run_id"], exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=every)

        def spawn() -> None:
            if not self._stop.is_set():
                self._flusher = asyncio.create_task(loop(), name=f"trace-{self.run['run_id']}")

        self._timer = asyncio.get_running_loop().call_later(every, spawn)

    async def stop_autoflush(self) -> None:
        """Stop the background writer, letting a write in flight complete."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._flusher is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    def abandon(self) -> None:
        """The run is over (or the process stops): no further writes."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
