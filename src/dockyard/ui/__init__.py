"""The visual debugger: static assets served at ``/ui`` (see ``mount_ui``).

The UI is plain HTML, CSS and ES modules shipped inside the package (``static/``): no build
step, no CDN, nothing fetched at run time but the server's own public API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount_ui(app: FastAPI) -> None:
    """Serve ``/ui`` (the page; routing inside it is by URL hash) and ``/ui/<asset>``."""
    index = STATIC / "index.html"

    # Both /ui and /ui/ answer the page itself (its asset URLs are absolute, /ui/...).
    # no-cache: a page served after an upgrade must not run against stale modules.
    @app.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
    @app.api_route("/ui/", methods=["GET", "HEAD"], include_in_schema=False)
    async def ui_index() -> FileResponse:
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
