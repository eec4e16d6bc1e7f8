"""The debugger's run pages in a real browser: a trace with a failing node's stack, replays
(recorded outputs up to a step; a modified input), two runs compared, the queue page."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.ui.conftest import shot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(server: Server, graph: str, body: dict[str, Any], thread_id: str | None = None
         ) -> tuple[str, str]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        tid = thread_id or http.post("/threads", json={"metadata": {"graph_id": graph}}).json()[
            "thread_id"]
        r = http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": graph, **body})
        assert r.status_code == 200, r.text
        return tid, r.headers["content-location"].rsplit("/", 1)[1]


def test_a_trace_shows_the_failing_nodes_stack(page: Any, ui_server: Server) -> None:
    tid, rid = _run(ui_server, "failing", {"input": {}})
    page.goto(f"/ui/#/threads/{tid}")
    page.locator(f'[data-table="runs"] tr[data-run="{rid}"] [data-action="open-trace"]').click()
    page.wait_for_url(f"**/ui/#/threads/{tid}/runs/{rid}")
    wf = page.locator("[data-waterfall]")
    wf.locator('.wf-row[data-name="ok"][data-status="success"]').wait_for()
    failed = wf.locator('.wf-row[data-name="boom"][data-status="error"]')
    assert "selected" in (failed.get_attribute("class") or "")  # the failure opens first
    stack = page.locator("[data-span-error] [data-stack]")
    stack.wait_for()
    text = stack.inner_text()
    assert "ValueError: node exploded on purpose" in text
    assert 'raise ValueError("node exploded on purpose")' in text
    shot(page, "trace-error")
    wf.locator('.wf-row[data-name="ok"]').click()
    page.locator("[data-next]", has_text="boom").wait_for()  # the branch taken
    page.click('[data-tab="Output"]')
    assert '"ok"' in page.locator(".inspector-pane .json").inner_text()


def test_replay_with_recorded_outputs_up_to_a_step(page: Any, ui_server: Server) -> None:
    tid, rid = _run(ui_server, "three_steps", {"input": {"steps": []}})
    page.goto(f"/ui/#/threads/{tid}/runs/{rid}")
    page.locator('.wf-row[data-name="c"]').click()
    page.click('[data-action="replay-up-to"]')
    page.wait_for_url(lambda url: f"/threads/{tid}/runs/" in url and rid not in url)
    banner = page.locator("[data-replay-banner]")
    banner.wait_for()
    assert "recorded outputs up to step 2" in banner.inner_text()
    wf = page.locator("[data-waterfall]")
    wf.locator('.wf-row[data-name="c"][data-status="success"]').wait_for()
    # a and b come from the original run's checkpoints: shown as recorded, not run again.
    assert wf.locator('.wf-recorded[data-name="a"]').count() == 1
    assert wf.locator('.wf-recorded[data-name="b"]').count() == 1
    assert wf.locator('.wf-row[data-kind="node"]').count() == 1
    page.locator(".page-head .badge[data-status='success']").wait_for()
    shot(page, "trace-replay-recorded")
    state = httpx.get(f"{ui_server.url}/threads/{tid}/state").json()
    assert state["values"]["steps"] == ["a", "b", "c"]


def test_replay_with_a_modified_input_then_compare(page: Any, ui_server: Server) -> None:
    tid, rid = _run(ui_server, "three_steps", {"input": {"steps": ["original"]}})
    page.goto(f"/ui/#/threads/{tid}/runs/{rid}")
    page.click('[data-action="open-replay"]')
    editor = page.locator("[data-replay-input]")
    assert json.loads(editor.input_value()) == {"steps": ["original"]}
    editor.fill(json.dumps({"steps": ["edited"]}))
    shot(page, "trace-replay-form")
    page.click('[data-action="replay"]')
    page.wait_for_url(lambda url: "/runs/" in url and rid not in url)
    page.locator("[data-replay-banner]").wait_for()
    page.locator(".page-head .badge[data-status='success']").wait_for()
    new_tid, _ = page.url.split("#/threads/")[1].split("/runs/")
    state = httpx.get(f"{ui_server.url}/threads/{new_tid}/state").json()
    assert state["values"]["steps"] == ["edited", "a", "b", "c"]

    page.click('[data-action="compare-original"]')
    page.wait_for_url(lambda url: "#/compare?" in url)
    table = page.locator('[data-table="compare"]')
    table.wait_for()
    rows = table.locator("tbody tr")
    assert rows.count() == 3
    assert table.locator('[data-verdict="differs"]').count() == 3  # same nodes, other inputs
    assert "input" in rows.first.inner_text()
    page.locator(".diff").first.wait_for()  # the first difference opens with its diff
    shot(page, "compare")


def test_compare_two_runs_from_the_thread_page(page: Any, ui_server: Server) -> None:
    tid, first = _run(ui_server, "approval", {"input": {"steps": []}})
    _, second = _run(ui_server, "approval", {"command": {"resume": "yes"}}, tid)
    page.goto(f"/ui/#/threads/{tid}")
    page.locator(f'[data-pick="{first}"]').check()
    page.locator(f'[data-pick="{second}"]').check()
    page.click('[data-action="compare-runs"]')
    page.wait_for_url(lambda url: "#/compare?" in url)
    table = page.locator('[data-table="compare"]')
    table.wait_for()
    verdicts = table.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.verdict)")
    # The first run: prepare, ask (interrupted). The second: ask again (resumed), finish.
    assert "only-a" in verdicts and "only-b" in verdicts
    shot(page, "compare-thread-runs")


def test_queue_page_shows_running_runs_and_failures(page: Any, ui_server: Server) -> None:
    _run(ui_server, "failing", {"input": {}})
    with httpx.Client(base_url=ui_server.url, timeout=30) as http:
        tid = http.post("/threads", json={}).json()["thread_id"]
        run = http.post(f"/threads/{tid}/runs", json={"assistant_id": "slow",
                                                      "input": {"delay": 20}}).json()
        try:
            page.goto("/ui/#/queue")
            page.locator(f'[data-table="running"] tr[data-run="{run["run_id"]}"]').wait_for()
            page.locator('[data-table="failures"] tr').first.wait_for()
            assert "node exploded on purpose" in page.locator('[data-table="failures"]').inner_text()
            assert page.locator('[data-table="workers"] tr[data-worker]').count() >= 1
            shot(page, "queue")
        finally:
            http.post(f"/threads/{tid}/runs/{run['run_id']}/cancel")
