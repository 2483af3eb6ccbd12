"""The Helm chart: lints, renders, and every rendered object is accepted by the
real API server; the ConfigMap it renders is settings the operator loads."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from videogen_devcluster.devcluster import DevCluster
from videogen_operator.settings import load_settings

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "videogen-operator"


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


def test_chart_lints(cluster: DevCluster) -> None:
    result = helm(cluster, "lint", str(CHART), "--kube-version", "1.35.4")
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_crds_are_the_generated_ones() -> None:
    for name in ("videogenjobs.yaml", "kopf-peering.yaml"):
        assert (CHART / "crds" / name).read_text() == (REPO / "crds" / name).read_text(), f"run `make crds` ({name})"


def test_rendered_objects_are_accepted_by_the_api_server(cluster: DevCluster, videogen_crds: None) -> None:
    cluster.kubectl("create", "namespace", "videogen-system")
    docs = render(cluster, "s3.createSecret=true", "s3.accessKeyId=a", "s3.secretAccessKey=b")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRole",  # aggregated into edit/admin
            "ClusterRole",  # aggregated into view
            "ClusterRoleBinding",
            "ConfigMap",
            "Secret",
            "Deployment",
            "ClusterKopfPeering",
        ]
    )
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs))
    assert result.returncode == 0, result.stderr


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
