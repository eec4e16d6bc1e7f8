"""Settings from ``DOCKYARD_*`` environment variables, and the project file.

Two things live here:

* :class:`Settings` — how the *server* runs (where it listens, which database, limits). Every
  setting is an environment variable; the CLI passes its flags as ``overrides``.
* :class:`ProjectConfig` — what the server *serves*: the graphs and their environment, read from
  ``dockyard.toml`` or an unchanged ``langgraph.json`` (see :func:`load_project`).

Environment variables (an empty value counts as unset):

| Variable | Default | Meaning |
|---|---|---|
| `DOCKYARD_DATABASE_URL` | `<data dir>/dockyard.db` | `sqlite:///…` or `postgresql://…` |
| `DOCKYARD_HOST` | `127.0.0.1` | Interface the HTTP server binds to |
| `DOCKYARD_PORT` | `2024` | TCP port (0 picks a free port) |
| `DOCKYARD_WORKERS` | `16` | Runs executed concurrently |
| `DOCKYARD_DATA_DIR` | `<project>/.dockyard` | Local state; a relative path is from the project |
| `DOCKYARD_MAX_BODY_BYTES` | `10485760` (10 MiB) | Largest accepted request body |
| `DOCKYARD_ALLOW_PRIVATE_WEBHOOKS` | `false` (dev: `true`) | Webhooks may call private IPs |
| `DOCKYARD_WEBHOOK_ALLOWED_DOMAINS` | empty: any public host | Comma list of webhook domains |
| `DOCKYARD_WEBHOOK_REQUIRE_HTTPS` | `true` (dev: `false`) | Refuse plain-http webhook URLs |
| `DOCKYARD_WEBHOOK_SECRET` | none: unsigned | HMAC-SHA256 key signing webhooks (never logged) |
| `DOCKYARD_WEBHOOK_MAX_ATTEMPTS` | `10` | Attempts of one webhook delivery before it fails |
| `DOCKYARD_WEBHOOK_BACKOFF_SECONDS` | `2` | First retry delay bound; doubles per attempt (full jitter) |
| `DOCKYARD_WEBHOOK_BACKOFF_MAX_SECONDS` | `3600` | Largest retry delay |
| `DOCKYARD_WEBHOOK_TIMEOUT_SECONDS` | `10` | Timeout of one webhook POST |
| `DOCKYARD_WEBHOOK_RETENTION_DAYS` | `7` | Finished deliveries and trigger keys are kept this long |
| `DOCKYARD_TRACES` | `true` | Record each run's trace (nodes, LLM and tool calls) in the database |
| `DOCKYARD_TRACE_RETENTION_DAYS` | `14` | Run traces are deleted this long after their run |
| `DOCKYARD_TRACE_MAX_VALUE_BYTES` | `16384` | Largest input/output per span (a preview beyond; 0: none) |
| `DOCKYARD_HEARTBEAT_SECONDS` | `10.0` | Seconds between SSE heartbeats |
| `DOCKYARD_LOG_LEVEL` | `info` | `critical` … `debug`, `trace` |
| `DOCKYARD_LOG_FORMAT` | `text` | `text` for people, `json`: one object per line (production) |
| `DOCKYARD_METRICS_PORT` | none: off | `dockyard worker` serves `/metrics` and `/ok` on this port |
| `DOCKYARD_CONFIG` | none: look in the project dir | `dockyard.toml` or `langgraph.json` |
| `DOCKYARD_REDIS_URL` | none: in-process bus | `redis://…`: events and cancellation across processes |
| `DOCKYARD_LEASE_SECONDS` | `8` | Lease of a claimed run (renewed every lease/4); then presumed dead |
| `DOCKYARD_MAX_ATTEMPTS` | `3` | Claims of a run whose worker died before it is failed |
| `DOCKYARD_SHUTDOWN_GRACE_SECONDS` | `30` | On SIGTERM, time for active runs to finish before release |
| `DOCKYARD_MAX_QUEUE_DEPTH` | `100000` | Pending runs above which new runs get 429 (0: unbounded) |
| `DOCKYARD_TENANT_MAX_RUNNING` | `0` (no cap) | Running runs per tenant, per worker process's claims |
| `DOCKYARD_ASSISTANT_MAX_RUNNING` | `0` (no cap) | Running runs per assistant |
| `DOCKYARD_TENANT_MAX_CONCURRENT_RUNS` | `0`: unlimited | Default quota: runs pending or running per tenant |
| `DOCKYARD_TENANT_RUNS_PER_MINUTE` | `0`: unlimited | Default quota: runs created per tenant per minute |
| `DOCKYARD_TENANT_MAX_STORED_BYTES` | `0`: unlimited | Default quota: bytes of store items + thread states |
| `DOCKYARD_AUTH` | `none` | `none`, or a comma list of `keys` and `oidc` |
| `DOCKYARD_OIDC_JWKS_URL` | none | oidc: the identity provider's JWKS (public keys) |
| `DOCKYARD_OIDC_ISSUER` | none | oidc: the required `iss` |
| `DOCKYARD_OIDC_AUDIENCE` | none | oidc: the required `aud` |
| `DOCKYARD_OIDC_TENANT_CLAIM` | none | oidc: dotted path of the claim naming the tenant |
| `DOCKYARD_OIDC_ROLES_CLAIM` | `roles` | oidc: dotted path of the claim naming roles |
| `DOCKYARD_OIDC_DEFAULT_TENANT` | none | oidc: tenant of tokens without the tenant claim |
| `DOCKYARD_OIDC_DEFAULT_ROLE` | none: no permission | oidc: role of tokens naming no role |

Booleans accept ``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case). A value that does not
parse raises :class:`~dockyard.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dockyard.errors import ConfigError

ENV_PREFIX = "DOCKYARD_"
DEFAULT_DATA_DIR = ".dockyard"
SQLITE_FILENAME = "dockyard.db"
CONFIG_FILENAMES = ("dockyard.toml", "langgraph.json")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def _parse_int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}", key=name) from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}", key=name)
    return value


def _parse_float(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}", key=name) from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}: must be a positive number, got {raw!r}", key=name)
    return value


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true/false, got {raw!r}", key=name)


def _parse_domains(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


def _parse_log_level(name: str, raw: str) -> str:
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}: expected one of {', '.join(LOG_LEVELS)}, got {raw!r}", key=name)
    return level


def _parse_log_format(name: str, raw: str) -> str:
    fmt = raw.strip().lower()
    if fmt not in ("text", "json"):
        raise ConfigError(f"{name}: expected text or json, got {raw!r}", key=name)
    return fmt


AUTH_METHODS = ("keys", "oidc")


def _parse_auth(name: str, raw: str) -> str:
    """``none``, or a comma list of ``keys`` and ``oidc``; normalised (``oidc,keys`` →
    ``keys,oidc``)."""
    names = {part.strip().lower() for part in raw.split(",") if part.strip()}
    if names in (set(), {"none"}):
        return "none"
    if not names <= set(AUTH_METHODS):
        raise ConfigError(f"{name} must be 'none' or a comma list of {', '.join(AUTH_METHODS)}"
                          f", not {raw!r}", key=name)
    return ",".join(m for m in AUTH_METHODS if m in names)


# Field name -> parser of the raw string. Fields not listed are plain strings.
_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "port": lambda n, r: _parse_int(n, r, 0),
    "workers": lambda n, r: _parse_int(n, r, 1),
    "max_body_bytes": lambda n, r: _parse_int(n, r, 1),
    "max_revision_bytes": lambda n, r: _parse_int(n, r, 1),
    "max_revision_files": lambda n, r: _parse_int(n, r, 1),
    "revision_workers": lambda n, r: _parse_int(n, r, 1),
    "allow_private_webhooks": _parse_bool,
    "webhook_allowed_domains": _parse_domains,
    "webhook_require_https": _parse_bool,
    "webhook_max_attempts": lambda n, r: _parse_int(n, r, 1),
    "webhook_backoff_seconds": _parse_float,
    "webhook_backoff_max_seconds": _parse_float,
    "webhook_timeout_seconds": _parse_float,
    "webhook_retention_days": _parse_float,
    "traces": _parse_bool,
    "trace_retention_days": _parse_float,
    "trace_max_value_bytes": lambda n, r: _parse_int(n, r, 0),
    "heartbeat_seconds": _parse_float,
    "log_level": _parse_log_level,
    "log_format": _parse_log_format,
    "metrics_port": lambda n, r: _parse_int(n, r, 0),
    "data_dir": lambda n, r: Path(r),
    "config": lambda n, r: Path(r),
    "lease_seconds": _parse_float,
    "max_attempts": lambda n, r: _parse_int(n, r, 1),
    "shutdown_grace_seconds": _parse_float,
    "max_queue_depth": lambda n, r: _parse_int(n, r, 0),
    "tenant_max_running": lambda n, r: _parse_int(n, r, 0),
    "assistant_max_running": lambda n, r: _parse_int(n, r, 0),
    "tenant_max_concurrent_runs": lambda n, r: _parse_int(n, r, 0),
    "tenant_runs_per_minute": lambda n, r: _parse_int(n, r, 0),
    "tenant_max_stored_bytes": lambda n, r: _parse_int(n, r, 0),
    "cron_poll_seconds": _parse_float,
    "auth": _parse_auth,
}


def _mask_url(url: str) -> str:
    """The URL with its password replaced, so it can be logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass(frozen=True)
class Settings:
    """How the server runs. Build it with :meth:`from_env`; fields mirror ``DOCKYARD_*``."""

    # repr=False: the URL may carry a password and settings get logged; see masked_database_url.
    database_url: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 2024
    workers: int = 16
    data_dir: Path | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    # `dockyard deploy` uploads (POST /revisions): the archive's size, compressed and once
    # decompressed, and its number of entries.
    max_revision_bytes: int = 50 * 1024 * 1024
    max_revision_files: int = 10_000
    # Extra `pip install` arguments for revisions' environments (e.g. an index URL, or
    # `--no-index --find-links DIR` for an air-gapped server); split like a shell would.
    revision_pip_args: str = ""
    # Runs executed at once by each worker process of a revision (one per revision per
    # worker-role process).
    revision_workers: int = 8
    allow_private_webhooks: bool = False
    webhook_allowed_domains: tuple[str, ...] = ()
    webhook_require_https: bool = True
    # repr=False: a secret; settings get logged.
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_max_attempts: int = 10
    webhook_backoff_seconds: float = 2.0
    webhook_backoff_max_seconds: float = 3600.0
    webhook_timeout_seconds: float = 10.0
    webhook_retention_days: float = 7.0
    # Persisted run traces (the debugger's trace page): on/off, retention, value size cap.
    traces: bool = True
    trace_retention_days: float = 14.0
    trace_max_value_bytes: int = 16384
    heartbeat_seconds: float = 10.0
    log_level: str = "info"
    log_format: str = "text"
    metrics_port: int | None = None
    config: Path | None = None
    # repr=False for the same reason as database_url.
    redis_url: str | None = field(default=None, repr=False)
    lease_seconds: float = 8.0
    max_attempts: int = 3
    shutdown_grace_seconds: float = 30.0
    max_queue_depth: int = 100_000
    tenant_max_running: int = 0
    assistant_max_running: int = 0
    # Default per-tenant quotas (0: unlimited); a tenant's own row in tenant_quotas wins.
    tenant_max_concurrent_runs: int = 0
    tenant_runs_per_minute: int = 0
    tenant_max_stored_bytes: int = 0
    # Longest sleep of the cron scheduler between looks at the crons table; it also wakes at
    # the earliest due tick and when a cron is created or changed.
    cron_poll_seconds: float = 10.0
    # none: every request is the default tenant's admin (dev); else a comma list of keys
    # (API keys: X-Api-Key or Authorization: Bearer) and oidc (JWT bearer tokens checked
    # against the issuer's JWKS). `serve` and `worker` refuse `none` without --insecure.
    auth: str = "none"
    oidc_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    # Dotted claim paths: the tenant (unset: DOCKYARD_OIDC_DEFAULT_TENANT) and the roles (a
    # list or a space-separated string; the most privileged Dockyard role named wins).
    oidc_tenant_claim: str | None = None
    oidc_roles_claim: str = "roles"
    oidc_default_tenant: str | None = None
    oidc_default_role: str | None = None

    @staticmethod
    def env_var(field_name: str) -> str:
        """The environment variable of a field: ``port`` -> ``DOCKYARD_PORT``."""
        return ENV_PREFIX + field_name.upper()

    @classmethod
    def from_env(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read ``DOCKYARD_*`` variables, then apply ``overrides`` (keyed by field name).

        Override values that are ``None`` are ignored (an unset CLI flag); string values are
        parsed like the environment variable, other values are used as given.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for name in known:
            raw = env.get(cls.env_var(name), "")
            if raw.strip():
                values[name] = _PARSERS.get(name, lambda _n, r: r)(cls.env_var(name), raw)
        for name, value in (overrides or {}).items():
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}", key=name)
            if value is None:
                continue
            if isinstance(value, str) and name in _PARSERS:
                value = _PARSERS[name](cls.env_var(name), value)
            values[name] = value
        if "webhook_allowed_domains" in values:
            values["webhook_allowed_domains"] = tuple(values["webhook_allowed_domains"])
        return cls(**values)

    def data_path(self, project_root: Path) -> Path:
        """Directory for local state; a relative ``data_dir`` is taken from the project root."""
        if self.data_dir is None:
            return project_root / DEFAULT_DATA_DIR
        if self.data_dir.is_absolute():
            return self.data_dir
        return project_root / self.data_dir

    def sqlite_path(self, project_root: Path) -> Path:
        """The default SQLite database file, used when no database URL is set."""
        return self.data_path(project_root) / SQLITE_FILENAME

    def database_url_for(self, project_root: Path) -> str:
        """The database URL to use: ``DOCKYARD_DATABASE_URL`` or ``sqlite:///<absolute path>``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.sqlite_path(project_root).resolve()}"

    @property
    def masked_database_url(self) -> str | None:
        """The configured database URL with any password hidden, safe to log."""
        return None if self.database_url is None else _mask_url(self.database_url)

    @property
    def masked_redis_url(self) -> str | None:
        return None if self.redis_url is None else _mask_url(self.redis_url)

    @property
    def is_production(self) -> bool:
        """PostgreSQL + Redis: API and worker processes may run apart."""
        return bool(self.database_url and self.database_url.startswith(("postgresql://",
                                                                           "postgres://"))
                    and self.redis_url)


# --------------------------------------------------------------------------------------------
# Project file: dockyard.toml / langgraph.json
# --------------------------------------------------------------------------------------------

# Keys the reference server understands but Dockyard has no use for (yet): kept in ``extra``.
KNOWN_EXTRA_KEYS = frozenset(
    {
        "$schema",
        "python_version",
        "pip_config_file",
        "pip_installer",
        "dockerfile_lines",
        "image_distro",
        "node_version",
        "ui",
        "ui_config",
        "webhooks",
        "api_version",
        "base_image",
        "keep_pkg_tools",
        "encryption",
    }
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*")
_ATTR_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*")


@dataclass(frozen=True)
class GraphSpec:
    """One entry of ``graphs``: ``target`` is ``path/to/file.py:attr`` or ``pkg.module:attr``."""

    graph_id: str
    target: str
    description: str | None = None

    @property
    def location(self) -> str:
        """The part before the colon: a file path or a dotted module name."""
        return self.target.rpartition(":")[0]

    @property
    def attr(self) -> str:
        """The attribute to read from the module (may be dotted, e.g. ``obj.graph``)."""
        return self.target.rpartition(":")[2]

    @property
    def is_file(self) -> bool:
        """True if the target names a ``.py`` file rather than an importable module."""
        return _is_file_target(self.location)


def _is_file_target(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _is_path_dependency(dep: str) -> bool:
    return dep.startswith((".", "/", "~")) or "/" in dep or "\\" in dep


@dataclass(frozen=True)
class ProjectConfig:
    """The project file, validated. Paths in it are relative to ``root``."""

    root: Path
    source: Path
    graphs: dict[str, GraphSpec]
    dependencies: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] | None = None
    http: dict[str, Any] = field(default_factory=dict)
    checkpointer_ttl: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dependency_paths(self) -> list[Path]:
        """Local directories among ``dependencies`` (``"."``, ``"./src"``), made absolute."""
        return [
            (self.root / Path(dep).expanduser()).resolve()
            for dep in self.dependencies
            if _is_path_dependency(dep)
        ]

    def apply_env(self) -> None:
        """Put ``env`` into ``os.environ``; variables that are already set win."""
        for key, value in self.env.items():
            os.environ.setdefault(key, value)


def find_config_file(path: Path | str = ".") -> Path:
    """The project file at ``path``: the file itself, or the first of CONFIG_FILENAMES in it."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in CONFIG_FILENAMES:
            if (p / name).is_file():
                return (p / name).resolve()
        raise ConfigError(f"no {' or '.join(CONFIG_FILENAMES)} found", file=str(p))
    if not p.is_file():
        raise ConfigError("config file not found", file=str(p))
    return p.resolve()


def load_project(path: Path | str = ".") -> ProjectConfig:
    """Read and validate ``dockyard.toml`` or ``langgraph.json`` (a directory or the file)."""
    source = find_config_file(path)
    raw = _read_document(source)
    return _build_project(source, raw)


def _read_document(source: Path) -> dict[str, Any]:
    file = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=file) from exc
    data: Any
    if source.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # Python 3.11's message already says "(at line N, column M)".
            raise ConfigError(f"invalid TOML: {exc}", file=file) from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=file
            ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"expected an object at top level, got {_type(data)}", file=file)
    return data


def _type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


def _build_project(source: Path, raw: dict[str, Any]) -> ProjectConfig:
    file = str(source)
    root = source.parent

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, file=file, key=key)

    def table(key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail(key, f"expected an object, got {_type(value)}")
        return value

    graphs = _parse_graphs(raw.get("graphs"), fail)

    deps_raw = raw.get("dependencies", [])
    if not isinstance(deps_raw, list) or not all(isinstance(d, str) for d in deps_raw):
        raise fail("dependencies", "expected a list of strings")
    dependencies: list[str] = list(deps_raw)
    for dep in dependencies:
        if _is_path_dependency(dep) and not (root / Path(dep).expanduser()).is_dir():
            raise fail("dependencies", f"directory {dep!r} does not exist")

    env = _parse_env(raw.get("env", {}), root, fail)

    store = table("store", raw.get("store", {}))
    for sub in ("index", "ttl"):
        if sub in store and store[sub] is not None:
            table(f"store.{sub}", store[sub])

    auth_raw = raw.get("auth")
    auth = None if auth_raw is None else table("auth", auth_raw)
    http = table("http", raw.get("http", {}))

    extra: dict[str, Any] = {}
    checkpointer = table("checkpointer", raw.get("checkpointer", {}))
    ttl_raw = checkpointer.get("ttl")
    checkpointer_ttl = None if ttl_raw is None else table("checkpointer.ttl", ttl_raw)
    rest = {k: v for k, v in checkpointer.items() if k != "ttl"}
    if rest:
        extra["checkpointer"] = rest

    handled = {"graphs", "dependencies", "env", "store", "auth", "http", "checkpointer"}
    # Keys unknown even to the reference server are kept too: a newer langgraph.json should not
    # stop the server from starting. KNOWN_EXTRA_KEYS documents the ones we expect.
    extra.update({k: v for k, v in raw.items() if k not in handled})

    return ProjectConfig(
        root=root,
        source=source,
        graphs=graphs,
        dependencies=dependencies,
        env=env,
        store=store,
        auth=auth,
        http=http,
        checkpointer_ttl=checkpointer_ttl,
        extra=extra,
    )


def _parse_graphs(value: Any, fail: Callable[[str, str], ConfigError]) -> dict[str, GraphSpec]:
    if value is None:
        raise fail("graphs", "missing: name at least one graph, e.g. agent = './agent.py:graph'")
    if not isinstance(value, dict):
        raise fail("graphs", f"expected an object mapping graph ids to targets, got {_type(value)}")
    if not value:
        raise fail("graphs", "is empty: name at least one graph")
    graphs: dict[str, GraphSpec] = {}
    for graph_id, entry in value.items():
        key = f"graphs.{graph_id}"
        if not graph_id.strip():
            raise fail(key, "graph id must not be empty")
        description: str | None = None
        if isinstance(entry, dict):
            target = entry.get("path")
            description = entry.get("description")
            if not isinstance(target, str):
                raise fail(key, "expected a 'path' string such as './agent.py:graph'")
            if description is not None and not isinstance(description, str):
                raise fail(f"{key}.description", "expected a string")
        elif isinstance(entry, str):
            target = entry
        else:
            raise fail(key, f"expected a string like './agent.py:graph', got {_type(entry)}")
        _check_target(target, key, fail)
        graphs[graph_id] = GraphSpec(graph_id=graph_id, target=target, description=description)
    return graphs


def _check_target(target: str, key: str, fail: Callable[[str, str], ConfigError]) -> None:
    location, colon, attr = target.rpartition(":")
    ok = bool(colon) and bool(location) and _ATTR_RE.fullmatch(attr) is not None
    if ok and not _is_file_target(location):
        ok = _MODULE_RE.fullmatch(location) is not None
    if not ok:
        raise fail(
            key,
            f"invalid target {target!r}: expected 'path/to/file.py:attr' or 'package.module:attr'",
        )


def _parse_env(value: Any, root: Path, fail: Callable[[str, str], ConfigError]) -> dict[str, str]:
    if isinstance(value, str):
        env_file = root / value
        if not env_file.is_file():
            raise fail("env", f"env file {value!r} not found (looked at {env_file})")
        return parse_dotenv(env_file)
    if not isinstance(value, dict):
        raise fail("env", f"expected an object or a path to a .env file, got {_type(value)}")
    env: dict[str, str] = {}
    for name, raw in value.items():
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise fail(f"env.{name}", f"expected a string, got {_type(raw)}")
        env[name] = str(raw)
    return env


_DOTENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")


def parse_dotenv(path: Path) -> dict[str, str]:
    """Parse simple ``KEY=VALUE`` lines; ``#`` comments, ``export`` and quotes are allowed.

    Double-quoted values understand ``\\n``, ``\\t``, ``\\"`` and ``\\\\``; single-quoted values
    are literal; an unquoted value ends at `` #``. There is no variable interpolation.
    """
    file = str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read env file: {exc}", file=file, key="env") from exc
    env: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _DOTENV_LINE.match(stripped)
        if match is None:
            raise ConfigError(f"line {lineno}: expected KEY=VALUE", file=file, key="env")
        name, rest = match.group(1), match.group(2).strip()
        env[name] = _dotenv_value(rest, lineno, file)
    return env


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _dotenv_value(rest: str, lineno: int, file: str) -> str:
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        out: list[str] = []
        i = 1
        while i < len(rest):
            ch = rest[i]
            if quote == '"' and ch == "\\" and i + 1 < len(rest):
                out.append(_ESCAPES.get(rest[i + 1], "\\" + rest[i + 1]))
                i += 2
                continue
            if ch == quote:
                tail = rest[i + 1 :].strip()
                if tail and not tail.startswith("#"):
                    break
                return "".join(out)
            out.append(ch)
            i += 1
        raise ConfigError(f"line {lineno}: unterminated quoted value", file=file, key="env")
    # Unquoted: an inline comment starts at whitespace followed by '#'.
    return re.split(r"\s+#", rest, maxsplit=1)[0].strip()
