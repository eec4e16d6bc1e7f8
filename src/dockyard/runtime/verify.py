"""Verify an unpacked revision in a process of its own: load its project config and import
every graph, then write ``{"graphs": [...]}`` or ``{"error": "..."}`` to the result file.

Run by the server as ``python -m dockyard.runtime.verify PROJECT_DIR RESULT_JSON`` so that a
broken import (a crash, a hang, a ``sys.exit``, a module that patches the world) cannot hurt
the server; the server kills it after its timeout.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def verify(project_dir: Path) -> dict[str, object]:
    from dockyard.config import load_project
    from dockyard.errors import DockyardError
    from dockyard.runtime.loader import GraphRegistry

    try:
        project = load_project(project_dir)
        project.apply_env()
        registry = GraphRegistry(project)
        registry.load_all()
        return {"graphs": sorted(registry.graph_ids)}
    except DockyardError as exc:
        return {"error": exc.message}
    except BaseException as exc:  # anything the project's code raises, SystemExit included
        return {"error": "".join(traceback.format_exception_only(type(exc), exc)).strip()}


def main(argv: list[str]) -> int:
    project_dir, result = Path(argv[0]), Path(argv[1])
    outcome = verify(project_dir)
    result.write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
