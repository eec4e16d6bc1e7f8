"""``dockyard deploy`` and ``dockyard revisions list``: the client side of /revisions.

Progress goes to stderr, the outcome (revision id and status) to stdout; a refused or failed
deploy exits non-zero with the server's message.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx

from dockyard.bundle import build_archive
from dockyard.config import find_config_file

UPLOAD_CHUNK = 256 * 1024


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add ``deploy`` and ``revisions list``; returns the ``revisions`` subcommands (others
    add theirs: ``revisions env`` is release_cli.py's)."""
    deploy = sub.add_parser("deploy", help="upload the project as a new immutable revision")
    deploy.add_argument("path", nargs="?", default=".", help="project directory")
    deploy.add_argument("-m", "--message", help="what changed (shown in revision listings)")
    _client_flags(deploy)
    revs = sub.add_parser("revisions", help="list the server's revisions")
    rsub = revs.add_subparsers(dest="action", required=True)
    _client_flags(rsub.add_parser("list", help="list revisions, newest first"))
    return rsub


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=os.environ.get("DOCKYARD_URL"),
                   help="the server's URL (DOCKYARD_URL)")
    p.add_argument("--api-key", default=os.environ.get("LANGGRAPH_API_KEY"),
                   help="API key with the developer role (LANGGRAPH_API_KEY)")


def _headers(args: argparse.Namespace) -> dict[str, str]:
    return {"X-Api-Key": args.api_key} if args.api_key else {}


def _git(root: Path, *argv: str) -> str | None:
    try:
        out = subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _error(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:2000]}"
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"HTTP {resp.status_code}: {detail or body}"


def run(args: argparse.Namespace) -> int:
    if not args.server:
        print("error: no server: pass --server URL or set DOCKYARD_URL", file=sys.stderr)
        return 2
    server = args.server.rstrip("/")
    if args.command == "revisions":
        return _list(server, args)
    return _deploy(server, args)


def _deploy(server: str, args: argparse.Namespace) -> int:
    root = Path(args.path).resolve()
    find_config_file(root)  # fail here, not on the server, without langgraph.json/dockyard.toml
    archive = build_archive(root)
    total = len(archive)
    print(f"bundled {root} ({total / 1024:.1f} KiB)", file=sys.stderr)
    headers = {**_headers(args), "Content-Type": "application/gzip",
               "Content-Length": str(total)}
    meta = {"Message": args.message,
            "Author": _git(root, "config", "user.name") or os.environ.get("USER")
            or getpass.getuser(),
            "Git-Commit": _git(root, "rev-parse", "HEAD")}
    for name, value in meta.items():
        if value:
            headers[f"X-Dockyard-{name}"] = quote(value, safe="")

    def body() -> Iterator[bytes]:
        last = -1
        for start in range(0, total, UPLOAD_CHUNK):
            yield archive[start:start + UPLOAD_CHUNK]
            pct = min(100, (start + UPLOAD_CHUNK) * 100 // max(total, 1))
            if pct != last:
                print(f"\ruploading {pct}%", end="", file=sys.stderr, flush=True)
                last = pct
        print(file=sys.stderr)

    try:
        resp = httpx.post(f"{server}/revisions", content=body(), headers=headers,
                          timeout=httpx.Timeout(300.0, connect=10.0))
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {server}: {exc}", file=sys.stderr)
        return 1
    if resp.status_code not in (200, 201):
        print(f"error: deploy refused: {_error(resp)}", file=sys.stderr)
        return 1
    rev = resp.json()
    note = "new" if resp.status_code == 201 else "unchanged: existing revision"
    print(f"revision {rev['revision_id']} {rev['status']} ({note}); graphs: "
          f"{', '.join(rev['graphs']) or 'none'}")
    return 0


def _list(server: str, args: argparse.Namespace) -> int:
    try:
        resp = httpx.get(f"{server}/revisions", headers=_headers(args), timeout=30.0)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {server}: {exc}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(f"error: {_error(resp)}", file=sys.stderr)
        return 1
    for rev in resp.json():
        print(json.dumps(rev, sort_keys=True))
    return 0
