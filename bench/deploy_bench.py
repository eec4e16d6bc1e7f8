"""Deploy and rollback: time from `dockyard deploy` to the first run served by the new revision,
and from `POST /deployment/rollback` to the first run served by the previous one.

    .venv/bin/python bench/deploy_bench.py [--rounds 5] [--requirement tabulate==0.9.0]

One `dockyard dev` server (SQLite, a fresh data dir) on a one-node project. Each deploy
writes a new version of the project (a changed node), runs `dockyard deploy` (bundle, upload,
environment, verification), `dockyard promote`, then creates a thread and waits for a run
until it answers with the new version. Four kinds, measured in one run, side by side:

* no requirements — the revision runs on the server's interpreter;
* cold environment — the revision requires a package the server lacks, its environment cache
  is deleted first, and pip runs with --no-cache-dir (so the package is downloaded from the
  index: this needs the network);
* warm environment — new code with the same requirement: the environment is reused;
* rollback — `POST /deployment/rollback` then a new thread's run, until the previous
  version answers (what a user sees: the next thread runs the old code).

Prints a markdown table of medians (and min/max) in seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from servers import VENV_BIN, ServerProcess

AGENT = '''
from typing import TypedDict
from langgraph.graph import StateGraph, START, END
{imports}
class S(TypedDict, total=False):
    version: str

b = StateGraph(S)
b.add_node("only", lambda s: {{"version": "{version}"}})
b.add_edge(START, "only"); b.add_edge("only", END)
graph = b.compile()
'''


def write(project: Path, version: str, requirement: str | None) -> None:
    project.mkdir(parents=True, exist_ok=True)
    module = requirement.split("=")[0].split("<")[0].split(">")[0] if requirement else None
    (project / "agent.py").write_text(AGENT.format(
        version=version, imports=f"import {module}\n" if module else ""))
    config: dict[str, object] = {"graphs": {"agent": "./agent.py:graph"}}
    if requirement:
        config["dependencies"] = [".", requirement]
    (project / "langgraph.json").write_text(json.dumps(config))


def served_version(c: httpx.Client) -> str:
    tid = c.post("/threads", json={}).json()["thread_id"]
    out = c.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "agent", "input": {}})
    return str(out.json().get("version"))


def wait_for(c: httpx.Client, version: str, started: float, timeout: float = 600) -> float:
    while served_version(c) != version:
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"version {version} never served")
        time.sleep(0.02)
    return time.perf_counter() - started


PHASES: dict[str, list[float]] = {}


def deploy(url: str, project: Path, c: httpx.Client, version: str, kind: str) -> float:
    started = time.perf_counter()
    out = subprocess.run([str(VENV_BIN / "dockyard"), "deploy", "--server", url], cwd=project,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"deploy failed: {out.stderr}")
    uploaded = time.perf_counter()
    revision = out.stdout.split()[1]
    resp = c.post("/deployment/promote", json={"revision_id": revision})
    resp.raise_for_status()
    total = wait_for(c, version, started)
    PHASES.setdefault(f"{kind}: `dockyard deploy` (bundle, upload, env, verify)", []).append(
        uploaded - started)
    PHASES.setdefault(f"{kind}: promote → first run served", []).append(
        total - (uploaded - started))
    return total


def row(name: str, samples: list[float]) -> str:
    return (f"| {name} | {len(samples)} | {statistics.median(samples):.2f} | "
            f"{min(samples):.2f} | {max(samples):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requirement", default="tabulate==0.9.0",
                        help="a small package the server does not have (from the index)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockyard-deploy-bench-") as tmp_name:
        tmp = Path(tmp_name)
        base, data = tmp / "base", tmp / "data"
        write(base, "base", None)
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = ServerProcess(
            "deploy-bench", [str(VENV_BIN / "dockyard"), "dev", str(base), "--port", str(port),
                             "--no-reload"], port, cwd=tmp,
            env={"DOCKYARD_DATA_DIR": str(data),
                 "DOCKYARD_REVISION_PIP_ARGS": "--no-cache-dir --disable-pip-version-check"})
        server.start(timeout=60)
        results: dict[str, list[float]] = {"no requirements": [], "cold environment": [],
                                           "warm environment": [], "rollback": []}
        try:
            with httpx.Client(base_url=server.url, timeout=600) as c:
                n = 0
                for _ in range(args.rounds):
                    for kind in ("no requirements", "cold environment", "warm environment"):
                        n += 1
                        version = f"v{n}"
                        if kind == "cold environment":
                            shutil.rmtree(data / "envs", ignore_errors=True)
                        project = tmp / version
                        write(project, version, None if kind == "no requirements"
                              else args.requirement)
                        results[kind].append(deploy(server.url, project, c, version, kind))
                    previous = f"v{n - 1}"
                    started = time.perf_counter()
                    c.post("/deployment/rollback", json={}).raise_for_status()
                    results["rollback"].append(wait_for(c, previous, started))
        finally:
            server.stop()
    print(f"requirement: {args.requirement}; seconds from `dockyard deploy` (or the rollback "
          "call) to the first run served by that code\n")
    print("| case | n | median s | min s | max s |\n|---|---|---|---|---|")
    for name, samples in results.items():
        print(row(name, samples))
    print("\nphases\n\n| phase | n | median s | min s | max s |\n|---|---|---|---|---|")
    for name, samples in PHASES.items():
        print(row(name, samples))


if __name__ == "__main__":
    main()
