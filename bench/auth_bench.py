"""Auth and tenancy overhead: the 3-node `runs.wait` p50/p99 with DOCKYARD_AUTH=none vs keys
vs oidc.

    .venv/bin/python bench/auth_bench.py [--n 200] [--rounds 2] [--modes none,keys,oidc]

One `dockyard dev bench/graph3` server per mode, one after the other, each on a fresh data
dir. With keys, a `developer` key of a non-default tenant (made by `dockyard keys create`)
is sent by langgraph_sdk as `x-api-key`; with oidc, an RS256 JWT from a local JWKS server
(tests/oidc_support.py) as `Authorization: Bearer`. Every authenticated run also writes its
audit entry. Rounds alternate the modes so that machine noise hits all alike. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from langgraph_sdk import get_client
from servers import GRAPH_DIR, REPO_DIR, VENV_BIN, ServerProcess
from stats import percentile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


sys.path.insert(0, str(REPO_DIR))  # tests.oidc_support: the local identity provider
from tests.oidc_support import IdentityProvider, oidc_env, serve_idp  # noqa: E402


async def measure(url: str, api_key: str | None, n: int,
                  headers: dict[str, str] | None = None) -> list[float]:
    client = get_client(url=url, api_key=api_key, headers=headers)
    try:
        for _ in range(10):  # warm-up: imports, caches, the key lookup
            t = await client.threads.create()
            await client.runs.wait(t["thread_id"], "graph3", input={"count": 0})
        samples = []
        for _ in range(n):
            t = await client.threads.create()
            started = time.perf_counter()
            await client.runs.wait(t["thread_id"], "graph3", input={"count": 0})
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        await client.aclose()


def run_one(auth: str, n: int) -> list[float]:
    if auth == "oidc":
        with serve_idp(IdentityProvider()) as idp:
            token = idp.token(ttl=3600, org="bench", roles=["developer"])
            return _run_one(auth, n, oidc_env(idp, DOCKYARD_OIDC_TENANT_CLAIM="org"),
                            {"Authorization": f"Bearer {token}"})
    return _run_one(auth, n, {}, None)


def _run_one(auth: str, n: int, extra_env: dict[str, str],
             headers: dict[str, str] | None) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="dockyard-auth-bench-") as tmp:
        env: dict[str, Any] = {"DOCKYARD_DATA_DIR": tmp, "DOCKYARD_AUTH": auth, **extra_env}
        key = None
        admin = [str(VENV_BIN / "dockyard"), "--project", str(GRAPH_DIR), "--data-dir", tmp]
        if auth != "none":
            subprocess.run([admin[0], "tenants", "create", "bench", *admin[1:]], check=True,
                           capture_output=True)
        if auth == "keys":
            key = subprocess.run([admin[0], "keys", "create", "--tenant", "bench", "--role",
                                  "developer", *admin[1:]], check=True, capture_output=True,
                                 text=True).stdout.strip()
        port = free_port()
        server = ServerProcess(
            f"auth-{auth}", [str(VENV_BIN / "dockyard"), "dev", str(GRAPH_DIR), "--port",
                             str(port), "--no-reload"], port, cwd=REPO_DIR, env=env)
        server.start(timeout=60)
        try:
            return asyncio.run(measure(server.url, key, n, headers))
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="none,keys,oidc")
    args = parser.parse_args()
    modes = args.modes.split(",")
    results: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for auth in modes:
            results[auth] += run_one(auth, args.n)
    print("| DOCKYARD_AUTH | runs | p50 ms | p99 ms | mean ms |\n|---|---|---|---|---|")
    for auth, samples in results.items():
        print(f"| {auth} | {len(samples)} | {percentile(samples, 50):.2f} | "
              f"{percentile(samples, 99):.2f} | {statistics.mean(samples):.2f} |")
    for auth in modes:
        if auth != "none" and "none" in results:
            delta = percentile(results[auth], 50) - percentile(results["none"], 50)
            print(f"\n{auth}: added at p50: {delta:+.2f} ms", end="")
    print()


if __name__ == "__main__":
    main()
