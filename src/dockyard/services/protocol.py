"""Thread-centric streaming: protocol commands and filtered event streams of a thread.

This is the server side of ``langgraph-sdk``'s ``client.threads.stream(...)`` (and of
``RemoteGraph.astream_events(version="v3")``): commands arrive as JSON envelopes
``{"id": int, "method": str, "params": {...}}`` and are answered ``{"type": "success", "id",
"result", "meta": {"applied_through_seq"}}`` or ``{"type": "error", "id", "error": <code>,
"message"}``; events are read from the thread's channel of the event bus (see
``dockyard.runtime.protocol``) and filtered per subscription by channel, namespace prefix and
depth. SSE and WebSocket transports share this class, so they behave the same.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DockyardError, NotFound
from dockyard.runtime.protocol import CHANNELS, thread_channel, valid_channel
from dockyard.services.ids import check_uuid
from dockyard.services.runs import RunService
from dockyard.services.threads import ThreadService
from dockyard.streams.base import Event

log = logging.getLogger("dockyard.protocol")

METHODS = (
    "run.start", "input.respond", "state.get", "state.listCheckpoints", "state.fork",
    "agent.getTree", "subscription.subscribe", "subscription.unsubscribe",
)
RUN_START_KEYS = {"assistant_id", "input", "config", "metadata", "multitaskStrategy",
                  "langsmith_tracer"}
RESPOND_KEYS = {"interrupt_id", "namespace", "response", "responses", "update", "goto",
                "config", "metadata"}
_MULTITASK = ("reject", "interrupt", "rollback", "enqueue")


class ProtocolError(Exception):
    """A command that cannot be carried out: answered as a protocol error envelope."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class EventFilter:
    """What one subscription receives: channels, namespace prefixes and depth below them."""

    channels: frozenset[str]
    namespaces: tuple[tuple[str, ...], ...] | None = None
    depth: int | None = None

    @classmethod
    def parse(cls, params: Any) -> EventFilter:
        if not isinstance(params, dict):
            raise ProtocolError("invalid_argument", "subscription parameters must be an object")
        unknown = set(params) - {"channels", "namespaces", "depth", "since"}
        if unknown:
            raise ProtocolError("invalid_argument",
                                f"unknown subscription field(s): {sorted(unknown)}")
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            raise ProtocolError("invalid_argument", "channels is required: a non-empty array")
        bad = [c for c in channels if not valid_channel(c)]
        if bad:
            raise ProtocolError(
                "invalid_argument",
                f"unsupported channel(s) {bad[:5]}; use {sorted(CHANNELS)} or 'custom:<name>'",
            )
        namespaces = params.get("namespaces")
        ns: tuple[tuple[str, ...], ...] | None = None
        if namespaces is not None:
            if not isinstance(namespaces, list) or not all(
                isinstance(n, list) and all(isinstance(s, str) for s in n) for n in namespaces
            ):
                raise ProtocolError("invalid_argument",
                                    "namespaces must be an array of string arrays")
            ns = tuple(tuple(n) for n in namespaces) or None
        depth = params.get("depth")
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)
                                  or depth < 0):
            raise ProtocolError("invalid_argument", "depth must be a non-negative integer")
        return cls(frozenset(channels), ns, depth)

    def matches(self, name: str) -> bool:
        """``name`` is the bus event name: ``<channel>\\t<namespace segments…>``."""
        channel, *namespace = name.split("\t")
        if namespace == [""]:
            namespace = []
        if channel not in self.channels and not (
            channel.startswith("custom:") and "custom" in self.channels
        ):
            return False
        if self.namespaces is None:
            return self.depth is None or len(namespace) <= self.depth
        for prefix in self.namespaces:
            if _prefix_match(namespace, prefix) and (
                self.depth is None or len(namespace) - len(prefix) <= self.depth
            ):
                return True
        return False


def _prefix_match(namespace: list[str], prefix: tuple[str, ...]) -> bool:
    """Segments match literally, or by name when the prefix segment has no ``:<task id>``."""
    if len(prefix) > len(namespace):
        return False
    for want, got in zip(prefix, namespace, strict=False):
        if want == got:
            continue
        if ":" in want or got.partition(":")[0] != want:
            return False
    return True


def success(cmd_id: Any, result: dict[str, Any], seq: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "success", "id": cmd_id, "result": result}
    if seq is not None:
        out["meta"] = {"applied_through_seq": seq}
    return out


def error(cmd_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": cmd_id, "error": code, "message": message}


class ThreadProtocol:
    def __init__(self, runs: RunService, threads: ThreadService) -> None:
        self.runs = runs
        self.threads = threads
        self.bus = runs.bus
        self.queue = runs.queue

    # ---- commands -----------------------------------------------------------------------
    async def command(self, tenant: str, thread_id: str, cmd: dict[str, Any]) -> dict[str, Any]:
        """Carry out one command; errors come back as error envelopes, never raised."""
        cmd_id = cmd.get("id")
        method = cmd.get("method")
        params = cmd.get("params", {})
        if method not in METHODS:
            return error(cmd_id, "unknown_command",
                         f"Unknown command {method!r}; supported: {list(METHODS)}")
        if not isinstance(params, dict):
            return error(cmd_id, "invalid_argument", "params must be an object")
        try:
            tid = check_uuid(thread_id, "thread_id")
            if method == "run.start":
                return await self._run_start(tenant, tid, cmd_id, params)
            if method == "input.respond":
                return await self._respond(tenant, tid, cmd_id, params)
            if method == "state.get":
                return await self._state_get(tenant, tid, cmd_id, params)
            if method == "state.listCheckpoints":
                return await self._list_checkpoints(tenant, tid, cmd_id, params)
            if method == "state.fork":
                return await self._fork(tenant, tid, cmd_id, params)
            if method == "agent.getTree":
                return await self._tree(tenant, tid, cmd_id, params)
            raise ProtocolError(
                "not_supported",
                f"{method} needs a WebSocket (/threads/{{thread_id}}/stream/events); over HTTP "
                "each POST /threads/{thread_id}/stream/events request is one subscription",
            )
        except ProtocolError as exc:
            return error(cmd_id, exc.code, exc.message)
        except NotFound as exc:
            code = {"checkpoint_not_found": "no_such_checkpoint",
                    "run_not_found": "no_such_run"}.get(exc.code, "invalid_argument")
            return error(cmd_id, code, exc.message)
        except DockyardError as exc:
            return error(cmd_id, "invalid_argument" if exc.status < 500 else "unknown_error",
                         exc.message)

    async def _since_base(self, tid: str) -> str | None:
        return await self.bus.last_id(thread_channel(tid))

    def _seq(self, event_id: str | None) -> int:
        return self.bus.seq(event_id) if event_id else 0

    async def _start(
        self, tenant: str, tid: str, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        base = await self._since_base(tid)
        run = await self.runs.create(
            tenant, tid, {"if_not_exists": "create", **payload},
            extra_kwargs={"protocol": "v3", "protocol_since": base},
        )
        return run, base

    async def _run_start(
        self, tenant: str, tid: str, cmd_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        unknown = set(params) - RUN_START_KEYS
        if unknown:
            raise ProtocolError("invalid_argument", f"unknown run.start field(s): {sorted(unknown)}")
        assistant_id = params.get("assistant_id")
        if not isinstance(assistant_id, str) or not assistant_id:
            raise ProtocolError("invalid_argument", "run.start requires an assistant_id")
        if params.get("langsmith_tracer") is not None:
            raise ProtocolError("not_supported",
                                "langsmith_tracer is not supported: Dockyard traces with "
                                "OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT)")
        for key in ("config", "metadata"):
            if params.get(key) is not None and not isinstance(params[key], dict):
                raise ProtocolError("invalid_argument", f"{key} must be an object")
        strategy = params.get("multitaskStrategy") or "enqueue"
        if strategy not in _MULTITASK:
            raise ProtocolError("invalid_argument",
                                f"multitaskStrategy must be one of {list(_MULTITASK)}")
        config = dict(params.get("config") or {})
        checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id")
        payload: dict[str, Any] = {
            "assistant_id": assistant_id, "config": config,
            "metadata": params.get("metadata"), "multitask_strategy": strategy,
        }
        if checkpoint_id is not None:
            if not isinstance(checkpoint_id, str):
                raise ProtocolError("invalid_argument", "configurable.checkpoint_id must be a string")
            payload["checkpoint_id"] = checkpoint_id
        value = params.get("input")
        row = await self.threads.repo.get(tenant, tid)
        if value is not None and row is not None and row["interrupts"] and not checkpoint_id:
            # The thread waits on an interrupt: the input is the answer (this is how
            # RemoteGraph sends Command(resume=...)).
            payload["command"] = {"resume": value}
        else:
            payload["input"] = value
        run, base = await self._start(tenant, tid, payload)
        return success(cmd_id, {"run_id": run["run_id"]}, self._seq(base))

    async def _respond(
        self, tenant: str, tid: str, cmd_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        unknown = set(params) - RESPOND_KEYS
        if unknown:
            raise ProtocolError("invalid_argument",
                                f"unknown input.respond field(s): {sorted(unknown)}")
        if "responses" in params:
            entries = params["responses"]
            if not isinstance(entries, list) or not entries:
                raise ProtocolError("invalid_argument", "responses must be a non-empty array")
        else:
            entries = [params]
        answers: dict[str, Any] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("interrupt_id"), str):
                raise ProtocolError("invalid_argument", "each response needs an interrupt_id")
            if "response" not in entry:
                raise ProtocolError("invalid_argument", "each response needs a response value")
            answers[entry["interrupt_id"]] = entry["response"]
        row = await self.threads.get_row(tenant, tid)
        pending = {
            i.get("id") for items in (row["interrupts"] or {}).values() for i in items
            if isinstance(i, dict)
        }
        stale = [iid for iid in answers if iid not in pending]
        if stale:
            raise ProtocolError("no_such_interrupt",
                                f"interrupt(s) {stale} are not pending on this thread")
        assistant_id = row["metadata"].get("assistant_id")
        if not assistant_id:
            raise ProtocolError("no_such_run", "no run of an assistant is bound to this thread")
        command: dict[str, Any] = {"resume": answers}
        for key in ("update", "goto"):
            if params.get(key) is not None:
                command[key] = params[key]
        payload = {"assistant_id": assistant_id, "command": command,
                   "config": params.get("config") or {}, "metadata": params.get("metadata"),
                   "multitask_strategy": "enqueue"}
        run, base = await self._start(tenant, tid, payload)
        return success(cmd_id, {"run_id": run["run_id"]}, self._seq(base))

    async def _state_get(
        self, tenant: str, tid: str, cmd_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        namespace = params.get("namespace") or []
        if namespace:
            raise ProtocolError("not_supported",
                                "state.get reads the root graph's state (namespace [])")
        state = await self.threads.state(tenant, tid)
        values = state.get("values")
        keys = params.get("keys")
        if keys is not None:
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise ProtocolError("invalid_argument", "keys must be an array of strings")
            values = {k: v for k, v in (values or {}).items() if k in keys}
        result: dict[str, Any] = {"values": values}
        cid = ((state.get("checkpoint") or {}) or {}).get("checkpoint_id")
        if cid:
            result["checkpoint"] = {"id": cid}
        return success(cmd_id, result, self._seq(await self._since_base(tid)))

    async def _list_checkpoints(
        self, tenant: str, tid: str, cmd_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        limit = params.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise ProtocolError("invalid_argument", "limit must be an integer from 1 to 1000")
        if params.get("namespace"):
            raise ProtocolError("not_supported", "checkpoints are listed for the root graph")
        history = await self.threads.history(tenant, tid, limit=limit,
                                             before=params.get("before"))
        out = []
        for snap in history:
            meta = snap.get("metadata") or {}
            item: dict[str, Any] = {
                "id": (snap.get("checkpoint") or {}).get("checkpoint_id"),
                "timestamp": snap.get("created_at"), "step": meta.get("step", -1),
                "metadata": meta,
            }
            writes = meta.get("writes")
            if isinstance(writes, dict) and len(writes) == 1:
                item["node_name"] = next(iter(writes))
            out.append(item)
        return success(cmd_id, {"checkpoints": out})

    async def _fork(
        self, tenant: str, tid: str, cmd_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        unknown = set(params) - {"checkpoint_id", "input", "config"}
        if unknown:
            raise ProtocolError("invalid_argument", f"unknown state.fork field(s): {sorted(unknown)}")
        cid = params.get("checkpoint_id")
        if not isinstance(cid, str) or not cid:
            raise ProtocolError("invalid_argument", "state.fork requires a checkpoint_id")
        row = await self.threads.get_row(tenant, tid)
        await self.threads.state(tenant, tid, checkpoint={"checkpoint_id": cid})  # 404 if unknown
        assistant_id = row["metadata"].get("assistant_id")
        if not assistant_id:
            raise ProtocolError("no_such_run", "no run of an assistant is bound to this thread")
        payload = {"assistant_id": assistant_id, "input": params.get("input"),
                   "config": params.get("config") or {}, "checkpoint_id": cid,
                   "multitask_strategy": "enqueue"}
        run, base = await self._start(tenant, tid, payload)
        return success(cmd_id, {"run_id": run["run_id"], "thread_id": tid}, self._seq(base))

    async def _tree(
        self, tenant: str, tid: str, cmd_id: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        row = await self.threads.get_row(tenant, tid)
        runs = await self.queue.list_for_thread(tenant, tid, status=None, limit=1, offset=0)
        run_id = params.get("run_id")
        if run_id is not None:
            found = await self.queue.get(tenant, check_uuid(run_id, "run_id"), tid)
            if found is None:
                raise ProtocolError("no_such_run", f"run {run_id} is not a run of this thread")
            runs = [found]
        status = "completed"
        if runs:
            status = {"pending": "started", "running": "running", "success": "completed",
                      "error": "failed", "interrupted": "interrupted"}.get(
                runs[0]["status"], "completed")
        tree: dict[str, Any] = {"namespace": [], "status": status,
                "graph_name": row["metadata"].get("graph_id") or "", "children": []}
        return success(cmd_id, {"tree": tree})

    # ---- events -------------------------------------------------------------------------
    async def start_id(self, tenant: str, tid: str, since: int | None) -> str | None:
        """The bus id to read after: ``since``, else the start of the thread's latest run."""
        if since is not None:
            return self.bus.event_id_at(since)
        runs = await self.queue.list_for_thread(tenant, tid, status=None, limit=1, offset=0)
        for run in runs:
            if run["kwargs"].get("protocol") == "v3":
                base = run["kwargs"].get("protocol_since")
                return base if isinstance(base, str) else None
        return await self._since_base(tid)  # no protocol run yet: only what comes next

    async def open_events(
        self, tenant: str, thread_id: str, flt: EventFilter, *, since: int | None = None
    ) -> AsyncIterator[Event]:
        """Wire events of the thread matching ``flt``: replayed after ``since``, then live.

        Raises (404, 422) before anything is streamed; the iterator then runs until the
        client goes away. Each is an ``Event`` whose ``id`` is the ``seq``, ``event`` the
        channel and ``data`` the wire JSON, for SSE (``id:`` is the seq) or a WebSocket frame.
        """
        tid = check_uuid(thread_id, "thread_id")
        await self.threads.get_row(tenant, tid)  # 404 for a thread that does not exist
        after = await self.start_id(tenant, tid, since)
        return self._events(tid, flt, after, since)

    async def _events(
        self, tid: str, flt: EventFilter, after: str | None, since: int | None
    ) -> AsyncIterator[Event]:
        async for ev in self.bus.subscribe(thread_channel(tid), last_event_id=after):
            if not flt.matches(ev.event):
                continue
            seq = self.bus.seq(ev.id)
            if since is not None and seq <= since:
                continue
            yield Event(str(seq), ev.event.partition("\t")[0],
                        b'{"type":"event","event_id":"%s","seq":%d,%s' % (
                            ev.id.encode(), seq, ev.data[1:]))
