"""deploy/: Kubernetes and Cloud Run manifests, validated offline."""

from __future__ import annotations

import json
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from monitor import __version__
from monitor.cli import parser as cli_parser
from monitor.config.loader import parse_config
from monitor.probes import PROBE_KINDS
from monitor.sharding import parse_shard, select
from tests.support.external import needs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
CLOUDRUN = ROOT / "deploy" / "cloudrun"
RULES = ROOT / "config" / "prometheus" / "rules"
GENERATOR = ROOT / "scripts" / "gen_prometheusrule.py"

# Oldest version the StatefulSet supports (the pod-index label) and the newest known.
K8S_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
CORE_KINDS = {"ServiceAccount", "ConfigMap", "StatefulSet", "Service"}
# What docs/deploy-cloud-run.md substitutes with envsubst.
PLACEHOLDERS = {"PROJECT_ID": "my-project", "REGION": "us-central1",
                "CONNECTOR": "run-connector", "IMAGE": "us-docker.pkg.dev/p/r/monitor:0.1.0"}
DOCUMENTED_KINDS = {"http", "tcp", "tls", "burst", "lb", "sql", "journey", "load"}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def k8s_docs() -> dict[str, dict[str, Any]]:
    """Every Kubernetes manifest (not the kustomization), by kind."""
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            doc = load(path)
            docs[doc["kind"]] = doc
    return docs


def registered_kinds() -> set[str]:
    """The probe kinds this build knows (monitor/probes/__init__.py:KINDS)."""
    return set(PROBE_KINDS.names)


def parse_example(text: str, environ: dict[str, str]) -> Any:
    """Load an example config, leaving out kinds not in this build yet (never typos)."""
    raw = yaml.safe_load(text)
    known = registered_kinds()
    unknown = {p["kind"] for p in raw["probes"]} - known
    assert unknown <= DOCUMENTED_KINDS, f"undocumented kinds: {unknown - DOCUMENTED_KINDS}"
    raw["probes"] = [p for p in raw["probes"] if p["kind"] in known]
    return parse_config(yaml.safe_dump(raw), environ, "example", kinds=PROBE_KINDS)


# -- Kubernetes ---------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kind", sorted(CORE_KINDS))
def test_core_kinds_validate(kind: str, version: str) -> None:
    """ServiceAccount, ConfigMap, StatefulSet and Service pass strict schema validation."""
    doc = k8s_docs()[kind]
    kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    """kustomization.yaml names each manifest in the directory, and only those."""
    listed = set(load(K8S / "kustomization.yaml")["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@needs("kubectl", install="kubectl not installed", optional=True)
def test_kustomize_builds() -> None:
    """`kubectl kustomize` renders the directory offline, with the image set."""
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out)]
    assert sorted(kinds) == sorted(k8s_docs())
    statefulset = next(d for d in yaml.safe_load_all(out) if d["kind"] == "StatefulSet")
    image = statefulset["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f"/monitor/monitor:{__version__}")


def _statefulset_args(ordinal: int) -> list[str]:
    """The container's command line as the kubelet expands it for pod `monitor-<ordinal>`."""
    sts = k8s_docs()["StatefulSet"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            assert path == "metadata.labels['apps.kubernetes.io/pod-index']"
            env[var["name"]] = str(ordinal)
    # Kubernetes expands $(VAR) from the container's env in command and args.
    expand = lambda s: re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], s)  # noqa: E731
    assert container["command"] == ["monitor"]
    return [expand(a) for a in container["args"]]


def test_statefulset_replicas_run_their_own_shard() -> None:
    """Pod monitor-i runs `monitor run --shard i/N` with N = spec.replicas."""
    replicas = k8s_docs()["StatefulSet"]["spec"]["replicas"]
    for ordinal in range(replicas):
        args = cli_parser().parse_args(_statefulset_args(ordinal))
        assert args.command == "run"
        assert parse_shard(args.shard) == (ordinal, replicas)


def test_statefulset_shards_partition_the_configmap_probes() -> None:
    """Across the replicas every probe of the shipped config runs exactly once."""
    replicas = k8s_docs()["StatefulSet"]["spec"]["replicas"]
    config = parse_example(k8s_docs()["ConfigMap"]["data"]["monitor.yaml"], {})
    shards = [parse_shard(cli_parser().parse_args(_statefulset_args(i)).shard)
              for i in range(replicas)]
    runs = [p.name for index, count in shards for p in select(config.probes, index, count)]
    assert sorted(runs) == sorted(p.name for p in config.probes)


def test_statefulset_wiring() -> None:
    """Config path, ports, probes and security settings agree with each other and the daemon."""
    docs = k8s_docs()
    sts, svc = docs["StatefulSet"], docs["Service"]
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {v["name"]: v.get("value") for v in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # MONITOR_CONFIG points into the mounted ConfigMap, at a key it has.
    config_dir, config_file = env["MONITOR_CONFIG"].rsplit("/", 1)
    assert mounts["config"] == config_dir
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert config_file in docs["ConfigMap"]["data"]
    # The port the config listens on is the container's port.
    listen = yaml.safe_load(docs["ConfigMap"]["data"]["monitor.yaml"])["server"]["listen"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http-metrics"]
    assert listen.endswith(f":{port}")
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    # Service and pods meet.
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]


def test_servicemonitor_scrapes_the_service_as_job_monitor() -> None:
    """The ServiceMonitor selects the Service by label and port name; job is "monitor"."""
    docs = k8s_docs()
    svc, sm = docs["Service"], docs["ServiceMonitor"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
    # The operator names the job after the Service; the rules select job="monitor".
    assert "jobLabel" not in sm["spec"]
    assert svc["metadata"]["name"] == "monitor"


# -- PrometheusRule -----------------------------------------------------------


def _source_groups() -> list[dict[str, Any]]:
    groups = []
    for path in sorted([*RULES.glob("*.yml"), *RULES.glob("*.yaml")], key=lambda p: p.name):
        doc = yaml.safe_load(path.read_text()) or {}
        groups.extend(doc.get("groups") or [])
    return groups


def test_prometheusrule_is_not_stale() -> None:
    """The committed PrometheusRule and Cloud Run rule file are what the generator
    makes from the rule files now."""
    out = subprocess.run([sys.executable, str(GENERATOR), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr


def test_prometheusrule_carries_every_group() -> None:
    """Its spec.groups are exactly the groups of config/prometheus/rules/, in file order."""
    groups = _source_groups()
    if not groups:
        pytest.skip("no rule files in config/prometheus/rules yet")
    rule = k8s_docs()["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == groups


@needs("promtool", install="apt-get install prometheus")
def test_prometheusrule_passes_promtool(tmp_path: Path) -> None:
    """promtool accepts the PrometheusRule's groups as a rule file."""
    groups = k8s_docs()["PrometheusRule"]["spec"]["groups"]
    if not groups:
        pytest.skip("no rule groups yet")
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    out = subprocess.run(["promtool", "check", "rules", str(rule_file)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_generator_refuses_duplicate_group_names(tmp_path: Path) -> None:
    """Two files defining one group name would clash in one PrometheusRule: exit 2."""
    for name in ("a.yml", "b.yml"):
        (tmp_path / name).write_text(
            "groups:\n  - name: same\n    rules:\n      - record: x\n        expr: vector(1)\n"
        )
    out = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--rules", str(tmp_path),
         "--out", str(tmp_path / "out.yaml"), "--cloudrun-out", str(tmp_path / "cr.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "'same' is defined in both a.yml and b.yml" in out.stderr


def test_generator_skips_promtool_test_files(tmp_path: Path) -> None:
    """A promtool test file (rule_files/tests) next to the rules is not a rule file."""
    (tmp_path / "r.yml").write_text("groups:\n  - name: g\n    rules: []\n")
    (tmp_path / "r.test.yml").write_text("rule_files: [r.yml]\ntests: []\n")
    out = tmp_path / "out.yaml"
    subprocess.run([sys.executable, str(GENERATOR), "--rules", str(tmp_path), "--out", str(out),
                    "--cloudrun-out", str(tmp_path / "cr.yml")],
                   capture_output=True, text=True, timeout=60, check=True)
    assert [g["name"] for g in load(out)["spec"]["groups"]] == ["g"]


# -- Cloud Run ----------------------------------------------------------------


def render(path: Path) -> dict[str, Any]:
    """The manifest after the envsubst step of docs/deploy-cloud-run.md."""
    text = string.Template(path.read_text()).safe_substitute(PLACEHOLDERS)
    return yaml.safe_load(text)


def _values(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in _values(value)]
    if isinstance(node, list):
        return [v for value in node for v in _values(value)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("name", ["service.yaml", "job.yaml"])
def test_cloudrun_placeholders_are_the_documented_ones(name: str) -> None:
    """Only PROJECT_ID, REGION, CONNECTOR and IMAGE are substituted; none is left over."""
    raw = load(CLOUDRUN / name)
    used = {m for v in _values(raw) for m in re.findall(r"\$\{(\w+)\}", v)}
    assert used == set(PLACEHOLDERS)
    assert not [v for v in _values(render(CLOUDRUN / name)) if "${" in v]


def test_cloudrun_service_annotations() -> None:
    """Connector, egress, one instance, CPU always on, internal ingress, gen2."""
    svc = render(CLOUDRUN / "service.yaml")
    assert svc["apiVersion"] == "serving.knative.dev/v1"
    assert svc["kind"] == "Service"
    assert svc["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal"
    notes = svc["spec"]["template"]["metadata"]["annotations"]
    assert notes["autoscaling.knative.dev/minScale"] == "1"
    assert notes["autoscaling.knative.dev/maxScale"] == "1"
    assert notes["run.googleapis.com/cpu-throttling"] == "false"
    assert notes["run.googleapis.com/vpc-access-connector"] == (
        "projects/my-project/locations/us-central1/connectors/run-connector"
    )
    assert notes["run.googleapis.com/vpc-access-egress"] in {"all-traffic", "private-ranges-only"}
    # Annotation values must be strings, or `gcloud run services replace` refuses them.
    assert all(isinstance(v, str) for v in notes.values())


def test_cloudrun_service_containers() -> None:
    """The daemon listens on its containerPort, reads its config from the secret volume,
    and the collector sidecar scrapes that port as job "monitor"."""
    svc = render(CLOUDRUN / "service.yaml")
    spec = svc["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    daemon, collector = containers["monitor"], containers["collector"]
    assert cli_parser().parse_args(daemon["command"][1:] + daemon["args"]).command == "run"
    assert daemon["command"] == ["monitor"]
    port = daemon["ports"][0]["containerPort"]
    assert daemon["startupProbe"]["httpGet"] == {"path": "/-/ready", "port": port}
    assert daemon["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": port}
    assert float(daemon["resources"]["limits"]["cpu"]) >= 1  # < 1 forces CPU throttling
    # Only the ingress container has ports; the sidecar waits for the daemon.
    assert "ports" not in collector
    deps = json.loads(
        svc["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/container-dependencies"]
    )
    assert deps == {"collector": ["monitor"], "rules": ["monitor", "alertmanager"]}
    # Config: MONITOR_CONFIG = mountPath / the secret item's path.
    env = {e["name"]: e for e in daemon["env"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = next(m for m in daemon["volumeMounts"] if m["name"] == "config")
    item = volumes["config"]["secret"]["items"][0]
    assert env["MONITOR_CONFIG"]["value"] == f"{mount['mountPath']}/{item['path']}"
    # Collector config: /etc/rungmp/config.yaml, scraping the daemon's port as job monitor.
    cmount = next(m for m in collector["volumeMounts"] if m["name"] == "collector-config")
    assert cmount["mountPath"].rstrip("/") == "/etc/rungmp"
    assert volumes["collector-config"]["secret"]["items"][0]["path"] == "config.yaml"
    run_monitoring = load(CLOUDRUN / "collector.yaml")
    assert run_monitoring["apiVersion"] == "monitoring.googleapis.com/v1beta"
    assert run_monitoring["kind"] == "RunMonitoring"
    assert run_monitoring["metadata"]["name"] == "monitor"  # the `job` label
    assert [e["port"] for e in run_monitoring["spec"]["endpoints"]] == [str(port)]


def test_cloudrun_rules_sidecar_evaluates_the_shipped_rules_at_the_reference_settings(
        ) -> None:
    """The rules sidecar scrapes the daemon's port as job monitor every 15s with the
    daemon's vantage, evaluates the generated bundle (every shipped group) every
    15s, and alerts the Alertmanager sidecar; the collector scrapes every 15s too."""
    svc = render(CLOUDRUN / "service.yaml")
    spec = svc["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    port = containers["monitor"]["ports"][0]["containerPort"]
    config = load(CLOUDRUN / "prometheus.yml")
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "15s"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "monitor" and job["honor_labels"] is True
    (target,) = job["static_configs"]
    assert target["targets"] == [f"localhost:{port}"]
    example = parse_example((CLOUDRUN / "monitor.yaml").read_text(),
                            {"DB_PASSWORD": "example-secret"})
    assert target["labels"]["vantage"] == example.global_.labels["vantage"]
    run_monitoring = load(CLOUDRUN / "collector.yaml")
    assert [e["interval"] for e in run_monitoring["spec"]["endpoints"]] == ["15s"]

    def mounted(container: str, volume: str) -> Path:
        mount = next(m for m in containers[container]["volumeMounts"] if m["name"] == volume)
        item = volumes[volume]["secret"]["items"][0]["path"]
        return Path(mount["mountPath"]) / item

    args = containers["rules"]["args"]
    assert f"--config.file={mounted('rules', 'rules-config')}" in args
    assert config["rule_files"] == [str(mounted("rules", "rules"))]
    assert load(CLOUDRUN / "rules.yml")["groups"] == _source_groups()
    am_args = containers["alertmanager"]["args"]
    listen = next(a.split("=", 1)[1] for a in am_args if a.startswith("--web.listen-address="))
    am_targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am_targets == [listen.replace("127.0.0.1", "localhost")]
    assert f"--config.file={mounted('alertmanager', 'alertmanager-config')}" in am_args
    assert "--cluster.listen-address=" in am_args
    # The rules' longest window is 6h: the in-memory TSDB keeps more than that.
    assert "--storage.tsdb.retention.time=7h" in args
    assert all("ports" not in containers[n] for n in ("rules", "alertmanager"))


@needs("promtool", install="apt-get install prometheus")
def test_cloudrun_rules_sidecar_config_passes_promtool(tmp_path: Path) -> None:
    """promtool accepts the sidecar's prometheus.yml with the bundle where it is mounted."""
    config = load(CLOUDRUN / "prometheus.yml")
    config["rule_files"] = [str(CLOUDRUN / "rules.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(["promtool", "check", "config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cloudrun_daemon_absent_policy_mirrors_the_absent_rule(tmp_path: Path) -> None:
    """The Cloud Monitoring alerting policy (PromQL condition, fields of the
    AlertPolicy REST resource) pages when the daemon writes nothing, for the
    vantage of monitor.yaml; its query is valid PromQL."""
    policy = json.loads((CLOUDRUN / "daemon-absent-policy.json").read_text())
    assert set(policy) <= {"displayName", "documentation", "combiner", "conditions",
                           "alertStrategy", "severity", "notificationChannels"}
    (condition,) = policy["conditions"]
    promql = condition["conditionPrometheusQueryLanguage"]
    assert set(promql) <= {"query", "duration", "evaluationInterval", "labels", "ruleGroup",
                           "alertRule", "disableMetricValidation"}
    assert promql["labels"]["severity"] == "page"
    assert promql["alertRule"] == "MonitorDaemonAbsent"
    example = parse_example((CLOUDRUN / "monitor.yaml").read_text(),
                            {"DB_PASSWORD": "example-secret"})
    assert f'vantage="{example.global_.labels["vantage"]}"' in promql["query"]
    assert "monitor_build_info" in promql["query"]
    if shutil.which("promtool") is not None:
        rule = tmp_path / "policy.yml"
        rule.write_text(yaml.safe_dump({"groups": [{"name": "policy", "rules": [
            {"alert": "MonitorDaemonAbsent", "expr": promql["query"]}]}]}))
        out = subprocess.run(["promtool", "check", "rules", str(rule)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


def test_cloudrun_job_is_a_gate_without_retries() -> None:
    """The job runs `monitor check` once on the connector: maxRetries 0, one task."""
    job = render(CLOUDRUN / "job.yaml")
    assert job["apiVersion"] == "run.googleapis.com/v1"
    assert job["kind"] == "Job"
    execution = job["spec"]["template"]
    notes = execution["metadata"]["annotations"]
    assert notes["run.googleapis.com/vpc-access-connector"].endswith("/connectors/run-connector")
    assert notes["run.googleapis.com/vpc-access-egress"] in {"all-traffic", "private-ranges-only"}
    assert execution["spec"]["taskCount"] == 1
    task = execution["spec"]["template"]["spec"]
    assert task["maxRetries"] == 0
    container = task["containers"][0]
    args = cli_parser().parse_args(container["command"][1:] + container["args"])
    assert args.command == "check"
    mount = container["volumeMounts"][0]
    item = next(v for v in task["volumes"] if v["name"] == mount["name"])["secret"]["items"][0]
    assert args.config == f"{mount['mountPath']}/{item['path']}"


def test_cloudrun_service_and_job_share_connector_and_identity() -> None:
    """The gate sees what the daemon sees: same connector, egress and service account."""
    svc, job = render(CLOUDRUN / "service.yaml"), render(CLOUDRUN / "job.yaml")
    key = ("run.googleapis.com/vpc-access-connector", "run.googleapis.com/vpc-access-egress")
    s_notes = svc["spec"]["template"]["metadata"]["annotations"]
    j_notes = job["spec"]["template"]["metadata"]["annotations"]
    assert [s_notes[k] for k in key] == [j_notes[k] for k in key]
    assert (svc["spec"]["template"]["spec"]["serviceAccountName"]
            == job["spec"]["template"]["spec"]["template"]["spec"]["serviceAccountName"])


def test_cloudrun_example_config_loads_with_the_env_it_is_given() -> None:
    """deploy/cloudrun/monitor.yaml validates, and every ${VAR} in it is set by both manifests."""
    text = (CLOUDRUN / "monitor.yaml").read_text()
    needed = set(re.findall(r"\$\{(\w+)\}", text))
    svc = render(CLOUDRUN / "service.yaml")
    job = render(CLOUDRUN / "job.yaml")
    svc_env = {e["name"] for e in svc["spec"]["template"]["spec"]["containers"][0]["env"]}
    job_env = {e["name"] for e in job["spec"]["template"]["spec"]["template"]["spec"]
               ["containers"][0]["env"]}
    assert needed <= svc_env
    assert needed <= job_env
    config = parse_example(text, dict.fromkeys(needed, "example-secret"))
    assert config.global_.labels["vantage"]
    assert config.server.listen.endswith(":9469")
