"""In-process event bus for the embedded mode.

Each run gets a bounded buffer of its events; subscribers read from the buffer and wait on a
condition for more, so late joiners replay what they missed. Buffers are dropped a short while
after the run ends, so memory does not grow with finished or interrupted runs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator

from dockyard.streams.base import ControlHandler, Event, EventBus

MAX_BUFFERED_EVENTS = 20_000
RETAIN_CLOSED_SECONDS = 60.0
# Channels that are never closed (a thread's protocol events) are dropped after this long
# without an event and without a subscriber.
RETAIN_IDLE_SECONDS = 3600.0
# Ids of these channels start from the clock (ms * 1000), so that a channel dropped while idle
# and created again later keeps growing ids: clients hold ``seq`` cursors across runs.
CLOCK_BASED_PREFIXES = ("thread-events:",)


class _Channel:
    __slots__ = ("closed", "closed_at", "cond", "events", "first_seq", "last_used", "seq",
                 "subscribers")

    def __init__(self, first_seq: int = 1) -> None:
        # events[i] has id first_seq + i; the oldest half is dropped when the buffer is full.
        self.events: list[Event] = []
        self.first_seq = first_seq
        self.seq = first_seq - 1
        self.cond = asyncio.Condition()
        self.closed = False
        self.closed_at = 0.0
        self.last_used = time.monotonic()
        self.subscribers = 0


class InProcessBus(EventBus):
    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._controls: dict[str, ControlHandler] = {}
        self._clock_floor = 0  # above every id of a dropped clock-based channel

    def _channel(self, run_id: str) -> _Channel:
        ch = self._channels.get(run_id)
        if ch is None:
            self._gc()
            first = 1
            if run_id.startswith(CLOCK_BASED_PREFIXES):
                first = max(int(time.time() * 1000) * 1000, self._clock_floor)
            ch = self._channels[run_id] = _Channel(first)
        return ch

    def _gc(self) -> None:
        now = time.monotonic()
        closed_cutoff, idle_cutoff = now - RETAIN_CLOSED_SECONDS, now - RETAIN_IDLE_SECONDS
        for rid in [
            r for r, c in self._channels.items()
            if (c.closed and c.closed_at < closed_cutoff)
            or (not c.subscribers and c.last_used < idle_cutoff)
        ]:
            self._drop(rid)

    def _drop(self, run_id: str) -> None:
        ch = self._channels.pop(run_id)
        if run_id.startswith(CLOCK_BASED_PREFIXES):
            self._clock_floor = max(self._clock_floor, ch.seq + 1)

    async def last_id(self, run_id: str) -> str | None:
        ch = self._channels.get(run_id)
        return str(ch.seq) if ch is not None and ch.seq >= ch.first_seq else None

    async def publish(self, run_id: str, event: str, data: bytes) -> str:
        ch = self._channel(run_id)
        ch.seq += 1
        ch.last_used = time.monotonic()
        ev = Event(str(ch.seq), event, data)
        ch.events.append(ev)
        if len(ch.events) > MAX_BUFFERED_EVENTS:
            drop = len(ch.events) - MAX_BUFFERED_EVENTS // 2
            del ch.events[:drop]
            ch.first_seq += drop
        async with ch.cond:
            ch.cond.notify_all()
        return ev.id

    async def close(self, run_id: str) -> None:
        ch = self._channel(run_id)
        ch.closed = True
        ch.closed_at = time.monotonic()
        async with ch.cond:
            ch.cond.notify_all()

    async def is_closed(self, run_id: str) -> bool:
        ch = self._channels.get(run_id)
        return ch is not None and ch.closed

    async def subscribe(
        self, run_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        ch = self._channel(run_id)
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        ch.subscribers += 1
        try:
            while True:
                # Read `closed` before taking the batch: events published while this generator
                # is suspended in a yield (the run's last events, then close) must still be sent.
                closed = ch.closed
                batch = ch.events[max(0, after + 1 - ch.first_seq):]
                for ev in batch:
                    after = int(ev.id)
                    yield ev
                if not batch:
                    # Ids up to ch.seq that are not buffered (a new clock-based channel starts
                    # above 0; trimmed events) cannot be waited for.
                    after = max(after, ch.seq)
                if closed:
                    return
                async with ch.cond:
                    if ch.seq <= after and not ch.closed:
                        await ch.cond.wait()
        finally:
            ch.subscribers -= 1
            ch.last_used = time.monotonic()

    async def send_control(self, run_id: str, action: str) -> bool:
        handler = self._controls.get(run_id)
        if handler is None:
            return False
        result = handler(action)
        if inspect.isawaitable(result):
            await result
        return True

    def register_control(self, run_id: str, handler: ControlHandler) -> None:
        self._controls[run_id] = handler

    def unregister_control(self, run_id: str) -> None:
        self._controls.pop(run_id, None)
