"""The OpenAPI spec fuzzed with schemathesis against a real `dockyard dev` with
DOCKYARD_AUTH=keys and an admin key: no request the spec allows (or nearly allows) gets a 5xx.
A bounded number of examples per operation keeps it under a minute.

Only `not_a_server_error` is checked for now. Schemathesis' conformance checks fail on known,
spec-side gaps: error bodies are Dockyard's `{"detail": str, "code"}` while FastAPI declares
its `HTTPValidationError` for 422, 404/409/429 are not declared per route, fields declared for
compatibility but refused (`reject_unsupported`) count as valid data rejected, and /metrics is
text. Declaring them is the next step (see ARCHITECTURE.md, Teams).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ONE_NODE_GRAPH
from tests.e2e.conftest import DOCKYARD, Server, make_server

# Operations left out: streams that follow a thread or a run until it ends (an idle thread's
# stream never does) and the revision upload (a gzip archive, not JSON).
EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
SKIPPED = ("/stream", "/revisions", "/ui", "/mcp", "/a2a", "/triggers")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    project = tmp / "proj"
    project.mkdir()
    (project / "g.py").write_text(ONE_NODE_GRAPH)
    (project / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    srv = make_server(tmp, project=project, DOCKYARD_AUTH="keys")
    key = subprocess.run(
        [str(DOCKYARD), "keys", "create", "--tenant", "default", "--role", "admin",
         "--project", str(project), "--data-dir", str(srv.data_dir)],
        env=srv.env, check=True, capture_output=True, text=True).stdout.strip()
    srv.start()
    yield srv, key
    srv.stop()


def test_api_fuzz(fuzz_server: tuple[Server, str]) -> None:
    srv, key = fuzz_server
    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    schema = schema.exclude(path_regex="|".join(SKIPPED))
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def check(case: Any) -> None:
            case.call_and_validate(base_url=srv.url, headers={"X-Api-Key": key}, timeout=15,
                                   checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # all operations run; failures together
            failures.append(f"{op.label}: {str(exc)[:1500]}")
    assert operations > 50
    assert not failures, "\n\n".join(failures)
