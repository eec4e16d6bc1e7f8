"""LangGraph-compatible custom auth: a ``langgraph_sdk.Auth`` object named by ``auth.path``.

* ``@auth.authenticate`` decides who is calling (the API layer injects its parameters by name,
  ``api/custom_auth.py``); its answer — a string, a ``MinimalUserDict`` or an object with
  ``identity`` — becomes a ``Principal``: tenant ``default`` unless the user carries a
  ``tenant``, role ``developer`` unless its ``permissions`` name a Dockyard role.
* ``@auth.on…`` handlers decide what the user may do with each resource: the most specific
  registered handler runs — (resource, action), (resource, ``*``), (``*``, action), then the
  global one. ``None``/``True`` allow, ``False`` → 403, ``Auth.exceptions.HTTPException`` →
  its status, a filter dict → the request only sees resources whose metadata matches it
  (``{"k": v}``, ``{"k": {"$eq": v}}``, ``{"k": {"$contains": v | [v, …]}}``; keys ANDed).
  Handlers may mutate ``value`` (e.g. stamp ``value["metadata"]["owner"]``) and the request
  proceeds with the mutated value.

Handlers run only for callers authenticated by this module; API keys and OIDC tokens are
Dockyard's own identities, scoped by tenant and role (like the reference server's Studio user,
which skips the handlers).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import ConfigError, DockyardError
from dockyard.services.auth import DEFAULT_TENANT, Principal

DEFAULT_ROLE = "developer"


class HandlerRefused(DockyardError):
    """A custom auth handler said no (False → 403, or the status it raised)."""

    code = "forbidden"
    status = 403

    def __init__(self, message: str, status: int = 403,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers) if headers else None
        if status == 401:
            self.code = "unauthorized"


@dataclass(frozen=True)
class User:
    """The ``ctx.user`` handed to handlers: the reference server's user protocol."""

    identity: str
    display_name: str
    permissions: tuple[str, ...] = ()
    is_authenticated: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.dict()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.dict()

    def __iter__(self) -> Any:
        return iter(self.dict())

    def __getattr__(self, name: str) -> Any:
        extra = object.__getattribute__(self, "extra")
        if name in extra:
            return extra[name]
        raise AttributeError(name)

    def dict(self) -> dict[str, Any]:
        return {**self.extra, "identity": self.identity, "display_name": self.display_name,
                "permissions": list(self.permissions), "is_authenticated": self.is_authenticated}


def to_user(result: Any) -> User:
    """Normalise what ``authenticate`` returned (str, dict, or an object with ``identity``)."""
    if isinstance(result, str):
        return User(result, result)
    if isinstance(result, Mapping):
        if not isinstance(result.get("identity"), str):
            raise HandlerRefused("custom auth: authenticate returned no 'identity'", 500)
        data = dict(result)
        return User(data.pop("identity"), str(data.pop("display_name", result["identity"])),
                    tuple(data.pop("permissions", ()) or ()),
                    bool(data.pop("is_authenticated", True)), data)
    identity = getattr(result, "identity", None)
    if not isinstance(identity, str):
        raise HandlerRefused("custom auth: authenticate returned no identity", 500)
    extra = {k: getattr(result, k) for k in ("tenant",) if hasattr(result, k)}
    return User(identity, str(getattr(result, "display_name", identity)),
                tuple(getattr(result, "permissions", ()) or ()),
                bool(getattr(result, "is_authenticated", True)), extra)


def principal_of(user: User) -> Principal:
    from dockyard.services.oidc import pick_role

    tenant = user.extra.get("tenant")
    role = pick_role(list(user.permissions), DEFAULT_ROLE)
    return Principal(tenant if isinstance(tenant, str) and tenant else DEFAULT_TENANT, role,
                     key_id=f"user:{user.identity}", user=user)


# ---- filters --------------------------------------------------------------------------------

def _contains(have: Any, want: Any) -> bool:
    if not isinstance(have, list):
        return False
    wanted = want if isinstance(want, list) else [want]
    return all(w in have for w in wanted)


def matches(metadata: Mapping[str, Any] | None, filters: Mapping[str, Any]) -> bool:
    """Whether a resource's metadata satisfies a handler's filter (same rules as the SQL)."""
    metadata = metadata or {}
    for key, cond in filters.items():
        have = metadata.get(key, _MISSING)
        if isinstance(cond, Mapping) and cond and all(k in OPERATORS for k in cond):
            for op, want in cond.items():
                ok = have == want if op == "$eq" else _contains(have, want)
                if not ok:
                    return False
        elif have != cond:
            return False
    return True


OPERATORS = ("$eq", "$contains")
_MISSING = object()


# ---- the Auth object ------------------------------------------------------------------------

class CustomAuth:
    """The loaded ``Auth`` object; ``authorize`` runs the handler for a resource action."""

    def __init__(self, auth: Any, source: str) -> None:
        self.auth = auth
        self.source = source
        if getattr(auth, "_authenticate_handler", None) is None:
            raise ConfigError("the Auth object has no @auth.authenticate handler",
                              file=source, key="auth.path")

    @property
    def authenticate_handler(self) -> Any:
        return self.auth._authenticate_handler

    @property
    def has_handlers(self) -> bool:
        return bool(self.auth._handlers or self.auth._global_handlers)

    def handler(self, resource: str, action: str) -> Any:
        handlers: dict[tuple[str, str], list[Any]] = self.auth._handlers
        for key in ((resource, action), (resource, "*"), ("*", action)):
            if handlers.get(key):
                return handlers[key][-1]
        return self.auth._global_handlers[-1] if self.auth._global_handlers else None

    async def authorize(self, principal: Principal, resource: str, action: str,
                        value: dict[str, Any]) -> dict[str, Any] | None:
        """Run the handler; returns a filter (or None), raises ``HandlerRefused``."""
        fn = self.handler(resource, action)
        if fn is None or principal.user is None:
            return None
        from langgraph_sdk import Auth

        user: User = principal.user
        ctx = Auth.types.AuthContext(permissions=list(user.permissions), user=user,  # type: ignore[arg-type]
                                     resource=resource, action=action)  # type: ignore[arg-type]
        try:
            result = await fn(ctx=ctx, value=value)
        except Auth.exceptions.HTTPException as exc:
            raise HandlerRefused(str(exc.detail), exc.status_code, exc.headers) from None
        except AssertionError as exc:
            raise HandlerRefused(str(exc) or "Forbidden") from None
        if result is None or result is True:
            return None
        if result is False:
            raise HandlerRefused(f"Forbidden by the custom auth handler for {resource}.{action}")
        if not isinstance(result, dict):
            raise HandlerRefused(f"custom auth handler for {resource}.{action} returned "
                                 f"{type(result).__name__}; expected None, a bool or a filter "
                                 "dict", 500)
        return result or None


def load_custom_auth(root: Path, source: str, config: Mapping[str, Any]) -> CustomAuth | None:
    """The ``Auth`` object of ``auth.path`` (``./auth.py:auth`` or ``pkg.module:auth``)."""
    path = config.get("path")
    if path is None:
        return None
    if not isinstance(path, str) or ":" not in path:
        raise ConfigError("expected 'path/to/auth.py:auth' or 'package.module:auth'",
                          file=source, key="auth.path")
    location, _, attr = path.rpartition(":")
    try:
        if location.endswith(".py") or "/" in location:
            file = (root / location).resolve()
            if not file.is_file():
                raise ConfigError(f"file {location!r} not found", file=source, key="auth.path")
            name = "dockyard_auth_" + hashlib.sha1(str(file).encode()).hexdigest()[:10]
            spec = importlib.util.spec_from_file_location(name, file)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            if str(file.parent) not in sys.path:
                sys.path.insert(0, str(file.parent))
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(location)
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot load {path!r}: {type(exc).__name__}: {exc}", file=source,
                          key="auth.path") from exc
    from langgraph_sdk import Auth

    if not isinstance(obj, Auth):
        raise ConfigError(f"{path!r} is a {type(obj).__name__}, not a langgraph_sdk.Auth",
                          file=source, key="auth.path")
    return CustomAuth(obj, source)


def as_tuple(ns: Any) -> Any:
    return tuple(ns) if isinstance(ns, Sequence) and not isinstance(ns, str) else ns
