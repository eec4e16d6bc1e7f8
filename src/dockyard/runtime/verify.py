"""Verify an unpacked revision in a process of its own: load its project config, import every
graph and run the project's smoke inputs (``dockyard.smoke`` in langgraph.json: graph id →
``{"input": …, "config": {…}}``, each run once on an in-memory checkpointer and store), then
write ``{"graphs": [...]}`` or ``{"error": "..."}`` to the result file.

Run by the server as ``python -m dockyard.runtime.verify PROJECT_DIR RESULT_JSON`` so that a
broken import (a crash, a hang, a ``sys.exit``, a module that patches the world) cannot hurt
the server; the server kills it after its timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any


def verify(project_dir: Path) -> dict[str, object]:
    from dockyard.config import load_project
    from dockyard.errors import DockyardError
    from dockyard.runtime.loader import GraphRegistry
    from dockyard.services.triggers import parse_dockyard_section

    step = "loading the graphs"
    try:
        project = load_project(project_dir)
        smoke = parse_dockyard_section(project).smoke
        project.apply_env()
        registry = GraphRegistry(project)
        registry.load_all()
        for graph_id, spec in smoke.items():
            step = f"the smoke input of graph {graph_id!r}"
            asyncio.run(_smoke(registry, graph_id, spec))
        return {"graphs": sorted(registry.graph_ids)}
    except DockyardError as exc:
        return {"error": exc.message if step == "loading the graphs"
                else f"{step} failed: {exc.message}"}
    except BaseException as exc:  # anything the project's code raises, SystemExit included
        what = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {"error": what if step == "loading the graphs" else f"{step} failed: {what}"}


async def _smoke(registry: Any, graph_id: str, spec: dict[str, Any]) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    store = InMemoryStore()
    config = {**spec.get("config", {})}
    config["configurable"] = {**config.get("configurable", {}), "thread_id": "smoke"}
    graph = await registry.get(graph_id, config, store=store)
    graph = graph.copy(update={"checkpointer": InMemorySaver(), "store": store})
    await graph.ainvoke(spec.get("input"), config)


def main(argv: list[str]) -> int:
    project_dir, result = Path(argv[0]), Path(argv[1])
    outcome = verify(project_dir)
    result.write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
