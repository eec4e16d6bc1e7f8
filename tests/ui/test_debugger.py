"""The debugger UI in a real browser: every page, driven like a user, against `dockyard dev`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.ui.conftest import shot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _thread_with_run(server: Server, graph: str, body: dict[str, Any]) -> str:
    """A thread whose (blocking) run of ``graph`` is over, created through the HTTP API."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        thread = http.post("/threads", json={"metadata": {"graph_id": graph}}).json()
        r = http.post(f"/threads/{thread['thread_id']}/runs/wait",
                      json={"assistant_id": graph, **body})
        assert r.status_code == 200, r.text
        return str(thread["thread_id"])


def test_ui_is_served_at_both_urls(ui_server: Server) -> None:
    for path in ("/ui", "/ui/"):
        r = httpx.get(ui_server.url + path)
        assert r.status_code == 200 and "<title>Dockyard</title>" in r.text
    assert httpx.get(ui_server.url + "/ui/js/main.js").headers["content-type"].startswith(
        "text/javascript")


def test_agents_page_draws_the_graph_and_starts_a_run_watched_live(page: Any) -> None:
    page.goto("/ui/#/agents/nested")
    graph = page.locator("svg.graph")
    graph.wait_for()
    for node in ("__start__", "outer", "__end__"):
        assert graph.locator(f'[data-node="{node}"]').count() == 1
    assert page.locator(".table td", has_text="v1").count() >= 1  # versions
    shot(page, "agents")

    page.goto("/ui/#/agents/chat")
    page.locator('[data-assistant="chat"].active').wait_for()
    form = page.locator('[data-form="start-run"]')
    assert "Hello!" in form.locator('textarea[name="messages"]').input_value()
    form.locator('textarea[name="messages"]').fill(
        json.dumps([{"role": "user", "content": "hi from the browser"}]))
    page.click('[data-action="start-run"]')
    page.wait_for_url("**/ui/#/threads/*")
    run = page.locator("[data-live-run]").first
    run.locator(".badge", has_text="completed").wait_for()
    assert run.locator('[data-node="reply"] [data-tokens]').inner_text() == \
        "hello there from the fake model"
    page.locator('[data-table="runs"] tr[data-status="success"]').wait_for()
    page.locator(".cp").first.wait_for()
    shot(page, "thread-live")


def test_a_failed_run_shows_the_failing_node_and_its_error(page: Any, ui_server: Server) -> None:
    thread_id = _thread_with_run(ui_server, "failing", {"input": {}})
    page.goto(f"/ui/#/threads/{thread_id}")
    alert = page.locator("[data-error]")
    alert.wait_for()
    assert "boom" in alert.inner_text()
    assert "node exploded on purpose" in alert.inner_text()
    alert.locator("summary", has_text="Stack trace").click()
    assert "ValueError" in alert.locator(".trace pre").inner_text()
    page.locator('[data-table="runs"] tr[data-status="error"]').wait_for()
    shot(page, "thread-error")


def test_approving_an_interrupt_finishes_the_thread(page: Any, ui_server: Server) -> None:
    thread_id = _thread_with_run(ui_server, "approval", {"input": {"steps": ["start"]}})
    page.goto("/ui/#/threads?status=interrupted")
    row = page.locator(f'[data-thread="{thread_id}"]')
    row.wait_for()
    assert "row-attention" in (row.get_attribute("class") or "")
    shot(page, "threads")

    row.click()
    box = page.locator("[data-interrupts]")
    box.wait_for()
    assert "approve?" in box.locator("[data-interrupt-value]").input_value()
    shot(page, "thread-interrupt")
    page.click('[data-action="approve"]')
    page.locator(".page-head .badge[data-status='idle']").wait_for()
    page.locator("[data-live-run] .badge", has_text="completed").wait_for()
    state = httpx.get(f"{ui_server.url}/threads/{thread_id}/state").json()
    assert state["values"]["steps"] == ["start", "prepare", "answer:{'approved': True}", "finish"]


def test_forking_from_a_checkpoint_with_an_edited_value(page: Any, ui_server: Server) -> None:
    thread_id = _thread_with_run(ui_server, "three_steps", {"input": {"steps": []}})
    page.goto(f"/ui/#/threads/{thread_id}")
    after_a = page.locator('.cp[data-step="1"]')
    after_a.click()
    page.locator(".diff [data-kind='appended']").wait_for()  # step 1 appended "a"
    page.click('[data-tab="Fork"]')
    editor = page.locator("[data-fork-values]")
    values = json.loads(editor.input_value())
    assert values["steps"] == ["a"]
    editor.fill(json.dumps({**values, "marker": "edited in the UI"}))
    page.click('[data-action="fork"]')
    page.locator(".cp .tag-fork").first.wait_for()  # the new branch in the timeline
    head = page.locator(".cp.cp-head")
    head.click()
    page.click('[data-tab="State"]')
    state_text = page.locator(".json-state").inner_text()
    assert "edited in the UI" in state_text
    state = httpx.get(f"{ui_server.url}/threads/{thread_id}/state").json()
    assert state["values"] == {"steps": ["a", "b", "c"], "marker": "edited in the UI"}
    shot(page, "thread-fork")


def test_store_browser_lists_an_item(page: Any, ui_server: Server) -> None:
    r = httpx.put(f"{ui_server.url}/store/items", json={
        "namespace": ["ui-test", "profiles"], "key": "ada", "value": {"name": "Ada", "lang": "en"}})
    assert r.status_code == 204, r.text
    page.goto("/ui/#/store")
    page.locator('[data-namespace="ui-test.profiles"]').click()
    row = page.locator('[data-table="items"] [data-key="ada"]')
    row.wait_for()
    assert "Ada" in row.inner_text()
    shot(page, "store")


def test_errors_are_shown_in_place(page: Any) -> None:
    page.goto("/ui/#/threads/not-a-thread")
    alert = page.locator(".alert-error")
    alert.wait_for()
    assert alert.inner_text().strip()
    page.goto('/ui/#/threads?metadata={"x":')
    page.locator(".alert-error", has_text="not valid JSON").wait_for()


def test_cancelling_a_running_run_from_the_thread_page(page: Any) -> None:
    page.goto("/ui/#/agents/slow")
    form = page.locator('[data-form="start-run"]')
    form.locator('input[name="delay"]').fill("60")
    page.click('[data-action="start-run"]')
    page.wait_for_url("**/ui/#/threads/*")
    page.locator("[data-live-run] .live-custom").wait_for()  # the node's custom ticks, live
    page.locator('[data-table="runs"] tr[data-status="running"] [data-action="cancel-run"]').click()
    page.locator("[data-live-run] .live-error", has_text="cancelled").wait_for()
    page.locator('[data-table="runs"] tr[data-status="running"]').wait_for(state="detached")
