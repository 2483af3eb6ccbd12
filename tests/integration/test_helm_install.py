"""The chart installed the way a platform team installs it: `helm install` into a cluster that
has never seen VideoGenJobs (the CRDs come from the chart), the operator's Deployment pod
running on the node under the chart's ServiceAccount and RBAC, real jobs through it in
cluster-wide and namespaced mode, `helm upgrade` taking effect, `helm uninstall` leaving only
what the README says.

The cluster is a fresh one of this module's own (the session's already has the CRDs). One
install per mode, a few tiny jobs each, to stay inside CI's time budget.
"""

from __future__ import annotations

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
from operator_support import BUCKET, TINY_I2V, Jobs, tiny_job
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from videogen_api import v1alpha1 as api
from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.operator_process import free_port
from videogen_devcluster.procs import pid_alive
from videogen_devcluster.testing import unique_name
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


class Release:
    """One Helm release of the chart in the module's cluster."""

    def __init__(self, dc: DevCluster, values: dict[str, Any], values_dir: Path) -> None:
        self.dc = dc
        self.values = values
        self.values_dir = values_dir
        self.metrics_port = int(values["operator"]["metricsPort"])
        self.installed = False

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


def base_values(dc: DevCluster, model_cache: Path) -> dict[str, Any]:
    assert dc.s3 is not None
    s3 = dc.s3.env()
    metrics_port = free_port()
    return {
        "operator": {"livenessPort": free_port(), "metricsPort": metrics_port},
        "metrics": {"service": {"port": metrics_port}},
        "s3": {
            "endpoint": dc.s3.endpoint_url,
            "bucket": BUCKET,
            "createSecret": True,
            "accessKeyId": s3["AWS_ACCESS_KEY_ID"],
            "secretAccessKey": s3["AWS_SECRET_ACCESS_KEY"],
        },
        "modelCache": {"type": "hostPath", "hostPath": str(model_cache)},
        # These jobs name the tiny models by URI (the catalog's own tests register VideoGenModels).
        "models": {"allowUnlisted": True},
        # The local node has this machine's CPUs and memory; GPU nodes get the chart's defaults.
        "runner": {"cpuRequest": "100m", "memoryRequest": "256Mi"},
    }


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


def run_both_tasks(dc: DevCluster, namespace: str, release: Release) -> dict[str, dict[str, Any]]:
    """A text-to-video and an image-to-video job through the installed operator, outputs decoded."""
    jobs = Jobs(dc, namespace)
    prompt = f"a confidential storyboard for {namespace}"
    image = put_input_image(dc, namespace)
    jobs.apply(tiny_job("t2v", seed=5, prompt=prompt))
    jobs.apply(tiny_job("i2v", model=TINY_I2V, task="image-to-video", image=image, seed=6, prompt=prompt))
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


# --------------------------------------------------------------------------- namespaced


@pytest.fixture(scope="class")
def namespaced(
    helm_cluster: DevCluster, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    dc = helm_cluster
    watched, other = make_namespace(dc, "helm-ns"), make_namespace(dc, "helm-other")
    values = _merge(base_values(dc, model_cache), {"watchNamespaces": [watched]})
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
    release.namespaces = [watched, other]  # type: ignore[attr-defined]
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


class TestNamespaced:
    def test_watched_namespace_runs_both_tasks_and_others_are_left_alone(
        self, helm_cluster: DevCluster, namespaced: Release
    ) -> None:
        dc = helm_cluster
        watched, other = namespaced.namespaces  # type: ignore[attr-defined]
        assert_catalog_rights(dc, job_namespace=watched, unwatched=other)
        Jobs(dc, other).apply(tiny_job("t2v", seed=8))
        run_both_tasks(dc, watched, namespaced)
        assert Jobs(dc, other).status("t2v") == {}, "a namespace the operator does not watch must stay untouched"
        samples = namespaced.scrape()
        assert value(samples, "videogen_jobs", namespace=watched, phase="Succeeded") == 2
        assert not [k for k in samples if k[0] == "videogen_jobs" and dict(k[1]).get("namespace") == other]

    def test_uninstall_leaves_only_crds_jobs_and_videos(self, helm_cluster: DevCluster, namespaced: Release) -> None:
        watched, other = namespaced.namespaces  # type: ignore[attr-defined]
        assert_uninstalled_cleanly(helm_cluster, namespaced, [watched])
        assert helm_cluster.kubectl("delete", "vgj", "--all", "-n", other).returncode == 0
