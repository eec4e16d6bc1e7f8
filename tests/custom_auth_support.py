"""A custom auth module as written for the reference server (its documented "resource owner"
pattern: authenticate a bearer token, stamp the owner on create, filter everything else by
it), and a project that names it in ``langgraph.json``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ONE_NODE_GRAPH

AUTH_PY = '''
from langgraph_sdk import Auth

auth = Auth()

USERS = {
    "token-alice": {"identity": "alice", "permissions": ["threads:write"]},
    "token-bob": {"identity": "bob", "permissions": ["threads:write"]},
    "token-eve": {"identity": "eve", "permissions": []},
    "token-ops": {"identity": "ops", "permissions": ["admin"], "tenant": "default"},
}


@auth.authenticate
async def get_current_user(authorization: str | None, path: str, method: str) -> Auth.types.MinimalUserDict:
    if not authorization:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Missing token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or token not in USERS:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return USERS[token]


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: dict):
    """Stamp the owner on everything created, see only what you own."""
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    metadata.update(filters)
    return filters


@auth.on.threads.create
async def on_thread_create(ctx: Auth.types.AuthContext, value: Auth.types.on.threads.create.value):
    if "threads:write" not in ctx.permissions:
        raise Auth.exceptions.HTTPException(status_code=403, detail="User lacks threads:write")
    metadata = value.setdefault("metadata", {})
    metadata["owner"] = ctx.user.identity


@auth.on.threads.delete
async def on_thread_delete(ctx: Auth.types.AuthContext, value: Auth.types.on.threads.delete.value):
    return False


@auth.on.assistants
async def on_assistants(ctx: Auth.types.AuthContext, value: dict):
    return None  # the graphs' assistants are shared


@auth.on.store
async def on_store(ctx: Auth.types.AuthContext, value: dict):
    namespace = tuple(value["namespace"]) if "namespace" in value else ()
    assert namespace[:1] == (ctx.user.identity,), "store namespaces start with your identity"
'''


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "g.py").write_text(ONE_NODE_GRAPH)
    (root / "auth.py").write_text(AUTH_PY)
    (root / "langgraph.json").write_text(json.dumps({
        "graphs": {"g": "./g.py:graph"}, "auth": {"path": "./auth.py:auth"}}))
    return root
