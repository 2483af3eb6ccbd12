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

from videogen_api import catalog
from videogen_api import v1alpha1 as api
from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.tools import tool
from videogen_operator import metrics
from videogen_operator.settings import load_settings

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "videogen-operator"
SHA = "0" * 64
EVERYTHING_ON = (
    "s3.createSecret=true",
    "s3.accessKeyId=a",
    "s3.secretAccessKey=b",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "watchNamespaces={team-a}",
    "networkPolicy.enabled=true",
    "networkPolicy.s3.cidrs={10.20.0.15/32}",
    "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
    "models.hfTokenSecretName=hf-token",
    "models.catalog[0].name=chart-test-wan",
    "models.catalog[0].source=hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "models.catalog[0].revision=main",
    "models.catalog[0].namespaces={team-a}",
    "models.catalog[0].prewarm=true",
    "models.catalog[0].files[0].path=model_index.json",
    f"models.catalog[0].files[0].sha256={SHA}",
    "models.catalog[0].profile.presets.quality.steps=40",
    "models.catalog[1].name=chart-test-s3",
    "models.catalog[1].source=s3://models/wan/tiny",
)
OPERATOR_SA = "videogen-operator"
LOADER_SA = "videogen-model-loader"


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
    shipped = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert shipped == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert {"videogenjobs.yaml", "videogenmodels.yaml", "kopf-peering.yaml"} <= set(shipped)
    for name in shipped:
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
        "Role",
        "RoleBinding",
        "PersistentVolumeClaim",  # the model cache (modelCache.create)
        "VideoGenModel",  # models.catalog
        "NetworkPolicy",
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


def test_examples_pass_the_crds_schema(cluster: DevCluster, videogen_crds: None) -> None:
    """Every manifest in examples/ (models included) as the API server checks it: schema, CEL rules,
    strict field validation."""
    examples = sorted((REPO / "examples").rglob("*.yaml"))
    assert {"wan2-1-t2v-1-3b.yaml", "wan2-2-ti2v-5b.yaml", "text-to-video.yaml"} <= {p.name for p in examples}
    for namespace in ("media-team",):
        if cluster.kubectl("get", "namespace", namespace).returncode != 0:
            assert cluster.kubectl("create", "namespace", namespace).returncode == 0
    for path in examples:
        result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(path))
        assert result.returncode == 0, f"{path}: {result.stderr}"
    # The check has teeth: a model with a revision on an s3:// source is refused by the CRD's CEL rule.
    bad = {
        "apiVersion": "videogen.dev/v1alpha1",
        "kind": "VideoGenModel",
        "metadata": {"name": "bad-example"},
        "spec": {"source": "s3://models/wan", "revision": "main"},
    }
    refused = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bad))
    assert refused.returncode != 0 and "revision applies to hf:// sources only" in refused.stderr


def test_rendered_config_is_what_the_operator_loads(cluster: DevCluster, tmp_path: Path) -> None:
    docs = render(
        cluster,
        "watchNamespaces={team-a,team-b}",
        "queue.maxRunning=3",
        "modelCache.type=hostPath",
        "modelCache.hostPath=/data/models",
        "runner.shmSize=16Gi",
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
    assert settings.runner_shm_size == "16Gi"


def test_model_values_are_what_the_operator_loads(cluster: DevCluster, tmp_path: Path) -> None:
    defaults = _settings(render(cluster), tmp_path / "defaults.yaml")
    # New installs: catalog models only; the loader as values.yaml documents it.
    assert defaults.allow_unlisted_models is False
    assert defaults.model_cache.type == "pvc" and defaults.model_cache.claim_name == "videogen-models"
    assert defaults.model_cache.namespace_claim_name == "videogen-models"
    assert defaults.loader_image is None, "empty repository: the operator uses the runner image"
    assert defaults.loader_command == ["videogen-model-loader"]
    assert defaults.loader_service_account == LOADER_SA
    assert (defaults.loader_cpu_request, defaults.loader_memory_request) == ("1", "2Gi")
    assert defaults.loader_backoff_limit == 2
    assert defaults.hf_token_secret_name is None and defaults.extra_loader_env == {}

    settings = _settings(
        render(
            cluster,
            "models.allowUnlisted=true",
            "models.loader.image.repository=registry.example/loader",
            "models.loader.image.tag=v9",
            "models.loader.command={python,-m,loader}",
            "models.loader.serviceAccountName=fetcher",
            "models.loader.resources.requests.cpu=2",
            "models.loader.resources.requests.memory=8Gi",
            "models.loader.backoffLimit=5",
            "models.loader.extraEnv.HF_ENDPOINT=https://hub.internal",
            "models.hfTokenSecretName=hf-token",
            "modelCache.namespaceClaimName=team-models",
        ),
        tmp_path / "set.yaml",
    )
    assert settings.allow_unlisted_models is True
    assert settings.loader_image == "registry.example/loader:v9"
    assert settings.loader_command == ["python", "-m", "loader"]
    assert settings.loader_service_account == "fetcher"
    assert (settings.loader_cpu_request, settings.loader_memory_request) == ("2", "8Gi")
    assert settings.loader_backoff_limit == 5
    assert settings.extra_loader_env == {"HF_ENDPOINT": "https://hub.internal"}
    assert settings.hf_token_secret_name == "hf-token"
    assert settings.model_cache.namespace_claim_name == "team-models"


def _settings(docs: list[dict[str, Any]], path: Path) -> Any:
    path.write_text(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"])
    return load_settings({"VIDEOGEN_CONFIG_FILE": str(path)})


def test_model_cache_claim_is_created_and_kept_on_uninstall(cluster: DevCluster) -> None:
    (claim,) = [d for d in render(cluster) if d["kind"] == "PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == "videogen-models"
    assert claim["metadata"]["namespace"] == "videogen-system"
    # Helm skips resources with this policy on uninstall and on upgrades that drop them.
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert "storageClassName" not in claim["spec"], "empty: the cluster's default class"

    (named,) = [
        d
        for d in render(cluster, "modelCache.storageClassName=filestore-rwx", "modelCache.size=2Ti")
        if d["kind"] == "PersistentVolumeClaim"
    ]
    assert named["spec"]["storageClassName"] == "filestore-rwx"
    assert named["spec"]["resources"]["requests"]["storage"] == "2Ti"
    (classless,) = [d for d in render(cluster, "modelCache.storageClassName=-") if d["kind"] == "PersistentVolumeClaim"]
    assert classless["spec"]["storageClassName"] == ""

    for sets in (["modelCache.create=false"], ["modelCache.type=hostPath", "modelCache.hostPath=/data/models"]):
        assert not [d for d in render(cluster, *sets) if d["kind"] == "PersistentVolumeClaim"], sets


def test_catalog_values_become_kept_video_gen_models(cluster: DevCluster) -> None:
    models = {d["metadata"]["name"]: d for d in render(cluster, *EVERYTHING_ON) if d["kind"] == "VideoGenModel"}
    assert set(models) == {"chart-test-wan", "chart-test-s3"}
    wan = models["chart-test-wan"]
    assert wan["apiVersion"] == "videogen.dev/v1alpha1" and "namespace" not in wan["metadata"]
    assert wan["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert wan["spec"] == {
        "source": "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "revision": "main",
        "files": [{"path": "model_index.json", "sha256": SHA}],
        "profile": {"presets": {"quality": {"steps": 40}}},
        "namespaces": ["team-a"],
        "prewarm": True,
    }
    assert models["chart-test-s3"]["spec"] == {"source": "s3://models/wan/tiny", "prewarm": False}
    assert not [d for d in render(cluster) if d["kind"] == "VideoGenModel"], "models.catalog is empty by default"


def test_duplicate_catalog_names_are_a_clear_error(cluster: DevCluster) -> None:
    sets = []
    for i in (0, 1):
        sets += ["--set", f"models.catalog[{i}].name=wan", "--set", f"models.catalog[{i}].source=hf://a/b"]
    result = helm(cluster, "template", "v", str(CHART), "--kube-version", "1.35.4", *sets)
    assert result.returncode != 0
    assert "models.catalog[1].name: wan is listed twice" in result.stderr


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a Role or ClusterRole grants."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def role(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    (found,) = [
        d
        for d in docs
        if d["kind"] == kind and d["metadata"]["name"] == name and d["metadata"].get("namespace") == namespace
    ]
    return found


def subjects(docs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> list[tuple[str, str]]:
    binding = role(docs, kind, name, namespace)
    assert binding["roleRef"]["name"] == name
    return [(s["name"], s["namespace"]) for s in binding["subjects"]]


def expand(verbs: str, group: str, *resources: str) -> set[tuple[str, str, str]]:
    return {(group, r, v) for r in resources for v in verbs.split()}


# The catalog's rules (README "Model catalog", "Who may do what").
CATALOG_CLUSTER_RULES = (
    expand("get list watch patch update", "videogen.dev", "videogenmodels")
    | expand("get patch update", "videogen.dev", "videogenmodels/status")
    | expand("update", "videogen.dev", "videogenmodels/finalizers")
    | expand("get list watch create delete", "", "persistentvolumes")
)
JOB_NAMESPACE_CLAIMS = expand("get list watch create", "", "persistentvolumeclaims")
RELEASE_NAMESPACE_RULES = (
    expand("get list watch create delete", "batch", "jobs")
    | expand("get list watch", "", "pods")
    | expand("get list watch create patch delete", "apps", "daemonsets")
    | expand("get list watch", "", "persistentvolumeclaims")
    | expand("create patch", "", "events")
    | expand("create patch", "events.k8s.io", "events")
)


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_catalog_rbac_is_least_privilege_in_both_modes(cluster: DevCluster, mode: str) -> None:
    sets = ["watchNamespaces={team-a,team-b}"] if mode == "namespaced" else []
    docs = render(cluster, *sets)
    operator = grants(role(docs, "ClusterRole", OPERATOR_SA))
    # Models and PersistentVolumes are cluster-scoped: ClusterRole rules in both modes.
    assert operator >= CATALOG_CLUSTER_RULES
    # Events about models go to `default`, where kubectl looks for a cluster-scoped object's Events.
    model_events = expand("create", "", "events")
    if mode == "cluster-wide":
        assert operator >= JOB_NAMESPACE_CLAIMS | model_events
        assert not [d for d in docs if d["metadata"]["name"] == f"{OPERATOR_SA}-model-events"]
    else:
        assert not {g for g in operator if g[1] == "persistentvolumeclaims"}, "namespaced: claims only where watched"
        assert not {g for g in operator if g[1] == "events"}
        for ns in ("team-a", "team-b"):
            assert grants(role(docs, "Role", OPERATOR_SA, ns)) >= JOB_NAMESPACE_CLAIMS
        events = grants(role(docs, "Role", f"{OPERATOR_SA}-model-events", "default"))
        assert events == model_events | expand("create", "events.k8s.io", "events")
        assert subjects(docs, "RoleBinding", f"{OPERATOR_SA}-model-events", "default") == [
            (OPERATOR_SA, "videogen-system")
        ]
    # Never a claim or volume deleted in a job namespace, never a claim updated (running jobs mount them).
    assert not {g for g in operator if g[1] == "persistentvolumeclaims" and g[2] in ("delete", "update", "patch")}
    assert not {g for g in operator if g[1] == "persistentvolumes" and g[2] in ("update", "patch")}
    # Loader and remover Jobs, prewarm DaemonSets, the cache claim and model Events: release namespace only.
    assert grants(role(docs, "Role", f"{OPERATOR_SA}-models", "videogen-system")) == RELEASE_NAMESPACE_RULES
    assert subjects(docs, "RoleBinding", f"{OPERATOR_SA}-models", "videogen-system") == [
        (OPERATOR_SA, "videogen-system")
    ]
    assert not {g for g in operator if g[1] == "daemonsets"}, "DaemonSets only in the release namespace"
    # The loader may read VideoGenModels and write their status; nothing else, nowhere else.
    loader_sa = role(docs, "ServiceAccount", LOADER_SA, "videogen-system")
    assert loader_sa["metadata"]["labels"]["app.kubernetes.io/component"] == "model-loader"
    assert grants(role(docs, "ClusterRole", f"{OPERATOR_SA}-model-loader")) == {
        ("videogen.dev", "videogenmodels", "get"),
        ("videogen.dev", "videogenmodels/status", "get"),
        ("videogen.dev", "videogenmodels/status", "patch"),
    }
    assert subjects(docs, "ClusterRoleBinding", f"{OPERATOR_SA}-model-loader") == [(LOADER_SA, "videogen-system")]
    bound = [
        s
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for s in d["subjects"]
        if s["name"] == LOADER_SA
    ]
    assert len(bound) == 1, "the loader's ServiceAccount has exactly one binding"
    # Tenants may read the catalog (where view is bound cluster-wide) but never write it.
    view = grants(role(docs, "ClusterRole", f"{OPERATOR_SA}-view"))
    assert expand("get list watch", "videogen.dev", "videogenmodels") <= view
    assert not {
        g for g in grants(role(docs, "ClusterRole", f"{OPERATOR_SA}-edit")) if g[1].startswith("videogenmodels")
    }
    # Nothing anywhere reads Secrets or uses wildcards.
    for d in docs:
        if d["kind"] in ("Role", "ClusterRole"):
            for g in grants(d):
                assert "*" not in g, (d["metadata"]["name"], g)
                assert not (g[1] == "secrets" and g[2] in ("get", "list", "watch")), (d["metadata"]["name"], g)


def test_loader_network_policy_allows_dns_s3_api_server_and_the_hub(cluster: DevCluster) -> None:
    sets = (
        "watchNamespaces={team-a}",
        "networkPolicy.enabled=true",
        "networkPolicy.s3.cidrs={10.20.0.15/32}",
        "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        "tenancy.blockedCidrs={10.96.0.0/12}",
    )
    policies = {d["metadata"]["name"]: d for d in render(cluster, *sets) if d["kind"] == "NetworkPolicy"}
    loader = policies[f"{OPERATOR_SA}-model-loader"]
    assert loader["metadata"]["namespace"] == "videogen-system"
    assert loader["spec"]["podSelector"]["matchLabels"] == {
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_COMPONENT: catalog.COMPONENT_LOADER,
    }
    assert loader["spec"]["ingress"] == []
    egress = loader["spec"]["egress"]
    assert egress[0]["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    blocks = [t["ipBlock"] for rule in egress for t in rule["to"] if "ipBlock" in t]
    assert {"10.20.0.15/32", "10.0.0.1/32"} <= {b["cidr"] for b in blocks}
    public = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"169.254.0.0/16", "10.0.0.0/8", "10.96.0.0/12"} <= set(public["except"])
    # The runner's policy is unchanged by the loader's.
    assert policies[f"{OPERATOR_SA}-runner"]["metadata"]["namespace"] == "team-a"

    no_hub = {
        d["metadata"]["name"]: d
        for d in render(cluster, *sets, "networkPolicy.loader.allowPublicHttps=false")
        if d["kind"] == "NetworkPolicy"
    }[f"{OPERATOR_SA}-model-loader"]
    assert "0.0.0.0/0" not in json.dumps(no_hub)
    off = [d for d in render(cluster, *sets, "networkPolicy.loader.enabled=false") if d["kind"] == "NetworkPolicy"]
    assert [d["metadata"]["name"] for d in off] == [f"{OPERATOR_SA}-runner"]


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
        ("modelCache.create=yes", "/modelCache/create", "boolean"),
        ("modelCache.size=lots", "/modelCache/size", "pattern"),
        ("modelCache.storageClassName=Fast_SSD", "/modelCache/storageClassName", "pattern"),
        ("modelCache.accessModes={ReadWriteSometimes}", "/modelCache/accessModes/0", "one of"),
        ("modelCache.namespaceClaimName=Models", "/modelCache/namespaceClaimName", "pattern"),
        ("models.allowUnlisted=maybe", "/models/allowUnlisted", "boolean"),
        ("models.catalog[0].name=Wan_2", "/models/catalog/0/name", "pattern"),
        ("models.catalog[0].source=http://example.com/wan", "/models/catalog/0/source", "pattern"),
        ("models.catalog[0].namespaces={Team_A}", "/models/catalog/0/namespaces/0", "pattern"),
        ("models.catalog[0].files[0].sha256=abc", "/models/catalog/0/files/0/sha256", "pattern"),
        ("models.catalog[0].prewarm=often", "/models/catalog/0/prewarm", "boolean"),
        ("models.catalog[0].source=hf://a/b", "/models/catalog/0", "missing property 'name'"),
        ("models.loader.backoffLimit=-1", "/models/loader/backoffLimit", "minimum"),
        ("models.loader.resources.requests.memory=lots", "/models/loader/resources/requests/memory", "pattern"),
        ("models.loader.resources.limits.memory=8Gi", "/models/loader/resources", "limits"),
        ("models.loader.serviceAccountName=Loader", "/models/loader/serviceAccountName", "pattern"),
        ("models.hfTokenSecretName=HF token", "/models/hfTokenSecretName", "pattern"),
        ("networkPolicy.loader.enabled=sure", "/networkPolicy/loader/enabled", "boolean"),
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
