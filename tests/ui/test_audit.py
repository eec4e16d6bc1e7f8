"""The audit log page (#/audit): an admin's view of who did what, filtered by action, with
refused calls highlighted; and its empty state when auth is off (nothing is recorded)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DOCKYARD, PROJECT, Server, make_server
from tests.ui.conftest import shot


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[tuple[Server, str, str]]:
    srv = make_server(tmp_path, DOCKYARD_AUTH="keys")
    def key(role: str) -> str:
        return subprocess.run(
            [str(DOCKYARD), "keys", "create", "--tenant", "default", "--role", role,
             "--project", str(PROJECT), "--data-dir", str(srv.data_dir)],
            env=srv.env, check=True, capture_output=True, text=True).stdout.strip()

    admin, viewer = key("admin"), key("viewer")
    srv.start()
    yield srv, admin, viewer
    srv.stop()


def test_audit_page_lists_filters_and_highlights_refusals(
    browser: Any, keyed_server: tuple[Server, str, str]
) -> None:
    srv, key, viewer = keyed_server
    with httpx.Client(base_url=srv.url, headers={"X-Api-Key": key}, timeout=30) as c:
        tid = c.post("/threads", json={}).json()["thread_id"]
        run = c.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "three_steps",
                                                         "input": {"steps": []}})
        assert run.status_code == 200, run.text
    refused = httpx.post(f"{srv.url}/threads", json={}, headers={"X-Api-Key": viewer})
    assert refused.status_code == 403

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script(f"localStorage.setItem('dockyard.apiKey', {key!r})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{srv.url}/ui/#/audit")
        page.locator('table[data-table="audit"]').wait_for()
        actions = page.locator("tr[data-audit]").evaluate_all(
            "rows => rows.map(r => r.dataset.audit)")
        assert "run.create" in actions and "auth.forbidden" in actions, actions
        row = page.locator('tr[data-audit="auth.forbidden"]').first
        assert "row-error" in (row.get_attribute("class") or "")
        text = row.inner_text()
        assert "refused" in text and "viewer" in text and "write_threads" in text, text
        shot(page, "audit")
        page.select_option('select[data-filter="action"]', "auth.forbidden")
        page.wait_for_url("**/#/audit?action=auth.forbidden")
        page.locator('tr[data-audit="auth.forbidden"]').first.wait_for()
        assert set(page.locator("tr[data-audit]").evaluate_all(
            "rows => rows.map(r => r.dataset.audit)")) == {"auth.forbidden"}
    finally:
        context.close()
    assert not errors, errors


def test_audit_page_explains_an_empty_log(page: Any, ui_server: Server) -> None:
    page.goto(f"{ui_server.url}/ui/#/audit")
    state = page.locator(".state-empty")
    state.wait_for()
    assert "Nothing recorded yet" in state.inner_text()
    assert "DOCKYARD_AUTH=keys" in state.inner_text()
    shot(page, "audit-empty")
