"""The OpenAPI spec fuzzed with schemathesis against a real `dockyard dev` with
DOCKYARD_AUTH=keys and an admin key. Positive data (what the spec allows): no 5xx, and every
answer conforms to the spec (status declared, content type, body schema, headers). Negative
data (what it refuses): the same, and it is refused with a 4xx (`negative_data_rejection`).
A bounded number of examples per operation keeps it under a minute per database.

`positive_data_acceptance` is not checked: valid-looking data is legitimately refused
(ARCHITECTURE.md, "Fuzzing checks conformance")."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from tests.conftest import ONE_NODE_GRAPH
from tests.e2e.conftest import DOCKYARD, Server, make_server

# Operations left out: streams that follow a thread or a run until it ends (an idle thread's
# stream never does) and the revision upload (a gzip archive, not JSON).
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["positive", "negative"])
def test_api_fuzz(fuzz_server: tuple[Server, str], mode: GenerationMode) -> None:
    srv, key = fuzz_server
    schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
    schema = schema.exclude(path_regex="|".join(SKIPPED))
    checks = CHECKS if mode is GenerationMode.POSITIVE else [*CHECKS, negative_data_rejection]
    failures: list[str] = []
    operations = fuzzed = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def check(case: Any) -> None:
            case.call_and_validate(base_url=srv.url, headers={"X-Api-Key": key}, timeout=15,
                                   checks=checks)

        try:
            check()
        except Unsatisfiable:  # negative: nothing to break (no parameters, or any string fits)
            continue
        except (Exception, BaseExceptionGroup) as exc:  # all operations run; failures together
            failures.append(f"{op.label}: {str(exc)[:1500]}")
        fuzzed += 1
    assert operations > 50
    assert fuzzed > (50 if mode is GenerationMode.POSITIVE else 35), fuzzed
    assert not failures, "\n\n".join(failures)
