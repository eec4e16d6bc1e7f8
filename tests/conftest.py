"""One storage suite, two databases: ``DOCKYARD_TEST_DATABASE`` = ``sqlite`` (default) or ``postgres``.

Every test that takes ``db`` (a fresh, migrated ``Storage``) or ``new_database`` runs on the
database that variable names, and so does every e2e server (``make_server``).

* SQLite: a file under the test's ``tmp_path``.
* PostgreSQL (``DOCKYARD_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/
  postgres``: an admin connection): the session migrates one template database once; each test
  gets its own database cloned from it (``CREATE DATABASE … TEMPLATE …``, ~0.1 s) and drops
  it afterwards. Unreachable PostgreSQL skips those tests with the reason — except in CI
  (``CI=true``), where it fails them: there the PostgreSQL pass must run, not skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from dockyard.storage import Storage, create_storage, migrate_database

TEST_DATABASE = os.environ.get("DOCKYARD_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
POSTGRES_ADMIN_URL = os.environ.get(
    "DOCKYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_PREFIX = "dockyard_test_"


def pytest_configure(config: pytest.Config) -> None:
    if TEST_DATABASE not in ("sqlite", "postgres"):
        raise pytest.UsageError(
            f"DOCKYARD_TEST_DATABASE must be 'sqlite' or 'postgres', not {TEST_DATABASE!r}"
        )


def pytest_report_header() -> str:
    where = f" ({conninfo_to_dict(POSTGRES_ADMIN_URL).get('host')})" if TEST_DATABASE == "postgres" else ""
    return f"dockyard test database: {TEST_DATABASE}{where}"


class PostgresDatabases:
    """Creates and drops the session's PostgreSQL databases (all named ``dockyard_test_*``)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: set[str] = set()
        self._template: str | None = None
        self._checked = False
        self._unavailable: str | None = None

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=3)

    def url(self, name: str) -> str:
        return urlsplit(self.admin_url)._replace(path=f"/{name}").geturl()

    def require(self) -> None:
        """Skip (laptop) or fail (CI) the calling test when PostgreSQL cannot be reached."""
        if not self._checked:
            self._checked = True
            try:
                self._admin().close()
            except psycopg.Error as exc:
                host = conninfo_to_dict(self.admin_url).get("host")
                self._unavailable = (
                    f"DOCKYARD_TEST_DATABASE=postgres but PostgreSQL at {host} is unreachable "
                    f"({str(exc).strip().splitlines()[0]}); set DOCKYARD_TEST_POSTGRES_URL"
                )
        if self._unavailable is not None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(self._unavailable, pytrace=False)
            pytest.skip(self._unavailable)

    def template(self) -> str:
        if self._template is None:
            name = self._create(f"{DB_PREFIX}tpl_{uuid.uuid4().hex[:8]}", template=None)
            _run_async(_migrate(self.url(name)))
            self._template = name
        return self._template

    def create(self, *, migrated: bool = True) -> str:
        """A fresh database's URL: a clone of the migrated template, or an empty database."""
        self.require()
        template = self.template() if migrated else None
        return self.url(self._create(f"{DB_PREFIX}{uuid.uuid4().hex[:12]}", template=template))

    def _create(self, name: str, *, template: str | None) -> str:
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            sql += f' TEMPLATE "{template}"'
        with self._admin() as conn:
            conn.execute(sql.encode())
        self.created.add(name)
        return name

    def drop(self, url: str) -> None:
        name = str(conninfo_to_dict(url)["dbname"])
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        self.created.discard(name)

    def drop_all(self) -> None:
        for name in sorted(self.created):
            self.drop(self.url(name))
        self._template = None


def _run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _migrate(url: str) -> None:
    await migrate_database(url, default_path=Path("unused"))


_postgres: PostgresDatabases | None = None


def postgres_databases() -> PostgresDatabases:
    """The session's PostgreSQL databases (skips or fails the caller when unreachable)."""
    global _postgres
    if _postgres is None:
        _postgres = PostgresDatabases(POSTGRES_ADMIN_URL)
    _postgres.require()
    return _postgres


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_databases() -> Iterator[None]:
    yield
    if _postgres is not None and _postgres.created:
        _postgres.drop_all()


NewDatabase = Callable[..., str]


@pytest.fixture
def new_database(tmp_path: Path) -> Iterator[NewDatabase]:
    """A factory of fresh database URLs of the selected dialect: ``new_database(migrated=True)``.

    Migrated means cloned from the migrated template (PostgreSQL); SQLite files start empty
    and migrate in milliseconds, so callers run ``migrate()`` either way.
    """
    made: list[str] = []

    def make(*, migrated: bool = True) -> str:
        if TEST_DATABASE == "postgres":
            url = postgres_databases().create(migrated=migrated)
        else:
            url = f"sqlite:///{tmp_path / f'db{len(made)}.sqlite'}"
        made.append(url)
        return url

    yield make
    if TEST_DATABASE == "postgres":
        for url in made:
            postgres_databases().drop(url)


@pytest.fixture
async def db(new_database: NewDatabase, tmp_path: Path) -> AsyncIterator[Storage]:
    """A fresh, migrated ``Storage`` of the selected dialect."""
    storage = create_storage(new_database(), default_path=tmp_path / "unused.sqlite")
    await storage.open()
    await storage.migrate()
    yield storage
    await storage.close()


# A one-node graph module (source text) for tests that build a project in a temp dir.
ONE_NODE_GRAPH = """
import operator
from typing import Annotated, TypedDict
from langgraph.graph import StateGraph, START, END

class S(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]

b = StateGraph(S)
b.add_node("s1", lambda s: {"steps": ["s1"]})
b.add_edge(START, "s1"); b.add_edge("s1", END)
graph = b.compile()
"""

UI_DIR = Path(__file__).parent / "ui"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests need a pytest process of their own (``make test-ui``): Playwright's sync API
    keeps an event loop running in the main thread for the whole session, which breaks every
    asyncio test after it. In a mixed session they are skipped, saying so."""
    ui = [i for i in items if UI_DIR in Path(str(i.fspath)).parents]
    if ui and len(ui) < len(items):
        reason = "browser tests run in their own pytest process: pytest tests/ui (make test-ui)"
        for item in ui:
            item.add_marker(pytest.mark.skip(reason=reason))
