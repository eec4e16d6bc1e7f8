"""``dockyard promote``, ``rollback``, ``deployment``, ``threads migrate`` and ``revisions env``:
the client side of /deployment and /revisions/{id}/env (deploy itself is deploy_cli.py).

Outcomes go to stdout (JSON for machine-readable answers), errors to stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from dockyard.deploy_cli import _client_flags, _error, _headers

COMMANDS = ("promote", "rollback", "deployment", "threads")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 revisions_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    promote = sub.add_parser("promote", help="send new threads to a revision (or a canary share)")
    promote.add_argument("revision_id")
    promote.add_argument("--canary", type=_percent, metavar="PERCENT",
                         help="only this share of new threads, e.g. 10 or 10%%")
    promote.add_argument("--max-error-rate", type=float, metavar="FRACTION",
                         help="auto-rollback the canary above this error rate (e.g. 0.2)")
    promote.add_argument("--max-p95-seconds", type=float,
                         help="auto-rollback the canary above this p95 run duration")
    promote.add_argument("--min-runs", type=int, help="runs needed before judging (default 10)")
    promote.add_argument("--window-seconds", type=float,
                         help="how far back the canary's runs count (default 300)")
    _client_flags(promote)
    rollback = sub.add_parser("rollback", help="drop the canary, or restore the previous revision")
    rollback.add_argument("--to", help="a revision id, or 'base' for the server's own project")
    rollback.add_argument("--reason")
    _client_flags(rollback)
    dep = sub.add_parser("deployment", help="show the current/canary revisions and their figures")
    dep.add_argument("--window-seconds", type=float, default=3600)
    _client_flags(dep)
    threads = sub.add_parser("threads", help="move threads between revisions")
    tsub = threads.add_subparsers(dest="action", required=True)
    migrate = tsub.add_parser("migrate", help="pin idle/interrupted threads to another revision")
    migrate.add_argument("thread_ids", nargs="*", help="threads to move (or use --from)")
    migrate.add_argument("--to", required=True, help="revision id, or 'base'")
    migrate.add_argument("--from", dest="from_revision", help="move the threads of this revision")
    migrate.add_argument("--dry-run", action="store_true", help="only say what would move")
    _client_flags(migrate)
    env = revisions_sub.add_parser("env", help="set or list a revision's environment variables")
    env.add_argument("revision_id")
    env.add_argument("assignments", nargs="*", metavar="NAME=VALUE",
                     help="variables to set; with none, list the names")
    env.add_argument("--unset", action="append", default=[], metavar="NAME")
    _client_flags(env)


def _percent(raw: str) -> float:
    try:
        return float(raw.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {raw!r}") from None


def _call(args: argparse.Namespace, method: str, path: str,
          body: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> Any:
    server = args.server.rstrip("/")
    try:
        resp = httpx.request(method, f"{server}{path}", json=body, params=params,
                             headers=_headers(args), timeout=60.0)
    except httpx.HTTPError as exc:
        raise SystemExit(f"error: cannot reach {server}: {exc}") from None
    if resp.status_code >= 400:
        raise SystemExit(f"error: {_error(resp)}")
    return resp.json()


def run(args: argparse.Namespace) -> int:
    if not args.server:
        print("error: no server: pass --server URL or set DOCKYARD_URL", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 1
        raise


def _run(args: argparse.Namespace) -> int:
    if args.command == "promote":
        auto = {k: v for k, v in {
            "max_error_rate": args.max_error_rate, "max_p95_seconds": args.max_p95_seconds,
            "min_runs": args.min_runs, "window_seconds": args.window_seconds}.items()
            if v is not None}
        body: dict[str, Any] = {"revision_id": args.revision_id, "canary_percent": args.canary}
        if auto:
            body["auto_rollback"] = auto
        out = _call(args, "POST", "/deployment/promote", body)
        _summary(out)
    elif args.command == "rollback":
        out = _call(args, "POST", "/deployment/rollback", {"to": args.to, "reason": args.reason})
        _summary(out)
    elif args.command == "deployment":
        out = _call(args, "GET", "/deployment")
        _summary(out)
        for row in _call(args, "GET", "/deployment/stats",
                         params={"window_seconds": args.window_seconds}):
            rate = "-" if row["error_rate"] is None else f"{row['error_rate']:.1%}"
            p95 = "-" if row["p95_seconds"] is None else f"{row['p95_seconds']:.3f}s"
            print(f"  {row['role']:<8} {row['revision_id'] or 'base':<36} runs {row['runs']:>6}"
                  f"  errors {rate:>6}  p95 {p95}")
    elif args.command == "threads":
        out = _call(args, "POST", "/deployment/threads/migrate", {
            "to": args.to, "thread_ids": args.thread_ids or None,
            "from_revision": args.from_revision, "dry_run": args.dry_run})
        verb = "would move" if out["dry_run"] else "moved"
        for t in out["moved"]:
            print(f"{verb} {t['thread_id']} from {t['from']} to {out['to']}")
        for t in out["skipped"]:
            print(f"skipped {t['thread_id']}: {t['reason']}")
        print(f"{len(out['moved'])} {verb}, {len(out['skipped'])} skipped", file=sys.stderr)
    elif args.command == "revisions" and args.action == "env":
        values: dict[str, str | None] = {name: None for name in args.unset}
        for item in args.assignments:
            name, sep, value = item.partition("=")
            if not sep:
                print(f"error: expected NAME=VALUE, got {item!r}", file=sys.stderr)
                return 2
            values[name] = value
        if values:
            out = _call(args, "PUT", f"/revisions/{args.revision_id}/env", {"env": values})
            print(f"set {', '.join(out['set'])} on revision {out['revision_id']}")
        else:
            for row in _call(args, "GET", f"/revisions/{args.revision_id}/env"):
                print(json.dumps(row, sort_keys=True))
    return 0


def _summary(dep: dict[str, Any]) -> None:
    current = dep["current_revision_id"] or "base (the server's project)"
    print(f"current: {current}")
    if dep["canary_revision_id"]:
        print(f"canary:  {dep['canary_revision_id']} ({dep['canary_percent']:g}% of new threads)"
              + (f"; auto-rollback {json.dumps(dep['auto_rollback'], sort_keys=True)}"
                 if dep["auto_rollback"] else ""))
