"""Run the official ``langgraph-sdk`` integration suite against Dockyard (a CI gate).

    python tests/sdk_suite/run.py [--mode embedded|production|both] [--keep]

1. Fetches the source distribution of the ``langgraph-sdk`` version installed here (pinned in
   pyproject.toml's ``dev`` extra: the one place the pin lives) with
   ``pip download --no-deps --no-binary :all:``, cached under ``.cache/sdk-suite/``.
2. Serves its ``integration/langgraph.json`` graphs with Dockyard:
   ``embedded`` — ``dockyard dev`` (SQLite, one process);
   ``production`` — ``dockyard serve`` + ``dockyard worker`` on PostgreSQL and Redis
   (a fresh database; ``DOCKYARD_TEST_POSTGRES_URL`` / ``DOCKYARD_TEST_REDIS_URL`` or the
   local defaults).
3. Runs ``pytest tests/integration -o addopts="" -m integration`` from the sdist with
   ``LANGGRAPH_INTEGRATION_URL`` pointing at it, and fails unless every collected test passed:
   the suite skips itself entirely when ``GET /ok`` fails, so a skip is a failure here.

One adaptation, made by a pytest plugin rather than by editing the suite:
``tests/integration/test_remote_graph_v3.py`` hard-codes ``URL = "http://localhost:2024"``
instead of reading ``LANGGRAPH_INTEGRATION_URL`` like the rest of the suite; the plugin points
that constant at the same server. (Port 2024 is not free on every machine.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "sdk-suite"
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"[sdk-suite] {msg}", flush=True)


def fetch_sdist(version: str) -> Path:
    """The extracted sdist directory of langgraph-sdk ``version``."""
    target = CACHE / f"langgraph_sdk-{version}"
    if (target / "tests" / "integration").is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"downloading the langgraph-sdk=={version} source distribution …")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"langgraph-sdk=={version}", "-d", str(CACHE)],
        check=True,
    )
    archives = sorted(CACHE.glob(f"langgraph_sdk-{version}.tar.gz"))
    if not archives:
        raise SystemExit(f"pip download gave no langgraph_sdk-{version}.tar.gz in {CACHE}")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(CACHE, filter="data")
    if not (target / "tests" / "integration").is_dir():
        raise SystemExit(f"{target} has no tests/integration: not the expected sdist layout")
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, procs: list[subprocess.Popen[bytes]], logs: list[Path],
            timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, path in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise SystemExit(f"{proc.args!r} exited early:\n{path.read_text()}")
        try:
            if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"Dockyard did not answer {url}/ok within {timeout:.0f}s")


def start(mode: str, project: Path, workdir: Path) -> tuple[str, list[subprocess.Popen[bytes]],
                                                            list[Path], dict[str, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DOCKYARD_PORT": str(port), "DOCKYARD_LOG_FORMAT": "text"}
    extra: dict[str, str] = {}
    if mode == "embedded":
        env["DOCKYARD_DATA_DIR"] = str(workdir / "data")
        cmds = [[str(BIN / "dockyard"), "dev", "--no-reload", str(project)]]
    else:
        import psycopg

        admin = os.environ.get("DOCKYARD_TEST_POSTGRES_URL",
                               "postgresql://postgres@127.0.0.1:5432/postgres")
        name = f"dockyard_sdk_suite_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        extra["database"] = name
        extra["admin"] = admin
        base, _, _ = admin.rpartition("/")
        env["DOCKYARD_DATABASE_URL"] = f"{base}/{name}"
        env["DOCKYARD_REDIS_URL"] = os.environ.get("DOCKYARD_TEST_REDIS_URL",
                                                   "redis://127.0.0.1:6379/0")
        subprocess.run([str(BIN / "dockyard"), "migrate", str(project)], env=env, check=True,
                       cwd=workdir)
        cmds = [[str(BIN / "dockyard"), "serve", str(project), "--insecure"],
                [str(BIN / "dockyard"), "worker", str(project), "--insecure"]]
    procs, logs = [], []
    for i, cmd in enumerate(cmds):
        path = workdir / f"{mode}-{i}.log"
        logs.append(path)
        procs.append(subprocess.Popen(cmd, env=env, cwd=workdir, stdout=path.open("wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
    wait_ok(url, procs, logs)
    return url, procs, logs, extra


def stop(procs: list[subprocess.Popen[bytes]], extra: dict[str, str]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if extra.get("database"):
        import psycopg

        with psycopg.connect(extra["admin"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{extra["database"]}" WITH (FORCE)')


def run_suite(sdist: Path, url: str, report: Path) -> tuple[int, dict[str, int]]:
    env = {**os.environ, "LANGGRAPH_INTEGRATION_URL": url,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "pytest", "tests/integration", "-o", "addopts=", "-m",
           "integration", "-p", "suite_url", "-p", "no:cacheprovider", "-q",
           "--timeout", "60", f"--junitxml={report}"]
    rc = subprocess.run(cmd, cwd=sdist, env=env).returncode
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if report.exists():
        suite = ET.parse(report).getroot()
        suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
        if suite is not None:
            for key in counts:
                counts[key] = int(suite.get(key, 0))
    return rc, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("embedded", "production", "both"), default="both")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    version = metadata.version("langgraph-sdk")
    sdist = fetch_sdist(version)
    project = sdist / "integration"
    modes = ("embedded", "production") if args.mode == "both" else (args.mode,)
    failed = []
    for mode in modes:
        workdir = CACHE / f"run-{mode}-{uuid.uuid4().hex[:6]}"
        workdir.mkdir(parents=True)
        log(f"{mode}: starting Dockyard on {project}")
        url, procs, logs, extra = start(mode, project, workdir)
        try:
            log(f"{mode}: running langgraph-sdk=={version} tests/integration against {url}")
            rc, counts = run_suite(sdist, url, workdir / "report.xml")
        finally:
            stop(procs, extra)
        passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        log(f"{mode}: {passed} passed, {counts['failures'] + counts['errors']} failed, "
            f"{counts['skipped']} skipped of {counts['tests']}")
        if rc != 0 or counts["tests"] == 0 or passed != counts["tests"]:
            failed.append(mode)
            for path in logs:
                log(f"--- tail of {path.name} ---")
                print("\n".join(path.read_text(errors="replace").splitlines()[-60:]))
        elif not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        log(f"FAILED in: {', '.join(failed)} (every test must pass; a skip counts as a failure)")
        return 1
    log("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
