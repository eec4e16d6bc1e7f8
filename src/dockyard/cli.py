"""``dockyard`` command line: dev (one process, reload), serve, worker, migrate, the
administration of teams (tenants and API keys), deploys (revisions, in deploy_cli.py), images
(`build`, in image.py) and CI workflows (`init --ci`, in ci.py).

Every flag names the ``DOCKYARD_*`` variable it sets; flags are passed to the server process
through those variables, so a reloaded process sees exactly the same settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from dockyard import __version__
from dockyard.config import Settings, find_config_file, load_project
from dockyard.errors import ConfigError, DockyardError
from dockyard.logs import configure_logging, logging_config


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=".",
                   help="project directory or config file (DOCKYARD_CONFIG)")
    p.add_argument("--host", help="interface to bind (DOCKYARD_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (DOCKYARD_PORT, default 2024)")
    p.add_argument("--workers", type=int,
                   help="runs executed concurrently (DOCKYARD_WORKERS, default 16)")
    p.add_argument("--data-dir", help="local state directory (DOCKYARD_DATA_DIR)")
    p.add_argument("--database-url", help="database URL (DOCKYARD_DATABASE_URL)")
    p.add_argument("--log-level", help="log level (DOCKYARD_LOG_LEVEL, default info)")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="text, or json: one object per line (DOCKYARD_LOG_FORMAT, default text)")
    p.add_argument("--redis-url", help="Redis URL for events across processes (DOCKYARD_REDIS_URL)")
    p.add_argument("--auth",
                   help="none, or a comma list of keys (API keys) and oidc (JWT bearer "
                        "tokens) (DOCKYARD_AUTH, default none)")
    p.add_argument("--tenant-max-concurrent-runs", type=int,
                   help="default quota: runs pending or running per tenant, 0 unlimited "
                        "(DOCKYARD_TENANT_MAX_CONCURRENT_RUNS)")
    p.add_argument("--tenant-runs-per-minute", type=int,
                   help="default quota: runs created per tenant per minute, 0 unlimited "
                        "(DOCKYARD_TENANT_RUNS_PER_MINUTE)")
    p.add_argument("--tenant-max-stored-bytes", type=int,
                   help="default quota: stored bytes per tenant, 0 unlimited "
                        "(DOCKYARD_TENANT_MAX_STORED_BYTES)")
    for name, help_ in (
        ("jwks-url", "the identity provider's JWKS URL"), ("issuer", "required token issuer"),
        ("audience", "required token audience"),
        ("tenant-claim", "dotted path of the claim naming the tenant"),
        ("roles-claim", "dotted path of the claim naming roles (default roles)"),
        ("default-tenant", "tenant of tokens without the tenant claim"),
        ("default-role", "role of tokens naming no Dockyard role"),
    ):
        var = "DOCKYARD_OIDC_" + name.upper().replace("-", "_")
        p.add_argument(f"--oidc-{name}", help=f"oidc: {help_} ({var})")
    p.add_argument("--insecure", action="store_true",
                   help="serve/worker: allow DOCKYARD_AUTH=none (every caller is an admin)")


def _export(args: argparse.Namespace) -> None:
    """Resolve flags into DOCKYARD_* variables (validated) for this and any child process."""
    config_file = find_config_file(args.path)
    os.environ["DOCKYARD_CONFIG"] = str(config_file)
    for flag, var in (
        ("host", "DOCKYARD_HOST"), ("port", "DOCKYARD_PORT"), ("workers", "DOCKYARD_WORKERS"),
        ("data_dir", "DOCKYARD_DATA_DIR"), ("database_url", "DOCKYARD_DATABASE_URL"),
        ("log_level", "DOCKYARD_LOG_LEVEL"), ("redis_url", "DOCKYARD_REDIS_URL"),
        ("concurrency", "DOCKYARD_WORKERS"), ("log_format", "DOCKYARD_LOG_FORMAT"),
        ("metrics_port", "DOCKYARD_METRICS_PORT"), ("auth", "DOCKYARD_AUTH"),
        *((f"tenant_{n}", f"DOCKYARD_TENANT_{n.upper()}") for n in (
            "max_concurrent_runs", "runs_per_minute", "max_stored_bytes")),
        *((f"oidc_{n}", f"DOCKYARD_OIDC_{n.upper()}") for n in (
            "jwks_url", "issuer", "audience", "tenant_claim", "roles_claim", "default_tenant",
            "default_role")),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[var] = str(value)
    settings = Settings.from_env()  # fail fast on a bad value, before starting anything
    configure_logging(settings.log_level, settings.log_format)


def app_factory():  # type: ignore[no-untyped-def]
    """Uvicorn factory: builds the app from DOCKYARD_* variables (used by reload too)."""
    from dockyard.api.app import create_app

    settings = Settings.from_env()
    project = load_project(settings.config or ".")
    return create_app(project, settings, dev=os.environ.get("DOCKYARD_DEV_MODE") == "1",
                      role=os.environ.get("DOCKYARD_ROLE", "all"))


def _check_auth(settings: Settings, args: argparse.Namespace, *, dev: bool,
                custom: str | None = None) -> str:
    """Safe default: only `dockyard dev` (or an explicit --insecure) runs without auth.
    ``custom``: the project's `auth.path` (custom auth counts as auth)."""
    if custom:
        extra = "" if settings.auth == "none" else f" + {settings.auth} (DOCKYARD_AUTH)"
        return f"custom ({custom}){extra}"
    if settings.auth != "none":
        if "oidc" in settings.auth.split(","):
            from dockyard.services.oidc import OidcConfig

            cfg = OidcConfig.from_settings(settings)  # fail fast, naming the missing setting
            return f"{settings.auth} (DOCKYARD_AUTH; tokens of {cfg.issuer})"
        return f"{settings.auth} (DOCKYARD_AUTH)"
    if not dev and not getattr(args, "insecure", False):
        raise ConfigError(
            "refusing to start without authentication: set DOCKYARD_AUTH=keys (create keys "
            "with `dockyard keys create --tenant T --role R`), or pass --insecure to run "
            "with DOCKYARD_AUTH=none, where every caller is an admin", key="DOCKYARD_AUTH",
        )
    return "OFF (DOCKYARD_AUTH=none): every caller is an admin of tenant 'default'"


def _serve(args: argparse.Namespace, *, dev: bool) -> int:
    import uvicorn

    _export(args)
    if dev:
        os.environ["DOCKYARD_DEV_MODE"] = "1"
        os.environ.setdefault("DOCKYARD_ALLOW_PRIVATE_WEBHOOKS", "true")
    settings = Settings.from_env()
    project = load_project(settings.config or ".")
    auth = _check_auth(settings, args, dev=dev, custom=(project.auth or {}).get("path"))
    role = "all"
    if not dev:
        # On PostgreSQL + Redis `serve` is a stateless API replica unless told otherwise;
        # on SQLite it is the all-in-one server (a SQLite file has one owner process).
        role = args.role or ("api" if settings.is_production else "all")
    os.environ["DOCKYARD_ROLE"] = role
    _check_port_free(settings.host, settings.port)
    url = f"http://{settings.host}:{settings.port}"
    reload = dev and not args.no_reload
    print(
        f"\n  Dockyard {__version__} {'(dev)' if dev else ''}\n"
        f"  - API:     {url}\n  - UI:      {url}/ui\n  - Docs:    {url}/docs\n"
        f"  - OpenAPI: {url}/openapi.json\n"
        f"  - Graphs:  {', '.join(project.graphs)}\n"
        f"  - Data:    {settings.masked_database_url or settings.sqlite_path(project.root)}\n"
        f"  - Role:    {role}{' (runs execute in `dockyard worker` processes)' if role == 'api' else ''}\n"
        f"  - Reload:  {'on' if reload else 'off'}\n"
        f"  - Auth:    {auth}\n"
        + ("\n  !! auth is off: anyone who can reach this port can do anything\n"
           if settings.auth == "none" and not auth.startswith("custom") else ""),
        flush=True,
    )
    from dockyard.server import http_protocol, serve

    return serve(uvicorn.Config(
        "dockyard.cli:app_factory",
        factory=True,
        http=http_protocol(),
        host=settings.host,
        port=settings.port,
        reload=reload,
        reload_dirs=[str(project.root)] if reload else None,
        reload_excludes=[".dockyard/*", "*.db", "*.db-wal", "*.db-shm"] if reload else None,
        log_level=settings.log_level if settings.log_level != "trace" else "trace",
        # Uvicorn's loggers (and a reloaded child process) use Dockyard's format.
        log_config=logging_config(settings.log_level, settings.log_format),
        access_log=False,
        timeout_graceful_shutdown=10,
        # Longer than clients' idle-connection expiry (httpx: 5 s), so a pooled connection is
        # never closed by the server just as the client reuses it.
        timeout_keep_alive=75,
    ))


def _check_port_free(host: str, port: int) -> None:
    """Fail early, naming the setting, rather than with uvicorn's bare 'Address already in use'."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); another process uses the "
                "port: pass --port or set DOCKYARD_PORT", key="DOCKYARD_PORT",
            ) from None


def _worker(args: argparse.Namespace) -> int:
    """A worker process: claims and executes runs until SIGTERM, then shuts down gracefully."""
    import signal

    from dockyard.services.core import Dockyard

    _export(args)
    settings = Settings.from_env()
    project = load_project(settings.config or ".")
    auth = _check_auth(settings, args, dev=False, custom=(project.auth or {}).get("path"))

    async def run() -> None:
        app = Dockyard(project, settings, role="worker")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await app.start()
        ops = None
        if settings.metrics_port is not None:  # /metrics and /ok for Prometheus and probes
            from dockyard.api.ops import serve_ops

            ops = await serve_ops(app, settings.host, settings.metrics_port)
        print(
            f"\n  Dockyard {__version__} worker {app.pool.worker_id}\n"
            f"  - Concurrency: {settings.workers}\n  - Graphs:      {', '.join(project.graphs)}\n"
            f"  - Database:    {settings.masked_database_url}\n"
            f"  - Redis:       {settings.masked_redis_url}\n"
            f"  - Metrics:     {_ops_url(ops) or 'off (DOCKYARD_METRICS_PORT)'}\n"
            f"  - Auth:        {auth}\n",
            flush=True,
        )
        await stop.wait()
        print(f"stopping: active runs get {settings.shutdown_grace_seconds:g}s to finish "
              "(DOCKYARD_SHUTDOWN_GRACE_SECONDS), then go back to the queue", flush=True)
        await app.stop()
        if ops is not None:
            ops.close()

    from dockyard.runtime.process import run_process

    # Not asyncio.run: that would wait for a synchronous node's thread after the stop.
    return run_process(run())


def _ops_url(server: asyncio.Server | None) -> str | None:
    if server is None:
        return None
    host, port = server.sockets[0].getsockname()[:2]
    return f"http://{host}:{port}/metrics"


def _migrate(args: argparse.Namespace) -> int:
    from dockyard.storage import migrate_database

    _export(args)
    settings = Settings.from_env()
    project = load_project(settings.config or ".")
    applied = asyncio.run(
        migrate_database(settings.database_url, default_path=settings.sqlite_path(project.root))
    )
    print(f"applied migrations: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def _admin(args: argparse.Namespace) -> int:
    """``dockyard tenants …`` / ``dockyard keys …`` on the configured database (the same
    resolution as ``dockyard migrate``), migrated first (idempotent)."""
    from dockyard.services.auth import KeyService
    from dockyard.storage import create_storage

    args.path = args.project
    _export(args)
    settings = Settings.from_env()
    project = load_project(settings.config or ".")

    async def run() -> int:
        storage = create_storage(settings.database_url,
                                 default_path=settings.sqlite_path(project.root))
        await storage.open()
        try:
            await storage.migrate()
            keys = KeyService(storage, mode="keys")
            return await _admin_command(keys, args)
        finally:
            await storage.close()

    return asyncio.run(run())


async def _admin_command(keys: Any, args: argparse.Namespace) -> int:
    if args.command == "tenants":
        if args.action == "quota":
            return await _quota_command(keys, args)
        if args.action == "create":
            row = await keys.create_tenant(args.name, args.display_name)
            await keys.audit(tenant=row["id"], actor="cli", action="tenant.create",
                             resource_type="tenant", resource_id=row["id"])
            print(f"created tenant {row['id']}")
        else:
            for row in await keys.tenants.list():
                print(f"{row['id']}\t{row['name']}\t{row['created_at']}")
        return 0
    if args.action == "create":
        row = await keys.create_key(args.tenant, args.role, name=args.name,
                                    expires_in_days=args.expires_in)
        print(row["key"])
        print(f"\nkey_id {row['key_id']}  tenant {row['tenant_id']}  role {row['role']}  "
              f"expires {row['expires_at'] or 'never'}\n"
              "This is the only time the key is shown; it is stored hashed.", file=sys.stderr)
    elif args.action == "list":
        print("key_id\tprefix\ttenant\trole\tname\tcreated_at\texpires_at\trevoked_at"
              "\tlast_used_at")
        for row in await keys.list_keys(args.tenant):
            print("\t".join(str(row[k] or "-") for k in (
                "key_id", "prefix", "tenant_id", "role", "name", "created_at", "expires_at",
                "revoked_at", "last_used_at")))
    else:
        row = await keys.revoke_key(args.key_id)
        print(f"revoked {row['key_id']} ({row['prefix']}); servers forget it within 30 s")
    return 0


async def _quota_command(keys: Any, args: argparse.Namespace) -> int:
    import json

    from dockyard.services.quotas import Limits, QuotaService

    settings = Settings.from_env()
    quotas = QuotaService(keys.tenants.db, Limits(
        settings.tenant_max_concurrent_runs, settings.tenant_runs_per_minute,
        settings.tenant_max_stored_bytes))
    if await keys.tenants.get(args.name) is None:
        raise DockyardError(f"tenant {args.name!r} does not exist (dockyard tenants create)")
    values = {f: v for f in ("max_concurrent_runs", "runs_per_minute", "max_stored_bytes")
              if (v := getattr(args, f)) is not None}
    values = {f: (None if v < 0 else v) for f, v in values.items()}  # -1: back to the default
    if values:
        await quotas.set(args.name, values)
        await keys.audit(tenant=args.name, actor="cli", action="quota.set",
                         resource_type="tenant", resource_id=args.name,
                         detail={"values": values})
    print(json.dumps(await quotas.describe(args.name), indent=2))
    return 0


def _admin_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", default=".",
                   help="project directory or config file (DOCKYARD_CONFIG)")
    p.add_argument("--database-url", help="database URL (DOCKYARD_DATABASE_URL)")
    p.add_argument("--data-dir", help="local state directory (DOCKYARD_DATA_DIR)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dockyard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run the all-in-one dev server (SQLite, auto-reload)")
    _add_server_flags(dev)
    dev.add_argument("--no-reload", action="store_true", help="disable auto-reload")
    serve = sub.add_parser("serve", help="run the server without reload")
    _add_server_flags(serve)
    serve.add_argument("--role", choices=["all", "api"],
                       help="api: HTTP only (default on PostgreSQL + Redis); all: with workers")
    worker = sub.add_parser("worker", help="claim and execute runs (PostgreSQL + Redis)")
    _add_server_flags(worker)
    worker.add_argument("--concurrency", type=int,
                        help="runs executed concurrently (DOCKYARD_WORKERS, default 16)")
    worker.add_argument("--metrics-port", type=int,
                        help="serve /metrics and /ok on this port (DOCKYARD_METRICS_PORT, default off)")
    mig = sub.add_parser("migrate", help="apply database migrations (idempotent)")
    mig.add_argument("path", nargs="?", default=".", help="project directory or config file")
    mig.add_argument("--database-url", help="database URL (DOCKYARD_DATABASE_URL)")
    mig.add_argument("--data-dir", help="local state directory (DOCKYARD_DATA_DIR)")
    from dockyard.services.auth import ROLE_NAMES

    tenants = sub.add_parser("tenants", help="create and list tenants (teams)")
    tsub = tenants.add_subparsers(dest="action", required=True)
    tcreate = tsub.add_parser("create", help="create a tenant")
    tcreate.add_argument("name", help="tenant id: lowercase letters, digits, '-', '_'")
    tcreate.add_argument("--display-name", help="a human-readable name (default: the id)")
    _admin_flags(tcreate)
    tquota = tsub.add_parser("quota", help="show or set a tenant's quotas (0: unlimited, "
                             "-1: the server's default)")
    tquota.add_argument("name", help="tenant id")
    tquota.add_argument("--max-concurrent-runs", type=int, help="runs pending or running")
    tquota.add_argument("--runs-per-minute", type=int, help="runs created per minute")
    tquota.add_argument("--max-stored-bytes", type=int,
                        help="bytes of store items and thread states")
    _admin_flags(tquota)
    _admin_flags(tsub.add_parser("list", help="list tenants"))
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    kcreate = ksub.add_parser("create", help="create an API key (printed once)")
    kcreate.add_argument("--tenant", required=True, help="the key's tenant")
    kcreate.add_argument("--role", required=True, choices=list(ROLE_NAMES))
    kcreate.add_argument("--name", help="a label for the key")
    kcreate.add_argument("--expires-in", type=float, metavar="DAYS",
                         help="expire after DAYS days (default: never)")
    _admin_flags(kcreate)
    klist = ksub.add_parser("list", help="list API keys (never their secrets)")
    klist.add_argument("--tenant", help="only this tenant's keys")
    _admin_flags(klist)
    krevoke = ksub.add_parser("revoke", help="revoke an API key")
    krevoke.add_argument("key_id")
    _admin_flags(krevoke)
    from dockyard import ci, deploy_cli, image, release_cli

    release_cli.add_commands(sub, deploy_cli.add_commands(sub))
    image.add_commands(sub)
    ci.add_commands(sub)
    args = parser.parse_args(argv)
    # Until the command validates its settings (then `_export` applies them exactly).
    fmt = getattr(args, "log_format", None) or os.environ.get("DOCKYARD_LOG_FORMAT", "")
    configure_logging("info", "json" if fmt.strip().lower() == "json" else "text")
    try:
        if args.command == "dev":
            return _serve(args, dev=True)
        if args.command == "serve":
            args.no_reload = True
            return _serve(args, dev=False)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "worker":
            return _worker(args)
        if args.command in ("tenants", "keys"):
            return _admin(args)
        if args.command in release_cli.COMMANDS or (
                args.command == "revisions" and args.action == "env"):
            return release_cli.run(args)
        if args.command in ("deploy", "revisions"):
            return deploy_cli.run(args)
        if args.command == "build":
            return image.run(args)
        if args.command == "init":
            return ci.run(args)
    except DockyardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

_ = Path
