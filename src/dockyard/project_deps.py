"""How a project's Python dependencies are installed: one plan for the image (`dockyard build`)
and the CI workflow (`dockyard init --ci`), so both install the same things the same way.

A *project directory* is the project root and every local directory among ``dependencies`` in
langgraph.json / dockyard.toml (``"."``, ``"./libs/tools"``). Each is installed from what it
holds, the first that applies:

* ``uv.lock`` (with ``pyproject.toml``): the locked versions (``uv export --frozen --no-dev``,
  with hashes), then the package itself without resolving again (``--no-deps``);
* ``requirements.txt``: ``pip install -r`` (pin it, e.g. with ``pip-compile``), then the package
  if there is one;
* a package (``pyproject.toml`` with ``[project]`` or ``[build-system]``, ``setup.py``,
  ``setup.cfg``): ``pip install DIR``, which resolves its declared dependencies.

Non-path entries of ``dependencies`` (``"langchain-openai>=0.3"``) are pip requirements.
Only files that `dockyard deploy` would bundle count (ignored files are not looked at).
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dockyard import __version__
from dockyard.config import ProjectConfig, _is_path_dependency
from dockyard.errors import ConfigError

# Used only to read uv.lock (`uv export`); pinned so that a build is reproducible.
UV_VERSION = "0.13.9"
PACKAGE_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
TEST_EXTRAS = ("test", "tests", "dev")


@dataclass(frozen=True)
class ProjectDir:
    """One directory to install, ``rel`` relative to the project root (``"."`` for the root)."""

    rel: str
    uv_lock: bool
    requirements: bool
    package: bool
    extras: tuple[str, ...] = ()  # optional-dependency groups, to pick a test extra in CI

    @property
    def spec_files(self) -> list[str]:
        """The files that decide the locked dependencies (copied first, for the build cache)."""
        names = []
        if self.uv_lock:
            names += ["pyproject.toml", "uv.lock"]
        elif self.requirements:
            names.append("requirements.txt")
        return names

    @property
    def test_extra(self) -> str | None:
        return next((e for e in TEST_EXTRAS if e in self.extras), None)


@dataclass(frozen=True)
class DependencyPlan:
    dirs: tuple[ProjectDir, ...]
    requirements: tuple[str, ...]  # non-path `dependencies` entries
    has_tests: bool

    def lock_commands(self, python: str, path_of: dict[str, str], tmp: str,
                      tool_python: str | None = None, *, tests: bool = False) -> list[str]:
        """Shell commands installing what the dirs' locks and requirement files name, and the
        config's requirements: everything that does not need the project's code. ``uv`` goes
        to ``tool_python`` (the image's system Python: it stays out of the runtime venv).
        ``tests`` (CI): a uv lock's dev group and test extra too."""
        cmds: list[str] = []
        if any(d.uv_lock for d in self.dirs):
            cmds.append(f"{tool_python or python} -m pip install uv=={UV_VERSION}")
        for i, d in enumerate(self.dirs):
            path = path_of[d.rel]
            if d.uv_lock:
                out = f"{tmp}/uv-{i}.txt"
                scope = (f" --extra {d.test_extra}" if d.test_extra else "") if tests else " --no-dev"
                cmds.append(f"uv export --project {shlex.quote(path)} --frozen{scope} "
                            f"--no-emit-project --format requirements-txt --output-file {out}")
                cmds.append(f"{python} -m pip install -r {out}")
            elif d.requirements:
                cmds.append(f"{python} -m pip install -r {shlex.quote(path + '/requirements.txt')}")
        if self.requirements:
            cmds.append(f"{python} -m pip install " + " ".join(shlex.quote(r) for r in self.requirements))
        return cmds

    def package_commands(self, python: str, path_of: dict[str, str], *,
                         editable: bool = False, test_extras: bool = False) -> list[str]:
        """Shell commands installing the dirs that are packages (these need the code)."""
        cmds = []
        for d in self.dirs:
            if not d.package:
                continue
            target = path_of[d.rel]
            if test_extras and d.test_extra:
                target += f"[{d.test_extra}]"
            flags = ("--no-deps " if d.uv_lock else "") + ("-e " if editable else "")
            cmds.append(f"{python} -m pip install {flags}{shlex.quote(target)}")
        return cmds


def _is_package(root: Path, rel: str, files: set[str]) -> tuple[bool, tuple[str, ...]]:
    prefix = "" if rel == "." else rel + "/"
    if prefix + "pyproject.toml" in files:
        try:
            doc = tomllib.loads((root / prefix / "pyproject.toml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read pyproject.toml: {exc}",
                              file=str(root / prefix / "pyproject.toml")) from None
        project = doc.get("project")
        extras: tuple[str, ...] = ()
        if isinstance(project, dict) and isinstance(project.get("optional-dependencies"), dict):
            extras = tuple(sorted(project["optional-dependencies"]))
        if isinstance(project, dict) or "build-system" in doc:
            return True, extras
    return any(prefix + f in files for f in ("setup.py", "setup.cfg")), ()


def dependency_plan(project: ProjectConfig, files: list[str]) -> DependencyPlan:
    """The plan for ``project``, whose bundled files (relative POSIX paths) are ``files``."""
    root = project.root.resolve()
    present = set(files)
    rels = ["."]
    for path in project.dependency_paths:
        if not path.is_relative_to(root):
            raise ConfigError(f"dependency directory {str(path)!r} is outside the project; the image "
                              "and `dockyard deploy` hold only the project directory",
                              file=str(project.source), key="dependencies")
        rel = path.relative_to(root).as_posix() or "."
        if rel not in rels:
            rels.append(rel)
    dirs = []
    for rel in rels:
        prefix = "" if rel == "." else rel + "/"
        package, extras = _is_package(root, rel, present)
        uv_lock = prefix + "uv.lock" in present and prefix + "pyproject.toml" in present
        dirs.append(ProjectDir(rel=rel, uv_lock=uv_lock, package=package, extras=extras,
                               requirements=prefix + "requirements.txt" in present))
    requirements = tuple(d for d in project.dependencies if not _is_path_dependency(d))
    has_tests = any(_is_test_file(f) for f in files)
    return DependencyPlan(dirs=tuple(dirs), requirements=requirements, has_tests=has_tests)


def _is_test_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def default_dockyard_requirement() -> str:
    """Dockyard as a pip requirement: this version, from the package index."""
    return f"dockyard=={__version__}"


def python_version(project: ProjectConfig) -> str:
    """langgraph.json's ``python_version`` (``"3.12"``), else 3.11 (Dockyard's minimum)."""
    raw = project.extra.get("python_version", "3.11")
    parts = str(raw).split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"expected a version like \"3.12\", got {raw!r}",
                          file=str(project.source), key="python_version")
    if (int(parts[0]), int(parts[1])) < (3, 11):
        raise ConfigError(f"Dockyard needs Python 3.11 or newer, got {raw!r}",
                          file=str(project.source), key="python_version")
    return str(raw)
