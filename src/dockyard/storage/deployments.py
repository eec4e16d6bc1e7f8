"""Deployments: which revision serves a tenant's new threads, its history, revision env vars,
and the per-revision run figures behind canary checks and the release console (migration 0008).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dockyard.storage.base import Storage, dumps, utcnow

COLS = ("tenant_id, current_revision_id, canary_revision_id, canary_percent, auto_rollback,"
        " version, updated_at, updated_by")
EVENT_COLS = "id, tenant_id, at, action, revision_id, from_revision_id, actor, reason"


class Deployments:
    def __init__(self, db: Storage) -> None:
        self.db = db

    async def get(self, tenant: str) -> dict[str, Any] | None:
        return await self.db.fetchone(f"SELECT {COLS} FROM deployments WHERE tenant_id = ?",
                                      (tenant,))

    async def routing(self, tenant: str) -> dict[str, Any] | None:
        """The deployment with its revisions' graph lists, in one query (run creation)."""
        return await self.db.fetchone(*self.routing_statement(tenant))

    @staticmethod
    def routing_statement(tenant: str) -> tuple[str, tuple[Any, ...]]:
        """``routing``'s read, for ``Storage.fetch_batch``."""
        return ("SELECT d.current_revision_id, d.canary_revision_id, d.canary_percent,"
                " c.graphs AS current_graphs, k.graphs AS canary_graphs FROM deployments d"
                " LEFT JOIN revisions c ON c.revision_id = d.current_revision_id"
                " LEFT JOIN revisions k ON k.revision_id = d.canary_revision_id"
                " WHERE d.tenant_id = ?", (tenant,))

    async def change(
        self, tenant: str, expected_version: int | None, event: dict[str, Any], **fields: Any
    ) -> bool:
        """Compare-and-set the tenant's deployment (``expected_version`` None: the row must not
        exist yet) and append ``event`` in the same transaction; False when someone else won."""
        now = utcnow()
        if "auto_rollback" in fields:
            fields["auto_rollback"] = (None if fields["auto_rollback"] is None
                                       else dumps(fields["auto_rollback"]))
        async with self.db.transaction() as tx:
            if expected_version is None:
                cols = ["tenant_id", "version", "updated_at", "updated_by", *fields]
                vals = [tenant, 1, now, event.get("actor"), *fields.values()]
                n = await self.db._execute(
                    tx, f"INSERT INTO deployments ({', '.join(cols)}) VALUES"
                        f" ({', '.join('?' for _ in cols)}) ON CONFLICT DO NOTHING", vals)
            else:
                sets = ", ".join(f"{k} = ?" for k in fields)
                n = await self.db._execute(
                    tx, f"UPDATE deployments SET {sets}{', ' if sets else ''}version = version + 1,"
                        " updated_at = ?, updated_by = ? WHERE tenant_id = ? AND version = ?",
                    [*fields.values(), now, event.get("actor"), tenant, expected_version])
            if n == 0:
                return False
            await self.db._execute(
                tx, f"INSERT INTO deployment_events ({EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event["id"], tenant, now, event["action"], event.get("revision_id"),
                 event.get("from_revision_id"), event.get("actor"), event.get("reason")))
        return True

    async def events(self, tenant: str, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            f"SELECT {EVENT_COLS} FROM deployment_events WHERE tenant_id = ?"
            " ORDER BY at DESC, id DESC LIMIT ? OFFSET ?", (tenant, limit, offset))

    async def last_promotion_of(self, tenant: str, revision_id: str | None) -> dict[str, Any] | None:
        """The newest event that made ``revision_id`` current (rollback goes to its 'from')."""
        cond = "revision_id IS NULL" if revision_id is None else "revision_id = ?"
        return await self.db.fetchone(
            f"SELECT {EVENT_COLS} FROM deployment_events WHERE tenant_id = ? AND {cond}"
            " AND action = 'promote' ORDER BY at DESC, id DESC LIMIT 1",
            (tenant,) if revision_id is None else (tenant, revision_id))

    async def with_canary(self) -> list[dict[str, Any]]:
        """Every tenant's deployment that has a canary and auto-rollback thresholds."""
        return await self.db.fetchall(
            f"SELECT {COLS} FROM deployments WHERE canary_revision_id IS NOT NULL"
            " AND auto_rollback IS NOT NULL")

    async def live_revisions(self, prewarm_since: str) -> list[dict[str, Any]]:
        """Revisions that need worker processes: current or canary anywhere, holding
        pending/running runs (a thread pinned to an older revision resumed), or each tenant's
        newest ready revision if it was deployed after ``prewarm_since`` (a deploy is usually
        followed by a promote: its workers are then already up)."""
        return await self.db.fetchall(
            "SELECT tenant_id, current_revision_id AS revision_id FROM deployments"
            " WHERE current_revision_id IS NOT NULL"
            " UNION SELECT tenant_id, canary_revision_id FROM deployments"
            " WHERE canary_revision_id IS NOT NULL"
            " UNION SELECT DISTINCT tenant_id, revision_id FROM runs"
            " WHERE status IN ('pending', 'running') AND revision_id IS NOT NULL"
            " UNION SELECT r.tenant_id, r.revision_id FROM revisions r"
            " WHERE r.status = 'ready' AND r.created_at >= ? AND r.created_at ="
            " (SELECT MAX(n.created_at) FROM revisions n WHERE n.tenant_id = r.tenant_id)",
            (prewarm_since,))

    async def revision_stats(
        self, tenant: str, revision_id: str | None, since: str, *, durations: bool = True
    ) -> dict[str, Any]:
        """Runs of a revision (None: the base) that ended since ``since``: count and errors
        (aggregated in SQL), and with ``durations`` their durations in seconds, sorted (for
        a p95, which neither dialect computes alike: only read when a p95 is wanted)."""
        cond = "revision_id IS NULL" if revision_id is None else "revision_id = ?"
        where = (f"FROM runs WHERE tenant_id = ? AND {cond} AND ended_at >= ?"
                 " AND status IN ('success', 'error', 'interrupted', 'timeout')")
        params = (tenant, since) if revision_id is None else (tenant, revision_id, since)
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END),"
            f" 0) AS errors {where}", params)
        out: dict[str, Any] = {"runs": int(row["n"]) if row else 0,
                               "errors": int(row["errors"]) if row else 0, "durations": []}
        if durations and out["runs"]:
            rows = await self.db.fetchall(f"SELECT started_at, ended_at {where}", params)
            out["durations"] = sorted(
                (datetime.fromisoformat(r["ended_at"])
                 - datetime.fromisoformat(r["started_at"])).total_seconds()
                for r in rows if r["started_at"] and r["ended_at"])
        return out

    # ---- revision env ------------------------------------------------------------------
    async def set_env(self, tenant: str, revision_id: str, values: dict[str, str | None]) -> None:
        now = utcnow()
        async with self.db.transaction() as tx:
            for name, value in values.items():
                await self.db._execute(
                    tx, "DELETE FROM revision_env WHERE tenant_id = ? AND revision_id = ?"
                        " AND name = ?", (tenant, revision_id, name))
                if value is not None:
                    await self.db._execute(
                        tx, "INSERT INTO revision_env (tenant_id, revision_id, name, value,"
                            " updated_at) VALUES (?, ?, ?, ?, ?)",
                        (tenant, revision_id, name, value, now))

    async def env_names(self, tenant: str, revision_id: str) -> list[dict[str, Any]]:
        return await self.db.fetchall(
            "SELECT name, updated_at FROM revision_env WHERE tenant_id = ? AND revision_id = ?"
            " ORDER BY name", (tenant, revision_id))

    async def env(self, tenant: str, revision_id: str) -> dict[str, str]:
        return (await self.envs({revision_id: tenant})).get(revision_id, {})

    async def envs(self, revisions: dict[str, str]) -> dict[str, dict[str, str]]:
        """The variables of several revisions (revision id -> its tenant), in one query."""
        if not revisions:
            return {}
        rows = await self.db.fetchall(
            # aliased: `value` is decoded as JSON by name (store items)
            "SELECT tenant_id, revision_id, name, value AS env_value FROM revision_env"
            f" WHERE revision_id IN ({', '.join('?' for _ in revisions)})", tuple(revisions))
        out: dict[str, dict[str, str]] = {rev: {} for rev in revisions}
        for r in rows:
            if revisions.get(r["revision_id"]) == r["tenant_id"]:
                out[r["revision_id"]][r["name"]] = r["env_value"]
        return out

    # ---- thread pins -------------------------------------------------------------------
    async def threads_on(
        self, tenant: str, thread_ids: list[str]
    ) -> list[dict[str, Any]]:
        if not thread_ids:
            return []
        return await self.db.fetchall(
            "SELECT thread_id, status, revision_id, metadata FROM threads WHERE tenant_id = ?"
            f" AND thread_id IN ({', '.join('?' for _ in thread_ids)})", (tenant, *thread_ids))

    async def threads_of_revision(
        self, tenant: str, revision_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        cond = "(revision_id IS NULL OR revision_id = 'base')" if revision_id is None \
            else "revision_id = ?"
        return await self.db.fetchall(
            f"SELECT thread_id, status, revision_id, metadata FROM threads WHERE tenant_id = ?"
            f" AND {cond} ORDER BY created_at LIMIT ?",
            (tenant, limit) if revision_id is None else (tenant, revision_id, limit))

    async def pin(self, tenant: str, thread_id: str, revision: str, *,
                  expected: str | None) -> int:
        """Move a thread that is not busy from ``expected`` (its current pin) to ``revision``
        (compare-and-set)."""
        cond = "revision_id IS NULL" if expected is None else "revision_id = ?"
        return await self.db.execute(
            "UPDATE threads SET revision_id = ?, updated_at = ? WHERE tenant_id = ?"
            f" AND thread_id = ? AND status <> 'busy' AND {cond}",
            (revision, utcnow(), tenant, thread_id)
            + (() if expected is None else (expected,)))
