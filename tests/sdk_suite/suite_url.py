"""pytest plugin for the official langgraph-sdk integration suite (see run.py).

``tests/integration/test_remote_graph_v3.py`` hard-codes ``URL = "http://localhost:2024"``
where the rest of the suite reads ``LANGGRAPH_INTEGRATION_URL``; point it at the same server.
Nothing else in the suite is changed.
"""

from __future__ import annotations

import os
from typing import Any

HARDCODED = "http://localhost:2024"


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    url = os.environ["LANGGRAPH_INTEGRATION_URL"]
    for item in items:
        module = getattr(item, "module", None)
        if getattr(module, "URL", None) == HARDCODED:
            module.URL = url
