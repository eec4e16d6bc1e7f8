"""The permission matrix: every route (method + path template) → one action class.

``ROUTE_ACTIONS`` is the one table; ``dockyard.services.auth.ROLES`` says which classes each
role may perform. ``check_complete`` runs when the app is built, so a route added without an
entry here stops the server (and every test) instead of escaping authorization.

Two classes are refined by the request itself, in one helper each:
* ``run_or_resume`` (runs on a thread): a role with ``resume`` but not ``run`` may only send a
  run whose command is a bare ``resume`` (``services.auth.run_action``).
* ``command`` (thread protocol commands, HTTP and WebSocket): the command's method decides
  (``services.auth.COMMAND_ACTIONS``: ``run.start`` → run, ``input.respond`` → resume, …).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from starlette.routing import BaseRoute

from dockyard.services.auth import ACTIONS, permits

PUBLIC = "public"
RUN_OR_RESUME = "run_or_resume"
COMMAND = "command"
ROUTE_CLASSES = (PUBLIC, RUN_OR_RESUME, COMMAND, *ACTIONS)

ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    # -- public: liveness, API docs, inbound triggers (authenticated by their signature) --
    ("GET", "/ok"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("POST", "/triggers/{name}"): PUBLIC,
    ("GET", "/ui"): PUBLIC,      # the debugger's page (static; its API calls carry a key)
    ("GET", "/ui/"): PUBLIC,
    ("GET", "/mcp"): PUBLIC,     # answers 405: the transport has no server stream
    ("DELETE", "/mcp"): PUBLIC,  # answers 405: no sessions
    # -- system --
    ("GET", "/metrics"): "metrics",
    ("GET", "/info"): "read",
    # -- thread streaming --
    ("POST", "/threads/{thread_id}/commands"): COMMAND,
    ("POST", "/threads/{thread_id}/stream/events"): "read",
    ("WEBSOCKET", "/threads/{thread_id}/stream/events"): COMMAND,
    # -- assistants --
    ("POST", "/assistants"): "manage_assistants",
    ("POST", "/assistants/search"): "read",
    ("POST", "/assistants/count"): "read",
    ("GET", "/assistants/{assistant_id}"): "read",
    ("PATCH", "/assistants/{assistant_id}"): "manage_assistants",
    ("DELETE", "/assistants/{assistant_id}"): "manage_assistants",
    ("GET", "/assistants/{assistant_id}/graph"): "read",
    ("GET", "/assistants/{assistant_id}/schemas"): "read",
    ("GET", "/assistants/{assistant_id}/subgraphs"): "read",
    ("GET", "/assistants/{assistant_id}/subgraphs/{namespace}"): "read",
    ("POST", "/assistants/{assistant_id}/versions"): "read",
    ("POST", "/assistants/{assistant_id}/latest"): "manage_assistants",
    # -- threads --
    ("POST", "/threads"): "write_threads",
    ("POST", "/threads/search"): "read",
    ("POST", "/threads/count"): "read",
    ("POST", "/threads/prune"): "write_threads",
    ("GET", "/threads/{thread_id}"): "read",
    ("PATCH", "/threads/{thread_id}"): "write_threads",
    ("DELETE", "/threads/{thread_id}"): "write_threads",
    ("POST", "/threads/{thread_id}/copy"): "write_threads",
    ("GET", "/threads/{thread_id}/state"): "read",
    ("POST", "/threads/{thread_id}/state"): "update_state",
    ("GET", "/threads/{thread_id}/stream"): "read",
    ("POST", "/threads/{thread_id}/state/checkpoint"): "read",
    ("GET", "/threads/{thread_id}/state/{checkpoint_id}"): "read",
    ("POST", "/threads/{thread_id}/history"): "read",
    ("GET", "/threads/{thread_id}/history"): "read",
    # -- crons --
    ("POST", "/threads/{thread_id}/runs/crons"): "manage_crons",
    ("POST", "/runs/crons"): "manage_crons",
    ("POST", "/runs/crons/search"): "read",
    ("POST", "/runs/crons/count"): "read",
    ("GET", "/runs/crons/{cron_id}"): "read",
    ("PATCH", "/runs/crons/{cron_id}"): "manage_crons",
    ("DELETE", "/runs/crons/{cron_id}"): "manage_crons",
    # -- runs --
    ("POST", "/threads/{thread_id}/runs"): RUN_OR_RESUME,
    ("POST", "/threads/{thread_id}/runs/stream"): RUN_OR_RESUME,
    ("POST", "/threads/{thread_id}/runs/wait"): RUN_OR_RESUME,
    ("GET", "/threads/{thread_id}/runs"): "read",
    ("GET", "/threads/{thread_id}/runs/{run_id}"): "read",
    ("DELETE", "/threads/{thread_id}/runs/{run_id}"): "operate",
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel"): "operate",
    ("GET", "/threads/{thread_id}/runs/{run_id}/join"): "read",
    ("GET", "/threads/{thread_id}/runs/{run_id}/stream"): "read",
    ("POST", "/runs"): "run",
    ("POST", "/runs/stream"): "run",
    ("POST", "/runs/wait"): "run",
    ("POST", "/runs/batch"): "run",
    ("POST", "/runs/cancel"): "operate",
    # -- run traces and the queue overview (the debugger's trace and queue pages) --
    ("GET", "/threads/{thread_id}/runs/{run_id}/trace"): "read",
    ("GET", "/threads/{thread_id}/runs/{run_id}/trace/spans/{seq}"): "read",
    ("GET", "/queue"): "read",
    # -- store --
    ("PUT", "/store/items"): "write_store",
    ("GET", "/store/items"): "read",
    ("DELETE", "/store/items"): "write_store",
    ("POST", "/store/items/search"): "read",
    ("POST", "/store/namespaces"): "read",
    # -- webhooks delivery log --
    ("GET", "/runs/{run_id}/webhooks"): "read",
    ("GET", "/webhooks/deliveries"): "read",
    # -- agent protocols (cards are tenant data: they need a key too) --
    ("POST", "/mcp"): "run",
    ("POST", "/a2a/{assistant_id}"): "run",
    ("GET", "/.well-known/agent-card.json"): "read",
    ("GET", "/.well-known/agent.json"): "read",
    # -- revisions (`dockyard deploy`) --
    ("POST", "/revisions"): "deploy",
    ("GET", "/revisions"): "read",
    ("GET", "/revisions/{revision_id}"): "read",
    ("GET", "/revisions/{revision_id}/archive"): "deploy",  # the code itself
    ("PUT", "/revisions/{revision_id}/env"): "deploy",
    ("GET", "/revisions/{revision_id}/env"): "deploy",
    # -- deployment (serving revisions) --
    ("GET", "/deployment"): "read",
    ("GET", "/deployment/stats"): "read",
    ("POST", "/deployment/promote"): "deploy",
    ("POST", "/deployment/rollback"): "rollback",
    ("POST", "/deployment/threads/migrate"): "deploy",
    # -- admin --
    ("POST", "/admin/keys"): "manage_keys",
    ("GET", "/admin/keys"): "manage_keys",
    ("DELETE", "/admin/keys/{key_id}"): "manage_keys",
    ("GET", "/admin/audit"): "audit",
    ("GET", "/admin/quotas"): "read",
    ("PUT", "/admin/tenants/{tenant_id}/quotas"): "manage_quotas",
}


def route_allows(role: str, route_class: str) -> bool:
    """Whether ``role`` passes the route-level check (refinements come later, see above)."""
    if route_class == PUBLIC:
        return True
    if route_class == RUN_OR_RESUME:
        return permits(role, "run") or permits(role, "resume")
    if route_class == COMMAND:
        return permits(role, "read")
    return permits(role, route_class)


def app_routes(routes: Sequence[BaseRoute]) -> Iterable[tuple[str, str, Any]]:
    """(method, path template, original route) of every route the app serves; HEAD is GET's."""
    for ctx in iter_route_contexts(routes):
        route = ctx.original_route
        if isinstance(route, APIWebSocketRoute):
            yield "WEBSOCKET", str(ctx.path), route
            continue
        for method in sorted(ctx.methods or ()):
            if method != "HEAD":
                yield method, str(ctx.path), route


def route_table(routes: Sequence[BaseRoute]) -> dict[tuple[int, str], str]:
    """``(id(route), method) → action class`` for the request-time check; raises on a route
    that has no entry in ``ROUTE_ACTIONS``."""
    table: dict[tuple[int, str], str] = {}
    missing = []
    for method, path, route in app_routes(routes):
        action = ROUTE_ACTIONS.get((method, path))
        if action is None:
            missing.append(f"{method} {path}")
            continue
        table[(id(route), method)] = action
    if missing:
        raise RuntimeError("routes without an entry in dockyard.api.permissions.ROUTE_ACTIONS "
                           f"(every route needs an action class): {missing}")
    return table


def matrix_markdown() -> str:
    """The README's permission matrix, generated from the tables."""
    from dockyard.services.auth import ROLES

    roles = list(ROLES)
    lines = ["| action class | " + " | ".join(roles) + " | routes |",
             "|---|" + "---|" * len(roles) + "---|"]
    for cls in ROUTE_CLASSES:
        paths = [f"`{m} {p}`" for (m, p), c in ROUTE_ACTIONS.items() if c == cls]
        if not paths:
            continue
        marks = " | ".join("yes" if route_allows(r, cls) else "" for r in roles)
        lines.append(f"| {cls} | {marks} | {', '.join(paths)} |")
    return "\n".join(lines)
