"""``run_process``: ``asyncio.run`` for a worker process, which must exit once it has stopped.

A graph's synchronous node runs in a thread of the event loop's default executor, and Python
cannot stop a thread. ``asyncio.run`` waits for those threads when it closes the loop, and
the interpreter waits for them again at exit: a worker told to stop (SIGTERM, its supervisor
gone) whose node sleeps or hangs in such a thread stayed alive until the node returned,
which may be never. By then the worker has released its runs (another worker resumes them
from their last checkpoint), so the thread's work is abandoned anyway: ``run_process`` waits
for the executor briefly, and if a thread is still busy it says so and ends the process
without waiting for it (``os._exit``, after flushing the logs and standard streams).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("dockyard.process")

EXECUTOR_WAIT_SECONDS = 2.0


def run_process(main: Coroutine[Any, Any, int | None],
                executor_wait: float = EXECUTOR_WAIT_SECONDS,
                loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> int:
    """Run ``main`` (its result: the exit code, None for 0) on a new event loop (from
    ``loop_factory``) and close it; return the exit code, or end the process if executor
    threads outlive ``executor_wait``, also when ``main`` raised (Ctrl-C: 130)."""
    loop = (loop_factory or asyncio.new_event_loop)()
    executor = ThreadPoolExecutor(thread_name_prefix="dockyard-sync")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    code = 1
    try:
        code = loop.run_until_complete(main) or 0
        return code
    except KeyboardInterrupt:
        code = 130
        raise
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()  # shuts the executor down without waiting
            _leave_busy_threads(executor, executor_wait, code)


def _leave_busy_threads(executor: ThreadPoolExecutor, wait: float, code: int) -> None:
    """Wait for the executor's threads, but not forever (asyncio.run would)."""
    waiter = threading.Thread(target=executor.shutdown, name="dockyard-exit", daemon=True)
    waiter.start()
    waiter.join(wait)
    if waiter.is_alive():
        log.warning("exiting_with_busy_threads seconds=%g: a synchronous node still runs; its "
                    "run was released and resumes elsewhere from its last checkpoint", wait)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
