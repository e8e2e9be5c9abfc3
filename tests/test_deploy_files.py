"""
The shipped deployment files: Prometheus rules and their unit tests
(promtool), the Grafana dashboard, the Dockerfile, compose.yaml and the
Kubernetes manifest.  Each is read the way its tool reads it and checked
against a running daemon: metric names against its /metrics, probe paths
against its routes, and a real Prometheus scrapes it.

promtool and prometheus come from Debian's ``prometheus`` package (.ci/run
installs it); without them these tests skip locally and fail under CI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
import treq
import yaml
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectError
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from openclaw.config import build_config
from tests import wsclient
from tests.daemon import RunningDaemon
from tests.process import free_port

ROOT = Path(__file__).resolve().parent.parent
ETC = ROOT / "etc"
RULES = ETC / "prometheus-rules.yml"
DASHBOARD = ETC / "grafana-dashboard.json"
DRAIN_BUDGET = build_config({}).daemon.drain_timeout
# PromQL names from Prometheus itself, not from the daemon.
PROMETHEUS_NAMES = {"up"}
METRIC_NAME = re.compile(r"\b(?:openclaw|process)_[a-z_]+\b")


def tool(name: str) -> str:
    """The path of ``name``; skipped locally without it, a failure under CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI (Debian package prometheus)")
        pytest.skip(f"{name} is not installed (Debian package prometheus)")
    return path


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text("utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text("utf-8"))["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def exposed_names(text: str) -> set[str]:
    """
    Every series name a ``/metrics`` page can produce: sample names, and
    from ``# TYPE`` lines those of families that have no sample yet (a
    labelled metric nobody used), with a histogram's suffixes.
    """
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {name + suffix for suffix in ("_bucket", "_sum", "_count")}
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group())
    return names


@pytest.fixture
def daemon(tmp_path: Path):
    running = RunningDaemon(str(tmp_path / "home"))
    yield running
    pytest_twisted.blockon(running.stop())


# --- Prometheus rules -------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "prometheus-rules.test.yml"], cwd=ETC, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against a rules file whose OpenclawDown waits longer: they fail."""
    shutil.copy(ETC / "prometheus-rules.test.yml", tmp_path)
    rules = RULES.read_text("utf-8")
    slower = rules.replace("expr: up{job=\"openclaw\"} == 0\n        for: 2m", "expr: up{job=\"openclaw\"} == 0\n        for: 9m")
    assert slower != rules
    (tmp_path / "prometheus-rules.yml").write_text(slower)
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "prometheus-rules.test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0 and "OpenclawDown" in result.stdout + result.stderr


# --- metric names -------------------------------------------------------------


def test_exposed_names_reads_families_without_samples() -> None:
    page = (
        "# HELP a_total x\n# TYPE a_total counter\n"
        "# HELP h x\n# TYPE h histogram\n"
        'g{l="1"} 2.0\n'
    )
    assert exposed_names(page) == {"a_total", "h", "h_bucket", "h_sum", "h_count", "g"}


@pytest_twisted.inlineCallbacks
def test_dashboard_and_rules_use_only_names_a_daemon_exposes(daemon: RunningDaemon) -> None:
    code, _, body = yield daemon.get("/metrics")
    assert code == 200
    exposed = exposed_names(body.decode())
    for source, expressions in (("rules", rule_expressions()), ("dashboard", dashboard_expressions())):
        used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
        assert used, source
        assert used <= exposed, (source, used - exposed)


def test_dashboard_has_the_operator_panels() -> None:
    expressions = dashboard_expressions()
    for wanted in (
        "rate(openclaw_requests_total[5m])", "histogram_quantile(0.95,", "openclaw_active_sessions",
        "openclaw_connector_up", "openclaw_outbox_pending", "openclaw_heartbeat_last_timestamp_seconds",
        "openclaw_check_up", "process_resident_memory_bytes",
    ):
        assert any(wanted in expr for expr in expressions), wanted
    panels = json.loads(DASHBOARD.read_text("utf-8"))["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)


# --- a real Prometheus scraping a daemon -------------------------------------



@pytest.fixture
def prometheus(tmp_path: Path, daemon: RunningDaemon):
    """A Prometheus server scraping ``daemon`` every second, with the shipped rules loaded."""
    binary = tool("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "openclaw", "static_configs": [{"targets": [f"127.0.0.1:{daemon.web_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp_path / "prometheus.log", "wb")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@defer.inlineCallbacks
def poll_json(url: str, done: Any, process: subprocess.Popen, timeout: float = 60.0) -> Any:
    """GET ``url`` until ``done(json)`` holds; fail after ``timeout`` s or if the server exits."""
    deadline = reactor.seconds() + timeout
    while True:
        assert process.poll() is None, f"prometheus exited with {process.returncode}"
        try:
            response = yield treq.get(url, persistent=False)
            document = json.loads((yield response.content()))
            if done(document):
                return document
        except (ConnectError, ValueError):  # not listening yet, or not serving the API yet
            pass
        if reactor.seconds() > deadline:
            raise AssertionError(f"{url}: no answer matching within {timeout:g}s")
        yield deferLater(reactor, 0.2, lambda: None)


@pytest_twisted.inlineCallbacks
def test_a_real_prometheus_scrapes_requests_total(daemon: RunningDaemon, prometheus) -> None:
    base, process = prometheus
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    try:
        yield client.request("ping")
    finally:
        yield client.close()
    query = base + "/api/v1/query?query=" + quote('openclaw_requests_total{type="ping"}')
    answer = yield poll_json(query, lambda doc: doc.get("data", {}).get("result"), process)
    [sample] = answer["data"]["result"]
    assert sample["metric"]["job"] == "openclaw" and sample["metric"]["source"] == "gateway"
    assert float(sample["value"][1]) >= 1
    rules = yield poll_json(f"{base}/api/v1/rules", lambda doc: doc.get("data", {}).get("groups"), process)
    loaded = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
    assert len(loaded) == len(rule_expressions())
    assert all(rule["health"] != "err" for group in rules["data"]["groups"] for rule in group["rules"])


# --- Dockerfile, compose.yaml, Kubernetes --------------------------------------


def dockerfile(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs: comments dropped, ``\\`` continuations joined."""
    instructions = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        if not keyword.isalpha():
            raise ValueError(f"not a Dockerfile instruction: {whole!r}")
        instructions.append((keyword.upper(), arguments.strip()))
    if pending:
        raise ValueError("Dockerfile ends in a continuation")
    return instructions


DOCKERFILE_TEXT = (ROOT / "Dockerfile").read_text("utf-8")
DOCKER = dockerfile(DOCKERFILE_TEXT)


def instruction(name: str) -> list[str]:
    return [arguments for keyword, arguments in DOCKER if keyword == name]


def test_dockerfile_parser_refuses_a_broken_file() -> None:
    assert dockerfile("# c\nFROM x\nRUN a \\\n    b\n") == [("FROM", "x"), ("RUN", "a b")]
    with pytest.raises(ValueError):
        dockerfile("FROM x\nRUN a \\\n")
    with pytest.raises(ValueError):
        dockerfile("FROM x\n--stray\n")


def served(daemon: RunningDaemon, paths: set[str]) -> defer.Deferred:
    """Fires with ``{path: status}`` for GETs of ``paths`` on ``daemon``."""
    @defer.inlineCallbacks
    def get_all():
        codes = {}
        for path in sorted(paths):
            code, _, _ = yield daemon.get(path)
            codes[path] = code
        return codes
    return get_all()


def url_paths(text: str) -> set[str]:
    return set(re.findall(r"http://127\.0\.0\.1:\d+(/[a-z]+)", text))


def listen_ports(args: list[str]) -> dict[str, int]:
    """``--gateway``/``--web`` endpoint ports of a twistd command line; each must listen on all interfaces."""
    ports = {}
    for option in ("--gateway", "--web"):
        endpoint = args[args.index(option) + 1]
        match = re.fullmatch(r"tcp:(\d+):interface=0\.0\.0\.0", endpoint)
        assert match, endpoint
        ports[option[2:]] = int(match.group(1))
    return ports


def docker_cmd() -> list[str]:
    [cmd] = instruction("CMD")
    return json.loads(cmd)


def test_dockerfile_runs_twistd_as_a_non_root_user_with_the_home_as_a_volume() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]
    [user] = instruction("USER")
    assert user not in ("root", "0")
    assert any(re.search(rf"\buseradd [^&]* {user}(\s|$)", run) for run in instruction("RUN"))
    assert any("pip install /tmp/openclaw-src" in run for run in instruction("RUN"))
    assert instruction("STOPSIGNAL") == ["SIGTERM"]
    cmd = docker_cmd()
    assert cmd[:4] == ["twistd", "-n", "--pidfile=", "openclaw"]
    home = cmd[cmd.index("--home") + 1]
    assert json.loads(instruction("VOLUME")[0]) == [home]
    assert any(f"OPENCLAW_HOME={home}" in env for env in instruction("ENV"))
    assert sorted(int(p) for p in instruction("EXPOSE")[0].split()) == sorted(listen_ports(cmd).values())


def test_dockerfile_run_line_outlasts_the_drain_and_caps_memory() -> None:
    """Docker has no stop timeout in the image: the documented `docker run` line carries it."""
    [run] = [line.lstrip("# ").strip() for line in DOCKERFILE_TEXT.splitlines() if line.startswith("#   docker run ")]
    args = shlex.split(run)
    assert int(args[args.index("--stop-timeout") + 1]) > DRAIN_BUDGET
    assert "--memory=512m" in args
    home = docker_cmd()[docker_cmd().index("--home") + 1]
    assert args[args.index("-v") + 1].endswith(f":{home}")


COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text("utf-8"))
KUBERNETES = list(yaml.safe_load_all((ETC / "kubernetes.yaml").read_text("utf-8")))


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_compose_service() -> None:
    service = COMPOSE["services"]["openclaw"]
    assert seconds(service["stop_grace_period"]) > DRAIN_BUDGET
    assert service["stop_signal"] == "SIGTERM"
    assert service["mem_limit"] == "512m"
    assert "/livez" in " ".join(service["healthcheck"]["test"])
    home = docker_cmd()[docker_cmd().index("--home") + 1]
    [volume] = service["volumes"]
    assert volume.split(":")[1] == home and volume.split(":")[0] in COMPOSE["volumes"]
    published = {int(port.rsplit(":", 1)[1]) for port in service["ports"]}
    assert published == set(listen_ports(docker_cmd()).values())
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])


def kubernetes(kind: str) -> dict:
    [document] = [d for d in KUBERNETES if d["kind"] == kind]
    return document


def test_kubernetes_deployment() -> None:
    deployment = kubernetes("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > DRAIN_BUDGET
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["args"] == docker_cmd()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == listen_ports(container["args"])
    assert container["resources"]["limits"]["memory"] == "512Mi"
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/livez" and probes["readinessProbe"]["path"] == "/readyz"
    assert all(probe["port"] == "web" for probe in probes.values())
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts == {docker_cmd()[docker_cmd().index("--home") + 1]}


def test_kubernetes_service_selects_the_pods_and_names_their_ports() -> None:
    deployment = kubernetes("Deployment")
    service = kubernetes("Service")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    names = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} == names
    [claim] = [v["persistentVolumeClaim"]["claimName"] for v in deployment["spec"]["template"]["spec"]["volumes"]]
    assert kubernetes("PersistentVolumeClaim")["metadata"]["name"] == claim


def shipped_paths() -> set[str]:
    """Every HTTP path the Dockerfile, compose.yaml and the manifest send to the daemon."""
    paths = url_paths(DOCKERFILE_TEXT) | url_paths(" ".join(COMPOSE["services"]["openclaw"]["healthcheck"]["test"]))
    [container] = kubernetes("Deployment")["spec"]["template"]["spec"]["containers"]
    paths |= {container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    paths.add(kubernetes("Service")["metadata"]["annotations"]["prometheus.io/path"])
    return paths


@pytest_twisted.inlineCallbacks
def test_shipped_files_name_only_endpoints_the_daemon_serves(daemon: RunningDaemon) -> None:
    paths = shipped_paths()
    assert {"/livez", "/readyz", "/metrics"} <= paths
    codes = yield served(daemon, paths | {"/no-such-endpoint"})
    assert codes.pop("/no-such-endpoint") == 404  # the check can fail
    assert codes == {path: 200 for path in paths}


def healthchecks() -> dict[str, list[str]]:
    """The exec-form health check commands of the Dockerfile and compose.yaml."""
    [docker] = instruction("HEALTHCHECK")
    compose = COMPOSE["services"]["openclaw"]["healthcheck"]["test"]
    assert compose[0] == "CMD"
    return {"Dockerfile": json.loads(docker.split(" CMD ", 1)[1]), "compose.yaml": compose[1:]}


@pytest_twisted.inlineCallbacks
def test_health_checks_pass_on_a_live_daemon_and_fail_without_one(daemon: RunningDaemon) -> None:
    """Each command run as the container would, with the web port pointed at ``daemon`` (or at nothing)."""
    closed = free_port()
    for source, command in healthchecks().items():
        assert command[0] == "python" and ":8080/livez" in command[-1], source
        for port, expected in ((daemon.web_port, 0), (closed, 1)):
            script = command[-1].replace(":8080/", f":{port}/")
            _, _, code = yield getProcessOutputAndValue(sys.executable, [*command[1:-1], script], env=dict(os.environ))
            assert code == expected, (source, port)
