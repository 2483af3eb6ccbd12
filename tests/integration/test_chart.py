"""The Helm chart: lints, renders, and every rendered object is accepted by the
real API server; the ConfigMap it renders is settings the operator loads."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.tools import tool
from videogen_operator import metrics
from videogen_operator.settings import load_settings

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "videogen-operator"
EVERYTHING_ON = (
    "s3.createSecret=true",
    "s3.accessKeyId=a",
    "s3.secretAccessKey=b",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "watchNamespaces={team-a}",
)


def helm(devcluster: DevCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(devcluster.binaries.helm), *args], capture_output=True, text=True, env=devcluster.env(), check=False
    )


def render(devcluster: DevCluster, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "videogen", str(CHART), "--namespace", "videogen-system", "--kube-version", "1.35.4"]
    for s in sets:
        args += ["--set", s]
    result = helm(devcluster, *args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_chart_lints_strictly(cluster: DevCluster) -> None:
    for sets in ([], ["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"]):
        args = ["lint", "--strict", str(CHART), "--kube-version", "1.35.4"]
        for s in sets:
            args += ["--set", s]
        result = helm(cluster, *args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_chart_crds_are_the_generated_ones() -> None:
    for name in ("videogenjobs.yaml", "kopf-peering.yaml"):
        assert (CHART / "crds" / name).read_text() == (REPO / "crds" / name).read_text(), f"run `make crds` ({name})"


def test_rendered_objects_are_accepted_by_the_api_server(cluster: DevCluster, videogen_crds: None) -> None:
    cluster.kubectl("create", "namespace", "videogen-system")
    cluster.kubectl("create", "namespace", "team-a")
    docs = render(cluster, *EVERYTHING_ON)
    kinds = {d["kind"] for d in docs}
    assert kinds >= {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "KopfPeering",  # namespaced mode (watchNamespaces): one per watched namespace
        "ServiceMonitor",
        "PrometheusRule",
    }
    # Every object whose API this cluster serves is checked against the pinned API's schema by
    # the API server itself (strict field validation: an unknown or misspelt field fails).
    # The monitoring.coreos.com kinds are not served here; promtool checks the rules below.
    served = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(served)
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == len(served), result.stdout


def test_rendered_config_is_what_the_operator_loads(cluster: DevCluster, tmp_path: Path) -> None:
    docs = render(
        cluster,
        "watchNamespaces={team-a,team-b}",
        "queue.maxRunning=3",
        "modelCache.type=hostPath",
        "modelCache.hostPath=/data/models",
    )
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(config)
    settings = load_settings({"VIDEOGEN_CONFIG_FILE": str(path)})
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.max_running == 3
    assert settings.model_cache.type == "hostPath" and settings.model_cache.host_path == "/data/models"
    assert settings.runner_image == "ghcr.io/videogen/videogen-runner:0.1.0"
    assert settings.metrics_port == 8081


def test_deployment_is_one_replica_recreate_with_liveness(cluster: DevCluster) -> None:
    deployment = next(d for d in render(cluster) if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_missing_required_value_is_a_clear_error(cluster: DevCluster) -> None:
    result = helm(cluster, "template", "v", str(CHART), "--kube-version", "1.35.4", "--set", "modelCache.type=hostPath")
    assert result.returncode != 0
    assert "modelCache.hostPath is required" in result.stderr


@pytest.mark.parametrize(
    ("setting", "key", "why"),
    [
        ("queue.maxRunning=lots", "/queue/maxRunning", "integer"),
        ("modelCache.type=nfs", "/modelCache/type", "one of"),
        ("operator.metricsPort=70000", "/operator/metricsPort", "maximum"),
        ("runner.memoryRequest=huge", "/runner/memoryRequest", "pattern"),
        ("jobs.ttlSecondsAfterFinished=120", "/jobs/ttlSecondsAfterFinished", "minimum"),
        ("tenancy.cacheScope=everyone", "/tenancy/cacheScope", "one of"),
        ("queue.namespaceSharePercent=150", "/queue/namespaceSharePercent", "maximum"),
        ("watchNamespaces={Team_A}", "/watchNamespaces/0", "pattern"),
        ("s3.endpoint=s3.example.com", "/s3/endpoint", "pattern"),
        ("metrics.prometheusRule.failureRatio=2", "/metrics/prometheusRule/failureRatio", "maximum"),
        ("queue.maxRuning=3", "/queue", "maxRuning"),
    ],
)
def test_values_schema_rejects_bad_values_naming_the_key(cluster: DevCluster, setting: str, key: str, why: str) -> None:
    result = helm(cluster, "template", "v", str(CHART), "--kube-version", "1.35.4", "--set", setting)
    assert result.returncode != 0, f"{setting} was accepted"
    line = next((ln for ln in result.stderr.splitlines() if f"'{key}'" in ln), "")
    assert line and why in line, result.stderr


def test_alert_rules_pass_promtool(cluster: DevCluster, tmp_path: Path) -> None:
    rule = next(d for d in render(cluster, *EVERYTHING_ON) if d["kind"] == "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # And the check has teeth: the same rules with one expression broken are refused.
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("sum by (namespace)", "sum by (namespace", 1))
    refused = subprocess.run(
        [str(tool("promtool")), "check", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert refused.returncode != 0 and "parse error" in refused.stdout + refused.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {
        "VideoGenJobFailureRatioHigh",
        "VideoGenQueueWaitHigh",
        "VideoGenReconcileErrors",
        "VideoGenJobsStuck",
    }
    assert _unknown_metrics(" ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])) == set()


def test_dashboard_is_a_sidecar_configmap_over_real_metrics(cluster: DevCluster) -> None:
    cm = next(d for d in render(cluster) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["videogen-operator.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs and _unknown_metrics(" ".join(exprs)) == set()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_service_monitor_scrapes_the_metrics_service(cluster: DevCluster) -> None:
    docs = render(cluster, *EVERYTHING_ON)
    service = next(d for d in docs if d["kind"] == "Service")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == "metrics" and "metrics" in ports


def _unknown_metrics(promql: str) -> set[str]:
    """videogen_* names in `promql` that the operator does not export."""
    exported = set()
    for family in metrics.REGISTRY.collect():
        exported |= {s.name for s in family.samples} | {family.name}
    # Histogram series exist once observed; their names come from the family.
    for name in list(exported):
        exported |= {f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_total"}
    return {n for n in re.findall(r"videogen_[a-z_]+", promql) if n not in exported}
