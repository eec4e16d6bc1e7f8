"""The in-process event bus: replay, Last-Event-ID resumption and the end of a stream."""

from __future__ import annotations

from dockyard.streams import memory
from dockyard.streams.memory import InProcessBus


async def test_events_published_while_a_subscriber_is_suspended_are_not_lost() -> None:
    bus = InProcessBus()
    await bus.publish("r", "metadata", b"{}")
    sub = bus.subscribe("r")
    first = await anext(sub)
    # The subscriber is suspended in its yield while the run publishes its last events and
    # closes the stream (what happens when the SSE writer is slower than the run).
    await bus.publish("r", "values", b"1")
    await bus.publish("r", "end", b"null")
    await bus.close("r")
    rest = [ev async for ev in sub]
    assert [first.event, *(ev.event for ev in rest)] == ["metadata", "values", "end"]


async def test_resume_after_last_event_id() -> None:
    bus = InProcessBus()
    for i in range(5):
        await bus.publish("r", "custom", str(i).encode())
    await bus.close("r")
    got = [ev.data async for ev in bus.subscribe("r", last_event_id="3")]
    assert got == [b"3", b"4"]


async def test_full_buffer_drops_the_oldest_events(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memory, "MAX_BUFFERED_EVENTS", 10)
    bus = InProcessBus()
    for i in range(25):
        await bus.publish("r", "custom", str(i).encode())
    await bus.close("r")
    ids = [int(ev.id) async for ev in bus.subscribe("r")]
    assert ids == list(range(ids[0], 26)) and len(ids) <= 10
    assert [int(ev.id) async for ev in bus.subscribe("r", last_event_id="23")] == [24, 25]
