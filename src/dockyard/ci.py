"""``dockyard init --ci github|gitlab``: a CI workflow that installs the project, imports its
graphs the way the server does, runs its tests and, on a push to the main branch, runs
``dockyard deploy`` with the server's URL and an API key from the CI's secrets.

The workflow goes to the git repository's root (``.github/workflows/dockyard.yml`` or
``.gitlab-ci.yml``), with the project's path relative to it, and is never overwritten without
``--force``. Installs follow ``project_deps.py``, the same plan as the image of `dockyard build`.
The YAML is written as text (comments, stable layout); its scalars go through ``_scalar``.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from dockyard import __version__
from dockyard.bundle import collect_files
from dockyard.config import load_project
from dockyard.errors import InvalidInput
from dockyard.project_deps import (
    DependencyPlan,
    default_dockyard_requirement,
    dependency_plan,
    python_version,
)

TARGETS = {"github": ".github/workflows/dockyard.yml", "gitlab": ".gitlab-ci.yml"}
# Imports every graph with the server's own loader: fails the job with the loader's message.
CHECK_GRAPHS = ("python -c \"import sys; from pathlib import Path; "
                "from dockyard.runtime.verify import verify; r = verify(Path('.')); "
                "print(r); sys.exit('error' in r)\"")
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
# Resolved to a bool, null or number by YAML 1.1 / 1.2 readers if left plain.
_TYPED = re.compile(r"(?i)y|n|yes|no|true|false|on|off|null|~|[-+]?(\.?[0-9][0-9_.:eE+-]*|"
                    r"0x[0-9a-f_]+|0o?[0-7_]+|\.inf|\.nan)")


def _scalar(value: str) -> str:
    """A YAML scalar for ``value`` in block context: plain when that reads back as the same
    string, else single-quoted."""
    plain = (value != "" and value[0] not in _INDICATORS and value == value.strip()
             and ": " not in value and " #" not in value and not value.endswith(":")
             and not any(c in value for c in "\n\t\r") and not _TYPED.fullmatch(value))
    return value if plain else "'" + value.replace("'", "''") + "'"


def repo_root(path: Path) -> Path | None:
    """The git work tree holding ``path`` (the nearest ancestor with ``.git``), if any."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def install_commands(plan: DependencyPlan, dockyard_req: str, *, tests: bool) -> list[str]:
    """Shell commands (run in the project directory) that install Dockyard and the project."""
    paths = {d.rel: "." if d.rel == "." else "./" + d.rel for d in plan.dirs}
    cmds = ["python -m pip install --upgrade pip",
            f"python -m pip install {_shell_word(dockyard_req)}"]
    cmds += plan.lock_commands("python", paths, "/tmp", tests=tests)
    cmds += plan.package_commands("python", paths, editable=True, test_extras=tests)
    if tests and plan.has_tests:
        cmds.append("python -m pip install pytest")
    return cmds


def _shell_word(word: str) -> str:
    return shlex.quote(word)


def _header(kind: str, branch: str) -> list[str]:
    return [
        f"# Dockyard: install and test the project; on a push to {branch}, deploy it as a new",
        f"# revision. Written by `dockyard init --ci {kind}` (Dockyard {__version__}); edit freely:",
        "# it is not rewritten without --force. Secrets (CI settings): DOCKYARD_URL, the server's",
        "# URL, and DOCKYARD_API_KEY, a key with the developer role",
        "# (`dockyard keys create --tenant T --role developer`).",
    ]


def render_github(plan: DependencyPlan, *, project_dir: str, branch: str, python: str,
                  dockyard_req: str) -> str:
    def steps(lines: list[str], indent: str) -> list[str]:
        return [indent + ln for ln in lines]

    setup = [
        "- uses: actions/checkout@v4",
        "- uses: actions/setup-python@v5",
        "  with:",
        f"    python-version: '{python}'",  # quoted: 3.10 would be the number 3.1
    ]
    defaults = [] if project_dir == "." else [
        "    defaults:", "      run:", f"        working-directory: {_scalar(project_dir)}"]
    test_steps = [*setup, "- name: Install the project", "  run: |",
                  *("    " + c for c in install_commands(plan, dockyard_req, tests=True)),
                  "- name: Import the graphs", "  run: |", "    " + CHECK_GRAPHS]
    if plan.has_tests:
        test_steps += ["- name: Run the tests", "  run: python -m pytest"]
    deploy_steps = [*setup, "- name: Install Dockyard",
                    f"  run: python -m pip install {_scalar(_shell_word(dockyard_req))}",
                    "- name: Deploy",
                    "  env:",
                    "    DOCKYARD_URL: ${{ secrets.DOCKYARD_URL }}",
                    "    LANGGRAPH_API_KEY: ${{ secrets.DOCKYARD_API_KEY }}",
                    "    # Through the environment, never pasted into the script (injection).",
                    "    DEPLOY_MESSAGE: ${{ github.event.head_commit.message }}",
                    "    USER: ${{ github.actor }}",
                    "  run: dockyard deploy . -m \"$DEPLOY_MESSAGE\""]
    lines = [
        *_header("github", branch),
        "name: dockyard",
        "",
        "on:",
        "  push:",
        f"    branches: [{_scalar(branch)}]",
        "  pull_request:",
        "",
        "permissions:",
        "  contents: read",
        "",
        "jobs:",
        "  test:",
        "    runs-on: ubuntu-latest",
        *defaults,
        "    steps:",
        *steps(test_steps, "      "),
        "",
        "  deploy:",
        "    needs: test",
        "    if: " + _scalar(f"github.event_name == 'push' && github.ref == 'refs/heads/{branch}'"),
        "    runs-on: ubuntu-latest",
        "    # One deploy at a time, in push order; a running deploy is never cancelled.",
        "    concurrency:",
        "      group: dockyard-deploy",
        "      cancel-in-progress: false",
        *defaults,
        "    steps:",
        *steps(deploy_steps, "      "),
    ]
    return "\n".join(lines) + "\n"


def render_gitlab(plan: DependencyPlan, *, project_dir: str, branch: str, python: str,
                  dockyard_req: str) -> str:
    cd = [] if project_dir == "." else [f"cd {_shell_word(project_dir)}"]
    test_script = [*cd, *install_commands(plan, dockyard_req, tests=True), CHECK_GRAPHS]
    if plan.has_tests:
        test_script.append("python -m pytest")
    deploy_script = [*cd, f"python -m pip install {_shell_word(dockyard_req)}",
                     # The image has no git, so the commit goes into the message.
                     'dockyard deploy . -m "$CI_COMMIT_SHORT_SHA $CI_COMMIT_TITLE"']
    lines = [
        *_header("gitlab", branch),
        "stages:",
        "  - test",
        "  - deploy",
        "",
        "default:",
        f"  image: {_scalar(f'python:{python}-slim')}",
        "",
        "test:",
        "  stage: test",
        "  script:",
        *("    - " + _scalar(c) for c in test_script),
        "",
        "deploy:",
        "  stage: deploy",
        "  rules:",
        "    - if: " + _scalar(f'$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == "{branch}"'),
        "  # One deploy at a time, in pipeline order.",
        "  resource_group: dockyard-deploy",
        "  variables:",
        "    LANGGRAPH_API_KEY: $DOCKYARD_API_KEY",
        "    USER: $GITLAB_USER_LOGIN",
        "  script:",
        *("    - " + _scalar(c) for c in deploy_script),
    ]
    return "\n".join(lines) + "\n"


def write_workflow(path: Path, kind: str, *, branch: str = "main", force: bool = False,
                   dockyard_req: str | None = None) -> Path:
    """Write the ``kind`` workflow for the project at ``path``; returns the file written."""
    project = load_project(path)
    root = project.root.resolve()
    repo = repo_root(root) or root
    target = repo / TARGETS[kind]
    if target.exists() and not force:
        raise InvalidInput(f"{target} exists; pass --force to overwrite it")
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch):
        raise InvalidInput(f"--branch {branch!r}: expected a branch name")
    plan = dependency_plan(project, collect_files(root))
    render = render_github if kind == "github" else render_gitlab
    text = render(plan, project_dir=root.relative_to(repo).as_posix() or ".", branch=branch,
                  python=python_version(project),
                  dockyard_req=dockyard_req or default_dockyard_requirement())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="write a CI workflow: test, and deploy on push to main")
    p.add_argument("path", nargs="?", default=".", help="project directory")
    p.add_argument("--ci", required=True, choices=sorted(TARGETS),
                   help="github: .github/workflows/dockyard.yml; gitlab: .gitlab-ci.yml")
    p.add_argument("--branch", default="main", help="the branch whose pushes deploy (main)")
    p.add_argument("--force", action="store_true", help="overwrite an existing workflow file")
    p.add_argument("--dockyard", metavar="REQUIREMENT",
                   help=f"how CI installs Dockyard (default: {default_dockyard_requirement()})")


def run(args: argparse.Namespace) -> int:
    try:
        target = write_workflow(Path(args.path), args.ci, branch=args.branch, force=args.force,
                                dockyard_req=args.dockyard)
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    where = "repository secrets" if args.ci == "github" else "CI/CD variables (masked)"
    print(f"wrote {target}\nnext: add the {where} DOCKYARD_URL and DOCKYARD_API_KEY "
          f"(a developer key), then push to {args.branch}")
    return 0
