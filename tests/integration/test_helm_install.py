"""The chart installed the way a platform team installs it: `helm install` into a cluster that
has never seen VideoGenJobs (the CRDs come from the chart), the operator's Deployment pod
running on the node under the chart's ServiceAccount and RBAC, real jobs through it in
cluster-wide and namespaced mode, `helm upgrade` taking effect, `helm uninstall` leaving only
what the README says.

The cluster is a fresh one of this module's own (the session's already has the CRDs). One
install per mode, a few tiny jobs each, to stay inside CI's time budget.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from argocd_capture import Capture
from media_checks import check_output
from operator_support import BUCKET, TINY_I2V, TINY_T2V, Jobs, tiny_job
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.operator_process import free_port, upload_model_dir
from videogen_devcluster.procs import pid_alive
from videogen_devcluster.testing import unique_name
from videogen_operator.catalog import COMPONENT_PREWARM, prewarm_name
from videogen_operator.manifests import RUNNER_RBAC_NAME

# The operator pod reads its ConfigMap and ServiceAccount token at their mount paths.
pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow, pytest.mark.mounts]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "videogen-operator"
RELEASE = "videogen"
OPERATOR_NS = "videogen-system"
SA = "videogen-operator"
LOADER_SA = "videogen-model-loader"
SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=videogen-operator"
CHILD_KINDS = "jobs,pods,serviceaccounts,roles,rolebindings,secrets,configmaps"
RUNNER_RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")
CACHE_CLAIM = "videogen-models"  # the chart's modelCache.claimName and namespaceClaimName
# What `make demo` registers: the tiny pipelines, by family, and their VideoGenModels.
DEMO_MODELS = {
    "wan-t2v": REPO / "examples" / "models" / "demo" / "tiny-wan-t2v.yaml",
    "wan-i2v": REPO / "examples" / "models" / "demo" / "tiny-wan-i2v.yaml",
}


class Release:
    """One Helm release of the chart in the module's cluster."""

    def __init__(self, dc: DevCluster, values: dict[str, Any], values_dir: Path) -> None:
        self.dc = dc
        self.values = values
        self.values_dir = values_dir
        self.metrics_port = int(values["operator"]["metricsPort"])
        self.installed = False
        self.namespaces: list[str] = []  # namespaced mode: [watched, unwatched]
        self.models: list[str] = []  # VideoGenModels from models.catalog

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.dc.binaries.helm), *args], capture_output=True, text=True, env=self.dc.env(), check=False
        )

    def _values_file(self, extra: dict[str, Any] | None) -> Path:
        path = self.values_dir / f"values-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(_merge(self.values, extra or {})))
        return path

    def install(self) -> None:
        result = self.helm(
            "install", RELEASE, str(CHART), "-n", OPERATOR_NS, "--create-namespace",
            "-f", str(self._values_file(None)), "--wait", "--timeout", "180s",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr + self.operator_log()
        self.installed = True

    def upgrade(self, extra: dict[str, Any]) -> None:
        self.values = _merge(self.values, extra)
        result = self.helm(
            "upgrade", RELEASE, str(CHART), "-n", OPERATOR_NS,
            "-f", str(self._values_file(None)), "--wait", "--timeout", "180s",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr + self.operator_log()

    def uninstall(self) -> None:
        if self.installed:
            result = self.helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait", "--timeout", "120s")
            assert result.returncode == 0, result.stdout + result.stderr
            self.installed = False

    def operator_pods(self) -> list[dict[str, Any]]:
        out = self.dc.kubectl("get", "pods", "-n", OPERATOR_NS, "-l", SELECTOR, "-o", "json")
        return list(json.loads(out.stdout)["items"]) if out.returncode == 0 else []

    def operator_pod(self) -> dict[str, Any]:
        running = [
            p
            for p in self.operator_pods()
            if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        assert len(running) == 1, [p["metadata"]["name"] for p in self.operator_pods()]
        return running[0]

    def operator_log(self) -> str:
        node = self.dc.gpu_node
        if node is None:
            return ""
        logs = sorted((node.logs_dir / OPERATOR_NS).glob("*/operator.log"))
        return "".join(f"\n--- {p}\n{p.read_text(errors='replace')[-6000:]}" for p in logs)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        # Pods on the local node share the host's loopback, as pods share their pod IP.
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as rsp:
            text = rsp.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def helm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A cluster of this module's own, without the CRDs: the chart brings them."""
    with DevCluster(tmp_path_factory.mktemp("helm-cluster"), gpus=2, keep_state=False) as dc:
        assert dc.kubectl("get", "crd", "videogenjobs.videogen.dev").returncode != 0
        dc.s3_client().create_bucket(Bucket=BUCKET)
        yield dc


def base_values(dc: DevCluster, model_cache: Path | None) -> dict[str, Any]:
    """The release's values. With `model_cache`, a hostPath cache holding the tiny models and
    `models.allowUnlisted`, so jobs name them by URI; without, the chart's own catalog defaults
    (`modelCache.type: pvc`, the chart's claim, catalog models only)."""
    assert dc.s3 is not None
    s3 = dc.s3.env()
    metrics_port = free_port()
    values: dict[str, Any] = {
        "operator": {"livenessPort": free_port(), "metricsPort": metrics_port},
        "metrics": {"service": {"port": metrics_port}},
        "s3": {
            "endpoint": dc.s3.endpoint_url,
            "bucket": BUCKET,
            "createSecret": True,
            "accessKeyId": s3["AWS_ACCESS_KEY_ID"],
            "secretAccessKey": s3["AWS_SECRET_ACCESS_KEY"],
        },
        # The local node has this machine's CPUs and memory; GPU nodes get the chart's defaults.
        "runner": {"cpuRequest": "100m", "memoryRequest": "256Mi"},
        "models": {"loader": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}},
    }
    if model_cache is not None:
        values["modelCache"] = {"type": "hostPath", "hostPath": str(model_cache)}
        values["models"]["allowUnlisted"] = True
    return values


def publish_demo_models(dc: DevCluster, model_cache: Path, namespace: str) -> list[dict[str, Any]]:
    """The demo's VideoGenModels (examples/models/demo/) as `models.catalog` entries, their pipelines
    uploaded where those examples say (a platform team's model store in the bucket). The text-to-video
    model is prewarmed; the image-to-video one is allowed in `namespace` only."""
    entries = []
    for family, example in DEMO_MODELS.items():
        manifest = yaml.safe_load(example.read_text())
        bucket, _, prefix = manifest["spec"]["source"].removeprefix("s3://").partition("/")
        upload_model_dir(dc, model_cache / "build" / family, prefix, bucket)
        entries.append({"name": manifest["metadata"]["name"], **manifest["spec"]})
    entries[0]["prewarm"] = True
    entries[1]["namespaces"] = [namespace]
    return entries


def make_namespace(dc: DevCluster, prefix: str) -> str:
    name = unique_name(prefix)
    assert dc.kubectl("create", "namespace", name).returncode == 0
    return name


def put_input_image(dc: DevCluster, namespace: str) -> str:
    image = io.BytesIO()
    Image.new("RGB", (96, 96), (40, 120, 200)).save(image, format="PNG")
    # A namespace's jobs read s3:// images only below its own prefix (README: Multi-tenant clusters).
    key = f"videogen/{namespace}/inputs/first-frame.png"
    dc.s3_client().put_object(Bucket=BUCKET, Key=key, Body=image.getvalue())
    return f"s3://{BUCKET}/{key}"


def run_both_tasks(
    dc: DevCluster, namespace: str, release: Release, t2v: str = TINY_T2V, i2v: str = TINY_I2V
) -> dict[str, dict[str, Any]]:
    """A text-to-video and an image-to-video job through the installed operator, outputs decoded;
    `t2v` and `i2v` are the models (URIs, or catalog names)."""
    jobs = Jobs(dc, namespace)
    prompt = f"a confidential storyboard for {namespace}"
    image = put_input_image(dc, namespace)
    jobs.apply(tiny_job("t2v", model=t2v, seed=5, prompt=prompt))
    jobs.apply(tiny_job("i2v", model=i2v, task="image-to-video", image=image, seed=6, prompt=prompt))
    statuses = {}
    for name in ("t2v", "i2v"):
        status = jobs.wait_phase(name, "Succeeded", "Failed", timeout=300)
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1) + release.operator_log()
        check_output(dc.s3_client(), status, frames=9)
        assert status["gpuSeconds"] > 0, status
        statuses[name] = status
    assert_prompt_never_at_info(dc, namespace, prompt)
    return statuses


def assert_prompt_never_at_info(dc: DevCluster, namespace: str, prompt: str) -> None:
    """On the real logs of the operator pod and the runner pods: a prompt is never logged at INFO
    (the operator does not log it at all)."""
    assert dc.gpu_node is not None
    operator_logs = sorted((dc.gpu_node.logs_dir / OPERATOR_NS).glob("*/operator.log"))
    runner_logs = sorted((dc.gpu_node.logs_dir / namespace).glob("*/runner.log"))
    assert operator_logs and len(runner_logs) >= 2, (operator_logs, runner_logs)
    for path in operator_logs:
        lines = path.read_text(errors="replace").splitlines()
        assert any(json.loads(ln).get("level") == "INFO" for ln in lines if ln.startswith("{")), "no INFO lines at all?"
        assert not [ln for ln in lines if prompt in ln], f"{path} logs the prompt"
    for path in runner_logs:
        text = path.read_text(errors="replace")
        assert " INFO " in text, f"{path}: expected the runner's INFO lines"
        assert not [ln for ln in text.splitlines() if prompt in ln and " INFO " in ln], (
            f"{path} logs the prompt at INFO"
        )


def can_i(dc: DevCluster, who: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i` as a ServiceAccount of the release; `resource` may be `plural.group:subresource`."""
    resource, _, subresource = resource.partition(":")
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{OPERATOR_NS}:{who}"]
    args += ["-n", namespace] if namespace else []
    args += ["--subresource", subresource] if subresource else []
    result = dc.kubectl(*args)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def assert_catalog_rights(dc: DevCluster, job_namespace: str, unwatched: str | None) -> None:
    """The model catalog's rights of the installed chart (README, "Who may do what"), in either mode."""
    models = "videogenmodels.videogen.dev"
    operator = {
        ("patch", f"{models}:status", None): True,
        ("update", f"{models}:finalizers", None): True,
        ("watch", models, None): True,
        ("create", models, None): False,
        ("delete", models, None): False,
        ("create", "persistentvolumes", None): True,
        ("delete", "persistentvolumes", None): True,
        ("create", "persistentvolumeclaims", job_namespace): True,
        ("delete", "persistentvolumeclaims", job_namespace): False,
        ("get", "persistentvolumeclaims", OPERATOR_NS): True,
        ("create", "jobs.batch", OPERATOR_NS): True,
        ("create", "daemonsets.apps", OPERATOR_NS): True,
        ("create", "daemonsets.apps", job_namespace): False,
        ("create", "events", OPERATOR_NS): True,
        ("create", "events", "default"): True,  # Events about VideoGenModels
        ("get", "secrets", OPERATOR_NS): False,
        ("list", "storageclasses.storage.k8s.io", None): False,
    }
    if unwatched:
        operator[("create", "persistentvolumeclaims", unwatched)] = False
    for (verb, resource, where), expected in operator.items():
        assert can_i(dc, SA, verb, resource, where) is expected, (SA, verb, resource, where)
    loader = {
        ("get", models, None): True,
        ("patch", f"{models}:status", None): True,
        ("patch", models, None): False,
        ("list", models, None): False,
        ("get", "secrets", OPERATOR_NS): False,
        ("create", "pods", OPERATOR_NS): False,
        ("patch", "videogenjobs.videogen.dev:status", job_namespace): False,
    }
    for (verb, resource, where), expected in loader.items():
        assert can_i(dc, LOADER_SA, verb, resource, where) is expected, (LOADER_SA, verb, resource, where)


def managed_children(dc: DevCluster) -> list[str]:
    out = dc.kubectl(
        "get", CHILD_KINDS, "-A", "-l", f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}", "-o", "json"
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [
        f"{i['kind']}/{i['metadata']['namespace']}/{i['metadata']['name']}" for i in json.loads(out.stdout)["items"]
    ]


def chart_objects_left(dc: DevCluster) -> list[str]:
    out = dc.kubectl(
        "get", "deployments,pods,services,configmaps,secrets,serviceaccounts,clusterroles,clusterrolebindings,"
        "clusterkopfpeerings,kopfpeerings", "-A", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def assert_uninstalled_cleanly(dc: DevCluster, release: Release, namespaces: list[str]) -> None:
    pods = release.operator_pods()
    pids = [
        pid
        for p in pods
        for pid in (dc.gpu_node.pids(OPERATOR_NS, p["metadata"]["name"]) if dc.gpu_node else {}).values()
    ]
    release.uninstall()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (chart_objects_left(dc) or any(pid_alive(p) for p in pids)):
        time.sleep(0.5)
    assert chart_objects_left(dc) == []
    assert not [p for p in pids if pid_alive(p)], "the operator's process outlived its pod"
    # What stays, as the README says: the CRDs, the VideoGenJobs and their videos.
    assert dc.kubectl("get", "crd", "videogenjobs.videogen.dev").returncode == 0
    for ns in namespaces:
        assert Jobs(dc, ns).get("t2v")["status"]["phase"] == "Succeeded"
    # The jobs' own children (runner Job, grant Secret) go with the VideoGenJobs (owner references):
    # delete them and what the operator made is left only as the README names it, the runner
    # ServiceAccount/Role/RoleBinding made once per namespace. No Secret at all: no credential
    # was ever copied into a job namespace.
    for ns in namespaces:
        assert dc.kubectl("delete", "vgj", "--all", "-n", ns, "--wait=true", "--timeout=60s").returncode == 0
    shared = sorted(f"{kind}/{ns}/{RUNNER_RBAC_NAME}" for ns in namespaces for kind in RUNNER_RBAC_KINDS)
    deadline = time.monotonic() + 90

    def left_in_these_namespaces() -> list[str]:
        return sorted(c for c in managed_children(dc) if c.split("/")[1] in namespaces)

    left = left_in_these_namespaces()
    while time.monotonic() < deadline and left != shared:
        time.sleep(1)
        left = left_in_these_namespaces()
    assert left == shared, left


# --------------------------------------------------------------------------- cluster-wide


@pytest.fixture(scope="class")
def clusterwide(
    helm_cluster: DevCluster, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    release = Release(helm_cluster, base_values(helm_cluster, model_cache), tmp_path_factory.mktemp("values"))
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


class TestClusterWide:
    namespaces: list[str] = []

    def test_install_brings_crds_and_runs_the_operator_pod_under_the_charts_identity(
        self, helm_cluster: DevCluster, clusterwide: Release
    ) -> None:
        dc = helm_cluster
        crd = json.loads(dc.kubectl("get", "crd", "videogenjobs.videogen.dev", "-o", "json").stdout)
        shipped = yaml.safe_load((CHART / "crds" / "videogenjobs.yaml").read_text())
        assert crd["spec"]["versions"][0]["schema"] == shipped["spec"]["versions"][0]["schema"]
        pod = clusterwide.operator_pod()
        assert dc.gpu_node is not None
        assert pod["spec"]["nodeName"] == dc.gpu_node.name
        assert pod["spec"]["serviceAccountName"] == SA
        # It talks to the API server with that ServiceAccount's token, not an admin kubeconfig.
        env = {e["name"] for e in pod["spec"]["containers"][0].get("env") or []}
        assert "KUBECONFIG" not in env
        can = dc.kubectl(
            "auth", "can-i", "patch", "videogenjobs/status", f"--as=system:serviceaccount:{OPERATOR_NS}:{SA}"
        )
        assert can.stdout.strip() == "yes"
        assert_catalog_rights(dc, job_namespace="default", unwatched=None)
        pid = dc.gpu_node.container_pid(OPERATOR_NS, pod["metadata"]["name"], "operator")
        assert pid is not None and pid_alive(pid)
        environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        assert "KUBECONFIG" not in environ and environ.get("KUBERNETES_SERVICE_HOST")

    def test_both_tasks_succeed_and_metrics_count_them(self, helm_cluster: DevCluster, clusterwide: Release) -> None:
        dc = helm_cluster
        namespace = make_namespace(dc, "helm-cw")
        TestClusterWide.namespaces.append(namespace)
        capture = Capture(dc.binaries.kubectl, dc.env(), namespace)
        jobs = Jobs(dc, namespace)
        jobs.apply(tiny_job("held", suspend=True))
        jobs.apply(tiny_job("missing", model="hf://videogen-demo/not-in-the-cache", retries=0))
        statuses = run_both_tasks(dc, namespace, clusterwide)
        assert jobs.wait_phase("missing", "Failed", "Succeeded", timeout=120)["reason"] == "ModelNotFound"
        assert jobs.wait_phase("held", "Queued")["reason"] == "Suspended"
        # Every state those jobs went through, judged by the Argo CD health script in gopher-lua.
        healths = {c["health"] for c in capture.check()}
        assert healths >= {"Progressing", "Suspended", "Healthy", "Degraded"}, healths

        samples = clusterwide.scrape()
        assert value(samples, "videogen_jobs", namespace=namespace, phase="Succeeded") == 2
        assert value(samples, "videogen_jobs", namespace=namespace, phase="Failed") == 1
        assert value(samples, "videogen_jobs", namespace=namespace, phase="Queued") == 1
        finished = {k: v for k, v in samples.items() if k[0] == "videogen_jobs_finished_total" and v}
        reasons = {n: s.get("reason") for n, s in statuses.items()}
        assert (
            value(samples, "videogen_jobs_finished_total", namespace=namespace, result="Succeeded", reason="Succeeded")
            == 2
        ), (finished, reasons)
        assert (
            value(samples, "videogen_jobs_finished_total", namespace=namespace, result="Failed", reason="ModelNotFound")
            == 1
        )
        for status, model in ((statuses["t2v"], tiny_job("x")["spec"]["model"]), (statuses["i2v"], TINY_I2V)):
            assert value(samples, "videogen_job_run_seconds_count", model=model, result="Succeeded") == 1
            assert value(samples, "videogen_job_queue_wait_seconds_count", model=model, result="Succeeded") == 1
            assert value(samples, "videogen_gpu_seconds_total", namespace=namespace, model=model) == pytest.approx(
                status["gpuSeconds"]
            )
        assert value(samples, "videogen_admission_wait_seconds_count") == 3
        assert value(samples, "videogen_api_requests_total", verb="patch", code="200") > 0
        assert value(samples, "videogen_api_requests_total", verb="create", code="201") > 0
        assert not [k for k in samples if k[0] == "videogen_reconcile_errors_total" and samples[k] > 0]
        # No label names a job.
        assert not [k for k in samples if k[0].startswith("videogen_") and any(n == "name" for n, _ in k[1])]
        # The chart's Service selects the operator pod and exposes the metrics port by name.
        svc = json.loads(dc.kubectl("get", "svc", f"{SA}-metrics", "-n", OPERATOR_NS, "-o", "json").stdout)
        assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
        pod_labels = clusterwide.operator_pod()["metadata"]["labels"]
        assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())

    def test_upgrade_with_changed_values_takes_effect(self, helm_cluster: DevCluster, clusterwide: Release) -> None:
        dc = helm_cluster
        before = clusterwide.operator_pod()["metadata"]["uid"]
        clusterwide.upgrade({"jobs": {"ttlSecondsAfterFinished": 900}, "runner": {"extraEnv": {"UPGRADE_MARK": "v2"}}})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = clusterwide.operator_pods()
            if [p["metadata"]["uid"] for p in pods] and before not in [p["metadata"]["uid"] for p in pods]:
                break
            time.sleep(0.5)
        after = clusterwide.operator_pod()
        assert after["metadata"]["uid"] != before, "a changed ConfigMap must roll the operator pod"
        namespace = TestClusterWide.namespaces[0]
        jobs = Jobs(dc, namespace)
        jobs.apply(tiny_job("after-upgrade", seed=7))
        status = jobs.wait_phase("after-upgrade", "Succeeded", "Failed", timeout=300)
        assert status["phase"] == "Succeeded", json.dumps(status, indent=1) + clusterwide.operator_log()
        job = next(
            j for j in jobs.runner_jobs() if j["metadata"]["annotations"]["videogen.dev/owner"] == "after-upgrade"
        )
        assert job["spec"]["ttlSecondsAfterFinished"] == 900
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env.get("UPGRADE_MARK") == "v2"

    def test_uninstall_leaves_only_crds_jobs_and_videos(self, helm_cluster: DevCluster, clusterwide: Release) -> None:
        videos = [o["Key"] for o in helm_cluster.s3_client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        assert_uninstalled_cleanly(helm_cluster, clusterwide, TestClusterWide.namespaces)
        after = [o["Key"] for o in helm_cluster.s3_client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        assert after == videos


# --------------------------------------------------------------------------- namespaced, catalog defaults


@pytest.fixture(scope="class")
def namespaced(
    helm_cluster: DevCluster, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """Namespaced mode with the chart's model-catalog defaults: `modelCache.type: pvc` (the chart
    creates the claim), `models.allowUnlisted: false`, and the demo's models from `models.catalog`
    (their loaders bind the claim, which `helm install --wait` waits for)."""
    dc = helm_cluster
    watched, other = make_namespace(dc, "helm-ns"), make_namespace(dc, "helm-other")
    catalog = publish_demo_models(dc, model_cache, watched)
    values = _merge(base_values(dc, None), {"watchNamespaces": [watched], "models": {"catalog": catalog}})
    assert "modelCache" not in values and "allowUnlisted" not in values["models"], "the chart's defaults"
    release = Release(dc, values, tmp_path_factory.mktemp("values"))
    rendered = release.helm(
        "template",
        RELEASE,
        str(CHART),
        "-n",
        OPERATOR_NS,
        "--kube-version",
        "1.35.4",
        "-f",
        str(release._values_file(None)),
    )
    assert rendered.returncode == 0, rendered.stderr
    if not any(
        d and d.get("kind") == "KopfPeering" and d["metadata"].get("namespace") == watched
        for d in yaml.safe_load_all(rendered.stdout)
    ):
        # kopf's namespaced peering object; created here until the chart makes it (issue 9).
        peering = {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "videogen-operator", "namespace": watched},
        }
        assert dc.kubectl("apply", "-f", "-", input=yaml.safe_dump(peering)).returncode == 0
    release.namespaces = [watched, other]
    release.models = [m["name"] for m in catalog]
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


def kubectl_json(dc: DevCluster, *args: str) -> Any:
    result = dc.kubectl(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_model_ready(dc: DevCluster, name: str, release: Release, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    model: dict[str, Any] = {}
    while time.monotonic() < deadline:
        model = kubectl_json(dc, "get", "videogenmodel", name)
        status = model.get("status") or {}
        if status.get("phase") in ("Ready", "Failed") and status.get("observedGeneration") == model["metadata"].get(
            "generation"
        ):
            break
        time.sleep(0.5)
    assert (model.get("status") or {}).get("phase") == "Ready", json.dumps(model, indent=1) + release.operator_log()
    return model


def operator_made(dc: DevCluster, kinds: str, namespace: str) -> list[str]:
    """What the operator made in `namespace` (its managed-by label), as Kind/name."""
    found = kubectl_json(
        dc, "get", kinds, "-n", namespace, "-l", f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
    )  # fmt: skip
    return sorted(f"{i['kind']}/{i['metadata']['name']}" for i in found["items"])


class TestNamespaced:
    def test_watched_namespace_runs_both_tasks_on_catalog_models_and_others_are_left_alone(
        self, helm_cluster: DevCluster, namespaced: Release
    ) -> None:
        dc = helm_cluster
        watched, other = namespaced.namespaces
        t2v, i2v = namespaced.models
        assert_catalog_rights(dc, job_namespace=watched, unwatched=other)
        for name in namespaced.models:
            wait_model_ready(dc, name, namespaced)
        Jobs(dc, other).apply(tiny_job("t2v", model=t2v, seed=8))
        statuses = run_both_tasks(dc, watched, namespaced, t2v=t2v, i2v=i2v)
        # Named by catalog name, each ran the revision the catalog serves (it is in the spec hash).
        for job, name in (("t2v", t2v), ("i2v", i2v)):
            model = kubectl_json(dc, "get", "videogenmodel", name)["status"]
            spec = api.VideoGenJobSpec.model_validate(Jobs(dc, watched).get(job)["spec"])
            identity = api.ModelIdentity(model["revision"], model["digest"])
            assert statuses[job]["specHash"] == api.spec_hash(spec, identity)
        # A URI is refused with the chart's default models.allowUnlisted: false.
        Jobs(dc, watched).apply(tiny_job("by-uri", model=TINY_T2V))
        refused = Jobs(dc, watched).wait_phase("by-uri", "Failed", "Succeeded", timeout=60)
        assert refused["reason"] == "ModelNotAllowed", refused
        assert Jobs(dc, other).status("t2v") == {}, "a namespace the operator does not watch must stay untouched"
        samples = namespaced.scrape()
        assert value(samples, "videogen_jobs", namespace=watched, phase="Succeeded") == 2
        assert not [k for k in samples if k[0] == "videogen_jobs" and dict(k[1]).get("namespace") == other]

    def test_the_catalog_runs_under_the_charts_identities_and_reaches_the_namespace_read_only(
        self, helm_cluster: DevCluster, namespaced: Release
    ) -> None:
        dc = helm_cluster
        node = dc.gpu_node
        assert node is not None
        watched, other = namespaced.namespaces
        # The chart's claim, bound by the first loader pod (the default class binds on first use).
        claim = kubectl_json(dc, "get", "pvc", CACHE_CLAIM, "-n", OPERATOR_NS)
        assert claim["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["status"]["phase"] == "Bound"
        shared = kubectl_json(dc, "get", "pv", claim["spec"]["volumeName"])
        for name in namespaced.models:
            model = kubectl_json(dc, "get", "videogenmodel", name)
            assert model["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
            loader = model["status"]["loaderJob"]
            job = kubectl_json(dc, "get", "job", loader, "-n", OPERATOR_NS)
            assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
            (pod,) = kubectl_json(dc, "get", "pods", "-n", OPERATOR_NS, "-l", f"job-name={loader}")["items"]
            # The loader ran under the chart's loader ServiceAccount, with the operator's S3 Secret,
            # writing the chart's claim; its progress patches on the model's status were allowed.
            assert pod["spec"]["serviceAccountName"] == LOADER_SA
            container = pod["spec"]["containers"][0]
            assert container["envFrom"] == [{"secretRef": {"name": "videogen-s3", "optional": True}}]
            cache = next(v for v in pod["spec"]["volumes"] if v["name"] == "model-cache")
            assert cache["persistentVolumeClaim"]["claimName"] == CACHE_CLAIM
            log = node.logs(OPERATOR_NS, pod["metadata"]["name"], container["name"])
            assert "downloading" in log, log
            assert "progress write failed" not in log and "cannot write progress" not in log, log

        # The watched namespace reaches the same volume read-only, through its own PV and claim.
        door = kubectl_json(dc, "get", "pvc", CACHE_CLAIM, "-n", watched)
        assert door["status"]["phase"] == "Bound" and door["spec"]["accessModes"] == ["ReadOnlyMany"]
        volume = kubectl_json(dc, "get", "pv", door["spec"]["volumeName"])
        assert volume["metadata"]["name"] == f"videogen-models-{watched}"
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert volume["spec"]["hostPath"]["path"] == shared["spec"]["hostPath"]["path"]
        assert dc.kubectl("get", "pvc", CACHE_CLAIM, "-n", other).returncode != 0, "nothing in unwatched namespaces"
        pods = kubectl_json(dc, "get", "pods", "-n", watched, "-l", f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}")
        assert pods["items"]
        for pod in pods["items"]:
            cache = next(v for v in pod["spec"]["volumes"] if v["name"] == "model-cache")
            assert cache["persistentVolumeClaim"] == {"claimName": CACHE_CLAIM, "readOnly": True}
        s3_secret_key = base64.b64encode(namespaced.values["s3"]["secretAccessKey"].encode()).decode()
        for secret in kubectl_json(dc, "get", "secrets", "-n", watched)["items"]:
            assert s3_secret_key not in (secret.get("data") or {}).values(), secret["metadata"]["name"]

        # The prewarmed model's DaemonSet (operator's namespace) reads it on the node, as the loader.
        t2v = namespaced.models[0]
        selector = f"{api.LABEL_COMPONENT}={COMPONENT_PREWARM},{cat.LABEL_MODEL_NAME}={api.label_safe(t2v)}"
        path = kubectl_json(dc, "get", "videogenmodel", t2v)["status"]["path"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            warm = kubectl_json(dc, "get", "pods", "-n", OPERATOR_NS, "-l", selector)["items"]
            logs = [node.logs(OPERATOR_NS, p["metadata"]["name"], p["spec"]["containers"][0]["name"]) for p in warm]
            if any(f"{path}" in line and line.startswith("{") for log in logs for line in log.splitlines()):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no prewarm pod read {path}: {warm}" + namespaced.operator_log())
        (pod,) = warm
        assert pod["spec"]["nodeName"] == node.name and pod["spec"]["serviceAccountName"] == LOADER_SA

    def test_uninstall_leaves_only_crds_jobs_videos_and_the_catalog(
        self, helm_cluster: DevCluster, namespaced: Release
    ) -> None:
        dc = helm_cluster
        watched, other = namespaced.namespaces
        loaders = [kubectl_json(dc, "get", "vgm", n)["status"]["loaderJob"] for n in namespaced.models]
        assert_uninstalled_cleanly(dc, namespaced, [watched])
        assert dc.kubectl("delete", "vgj", "--all", "-n", other).returncode == 0
        # What stays besides, as the README says: every VideoGenModel (its files cost a download),
        # the cache claim and the read-only claim and PV of each job namespace, the models' finished
        # loader Jobs and the prewarm DaemonSets.
        for name in namespaced.models:
            assert kubectl_json(dc, "get", "vgm", name)["status"]["phase"] == "Ready"
        assert dc.kubectl("get", "pvc", CACHE_CLAIM, "-n", OPERATOR_NS).returncode == 0
        assert dc.kubectl("get", "pvc", CACHE_CLAIM, "-n", watched).returncode == 0
        assert dc.kubectl("get", "pv", f"videogen-models-{watched}").returncode == 0
        kinds = (
            "jobs,daemonsets,deployments,statefulsets,services,configmaps,secrets,serviceaccounts,roles,rolebindings"
        )
        expected = sorted([*(f"Job/{j}" for j in loaders), f"DaemonSet/{prewarm_name(namespaced.models[0])}"])
        assert operator_made(dc, kinds, OPERATOR_NS) == expected
