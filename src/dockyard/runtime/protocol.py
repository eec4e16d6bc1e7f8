"""Thread-centric event streaming (the "v3" protocol of ``langgraph-sdk`` ``threads.stream``).

A run started through ``POST /threads/{id}/commands`` executes with LangGraph's own v3 stream
(``astream_events(version="v3")``), whose events already have the protocol's shape. This module
turns them into wire events and publishes them on the thread's channel of the event bus:

- the root lifecycle is Dockyard's: ``running`` when the run starts, then ``interrupted`` (after
  one ``input.requested`` per pending interrupt), ``completed`` or ``failed`` when it ends;
- a subgraph's lifecycle is moved to the subgraph's namespace (LangGraph reports it at the
  root with the child namespace inside ``data``);
- chat-model token events keep only the protocol event (plus the producing node on
  ``message-start``); whole messages returned by nodes are not token streams and stay in
  ``values``/``updates``;
- ``updates`` carry the node's update as ``data`` and the node as ``params.node``.

The bus assigns each event's id; ``seq`` is derived from it (``EventBus.seq``) so that it grows
across every run of the thread, which is what a client's ``since`` cursor relies on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from dockyard.serde import json_dumps, to_jsonable
from dockyard.streams.base import EventBus

log = logging.getLogger("dockyard.protocol")

CHANNELS = frozenset(
    {"values", "updates", "messages", "tools", "lifecycle", "input", "checkpoints", "tasks",
     "custom"}
)
# How long a run's ``input.requested`` waits after its last event. Clients read a thread on
# several connections (langgraph-sdk: a lifecycle watcher, and one shared stream for its
# projections); the pause they see on the first ends their projections, so the events before
# it must have reached the other first. A person answers the interrupt: 50 ms costs nothing.
INTERRUPT_SETTLE_SECONDS = 0.05
# Event method -> subscription channel (``custom`` events use ``custom:<name>`` as well).
_METHOD_CHANNEL = {"input.requested": "input"}


def thread_channel(thread_id: str) -> str:
    """The bus channel holding a thread's protocol events."""
    return f"thread-events:{thread_id}"


def valid_channel(channel: Any) -> bool:
    return isinstance(channel, str) and (
        channel in CHANNELS or (channel.startswith("custom:") and len(channel) > 7)
    )


def channel_of(method: str, data: Any) -> str:
    if method == "custom":
        name = data.get("name") if isinstance(data, dict) else None
        return f"custom:{name}" if isinstance(name, str) and name else "custom"
    return _METHOD_CHANNEL.get(method, method)


def _ms() -> int:
    return int(time.time() * 1000)


def _checkpoint_ref(data: Any) -> dict[str, Any] | None:
    """The protocol's checkpoint envelope (id, parent_id, step, source) of a state snapshot."""
    if not isinstance(data, dict):
        return None
    cfg = (data.get("config") or {}).get("configurable") or {}
    cid = cfg.get("checkpoint_id")
    if not isinstance(cid, str):
        return None
    meta = data.get("metadata") or {}
    out: dict[str, Any] = {"id": cid, "step": meta.get("step", -1),
                           "source": meta.get("source", "loop")}
    parent = ((data.get("parent_config") or {}).get("configurable") or {}).get("checkpoint_id")
    if isinstance(parent, str):
        out["parent_id"] = parent
    return out


class ProtocolPublisher:
    """Publishes one run's protocol events on its thread's channel."""

    def __init__(self, bus: EventBus, thread_id: str, run_id: str, graph_name: str) -> None:
        self.bus = bus
        self.channel = thread_channel(thread_id)
        self.run_id = run_id
        self.graph_name = graph_name
        self._requested: set[str] = set()
        self._open_namespaces: dict[tuple[str, ...], str] = {}

    async def publish(
        self, method: str, namespace: list[str], data: Any, *, node: str | None = None,
        timestamp: int | None = None,
    ) -> None:
        params: dict[str, Any] = {
            "namespace": namespace,
            "timestamp": timestamp if isinstance(timestamp, int) else _ms(),
            "data": data,
        }
        if node is not None:
            params["node"] = node
        # The bus event name carries what a subscriber filters on, so it need not parse data.
        name = channel_of(method, data) + "\t" + "\t".join(namespace)
        await self.bus.publish(self.channel, name, json_dumps({"method": method, "params": params}))

    async def started(self) -> None:
        await self.publish("lifecycle", [], {"event": "running", "graph_name": self.graph_name,
                                             "run_id": self.run_id})

    async def feed(self, event: dict[str, Any]) -> None:
        """Publish one event of LangGraph's v3 stream, normalised for the wire."""
        method = event.get("method")
        params = event.get("params") or {}
        namespace = [str(s) for s in params.get("namespace") or []]
        data = params.get("data")
        ts = params.get("timestamp")
        if not isinstance(method, str):
            return
        if method.startswith("custom:"):  # a named StreamChannel of a user transformer
            method, data = "custom", {"name": method[7:], "payload": data}
        if method == "lifecycle":
            await self._lifecycle(namespace, data, ts)
        elif method == "messages":
            event_data = data[0] if isinstance(data, list | tuple) and data else data
            if not isinstance(event_data, dict) or not isinstance(event_data.get("event"), str):
                return  # a whole message, not a token stream
            out = dict(event_data)
            if out["event"] == "message-start" and isinstance(data, list | tuple) and len(data) > 1:
                meta = data[1] if isinstance(data[1], dict) else {}
                scalars = {k: v for k, v in meta.items()
                           if k in ("langgraph_node", "langgraph_step", "ls_provider", "ls_model_name")
                           and isinstance(v, str | int | float | bool)}
                if scalars:
                    out["metadata"] = {**scalars, **(out.get("metadata") or {})}
            await self.publish("messages", namespace, to_jsonable(out), timestamp=ts)
        elif method == "values":
            if isinstance(data, dict) and "__interrupt__" in data:
                data = {k: v for k, v in data.items() if k != "__interrupt__"}
            await self.publish("values", namespace, to_jsonable(data), timestamp=ts)
        elif method == "updates":
            if isinstance(data, dict) and len(data) == 1:
                node, values = next(iter(data.items()))
                if node == "__interrupt__":
                    return  # surfaced as input.requested when the run stops
                await self.publish("updates", namespace, to_jsonable(values), node=str(node),
                                   timestamp=ts)
            else:
                await self.publish("updates", namespace, to_jsonable(data), timestamp=ts)
        elif method == "tools":
            node = None
            if isinstance(data, dict) and "__node" in data:
                data = dict(data)
                raw = data.pop("__node")
                node = raw if isinstance(raw, str) else None
            await self.publish("tools", namespace, to_jsonable(data), node=node, timestamp=ts)
        elif method == "checkpoints":
            ref = _checkpoint_ref(data)
            if ref is not None:
                await self.publish("checkpoints", namespace, ref, timestamp=ts)
        elif method in ("custom", "tasks"):
            await self.publish(method, namespace, to_jsonable(data), timestamp=ts)
        # Anything else (debug, a future method) is not part of the protocol's channels.

    async def _lifecycle(self, namespace: list[str], data: Any, ts: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            return
        inner = data.get("namespace")
        if isinstance(inner, list) and len(inner) > len(namespace):
            namespace = [str(s) for s in inner]
        if not namespace:
            return  # the root's lifecycle is the run's, published by started()/finished()
        out: dict[str, Any] = {"event": data["event"]}
        graph_name = data.get("graph_name") or self._open_namespaces.get(tuple(namespace))
        if graph_name is None:
            graph_name = namespace[-1].partition(":")[0]
        out["graph_name"] = graph_name
        for key in ("cause", "error", "trigger_call_id"):
            if data.get(key) is not None:
                out[key] = data[key]
        if out["event"] == "started":
            self._open_namespaces[tuple(namespace)] = graph_name
        else:
            self._open_namespaces.pop(tuple(namespace), None)
        await self.publish("lifecycle", namespace, to_jsonable(out), timestamp=ts)

    async def finished(
        self, status: str, *, interrupts: list[tuple[list[str], Any]] | None = None,
        error: str | None = None,
    ) -> None:
        """The run's terminal events: input requests and the root lifecycle.

        ``status`` is the run's (``success``, ``error``, ``interrupted`` for a graph waiting on
        input) or ``cancelled`` when it was cancelled through the API.
        """
        if interrupts:
            await asyncio.sleep(INTERRUPT_SETTLE_SECONDS)
            for namespace, intr in interrupts:
                iid = getattr(intr, "id", None) if not isinstance(intr, dict) else intr.get("id")
                value = getattr(intr, "value", None) if not isinstance(intr, dict) else intr.get("value")
                if not isinstance(iid, str) or iid in self._requested:
                    continue
                self._requested.add(iid)
                payload = to_jsonable(value)
                # The protocol names the value `payload`; the Python SDK reads `value`.
                await self.publish("input.requested", namespace,
                                   {"interrupt_id": iid, "payload": payload, "value": payload})
        # Subgraphs still open when the run stopped end with it.
        end = {"success": "completed", "error": "failed", "cancelled": "failed"}.get(
            status, "interrupted")
        for ns, graph_name in list(self._open_namespaces.items()):
            await self.publish("lifecycle", list(ns), {"event": end, "graph_name": graph_name})
        self._open_namespaces.clear()
        data: dict[str, Any] = {"event": "completed", "graph_name": self.graph_name}
        if status == "error":
            data = {"event": "failed", "graph_name": self.graph_name, "error": error or "error"}
        elif status == "cancelled":
            # Cancelled through the API: the run is over without finishing its graph.
            data = {"event": "failed", "graph_name": self.graph_name, "error": "run cancelled"}
        elif status == "interrupted":
            data = {"event": "interrupted", "graph_name": self.graph_name}
        data["run_id"] = self.run_id
        await self.publish("lifecycle", [], data)
