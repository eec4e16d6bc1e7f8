"""The event bus interface: run events fan out from the executor to every subscriber.

Two implementations share it: ``InProcessBus`` (embedded mode) and ``RedisBus`` (production)
so that a client on API replica A can follow a run on worker B. Events are pre-encoded JSON
bytes with ids that increase per run (opaque strings: ``"7"`` in-process, a Redis stream id
such as ``"1718000000000-0"`` on Redis), so a client can resume after a drop (``Last-Event-ID``).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    event: str
    data: bytes


ControlHandler = Callable[[str], Awaitable[None] | None]

# The internal event an executor ends a run's stream with (never sent to clients): what
# `wait`/`join` return. ``EventBus.wait_result`` waits for it.
RESULT_EVENT = "__result__"


class EventBus(abc.ABC):
    @abc.abstractmethod
    async def publish(self, run_id: str, event: str, data: bytes) -> str:
        """Append an event to the run's stream; returns its id."""

    async def send(self, run_id: str, event: str, data: bytes) -> None:
        """``publish`` without waiting for the event's id: what an executor streams with.

        The Redis bus queues the event and returns; its outbox writes queued events in order,
        several runs' in one pipeline, before anything queued after them (``finish`` too). A
        failure to write it is raised by the run's next ``send``.
        """
        await self.publish(run_id, event, data)

    @abc.abstractmethod
    async def close(self, run_id: str) -> None:
        """Mark the run's stream finished: subscribers drain and stop."""

    async def finish(self, run_id: str, events: Sequence[tuple[str, bytes]] = ()) -> None:
        """Append a run's last ``events`` (name, data) and close its stream.

        What an executor does at the end of a run; the Redis bus sends it all in one round trip.
        """
        for event, data in events:
            await self.publish(run_id, event, data)
        await self.close(run_id)

    async def wait_result(self, run_id: str) -> bytes | None:
        """The data of the run's ``RESULT_EVENT`` once it is published, or None when the
        run's stream is closed without one.

        Read from the run's stream here; the Redis bus keeps the result on a key of its own,
        so a waiter wakes once rather than at every event of the run.
        """
        # Both buses' subscriptions are async generators: closed here, not left to the GC.
        subscription = cast(AsyncGenerator[Event, None], self.subscribe(run_id))
        async with contextlib.aclosing(subscription) as events:
            async for ev in events:
                if ev.event == RESULT_EVENT:
                    return ev.data
        return None

    @abc.abstractmethod
    def subscribe(self, run_id: str, *, last_event_id: str | None = None) -> AsyncIterator[Event]:
        """Events of a run after ``last_event_id`` (from the start when None) until closed."""

    @abc.abstractmethod
    async def is_closed(self, run_id: str) -> bool: ...

    @abc.abstractmethod
    async def send_control(self, run_id: str, action: str) -> bool:
        """Deliver a control message (``interrupt``/``rollback``) to the run's executor."""

    @abc.abstractmethod
    def register_control(self, run_id: str, handler: ControlHandler) -> None: ...

    @abc.abstractmethod
    def unregister_control(self, run_id: str) -> None: ...

    @abc.abstractmethod
    async def last_id(self, run_id: str) -> str | None:
        """The id of the newest event of a channel, None when it has none."""

    def seq(self, event_id: str) -> int:
        """An event id as an integer that grows with the ids (the thread protocol's ``seq``)."""
        return int(event_id)

    def event_id_at(self, seq: int) -> str:
        """The inverse of ``seq``: subscribing after this id yields the events after ``seq``."""
        return str(seq)

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Check the connection at start-up (Redis), so a bad URL fails fast; nothing in-process."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections (Redis); nothing to do in-process."""

    async def ping(self) -> bool:
        """Health check (``/ok?check_db=1``): True when reachable; raises with the reason if not."""
        return True
