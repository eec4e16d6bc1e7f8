"""Teams: who is calling (API keys → a ``Principal``), what their role may do, and the audit log.

Framework-free: the API turns request headers into ``authenticate()`` calls and route
templates into action classes (``dockyard.api.permissions``); the CLI uses the same
``KeyService`` to create and revoke keys.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, DockyardError, InvalidInput, NotFound, Unauthorized
from dockyard.services.ids import new_id
from dockyard.storage.auth import ApiKeys, AuditLog, Tenants
from dockyard.storage.base import Storage, utcnow

if TYPE_CHECKING:
    from dockyard.services.oidc import OidcVerifier

log = logging.getLogger("dockyard.auth")

DEFAULT_TENANT = "default"
# DOCKYARD_AUTH is `none` or a comma list of these. `custom` (a langgraph.json `auth.path`
# module) is added by the project file, not by the setting.
AUTH_METHODS = ("keys", "oidc", "custom")


def parse_methods(mode: str) -> frozenset[str]:
    """``"keys,oidc"`` → {keys, oidc}; ``"none"`` → {}. Unknown names raise ``InvalidInput``."""
    names = {m.strip().lower() for m in mode.split(",") if m.strip()}
    if names in (set(), {"none"}):
        return frozenset()
    bad = names - set(AUTH_METHODS)
    if bad:
        raise InvalidInput(f"DOCKYARD_AUTH must be 'none' or a comma list of {list(AUTH_METHODS)}"
                           f", not {mode!r}")
    return frozenset(names)

# ---- roles and action classes ------------------------------------------------------------
# Every route maps to one action class (api/permissions.py); a role is the set of classes it
# may perform. "public" needs no credentials at all.
ACTIONS = (
    "read",               # GET anything of the tenant, searches, counts, joins, state, history
    "run",                # start runs (stateful, stateless, batch, MCP tools, A2A messages)
    "resume",             # resume an interrupted thread (a run whose command is only `resume`)
    "operate",            # cancel runs, delete runs, bulk cancel
    "write_threads",      # create, patch, copy, delete, prune threads
    "update_state",       # POST /threads/{id}/state (state edits, forks)
    "manage_assistants",  # create, patch, delete assistants, set the latest version
    "manage_crons",       # create, patch, delete crons
    "write_store",        # put/delete store items
    "deploy",             # upload revisions, promote them, their env vars, migrate threads
    "rollback",           # roll a deployment back (drop a canary, restore the previous revision)
    "manage_keys",        # the admin API: API keys
    "audit",              # read the audit log
    "metrics",            # /metrics (cluster-wide figures)
    "manage_quotas",      # set tenants' quotas (admins of the `default` tenant: the operator)
)
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "approver": frozenset({"read", "resume"}),
    "operator": frozenset({"read", "operate", "metrics", "rollback"}),
    "developer": frozenset({
        "read", "run", "resume", "operate", "write_threads", "update_state",
        "manage_assistants", "manage_crons", "write_store", "deploy", "rollback",
    }),
    "admin": frozenset(ACTIONS),
}
ROLE_NAMES = tuple(ROLES)


def permits(role: str, action: str) -> bool:
    return action in ROLES.get(role, frozenset())


@dataclass(frozen=True)
class Principal:
    """The caller: its tenant, role and key (``key_id`` None when auth is off; ``oidc:<sub>``
    for a token, ``user:<identity>`` for custom auth, whose ``user`` the handlers see)."""

    tenant: str
    role: str
    key_id: str | None = None
    prefix: str | None = None
    user: Any = field(default=None, compare=False, repr=False)

    @property
    def actor(self) -> str:
        return self.prefix or ("anonymous" if self.key_id is None else self.key_id)


ANONYMOUS_ADMIN = Principal(DEFAULT_TENANT, "admin")


class Forbidden(DockyardError):
    code = "forbidden"
    status = 403


def require(principal: Principal, action: str) -> None:
    """403 unless the principal's role may perform ``action``."""
    if not permits(principal.role, action):
        raise Forbidden(f"role '{principal.role}' may not perform '{action}'",
                        role=principal.role, action=action)


def run_action(payload: dict[str, Any], *, stateful: bool) -> str:
    """``resume`` for a run on a thread whose only instruction is ``command.resume``;
    ``run`` for anything else (new input, updates, goto, stateless runs)."""
    command = payload.get("command")
    if (stateful and isinstance(command, dict) and set(command) == {"resume"}
            and payload.get("input") is None):
        return "resume"
    return "run"


# The thread protocol's command methods (HTTP and WebSocket) by the action they perform.
COMMAND_ACTIONS = {
    "run.start": "run",
    "input.respond": "resume",
    "state.fork": "update_state",
}


def command_action(method: str) -> str:
    return COMMAND_ACTIONS.get(method, "read")


# ---- keys -------------------------------------------------------------------------------
KEY_RE = re.compile(r"^(dk_[0-9a-f]{8})_([A-Za-z0-9_\-]{32,128})$")
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


def hash_key(key: str) -> str:
    """SHA-256 of the whole key. The secret part is 256 random bits, so no guessing attack
    needs slowing down; a password KDF (bcrypt, scrypt) would cost milliseconds per request."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key, prefix): ``dk_<8 hex>_<43 urlsafe chars>``; the prefix is shown, the rest never."""
    prefix = f"dk_{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def _public_key(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("key_id", "tenant_id", "role", "prefix", "name", "created_at",
                                "expires_at", "revoked_at", "last_used_at")}


class AuthFailure(Unauthorized):
    """401; ``reason``: missing, malformed, unknown, expired, revoked (keys); for bearer
    tokens also unknown_kid, bad_signature, wrong_issuer, wrong_audience, no_tenant,
    unknown_tenant; custom auth: rejected."""

    def __init__(self, reason: str, message: str, *, prefix: str | None = None,
                 tenant: str | None = None, key_id: str | None = None) -> None:
        super().__init__(message, code="unauthorized")
        self.details = {}  # nothing about the key goes back to the caller
        self.reason = reason
        self.prefix = prefix
        self.tenant = tenant
        self.key_id = key_id


class KeyService:
    """Tenants and API keys; authentication with a short in-process cache."""

    CACHE_SECONDS = 30.0
    # How often a process looks for revocations made elsewhere (another replica, the CLI):
    # one small query at most this often, so a revoked key stops working everywhere within it.
    REVOCATION_CHECK_SECONDS = 1.0
    FAILURE_AUDIT_SECONDS = 10.0  # at most one audit row per (reason, prefix) per window

    def __init__(self, db: Storage, *, mode: str = "none",
                 on_tenant: Callable[[str], Awaitable[None]] | None = None,
                 oidc: OidcVerifier | None = None) -> None:
        self.methods = parse_methods(mode)
        self.mode = ",".join(m for m in AUTH_METHODS if m in self.methods) or "none"
        self.oidc = oidc
        if ("oidc" in self.methods) != (oidc is not None):
            raise InvalidInput("DOCKYARD_AUTH includes oidc exactly when a verifier is given")
        self.tenants = Tenants(db)
        self.keys = ApiKeys(db)
        self.audit_log = AuditLog(db)
        self.on_tenant = on_tenant
        # hash -> (principal, expires_at (epoch s or None), cached until (monotonic))
        self._cache: dict[str, tuple[Principal, float | None, float]] = {}
        self._revocations_checked = 0.0
        self._last_revocation: str | None = None
        self._seen_tenants: set[str] = set()
        self._failures: dict[tuple[str, str], tuple[float, int]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.methods)

    # ---- authentication -------------------------------------------------------------------
    async def authenticate(self, key: str | None) -> Principal:
        """The caller of an API key or (with oidc) a JWT bearer token."""
        if not key:
            what = " or ".join(
                {"keys": "an API key (X-Api-Key or Authorization: Bearer <key>)",
                 "oidc": "a bearer token (Authorization: Bearer <jwt>)"}[m]
                for m in ("keys", "oidc") if m in self.methods) or "credentials"
            raise AuthFailure("missing", f"Authentication required: send {what}")
        if self.oidc is not None and not key.startswith("dk_") and key != "\x00":
            principal = await self.oidc.authenticate(key)
            await self.known_tenant(principal.tenant)
            return principal
        if "keys" not in self.methods:
            raise AuthFailure("malformed", "Malformed credentials: API keys are not accepted "
                              "here (DOCKYARD_AUTH)")
        return await self._authenticate_key(key)

    def claims(self, token: str | None) -> bool:
        """Whether an API key or (with oidc) a JWT is presented: with custom auth, anything
        else goes to the project's ``@auth.authenticate``."""
        if not token:
            return False
        if "keys" in self.methods and token.startswith("dk_"):
            return True
        if self.oidc is not None:
            from dockyard.services.oidc import looks_like_jwt

            return looks_like_jwt(token)
        return False

    async def known_tenant(self, tenant: str) -> None:
        """401 for an identity whose tenant was never created (tokens and custom auth name
        tenants; only admins create them)."""
        if tenant in self._seen_tenants:
            return
        if not TENANT_RE.match(tenant) or await self.tenants.get(tenant) is None:
            raise AuthFailure("unknown_tenant", "The identity's tenant does not exist "
                              "(dockyard tenants create)")
        await self.tenant_seen(tenant)

    async def _authenticate_key(self, key: str) -> Principal:
        m = KEY_RE.match(key)
        if m is None:
            raise AuthFailure("malformed", "Malformed API key (expected dk_<prefix>_<secret>)")
        digest = hash_key(key)
        now = time.monotonic()
        if self._cache and now - self._revocations_checked >= self.REVOCATION_CHECK_SECONDS:
            self._revocations_checked = now
            latest = await self.keys.latest_revocation()
            if latest != self._last_revocation:
                self._last_revocation = latest
                self._cache.clear()  # a key was revoked somewhere: verify every key again
        hit = self._cache.get(digest)
        if hit is not None and hit[2] > now and (hit[1] is None or hit[1] > time.time()):
            return hit[0]
        self._cache.pop(digest, None)
        prefix = m.group(1)
        row = await self.keys.by_prefix(prefix)
        if row is None or not hmac.compare_digest(row["hash"], digest):
            raise AuthFailure("unknown", "Invalid API key", prefix=prefix)
        who = {"prefix": prefix, "tenant": row["tenant_id"], "key_id": row["key_id"]}
        if row["revoked_at"]:
            raise AuthFailure("revoked", "API key has been revoked", **who)
        expires = _epoch(row["expires_at"])
        if expires is not None and expires <= time.time():
            raise AuthFailure("expired", "API key has expired", **who)
        principal = Principal(row["tenant_id"], row["role"], row["key_id"], prefix)
        await self.keys.touch(row["key_id"], utcnow())  # once per cache period, not per request
        await self.tenant_seen(principal.tenant)
        self._cache[digest] = (principal, expires, now + self.CACHE_SECONDS)
        return principal

    async def tenant_seen(self, tenant: str) -> None:
        if tenant not in self._seen_tenants and self.on_tenant is not None:
            await self.on_tenant(tenant)
        self._seen_tenants.add(tenant)

    def _due(self, window: tuple[str, str]) -> int | None:
        """Rate limit of audit rows: None while ``window`` was written in the last
        FAILURE_AUDIT_SECONDS (counted), else how many were left out since its last row."""
        now = time.monotonic()
        last = self._failures.get(window)
        if last is not None and now - last[0] < self.FAILURE_AUDIT_SECONDS:
            self._failures[window] = (last[0], last[1] + 1)
            return None
        if len(self._failures) > 10_000:  # bounded: a flood of distinct prefixes
            self._failures.clear()
        self._failures[window] = (now, 0)
        return last[1] if last is not None else 0

    async def audit_failure(self, exc: AuthFailure, *, client: str | None, path: str) -> None:
        """Audit a failed authentication; repeats of the same failure are rate-limited."""
        suppressed = self._due((exc.reason, exc.prefix or client or ""))
        if suppressed is None:
            return
        await self.audit(
            tenant=exc.tenant or "", actor=exc.prefix or "anonymous", action="auth.failed",
            resource_type="api_key", resource_id=exc.key_id, outcome="failed",
            detail={"reason": exc.reason, "path": path, "client": client,
                    "suppressed_since_last": suppressed},
        )

    async def audit_forbidden(self, principal: Principal, exc: DockyardError, *,
                              path: str) -> None:
        """Audit a refused action (403) of an authenticated caller, rate-limited like
        failures: one row per key and action every FAILURE_AUDIT_SECONDS, with a count."""
        if not self.enabled:
            return
        action = str(exc.details.get("action", ""))
        suppressed = self._due(("forbidden", f"{principal.key_id}:{action}"))
        if suppressed is None:
            return
        await self.audit(
            tenant=principal.tenant, actor=principal.actor, action="auth.forbidden",
            resource_type="route", resource_id=path, outcome="refused",
            detail={"role": principal.role, "action": action,
                    "suppressed_since_last": suppressed},
        )

    # ---- audit ----------------------------------------------------------------------------
    async def audit(
        self, *, tenant: str, actor: str, action: str, resource_type: str | None = None,
        resource_id: str | None = None, outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.audit_log.append({
            "id": new_id(), "tenant_id": tenant, "at": utcnow(), "actor": actor,
            "action": action, "resource_type": resource_type, "resource_id": resource_id,
            "outcome": outcome, "detail": detail or {},
        })

    async def record(self, principal: Principal, action: str, resource_type: str,
                     resource_id: str | None, **detail: Any) -> None:
        """Audit a successful change made through the API (only when auth is on)."""
        if self.enabled:
            await self.audit(tenant=principal.tenant, actor=principal.actor, action=action,
                             resource_type=resource_type, resource_id=resource_id,
                             detail={k: v for k, v in detail.items() if v is not None})

    # ---- administration -------------------------------------------------------------------
    async def create_tenant(self, tenant_id: str, name: str | None = None) -> dict[str, Any]:
        if not TENANT_RE.match(tenant_id):
            raise InvalidInput("a tenant id is 1-63 characters: lowercase letters, digits, "
                               "'-' and '_', starting with a letter or digit")
        try:
            return await self.tenants.create(tenant_id, name or tenant_id)
        except Conflict:
            raise Conflict(f"tenant {tenant_id!r} already exists") from None

    async def create_key(
        self, tenant: str, role: str, *, name: str | None = None,
        expires_in_days: float | None = None, actor: str = "cli",
    ) -> dict[str, Any]:
        """A new key; the answer's ``key`` is the only time the secret is ever shown."""
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; roles: {list(ROLE_NAMES)}")
        if await self.tenants.get(tenant) is None:
            raise NotFound(f"tenant {tenant!r} does not exist (dockyard tenants create)",
                           code="tenant_not_found")
        if expires_in_days is not None and expires_in_days <= 0:
            raise InvalidInput("expires_in_days must be positive")
        expires_at = None
        if expires_in_days is not None:
            expires_at = (datetime.now(UTC) + timedelta(days=expires_in_days)).isoformat()
        for _ in range(5):  # a 32-bit prefix may collide; the unique index says so
            key, prefix = new_key()
            row = {"key_id": new_id(), "tenant_id": tenant, "role": role, "prefix": prefix,
                   "hash": hash_key(key), "name": name, "created_at": utcnow(),
                   "expires_at": expires_at}
            try:
                await self.keys.insert(row)
            except Conflict:
                continue
            break
        else:  # pragma: no cover - five 32-bit collisions in a row
            raise Conflict("could not allocate a unique key prefix; try again")
        await self.audit(tenant=tenant, actor=actor, action="key.create", resource_type="api_key",
                         resource_id=row["key_id"], detail={"role": role, "prefix": prefix})
        out = _public_key({**row, "revoked_at": None, "last_used_at": None})
        out["key"] = key
        return out

    async def list_keys(self, tenant: str | None) -> list[dict[str, Any]]:
        return [_public_key(r) for r in await self.keys.list(tenant)]

    async def revoke_key(self, key_id: str, *, tenant: str | None = None,
                         actor: str = "cli") -> dict[str, Any]:
        row = await self.keys.get(key_id, tenant)
        if row is None:
            raise NotFound(f"API key {key_id!r} not found", code="key_not_found")
        await self.keys.revoke(key_id, tenant)
        # This process forgets it at once; others at their next revocation check (≤ 1 s).
        for digest, (principal, _, _) in list(self._cache.items()):
            if principal.key_id == key_id:
                del self._cache[digest]
        await self.audit(tenant=row["tenant_id"], actor=actor, action="key.revoke",
                         resource_type="api_key", resource_id=key_id,
                         detail={"prefix": row["prefix"]})
        fresh = await self.keys.get(key_id)
        assert fresh is not None
        return _public_key(fresh)


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts).timestamp()
