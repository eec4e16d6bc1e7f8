"""Outgoing webhooks, domain side: which secret signs a run's webhook, and the delivery log.

Secrets: ``dockyard.webhook_secrets`` in the project file maps an assistant id or a graph id to
the *name* of an environment variable holding that assistant's secret; every other run's webhook
is signed with ``DOCKYARD_WEBHOOK_SECRET``; with neither, webhooks go out unsigned. Secrets live
only in memory: not in the deliveries table, not in the API, not in logs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dockyard.errors import InvalidInput
from dockyard.services.ids import check_uuid
from dockyard.services.triggers import secret_from_env
from dockyard.storage.webhooks import WebhookDeliveries

STATUSES = ("pending", "succeeded", "failed")


def _mask_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def public_delivery(row: dict[str, Any]) -> dict[str, Any]:
    """A delivery as the API shows it: no body, no password in the URL."""
    pending = row["status"] == "pending"
    return {
        "delivery_id": row["delivery_id"],
        "run_id": row["run_id"],
        "thread_id": row["thread_id"],
        "assistant_id": row["assistant_id"],
        "url": _mask_userinfo(row["url"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "next_attempt_at": row["next_attempt_at"] if pending else None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "delivered_at": row["delivered_at"],
    }


class WebhookService:
    def __init__(
        self, deliveries: WebhookDeliveries, *, secret_envs: dict[str, str],
        global_secret: str | None,
    ) -> None:
        self.deliveries = deliveries
        self.secret_envs = secret_envs
        self.global_secret = global_secret or None
        self._secrets: dict[str, str] = {}

    def load_secrets(self, src: str) -> None:
        """Read the per-assistant secrets from the environment (at start, in processes that
        deliver webhooks); a missing variable stops the process naming the key."""
        self._secrets = {
            ident: secret_from_env(env, src, f"dockyard.webhook_secrets.{ident}")
            for ident, env in self.secret_envs.items()
        }

    def secret_for(self, assistant_id: str | None, graph_id: str | None) -> str | None:
        """The assistant's own secret, else its graph's, else the global one (or None)."""
        for ident in (assistant_id, graph_id):
            if ident and ident in self._secrets:
                return self._secrets[ident]
        return self.global_secret

    async def search(
        self, tenant: str, *, run_id: str | None, status: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {list(STATUSES)}")
        rid = check_uuid(run_id, "run_id") if run_id is not None else None
        rows = await self.deliveries.search(tenant, run_id=rid, status=status, limit=limit,
                                            offset=offset)
        return [public_delivery(r) for r in rows]
