"""Start, wait for, measure and stop the servers that the benchmarks drive.

Shared by ``run_bench.py`` and ``rss_interrupts.py``. Each server runs in its own process group
so that stopping it also stops any worker processes it spawned, and nothing else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
GRAPH_DIR = BENCH_DIR / "graph3"
RESULTS_DIR = BENCH_DIR / "results"
REF_VENV = BENCH_DIR / ".refvenv"
# The venv this script runs from (…/.venv/bin/python → …/.venv/bin).
VENV_BIN = Path(sys.executable).parent

DOCKYARD_PORT = 2025
REFERENCE_PORT = 2026

# Command lines, kept here so they are easy to adjust while the Dockyard CLI takes shape.
# {bin}: the venv's bin dir, {graph_dir}: the folder holding langgraph.json, {port}: the port.
DOCKYARD_CMD = ("{bin}/dockyard", "dev", "{graph_dir}", "--port", "{port}", "--no-reload")
# `langgraph dev` resolves graph paths against its working directory and keeps its state in
# ./.langgraph_api there, so it runs inside a throwaway copy of the graph folder.
REFERENCE_CMD = (
    "{bin}/langgraph",
    "dev",
    "--port",
    "{port}",
    "--no-browser",
    "--no-reload",
    "--config",
    "langgraph.json",
)
QUIET_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}


class ServerError(RuntimeError):
    """A server could not be prepared, started or reached."""


# Servers still running when the script ends (an error, Ctrl-C, SIGTERM) are stopped at exit.
_RUNNING: set[ServerProcess] = set()


def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


# --- memory -------------------------------------------------------------------------------------


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields restart after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _vmrss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # a zombie has no VmRSS line


def rss_bytes(pid: int, include_children: bool = True) -> int:
    """Resident memory of a process (and, by default, all its descendants), in bytes."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if include_children else [])]
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total
    pids = [pid]
    if include_children:
        tree = _children_by_parent()
        stack = [pid]
        while stack:
            for child in tree.get(stack.pop(), []):
                pids.append(child)
                stack.append(child)
    total_kib = 0
    for p in pids:
        with contextlib.suppress(OSError):
            total_kib += _vmrss_kib(p)
    return total_kib * 1024


# --- the reference server's venv -----------------------------------------------------------------


def ensure_ref_venv(venv: Path = REF_VENV) -> Path:
    """Create ``bench/.refvenv`` with ``langgraph-cli[inmem]`` unless it is there already.

    It is separate from the project's venv so that langgraph-api's pins never touch ours. The
    graph runs on the same langgraph release as the in-process floor when pip can arrange it.
    """
    langgraph_bin = venv / "bin" / "langgraph"
    if langgraph_bin.exists():
        return langgraph_bin
    print(f"[reference] creating {venv} (pip install 'langgraph-cli[inmem]' langgraph-sdk) …")
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=False)
    packages = ["langgraph-cli[inmem]", "langgraph-sdk"]
    try:
        pinned = [*packages, f"langgraph=={metadata.version('langgraph')}"]
    except metadata.PackageNotFoundError:
        pinned = packages
    if subprocess.run([*pip, *pinned], check=False).returncode != 0:
        subprocess.run([*pip, *packages], check=True)
    if not langgraph_bin.exists():
        raise ServerError(f"{langgraph_bin} missing after pip install")
    return langgraph_bin


# --- a server process ----------------------------------------------------------------------------


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(eq=False)
class ServerProcess:
    """One server started as a subprocess in its own process group, logging to a file."""

    name: str
    argv: Sequence[str]
    port: int
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    health_path: str = "/ok"  # answers 200 once the server is ready
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, timeout: float) -> None:
        """Start the process and wait until ``GET {health_path}`` answers 200."""
        if port_in_use(self.port):
            raise ServerError(f"port {self.port} is already in use; stop whatever holds it")
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_path or RESULTS_DIR / f"{self.name}.log"
        log = self.log_path.open("wb")
        started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env={**os.environ, **QUIET_ENV, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServerError(f"cannot start {self.argv[0]}: {exc}") from exc
        finally:
            log.close()
        _RUNNING.add(self)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{self.health_path}", timeout=1.0).status_code == 200:
                    self.startup_s = time.perf_counter() - started
                    return
            time.sleep(0.1)
        self.stop()
        raise ServerError(
            f"{self.name} did not answer {self.health_path} within {timeout:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        _RUNNING.discard(self)
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fill(template: Sequence[str], **values: object) -> list[str]:
    return [part.format(**values) for part in template]


def dockyard_server(graph_dir: Path = GRAPH_DIR, port: int = DOCKYARD_PORT) -> ServerProcess:
    """``dockyard dev`` with its data (database, checkpoints) in a throwaway directory."""
    tmp = tempfile.TemporaryDirectory(prefix="dockyard-bench-")
    argv = _fill(DOCKYARD_CMD, bin=VENV_BIN, graph_dir=graph_dir, port=port)
    if not Path(argv[0]).exists() and shutil.which("dockyard"):
        argv[0] = shutil.which("dockyard") or argv[0]
    server = ServerProcess(
        "dockyard", argv, port, cwd=REPO_DIR, env={"DOCKYARD_DATA_DIR": tmp.name}
    )
    server._tmp = tmp
    return server


def reference_server(
    graph_dir: Path = GRAPH_DIR, port: int = REFERENCE_PORT, n_jobs: int | None = None
) -> ServerProcess:
    """``langgraph dev`` from bench/.refvenv, run in a throwaway copy of ``graph_dir``."""
    langgraph_bin = ensure_ref_venv()
    tmp = tempfile.TemporaryDirectory(prefix="langgraph-ref-bench-")
    workdir = Path(tmp.name) / graph_dir.name
    shutil.copytree(graph_dir, workdir, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    argv = _fill(REFERENCE_CMD, bin=langgraph_bin.parent, port=port)
    if n_jobs is not None:
        # `langgraph dev` runs one job at a time unless told otherwise.
        argv += ["--n-jobs-per-worker", str(n_jobs)]
    server = ServerProcess("reference", argv, port, cwd=workdir)
    server._tmp = tmp
    return server
