from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.e2e


async def test_three_steps_wait(client: Any) -> None:
    thread = await client.threads.create()
    result = await client.runs.wait(thread["thread_id"], "three_steps", input={"steps": []})
    assert result == {"steps": ["a", "b", "c"]}


def test_sync_client_wait(sync_client: Any) -> None:
    thread = sync_client.threads.create()
    result = sync_client.runs.wait(thread["thread_id"], "three_steps", input={"steps": ["x"]})
    assert result == {"steps": ["x", "a", "b", "c"]}
