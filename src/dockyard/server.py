"""uvicorn's server, closed by ``run_process`` (``dockyard dev`` and ``dockyard serve``).

After Ctrl-C, uvicorn's ``asyncio.run`` waited for every thread of the event loop's executor,
so a synchronous node that sleeps or hangs kept the stopped server alive (its run had already
been released). ``Server.run`` here is uvicorn's, on the same event loop, closed the way worker
processes close theirs (``runtime/process.py``). The reloader pickles ``Server.run`` into its
child process, so the class lives at module level.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import ChangeReload

from dockyard.runtime.process import run_process

STARTUP_FAILURE = 3  # uvicorn's exit code when the server did not start


class Server(uvicorn.Server):
    def run(self, sockets: list[socket.socket] | None = None) -> None:
        run_process(self.serve(sockets=sockets), loop_factory=self.config.get_loop_factory())


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
