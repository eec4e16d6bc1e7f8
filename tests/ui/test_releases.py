"""The release console (#/releases) in a real browser: revisions deployed through the public
API, then promote, canary, an API refusal shown in place, rollback and an auto-rollback, each
seen in the traffic split, the revisions table and the history."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from dockyard.bundle import build_archive
from dockyard.services.deployments import in_canary
from tests.e2e.conftest import Server, make_server
from tests.e2e.test_release import write_project
from tests.ui.conftest import ARTIFACTS, shot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def release_server(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Server]:
    """A server of its own (its deployment changes would reroute the shared server's
    threads), whose project defines one graph, ``agent`` (tests/e2e/test_release.py)."""
    tmp = tmp_path_factory.mktemp("dockyard-releases")
    srv = make_server(tmp, project=write_project(tmp / "base", "base"))
    srv.start()
    yield srv
    srv.stop()


def deploy(srv: Server, project: Path, message: str, *, author: str = "ada",
           commit: str | None = None) -> dict[str, Any]:
    """POST /revisions as `dockyard deploy` does; a failed revision answers 422 with it."""
    headers = {"Content-Type": "application/gzip", "X-Dockyard-Message": quote(message),
               "X-Dockyard-Author": quote(author)}
    if commit:
        headers["X-Dockyard-Git-Commit"] = commit
    r = httpx.post(f"{srv.url}/revisions", content=build_archive(project), headers=headers,
                   timeout=120)
    assert r.status_code in (201, 422), r.text
    return r.json() if r.status_code == 201 else r.json()["details"]["revision"]


def test_empty_state_explains_deploy_and_promote(page: Any) -> None:
    page.goto("/ui/#/releases")
    page.locator('[data-empty="revisions"]').wait_for()
    empty_text = page.locator('[data-empty="revisions"]').inner_text()
    assert "dockyard deploy" in empty_text and "dockyard promote" in empty_text
    assert page.locator('[data-tile="current"] .tile-value').inner_text() == "base"
    assert page.locator('[data-action="rollback"]').is_disabled()
    assert page.locator(".nav-link.active").inner_text().strip().endswith("Releases")
    shot(page, "releases-empty")


def shot_dialog(page: Any, name: str) -> None:
    """The viewport only: a full-page capture of a modal dialog misplaces the sidebar."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _row(page: Any, revision_id: str) -> Any:
    return page.locator(f'[data-table="revisions"] tr[data-revision="{revision_id}"]')


def _confirm(page: Any, name: str) -> Any:
    dialog = page.locator(f'dialog[data-dialog="{name}"]')
    dialog.wait_for()
    return dialog


def test_release_console_promote_canary_refusal_rollback(
    page: Any, release_server: Server, tmp_path: Path
) -> None:
    srv = release_server
    v1 = deploy(srv, write_project(tmp_path / "v1", "v1"), "first release",
                commit="3f9a1c2b7d4e5f60718293a4b5c6d7e8f9012345")["revision_id"]
    v2 = deploy(srv, write_project(tmp_path / "v2", "v2"), "tighter prompt",
                author="grace")["revision_id"]
    broken = write_project(tmp_path / "broken", "x")
    (broken / "agent.py").write_text("import nope_module_for_ui\n")
    failed = deploy(srv, broken, "typo in an import")
    assert failed["status"] == "failed"
    extra = write_project(tmp_path / "extra", "extra")
    (extra / "langgraph.json").write_text(json.dumps(
        {"graphs": {"agent": "./agent.py:graph", "reporter": "./agent.py:graph"}}))
    new_graph = deploy(srv, extra, "adds a reporter graph")["revision_id"]

    page.goto(f"{srv.url}/ui/#/releases")
    for rid in (v1, v2, failed["revision_id"], new_graph):
        _row(page, rid).wait_for()
    assert _row(page, v1).locator(".badge").inner_text() == "ready"
    assert "first release" in _row(page, v1).inner_text()
    assert "3f9a1c2b7d" in _row(page, v1).inner_text()  # the git commit
    bad = _row(page, failed["revision_id"])
    assert bad.get_attribute("data-status") == "failed"
    assert bad.locator('[data-action="promote"]').count() == 0  # a failed revision never serves
    bad.locator('[data-action="build-log"]').click()
    log = page.locator(f'tr[data-log="{failed["revision_id"]}"] pre')
    log.wait_for()
    assert "nope_module_for_ui" in log.inner_text()
    # a ready revision's build log says what verification did
    _row(page, v1).locator('[data-action="build-log"]').click()
    ready_log = page.locator(f'tr[data-log="{v1}"] pre')
    ready_log.wait_for()
    assert "verified in" in ready_log.inner_text() and "graphs agent" in ready_log.inner_text()
    shot(page, "releases-revisions")

    # v1's environment: a secret set through the dialog comes back as a name only
    _row(page, v1).locator('[data-action="env"]').click()
    env = _confirm(page, "env")
    env.locator('input[name="env_name"]').fill("GREETING")
    env.locator('input[name="env_value"]').fill("s3cret-value")
    shot_dialog(page, "releases-env-dialog")
    env.locator('[data-action="confirm"]').click()
    page.locator('dialog[data-dialog="env"]').wait_for(state="detached")
    names = httpx.get(f"{srv.url}/revisions/{v1}/env").json()
    assert [n["name"] for n in names] == ["GREETING"] and "s3cret" not in str(names)
    _row(page, v1).locator('[data-action="env"]').click()
    env = _confirm(page, "env")
    env.locator('[data-unset="GREETING"]').wait_for()
    assert "s3cret-value" not in env.inner_text()
    env.locator('[data-action="cancel"]').click()

    # Promote v1 to all traffic, after a confirmation.
    _row(page, v1).locator('[data-action="promote"]').click()
    _confirm(page, "promote").locator('[data-action="confirm"]').click()
    page.locator('dialog[data-dialog="promote"]').wait_for(state="detached")
    page.locator(f'[data-tile="current"][data-revision="{v1}"]').wait_for()
    _row(page, v1).locator(".tag-current").wait_for()
    assert httpx.get(f"{srv.url}/deployment").json()["current_revision_id"] == v1

    # A canary of v2 for 25% of new threads, with auto-rollback thresholds.
    _row(page, v2).locator('[data-action="canary"]').click()
    dialog = _confirm(page, "canary")
    dialog.locator('input[name="percent"]').fill("25")
    dialog.locator('input[name="auto_rollback"]').check()
    dialog.locator('input[name="max_error_rate"]').fill("50")
    dialog.locator('input[name="min_runs"]').fill("3")
    shot_dialog(page, "releases-canary-dialog")
    dialog.locator('[data-action="confirm"]').click()
    page.locator('.traffic-bar[data-split="75/25"]').wait_for()
    page.locator(f'[data-tile="canary"][data-revision="{v2}"]').wait_for()
    assert "50%" in page.locator('[data-tile="auto-rollback"]').inner_text()
    assert _row(page, v2).locator(".tag-canary").inner_text() == "canary 25%"
    dep = httpx.get(f"{srv.url}/deployment").json()
    assert dep["canary_revision_id"] == v2 and dep["canary_percent"] == 25
    assert dep["auto_rollback"]["max_error_rate"] == 0.5 and dep["auto_rollback"]["min_runs"] == 3

    # A run on the current revision, so the figures have something to show.
    # (The graph echoes GREETING: the variable set in the dialog reached v1's worker process.)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        thread = next(t for t in (http.post("/threads", json={}).json() for _ in range(50))
                      if not in_canary(t["thread_id"], 25))
        r = http.post(f"/threads/{thread['thread_id']}/runs/wait",
                      json={"assistant_id": "agent", "input": {}})
        assert r.status_code == 200 and r.json()["trail"] == ["first:v1:s3cret-value"], r.text
    page.click('[data-action="refresh"]')
    page.locator('[data-table="figures"] tr[data-role="current"] td:nth-child(3)',
                 has_text="1").wait_for()
    shot(page, "releases-canary")
    page.click('[data-window="86400"]')  # the figures' window, kept in the URL
    page.locator(".figures-foot", has_text="24 hours").wait_for()
    assert page.url.endswith("#/releases?window=86400")

    # The API's refusal shows in place: the server's project has no graph "reporter".
    _row(page, new_graph).locator('[data-action="promote"]').click()
    dialog = _confirm(page, "promote")
    dialog.locator('[data-action="confirm"]').click()
    refusal = dialog.locator('.alert-error[data-error-code="unknown_graphs"]')
    refusal.wait_for()
    assert "HTTP 422" in refusal.inner_text() and "reporter" in refusal.inner_text()
    shot_dialog(page, "releases-refused")
    dialog.locator('[data-action="cancel"]').click()
    dialog.wait_for(state="detached")

    # Roll back: the canary is dropped, with a reason kept in the history.
    page.click('[data-action="rollback"]')
    dialog = _confirm(page, "rollback")
    dialog.locator('input[name="reason"]').fill("p95 regressed on the canary")
    shot_dialog(page, "releases-rollback-dialog")
    dialog.locator('[data-action="confirm"]').click()
    page.locator('.traffic-bar[data-split="100/0"]').wait_for()
    entry = page.locator('[data-list="history"] [data-action="rollback"]').first
    entry.wait_for()
    assert "p95 regressed on the canary" in entry.inner_text()
    assert [e["action"] for e in httpx.get(f"{srv.url}/deployment").json()["events"]] == \
        ["rollback", "canary", "promote"]

    # An auto-rollback (a canary whose runs fail) is highlighted in the history.
    failing = deploy(srv, write_project(tmp_path / "fails", "broken"), "always fails")
    r = httpx.post(f"{srv.url}/deployment/promote", json={
        "revision_id": failing["revision_id"], "canary_percent": 99.99,
        "auto_rollback": {"max_error_rate": 0.5, "min_runs": 1}})
    assert r.status_code == 200, r.text
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        thread = next(t for t in (http.post("/threads", json={}).json() for _ in range(50))
                      if in_canary(t["thread_id"], 99.99))
        http.post(f"/threads/{thread['thread_id']}/runs/wait",
                  json={"assistant_id": "agent", "input": {}})
        deadline = time.monotonic() + 30
        while http.get("/deployment").json()["canary_revision_id"] is not None:
            assert time.monotonic() < deadline, "no auto-rollback"
            time.sleep(0.3)
    page.click('[data-action="refresh"]')
    auto = page.locator('[data-list="history"] .event-auto_rollback').first
    auto.wait_for()
    assert "error rate 100% over 1 runs exceeds 50%" in auto.inner_text()
    assert page.locator('[data-list="history"] [data-action="promote"]').count() == 1
    page.locator('[data-tile="canary"].tile-off').wait_for()
    shot(page, "releases-history")
