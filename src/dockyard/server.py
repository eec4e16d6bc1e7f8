"""uvicorn's server, closed by ``run_process`` (``dockyard dev`` and ``dockyard serve``).

After Ctrl-C, uvicorn's ``asyncio.run`` waited for every thread of the event loop's executor,
so a synchronous node that sleeps or hangs kept the stopped server alive (its run had already
been released). ``Server.run`` here is uvicorn's, on the same event loop, closed the way worker
processes close theirs (``runtime/process.py``). The reloader pickles ``Server.run`` into its
child process, so the class lives at module level.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.supervisors import ChangeReload

from dockyard.runtime.process import run_process

STARTUP_FAILURE = 3  # uvicorn's exit code when the server did not start

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without httptools: its default protocol, as is
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class _OneWritePerStep:
    """A connection's transport whose writes within one step of the event loop go out as one.

    uvicorn writes a response's head and its body separately: two sends, each waking the
    client, for every JSON response. Writes are joined until the end of the loop's current
    step (``call_soon``), so a response sent at once is one send; a streamed one still goes
    out as each part is sent. Everything else is the socket's transport."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


if HttpToolsProtocol is not None:

    class Protocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol, writing through ``_OneWritePerStep``."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_OneWritePerStep(transport))  # type: ignore[arg-type]

        def handle_websocket_upgrade(self) -> None:
            # The WebSocket protocol takes the connection over with the socket's transport.
            corked = self.transport
            if isinstance(corked, _OneWritePerStep):
                corked.flush()
                self.transport = corked._transport
            super().handle_websocket_upgrade()


class Server(uvicorn.Server):
    def run(self, sockets: list[socket.socket] | None = None) -> None:
        run_process(self.serve(sockets=sockets), loop_factory=self.config.get_loop_factory())


def http_protocol() -> Any:
    """The ``http`` of uvicorn's Config: ``Protocol`` where httptools is installed."""
    return Protocol if HttpToolsProtocol is not None else "auto"


def serve(config: uvicorn.Config) -> int:
    """``uvicorn.run`` for one process, with or without the reloader: the exit code."""
    server = Server(config=config)
    try:
        if config.should_reload:
            sock = config.bind_socket()
            ChangeReload(config, target=server.run, sockets=[sock]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if not server.started and not config.should_reload:
        return STARTUP_FAILURE
    return 0
