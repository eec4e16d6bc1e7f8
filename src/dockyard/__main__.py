"""``python -m dockyard …``: the same command line as ``dockyard …``."""

from __future__ import annotations

from dockyard.cli import main

raise SystemExit(main())
