"""Revisions: immutable uploads of a tenant's project code (migration 0007)."""

from __future__ import annotations

from typing import Any

from dockyard.storage.base import Storage, dumps

# Every column but the archive: listings never carry the code itself.
COLS = ("revision_id, tenant_id, content_hash, author, message, git_commit, created_at, status,"
        " error, size_bytes, graphs, build_log")


class Revisions:
    """Insert and read; there is no update: a revision is immutable once stored."""

    def __init__(self, db: Storage) -> None:
        self.db = db

    async def insert(self, row: dict[str, Any], archive: bytes) -> None:
        await self.db.execute(
            f"INSERT INTO revisions ({COLS}, archive)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row["revision_id"], row["tenant_id"], row["content_hash"], row.get("author"),
             row.get("message"), row.get("git_commit"), row["created_at"], row["status"],
             None if row.get("error") is None else dumps(row["error"]), row["size_bytes"],
             dumps(row["graphs"]), row.get("build_log"), archive),
        )

    async def get(self, tenant: str, revision_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            f"SELECT {COLS} FROM revisions WHERE tenant_id = ? AND revision_id = ?",
            (tenant, revision_id))

    async def by_hash(self, tenant: str, content_hash: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            f"SELECT {COLS} FROM revisions WHERE tenant_id = ? AND content_hash = ?",
            (tenant, content_hash))

    async def list(self, tenant: str, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            f"SELECT {COLS} FROM revisions WHERE tenant_id = ?"
            " ORDER BY created_at DESC, revision_id DESC LIMIT ? OFFSET ?",
            (tenant, limit, offset))

    async def archive(self, tenant: str, revision_id: str) -> bytes | None:
        row = await self.db.fetchone(
            "SELECT archive FROM revisions WHERE tenant_id = ? AND revision_id = ?",
            (tenant, revision_id))
        return None if row is None else bytes(row["archive"])
