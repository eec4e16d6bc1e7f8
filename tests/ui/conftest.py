"""Browser tests of the debugger UI: Playwright driving Debian's Chromium against a real
`dockyard dev` on the e2e project (tests/e2e/project: three_steps, approval, failing, slow, chat,
nested, memory …). Without /usr/bin/chromium (or the playwright package) they skip with the
reason — except under CI=true, where they fail: `.ci/run` installs Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server, make_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"


def _unavailable() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("dockyard-ui"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, ui_server: Server) -> Iterator[Any]:
    """A fresh 1440x900 page; uncaught JavaScript errors on it fail the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=ui_server.url)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot to tests/ui/artifacts/<name>.png (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
