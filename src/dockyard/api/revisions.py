"""/revisions: upload (``dockyard deploy``), list and read immutable revisions of the project.

The upload is the raw ``application/gzip`` body of a tar.gz; its message, author and git commit
come in ``X-Dockyard-Message``, ``X-Dockyard-Author`` and ``X-Dockyard-Git-Commit`` headers,
percent-encoded (UTF-8) so any text fits a header. The body is streamed to a temporary file
and counted against ``DOCKYARD_MAX_REVISION_BYTES``; the app-wide ``BodyLimit`` (which buffers
bodies in memory up to ``DOCKYARD_MAX_BODY_BYTES``) leaves this one route to this handler.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from dockyard.api.deps import app_of, authorize
from dockyard.api.schemas import LimitQuery, OffsetQuery
from dockyard.errors import InvalidInput, PayloadTooLarge
from dockyard.services.auth import Principal
from dockyard.services.core import Dockyard
from dockyard.services.revisions import DeployMeta, RevisionFailed

router = APIRouter(prefix="/revisions", tags=["revisions"])

UPLOAD_PATH = "/revisions"  # the route BodyLimit leaves to this module
ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream",
                 "application/x-tar+gzip")


def _meta(request: Request, name: str) -> str | None:
    raw = request.headers.get(f"x-dockyard-{name}")
    return unquote(raw) if raw else None


@router.post("", status_code=201, responses={
    200: {"description": "The existing revision of identical content",
          "content": {"application/json": {"schema": {"type": "object"}}}},
    413: {"description": "Archive over DOCKYARD_MAX_REVISION_BYTES"},
    422: {"description": "Refused archive, or code that does not load"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/gzip": {"schema": {"type": "string", "format": "binary"}}}}})
async def create_revision(
    request: Request, app: Dockyard = Depends(app_of), who: Principal = Depends(authorize),
) -> JSONResponse:
    """Upload a project archive: 201 with a new ``ready`` revision, 200 with the existing one
    for identical content, 422 for a refused archive or code that does not load."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ARCHIVE_TYPES:
        raise InvalidInput("send the project as a tar.gz body with Content-Type "
                           f"application/gzip (got {ctype or 'none'!r})")
    limit = app.settings.max_revision_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"archive exceeds {limit} bytes (DOCKYARD_MAX_REVISION_BYTES)")
    with tempfile.TemporaryDirectory(prefix="dockyard-upload-") as tmp:
        archive = Path(tmp) / "upload.tar.gz"
        seen = 0
        with archive.open("wb") as out:
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > limit:
                    raise PayloadTooLarge(f"archive exceeds {limit} bytes "
                                          "(DOCKYARD_MAX_REVISION_BYTES)")
                out.write(chunk)
        if seen == 0:
            raise InvalidInput("empty body: send the project as a tar.gz")
        meta = DeployMeta(message=_meta(request, "message"), author=_meta(request, "author"),
                          git_commit=_meta(request, "git-commit"))
        revision, created = await app.revisions.deploy(who.tenant, archive, meta)
    await app.auth.record(who, "revision.create", "revision", revision["revision_id"],
                          status=revision["status"], content_hash=revision["content_hash"],
                          created=created, author=meta.author, git_commit=meta.git_commit)
    if revision["status"] == "ready":
        app.notify_new_runs()  # worker processes pre-warm the newest revision now
    if revision["status"] == "failed":
        raise RevisionFailed(f"revision {revision['revision_id']} failed verification: "
                             f"{revision['error']}", revision=revision)
    return JSONResponse(revision, status_code=201 if created else 200)


@router.get("")
async def list_revisions(
    limit: LimitQuery = 100, offset: OffsetQuery = 0,
    app: Dockyard = Depends(app_of), who: Principal = Depends(authorize),
) -> list[dict[str, Any]]:
    """The tenant's revisions, newest first."""
    return await app.revisions.list(who.tenant, limit=limit, offset=offset)


@router.get("/{revision_id}")
async def get_revision(
    revision_id: str, app: Dockyard = Depends(app_of), who: Principal = Depends(authorize),
) -> dict[str, Any]:
    return await app.revisions.get(who.tenant, revision_id)


@router.get("/{revision_id}/archive")
async def get_revision_archive(
    revision_id: str, app: Dockyard = Depends(app_of), who: Principal = Depends(authorize),
) -> Response:
    """The revision's code as uploaded (a tar.gz), e.g. for ``dockyard build --revision``."""
    data = await app.revisions.archive(who.tenant, revision_id)
    return Response(data, media_type="application/gzip", headers={
        "Content-Disposition": f'attachment; filename="revision-{revision_id}.tar.gz"'})
