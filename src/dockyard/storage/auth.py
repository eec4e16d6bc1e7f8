"""Tenants, API keys and the audit log (migration 0006)."""

from __future__ import annotations

from typing import Any

from dockyard.storage.base import Storage, dumps, utcnow

KEY_COLS = (
    "key_id, tenant_id, role, prefix, hash, name, created_at, expires_at, revoked_at,"
    " last_used_at"
)
AUDIT_COLS = "id, tenant_id, at, actor, action, resource_type, resource_id, outcome, detail"


class Tenants:
    def __init__(self, db: Storage) -> None:
        self.db = db

    async def create(self, tenant_id: str, name: str) -> dict[str, Any]:
        now = utcnow()
        await self.db.execute(
            "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)", (tenant_id, name, now)
        )
        return {"id": tenant_id, "name": name, "created_at": now}

    async def get(self, tenant_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            "SELECT id, name, created_at FROM tenants WHERE id = ?", (tenant_id,)
        )

    async def list(self) -> list[dict[str, Any]]:
        return await self.db.fetchall("SELECT id, name, created_at FROM tenants ORDER BY id")


class ApiKeys:
    def __init__(self, db: Storage) -> None:
        self.db = db

    async def insert(self, row: dict[str, Any]) -> None:
        await self.db.execute(
            f"INSERT INTO api_keys ({KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            (row["key_id"], row["tenant_id"], row["role"], row["prefix"], row["hash"],
             row.get("name"), row["created_at"], row.get("expires_at")),
        )

    async def by_prefix(self, prefix: str) -> dict[str, Any] | None:
        return await self.db.fetchone(f"SELECT {KEY_COLS} FROM api_keys WHERE prefix = ?",
                                      (prefix,))

    async def get(self, key_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        sql, params = f"SELECT {KEY_COLS} FROM api_keys WHERE key_id = ?", [key_id]
        if tenant is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant)
        return await self.db.fetchone(sql, params)

    async def list(self, tenant: str | None) -> list[dict[str, Any]]:
        if tenant is None:
            return await self.db.fetchall(
                f"SELECT {KEY_COLS} FROM api_keys ORDER BY tenant_id, created_at")
        return await self.db.fetchall(
            f"SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at", (tenant,))

    async def revoke(self, key_id: str, tenant: str | None = None) -> int:
        sql = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        params: list[Any] = [utcnow(), key_id]
        if tenant is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant)
        return await self.db.execute(sql, params)

    async def latest_revocation(self) -> str | None:
        """When a key was last revoked (any tenant): the caches' invalidation signal."""
        row = await self.db.fetchone("SELECT MAX(revoked_at) AS at FROM api_keys")
        return None if row is None else row["at"]

    async def touch(self, key_id: str, at: str) -> None:
        await self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE key_id = ?", (at, key_id))


class AuditLog:
    """Append-only: there is an INSERT and a SELECT, nothing else."""

    def __init__(self, db: Storage) -> None:
        self.db = db

    async def append(self, row: dict[str, Any]) -> None:
        await self.db.execute(
            f"INSERT INTO audit_log ({AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row["id"], row["tenant_id"], row["at"], row["actor"], row["action"],
             row.get("resource_type"), row.get("resource_id"), row["outcome"],
             dumps(row.get("detail") or {})),
        )

    async def search(
        self, tenant: str, *, action: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        clauses, params = ["tenant_id = ?"], [tenant]
        if action:
            clauses.append("action = ?")
            params.append(action)
        return await self.db.fetchall(
            f"SELECT {AUDIT_COLS} FROM audit_log WHERE {' AND '.join(clauses)}"
            " ORDER BY at DESC, id DESC LIMIT ? OFFSET ?", [*params, limit, offset],
        )
