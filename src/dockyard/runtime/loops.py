"""Stopping the background loops (cron scheduler, revision supervisor, webhook deliverer).

Each loop sleeps on an ``asyncio.Event`` through ``asyncio.wait_for`` and runs while its
owner's ``_stopping`` flag is false. Cancelling the task alone is not enough on Python 3.11: a
cancel that lands as ``wait_for``'s event fires is swallowed, the loop goes on, and awaiting
the task would hang. So the owner sets its flag, then calls ``stop_loop``, which wakes the
loop (it ends on the flag) and cancels it (it ends at once if it was elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib


async def stop_loop(task: asyncio.Task[None] | None, wake: asyncio.Event) -> None:
    """Wake and cancel a loop task whose owner has set its stop flag; wait until it ends."""
    wake.set()
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
