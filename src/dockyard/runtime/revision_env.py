"""A revision's files and Python environment on this machine.

Files: the stored archive unpacked (with ``bundle.unpack``'s checks) under
``<data dir>/revisions/<revision id>/project``. Environment: a virtualenv of the revision's
requirements under ``<data dir>/envs/<key>``, where the key hashes the requirements, the
interpreter version and the pip arguments — revisions with the same dependencies share one
environment, and a warm deploy installs nothing. A revision without requirements runs on the
server's interpreter (still in worker processes of its own).

The environment is layered over the server's: a ``.pth`` file adds the server's site-packages
*after* the venv's own, so Dockyard and LangGraph come from the server and the revision's
requirements — installed only where the server lacks them or pins another version — shadow
them. A requirement that conflicts with Dockyard's own dependencies can therefore break the
revision's workers (verification then fails and the revision never serves).

Both steps build in a temporary directory and rename into place, under a file lock, so
concurrent processes on one machine build once and never see half a build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

from dockyard.bundle import unpack
from dockyard.config import load_project
from dockyard.errors import DockyardError

PIP_TIMEOUT_SECONDS = 600.0
READY = ".dockyard-ready"


class EnvBuildFailed(DockyardError):
    """The revision's requirements could not be installed."""

    code = "revision_env_failed"
    status = 422


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def materialize(archive: bytes, root: Path, revision_id: str, *, max_bytes: int,
                max_files: int) -> Path:
    """The revision's project directory, unpacked once per machine."""
    dest = root / revision_id
    project = dest / "project"
    if (dest / READY).exists():
        return project
    with _locked(root / f"{revision_id}.lock"):
        if (dest / READY).exists():
            return project
        tmp = Path(tempfile.mkdtemp(prefix=f"{revision_id}.", dir=root))
        try:
            with tempfile.NamedTemporaryFile(dir=tmp, suffix=".tar.gz") as fh:
                fh.write(archive)
                fh.flush()
                (tmp / "project").mkdir()
                unpack(Path(fh.name), tmp / "project", max_bytes=max_bytes, max_files=max_files)
            (tmp / READY).touch()
            if dest.exists():  # a half-built leftover of a crashed process
                shutil.rmtree(dest)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return project


def requirements(project_dir: Path) -> list[str]:
    """The revision's requirements: package specs among langgraph.json's ``dependencies``,
    plus, for each local directory among them, its ``requirements.txt`` lines and its
    ``pyproject.toml`` ``[project].dependencies`` (local directories themselves go on
    ``sys.path``, as for the server's own project)."""
    project = load_project(project_dir)
    out: list[str] = []
    for dep in project.dependencies:
        if not dep.startswith((".", "/", "~")) and "/" not in dep:
            out.append(dep)
    for path in project.dependency_paths:
        req = path / "requirements.txt"
        if req.is_file():
            for line in req.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                if line.startswith("-"):
                    raise EnvBuildFailed(
                        f"{req.relative_to(project.root)}: pip options ({line.split()[0]}) are "
                        "not supported in a revision's requirements; set "
                        "DOCKYARD_REVISION_PIP_ARGS on the server instead")
                out.append(line)
        pyproject = path / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise EnvBuildFailed(f"{pyproject.relative_to(project.root)}: {exc}") from exc
            deps = data.get("project", {}).get("dependencies", [])
            out.extend(d for d in deps if isinstance(d, str))
    return sorted(dict.fromkeys(out))


def env_key(reqs: list[str], pip_args: str) -> str:
    raw = json.dumps({"requirements": reqs, "python": sys.version, "pip": pip_args})
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def build_env(reqs: list[str], root: Path, *, pip_args: str = "",
              progress: Callable[[str], None] | None = None) -> str:
    """The interpreter to run the revision with: the server's when it has no requirements,
    otherwise its venv's (built, or found in the cache)."""
    if not reqs:
        return sys.executable
    key = env_key(reqs, pip_args)
    dest = root / key
    python = dest / "bin" / "python"
    if (dest / READY).exists():
        if progress:
            progress(f"environment {key[:12]} found in the cache")
        return str(python)
    with _locked(root / f"{key}.lock"):
        if (dest / READY).exists():
            if progress:
                progress(f"environment {key[:12]} built meanwhile by another process")
            return str(python)
        if progress:
            progress(f"building environment {key[:12]} ({len(reqs)} requirements)")
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=root))
        try:
            _create_venv(tmp)
            cmd = [sys.executable, "-m", "pip", "--python", str(tmp / "bin" / "python"),
                   "install", "--disable-pip-version-check", "--no-input", "--quiet",
                   *shlex.split(pip_args), *reqs]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=PIP_TIMEOUT_SECONDS, check=False)
            except subprocess.TimeoutExpired as exc:
                raise EnvBuildFailed(f"installing the requirements took longer than "
                                     f"{PIP_TIMEOUT_SECONDS:g}s") from exc
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip()[-3000:]
                raise EnvBuildFailed(f"installing the requirements {reqs} failed: {tail}")
            (tmp / READY).touch()
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(python)


def _create_venv(path: Path) -> None:
    """A venv without pip (the server's pip installs into it with ``--python``) whose
    site-packages ends with the server's."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True, timeout=120)
    purelib = Path(subprocess.run(
        [str(path / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    server_sites = [p for p in dict.fromkeys([*site.getsitepackages(),
                                              sysconfig.get_paths()["purelib"]])
                    if os.path.isdir(p)]
    # addsitedir (not a bare path line) so the server's own .pth files — an editable
    # install of Dockyard among them — are processed too; appended, so the venv's win.
    lines = [f"import site; site.addsitedir({p!r})" for p in server_sites]
    (purelib / "_dockyard_server.pth").write_text("\n".join(lines) + "\n")
