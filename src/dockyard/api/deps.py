"""Request-scoped dependencies: the application object and the caller's tenant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request

from dockyard.services.core import DEFAULT_TENANT, Dockyard


async def app_of(request: Request) -> Dockyard:
    dockyard: Dockyard = request.app.state.dockyard
    return dockyard


async def tenant_of(request: Request) -> str:
    """The one place a request's tenant is decided (auth will set it; today: 'default')."""
    return DEFAULT_TENANT


def select_fields(
    rows: list[dict[str, Any]], select: Sequence[str] | None
) -> list[dict[str, Any]]:
    if not select:
        return rows
    return [{k: r[k] for k in select if k in r} for r in rows]
