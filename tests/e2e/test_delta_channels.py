"""Graphs whose state uses LangGraph's DeltaChannel (checkpoints hold each step's writes, the
value is rebuilt by replaying them): state, history, time travel and forks through the API."""

from __future__ import annotations

from typing import Any


async def test_delta_channel_state_history_and_fork(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    out = await client.runs.wait(tid, "delta", input={"target": 8})
    expected = [f"s{i}" for i in range(8)]
    assert out["steps"] == expected
    state = await client.threads.get_state(tid)
    assert state["values"]["steps"] == expected and not state["next"]
    history = await client.threads.get_history(tid, limit=20)
    # Every checkpoint rebuilds its own value (snapshots every 3 updates, replays between).
    assert [len(h["values"].get("steps", [])) for h in history] == [*range(8, -1, -1), 0]
    # Time travel: the state at the checkpoint after 4 steps.
    at4 = next(h for h in history if len(h["values"].get("steps", [])) == 4)
    old = await client.threads.get_state(tid, checkpoint_id=at4["checkpoint"]["checkpoint_id"])
    assert old["values"]["steps"] == expected[:4]
    # Fork there with an edit, and run the branch to its end.
    forked = await client.threads.update_state(tid, {"steps": ["edited"]},
                                               checkpoint_id=at4["checkpoint"]["checkpoint_id"])
    branch = await client.runs.wait(tid, "delta", input=None, checkpoint=forked["checkpoint"])
    assert branch["steps"] == [*expected[:4], "edited", "s5", "s6", "s7"]
    # A copy of the thread carries the writes the values are rebuilt from.
    copy = await client.threads.copy(tid)
    copied = await client.threads.get_state(copy["thread_id"])
    assert copied["values"]["steps"] == branch["steps"]
