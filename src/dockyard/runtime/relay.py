"""The relay between a process and the revision worker processes it spawned (embedded mode).

With Redis, a revision's workers publish events and receive cancellations through Redis like
any worker. Without it (``dockyard dev`` on SQLite) the parent's event bus lives in the
parent's memory, so the children reach it through this relay: a Unix socket under the data
dir. ``RelayBus`` is the child's ``EventBus``: publish and close are forwarded (and answered
with the parent bus's event id), a run's control registration makes the parent forward that
run's cancellations back. The parent also sends ``wake`` when runs are queued, which is how a
child on SQLite (no LISTEN/NOTIFY) learns of new runs without polling.

Frames are length-prefixed: a 4-byte big-endian header length, the JSON header, a 4-byte data
length and the data bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError
from dockyard.streams.base import ControlHandler, Event, EventBus

log = logging.getLogger("dockyard.relay")

_LEN = struct.Struct(">I")


async def _write(writer: asyncio.StreamWriter, header: dict[str, Any], data: bytes = b"") -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    writer.write(_LEN.pack(len(head)) + head + _LEN.pack(len(data)) + data)
    await writer.drain()


async def _read(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    (n,) = _LEN.unpack(await reader.readexactly(4))
    header = json.loads(await reader.readexactly(n))
    (m,) = _LEN.unpack(await reader.readexactly(4))
    data = await reader.readexactly(m) if m else b""
    return header, data


class RelayServer:
    """The parent's side: serves children on a Unix socket, over the parent's bus."""

    def __init__(self, bus: EventBus, path: Path) -> None:
        self.bus = bus
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        self.path.chmod(0o600)  # the children run as this user; nobody else may publish

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def wake(self) -> None:
        """Runs were queued: tell every child (each claims what is its own)."""
        for writer in list(self._writers):
            task = asyncio.ensure_future(self._send(writer, {"op": "wake"}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, writer: asyncio.StreamWriter, header: dict[str, Any]) -> None:
        try:
            await _write(writer, header)
        except (ConnectionError, RuntimeError):
            self._writers.discard(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        runs: set[str] = set()
        lock = asyncio.Lock()  # replies and forwarded controls share the writer

        async def reply(header: dict[str, Any]) -> None:
            async with lock:
                await _write(writer, header)

        def forward(run_id: str) -> ControlHandler:
            def handler(action: str) -> Any:
                return reply({"op": "control", "run": run_id, "action": action})
            return handler

        try:
            while True:
                header, data = await _read(reader)
                op, rid = header.get("op"), header.get("id")
                try:
                    if op == "publish":
                        result: Any = await self.bus.publish(header["run"], header["event"], data)
                    elif op == "close":
                        await self.bus.close(header["run"])
                        result = None
                    elif op == "register":
                        runs.add(header["run"])
                        self.bus.register_control(header["run"], forward(header["run"]))
                        continue
                    elif op == "unregister":
                        runs.discard(header["run"])
                        self.bus.unregister_control(header["run"])
                        continue
                    else:
                        raise ValueError(f"unknown relay op {op!r}")
                    await reply({"op": "reply", "id": rid, "result": result})
                except (DockyardError, ValueError, KeyError) as exc:
                    await reply({"op": "reply", "id": rid, "error": str(exc)})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            for run_id in runs:  # the child died: its runs' controls go nowhere now
                self.bus.unregister_control(run_id)
            writer.close()


class RelayBus(EventBus):
    """The child's bus: every call goes to the parent's bus through the relay socket."""

    def __init__(self, path: str, *, on_wake: Callable[[], None] | None = None,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.path = path
        self.on_wake = on_wake
        self.on_lost = on_lost  # the parent is gone: the child should stop
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._controls: dict[str, ControlHandler] = {}
        self._next = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        self._task = asyncio.create_task(self._receive(), name="dockyard-relay")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()

    async def _receive(self) -> None:
        assert self._reader is not None
        try:
            while True:
                header, _ = await _read(self._reader)
                op = header.get("op")
                if op == "reply":
                    fut = self._pending.pop(header["id"], None)
                    if fut is not None and not fut.done():
                        if "error" in header:
                            fut.set_exception(DockyardError(header["error"], code="relay_error"))
                        else:
                            fut.set_result(header.get("result"))
                elif op == "control":
                    handler = self._controls.get(header["run"])
                    if handler is not None:
                        result = handler(header["action"])
                        if asyncio.iscoroutine(result):
                            await result
                elif op == "wake" and self.on_wake is not None:
                    self.on_wake()
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("relay_lost path=%s", self.path)
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(DockyardError("the parent process is gone",
                                                    code="event_bus_unavailable"))
            if self.on_lost is not None:
                self.on_lost()

    async def _call(self, header: dict[str, Any], data: bytes = b"") -> Any:
        if self._writer is None:
            raise DockyardError("relay not open", code="event_bus_unavailable")
        self._next += 1
        header["id"] = self._next
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        async with self._lock:
            await _write(self._writer, header, data)
        return await fut

    async def _notify(self, header: dict[str, Any]) -> None:
        if self._writer is None:
            return
        async with self._lock:
            await _write(self._writer, header)

    async def publish(self, run_id: str, event: str, data: bytes) -> str:
        return str(await self._call({"op": "publish", "run": run_id, "event": event}, data))

    async def close(self, run_id: str) -> None:
        await self._call({"op": "close", "run": run_id})

    def register_control(self, run_id: str, handler: ControlHandler) -> None:
        self._controls[run_id] = handler
        self._background(self._notify({"op": "register", "run": run_id}))

    def unregister_control(self, run_id: str) -> None:
        self._controls.pop(run_id, None)
        self._background(self._notify({"op": "unregister", "run": run_id}))

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # A revision's workers only publish; reading streams is the API's business.
    def subscribe(self, run_id: str, *, last_event_id: str | None = None) -> AsyncIterator[Event]:
        raise NotImplementedError("revision workers do not subscribe to streams")

    async def is_closed(self, run_id: str) -> bool:
        raise NotImplementedError("revision workers do not read streams")

    async def send_control(self, run_id: str, action: str) -> bool:
        raise NotImplementedError("revision workers do not cancel runs")

    async def last_id(self, run_id: str) -> str | None:
        raise NotImplementedError("revision workers do not read streams")
