"""The local GPU node: the real scheduler places pods on it and its agent runs them as processes.

Pods here run the project's own Python (``python -c ...``); what they observe (environment, mounted
files, API answers) comes back through the termination message, as a runner's result would.
"""

from __future__ import annotations

import base64
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from videogen_devcluster import LocalGpuNode
from videogen_devcluster.kubeapi import JSON, body, raw
from videogen_devcluster.podworker import runtime_paths
from videogen_devcluster.testing import python_pod, unique_name, wait_for

pytestmark = pytest.mark.cluster

TERMINAL = ("Succeeded", "Failed")


class Pods:
    """Create pods in the test's namespace and wait on them, with failures that show status and logs."""

    def __init__(self, core: CoreV1Api, node: LocalGpuNode, namespace: str) -> None:
        self.core, self.node, self.namespace = core, node, namespace

    def create(self, manifest: JSON) -> str:
        raw(self.core.create_namespaced_pod, self.namespace, body(manifest))
        return str(manifest["metadata"]["name"])

    def get(self, name: str) -> JSON | None:
        try:
            return raw(self.core.read_namespaced_pod, name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def describe(self, name: str) -> str:
        pod = self.get(name)
        status = json.dumps(pod.get("status") if pod else None, indent=1)
        logs = "\n".join(
            f"--- {path.name}:\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.node.log_path(self.namespace, name, "x").parent.glob("*.log"))
        )
        return f"pod {self.namespace}/{name} status: {status}\n{logs}"

    def wait(self, name: str, check: Callable[[JSON], bool], what: str, timeout: float = 60) -> JSON:
        def ready() -> JSON | None:
            pod = self.get(name)
            return pod if pod is not None and check(pod) else None

        return wait_for(ready, timeout=timeout, what=f"{name}: {what}", describe=lambda: self.describe(name))

    def wait_phase(self, name: str, *phases: str, timeout: float = 60) -> JSON:
        return self.wait(name, lambda p: p.get("status", {}).get("phase") in phases, f"phase in {phases}", timeout)

    def wait_pid(self, name: str, container: str = "main") -> int:
        return wait_for(
            lambda: self.node.container_pid(self.namespace, name, container),
            what=f"a process for {name}/{container}",
            describe=lambda: self.describe(name),
        )

    def gone(self, name: str, timeout: float = 60) -> None:
        wait_for(lambda: self.get(name) is None, timeout=timeout, what=f"{name} to be deleted")

    def terminated(self, pod: JSON, container: str = "main") -> JSON:
        (status,) = [s for s in pod["status"]["containerStatuses"] if s["name"] == container]
        result: JSON = status["state"]["terminated"]
        return result

    def run_to_end(self, manifest: JSON, timeout: float = 60) -> JSON:
        name = self.create(manifest)
        return self.wait_phase(name, *TERMINAL, timeout=timeout)


@pytest.fixture
def pods(core_v1: CoreV1Api, gpu_node: LocalGpuNode, namespace: str) -> Pods:
    return Pods(core_v1, gpu_node, namespace)


def condition(pod: JSON, kind: str) -> JSON:
    (found,) = [c for c in pod["status"].get("conditions", []) if c["type"] == kind]
    assert isinstance(found, dict)
    return found


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def script(code: str) -> str:
    return textwrap.dedent(code).strip()


WRITE_RESULT = """
import json
def result(value):
    with open("/dev/termination-log", "w") as f:
        json.dump(value, f)
"""


class TestSchedulingAndExitStatus:
    def test_gpu_pod_is_scheduled_onto_the_node_and_reports_failure(self, pods: Pods, gpu_node: LocalGpuNode) -> None:
        code = script("""
            import os, sys
            print("to stdout", flush=True)
            print("to stderr", file=sys.stderr, flush=True)
            with open("/dev/termination-log", "w") as f:
                f.write("gave up: " + os.environ.get("CUDA_VISIBLE_DEVICES", "none"))
            sys.exit(3)
        """)
        pod = pods.run_to_end(python_pod("fails", code, gpus=1))

        assert pod["spec"]["nodeName"] == gpu_node.name, "bound by kube-scheduler, not by us"
        assert pod["status"]["phase"] == "Failed"
        terminated = pods.terminated(pod)
        assert terminated["exitCode"] == 3
        assert terminated["reason"] == "Error"
        assert terminated["message"] == "gave up: 0", "the one GPU (index 0) is handed to the container"
        assert terminated["startedAt"] and terminated["finishedAt"]
        assert pod["status"]["podIP"] == "127.0.0.1" and pod["status"]["startTime"]
        assert condition(pod, "PodScheduled")["status"] == "True"
        assert condition(pod, "Ready")["status"] == "False"
        log = gpu_node.logs(pods.namespace, "fails", "main")
        assert "to stdout" in log and "to stderr" in log

    def test_successful_pod_succeeds(self, pods: Pods) -> None:
        pod = pods.run_to_end(python_pod("ok", "print('done')", gpus=1))

        assert pod["status"]["phase"] == "Succeeded"
        terminated = pods.terminated(pod)
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
        assert condition(pod, "Ready")["reason"] == "PodCompleted"
        assert condition(pod, "Initialized")["status"] == "True"

    def test_running_pod_reports_running_and_ready(self, pods: Pods) -> None:
        pods.create(python_pod("runs", "import time; time.sleep(600)"))
        pod = pods.wait_phase("runs", "Running")

        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True and "running" in status["state"]
        assert condition(pod, "Ready")["status"] == "True"

    def test_pod_wanting_more_gpus_than_the_node_has_stays_pending(self, pods: Pods) -> None:
        pods.create(python_pod("greedy", "pass", gpus=2))
        pod = pods.wait(
            "greedy",
            lambda p: any(c["type"] == "PodScheduled" for c in p["status"].get("conditions", [])),
            "a scheduling verdict",
        )

        scheduled = condition(pod, "PodScheduled")
        assert scheduled["status"] == "False"
        assert scheduled["reason"] == "Unschedulable"
        assert "Insufficient nvidia.com/gpu" in scheduled["message"]
        assert pod["status"]["phase"] == "Pending"
        assert not pod["spec"].get("nodeName")

    def test_on_failure_restarts_until_success(self, pods: Pods) -> None:
        code = script("""
            import os, sys
            marker = "/scratch/attempted"
            if not os.path.exists(marker):
                open(marker, "w").close()
                sys.exit(1)
        """)
        manifest = python_pod(
            "retry", code, restart_policy="OnFailure", volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}]
        )
        manifest["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        pod = pods.run_to_end(manifest)

        assert pod["status"]["phase"] == "Succeeded"
        (status,) = pod["status"]["containerStatuses"]
        assert status["restartCount"] == 1
        assert status["lastState"]["terminated"]["exitCode"] == 1


class TestEnvironment:
    def test_env_from_secret_configmap_and_downward_api(self, pods: Pods, core_v1: CoreV1Api) -> None:
        ns = pods.namespace
        raw(
            core_v1.create_namespaced_secret,
            ns,
            body({"metadata": {"name": "creds"}, "data": {"token": base64.b64encode(b"s3cr3t").decode()}}),
        )
        raw(
            core_v1.create_namespaced_config_map,
            ns,
            body({"metadata": {"name": "settings"}, "data": {"mode": "fast", "LEVEL": "7"}}),
        )
        code = WRITE_RESULT + "import os, sys\nresult({k: os.environ.get(k) for k in sys.argv[1:]})"
        names = [
            "SECRET", "MODE", "POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE", "SA", "POD_IP", "TEAM",
            "CFG_LEVEL", "GREETING", "KUBERNETES_SERVICE_HOST", "AWS_ACCESS_KEY_ID", "PATH",
        ]  # fmt: skip
        manifest = python_pod(
            "env",
            code,
            args=[*names, "$(MODE)-expanded", "$$(MODE)"],
            envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            env=[
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
                {"name": "GREETING", "value": "hello $(POD_NAME) in $(MODE), not $(UNDEFINED)"},
            ],
        )
        manifest["metadata"]["labels"] = {"team": "video"}
        pod = pods.run_to_end(manifest)

        assert pod["status"]["phase"] == "Succeeded", pods.describe("env")
        seen = json.loads(pods.terminated(pod)["message"])
        assert seen["SECRET"] == "s3cr3t"
        assert seen["MODE"] == "fast"
        assert seen["CFG_LEVEL"] == "7"
        assert (seen["POD_NAME"], seen["POD_NAMESPACE"], seen["POD_UID"]) == ("env", ns, pod["metadata"]["uid"])
        assert (seen["NODE"], seen["SA"], seen["POD_IP"], seen["TEAM"]) == (
            "local-gpu-0",
            "default",
            "127.0.0.1",
            "video",
        )
        assert seen["GREETING"] == "hello env in fast, not $(UNDEFINED)"
        assert seen["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
        assert seen["AWS_ACCESS_KEY_ID"] is None, "the host's environment does not leak into pods"
        assert seen["PATH"].split(":")[0].endswith(".venv/bin"), "the project's virtualenv comes first"
        assert seen["fast-expanded"] is None and seen["$(MODE)"] is None, "args are expanded, $$ escapes"

    def test_missing_secret_keeps_the_container_waiting(self, pods: Pods) -> None:
        manifest = python_pod(
            "nosecret", "pass", env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
        )
        pods.create(manifest)
        pod = pods.wait(
            "nosecret",
            lambda p: any(
                s["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"
                for s in p["status"].get("containerStatuses", [])
            ),
            "CreateContainerConfigError",
        )
        (status,) = pod["status"]["containerStatuses"]
        assert 'secret "absent" not found' in status["state"]["waiting"]["message"]
        assert pod["status"]["phase"] == "Pending"


@pytest.mark.mounts
class TestMounts:
    def test_volumes_appear_at_their_mount_paths(self, pods: Pods, core_v1: CoreV1Api, tmp_path: Path) -> None:
        raw(
            core_v1.create_namespaced_config_map,
            pods.namespace,
            body({"metadata": {"name": "files"}, "data": {"prompt.txt": "a red fox"}}),
        )
        raw(
            core_v1.create_namespaced_secret,
            pods.namespace,
            body({"metadata": {"name": "keys"}, "data": {"key": base64.b64encode(b"k3y").decode()}}),
        )
        # Mount points missing on the host are created there (empty), as a runtime does in an image.
        host_dir = tmp_path / "out"
        code = WRITE_RESULT + script("""
            import os
            out = {
                "prompt": open("/mnt/videogen-test/job/prompt.txt").read(),
                "key": open("/mnt/videogen-test/keys/key").read(),
                "scratch": os.listdir("/scratch"),
            }
            open("/output/result.txt", "w").write("written by the pod")
            try:
                open("/mnt/videogen-test/job/new", "w")
                out["readonly"] = False
            except OSError:
                out["readonly"] = True
            result(out)
        """)
        manifest = python_pod(
            "mounts",
            code,
            volumeMounts=[
                {"name": "job", "mountPath": "/mnt/videogen-test/job", "readOnly": True},
                {"name": "keys", "mountPath": "/mnt/videogen-test/keys"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "output", "mountPath": "/output"},
            ],
        )
        manifest["spec"]["volumes"] = [
            {"name": "job", "configMap": {"name": "files"}},
            {"name": "keys", "secret": {"secretName": "keys"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "output", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
        ]
        pod = pods.run_to_end(manifest)

        assert pod["status"]["phase"] == "Succeeded", pods.describe("mounts")
        seen = json.loads(pods.terminated(pod)["message"])
        assert seen == {"prompt": "a red fox", "key": "k3y", "scratch": [], "readonly": True}
        assert (host_dir / "result.txt").read_text() == "written by the pod"
        assert not Path("/mnt/videogen-test/job/prompt.txt").exists(), "mounts stay private to the pod"

    def test_volume_over_tmp_does_not_hide_other_volumes_sources(self, pods: Pods, tmp_path: Path) -> None:
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "weights").write_text("from the host's /tmp")
        code = (
            WRITE_RESULT + "import os; result([os.listdir('/tmp'), open('/mnt/videogen-test/models/weights').read()])"
        )
        manifest = python_pod(
            "shadow",
            code,
            volumeMounts=[
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "models", "mountPath": "/mnt/videogen-test/models"},
            ],
        )
        manifest["spec"]["volumes"] = [
            {"name": "tmp", "emptyDir": {}},
            {"name": "models", "hostPath": {"path": str(tmp_path / "models")}},
        ]
        pod = pods.run_to_end(manifest)

        listing, weights = json.loads(pods.terminated(pod)["message"])
        # The pod's /tmp is its emptyDir: only the project itself (kept visible when the checkout
        # lives under /tmp, as the "image") may show through.
        image_dirs = {Path(p).relative_to("/tmp").parts[0] for p in runtime_paths() if p.startswith("/tmp/")}
        assert set(listing) <= image_dirs, pods.describe("shadow")
        assert weights == "from the host's /tmp"

    def test_read_only_root_filesystem_leaves_volumes_writable(self, pods: Pods) -> None:
        code = WRITE_RESULT + script("""
            def writable(path):
                try:
                    open(path, "w").close()
                    return True
                except OSError:
                    return False
            result({"root": writable("/var/tmp/videogen-ro-probe"), "volume": writable("/mnt/videogen-test/rw/f")})
        """)
        manifest = python_pod(
            "readonly",
            code,
            securityContext={"readOnlyRootFilesystem": True},
            volumeMounts=[{"name": "rw", "mountPath": "/mnt/videogen-test/rw"}],
        )
        manifest["spec"]["volumes"] = [{"name": "rw", "emptyDir": {}}]
        pod = pods.run_to_end(manifest)

        assert json.loads(pods.terminated(pod)["message"]) == {"root": False, "volume": True}
        assert not Path("/var/tmp/videogen-ro-probe").exists()

    def test_persistent_volume_claims_are_provisioned_locally(self, pods: Pods, core_v1: CoreV1Api) -> None:
        claim = {
            "metadata": {"name": "cache"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }
        raw(core_v1.create_namespaced_persistent_volume_claim, pods.namespace, body(claim))

        def with_claim(name: str, code: str) -> JSON:
            manifest = python_pod(name, code, volumeMounts=[{"name": "cache", "mountPath": "/mnt/videogen-test/cache"}])
            manifest["spec"]["volumes"] = [{"name": "cache", "persistentVolumeClaim": {"claimName": "cache"}}]
            return manifest

        writer = pods.run_to_end(with_claim("writer", "open('/mnt/videogen-test/cache/model', 'w').write('weights')"))
        reader = pods.run_to_end(
            with_claim("reader", WRITE_RESULT + "result(open('/mnt/videogen-test/cache/model').read())")
        )

        assert writer["status"]["phase"] == "Succeeded", pods.describe("writer")
        assert json.loads(pods.terminated(reader)["message"]) == "weights", "the claim outlives its first pod"
        bound = raw(core_v1.read_namespaced_persistent_volume_claim, "cache", pods.namespace)
        assert bound["status"]["phase"] == "Bound"
        assert bound["spec"]["storageClassName"] == "local-path", "the default StorageClass"
        volume_dir = Path(raw(core_v1.read_persistent_volume, bound["spec"]["volumeName"])["spec"]["hostPath"]["path"])
        assert (volume_dir / "model").read_text() == "weights"

        core_v1.delete_namespaced_pod("writer", pods.namespace)
        core_v1.delete_namespaced_pod("reader", pods.namespace)
        core_v1.delete_namespaced_persistent_volume_claim("cache", pods.namespace)
        wait_for(lambda: not volume_dir.exists(), what="the released volume to be deleted")

    def test_service_account_token_authenticates_as_the_pod(self, pods: Pods) -> None:
        code = WRITE_RESULT + script("""
            from kubernetes import client, config
            config.load_incluster_config()
            review = client.AuthenticationV1Api().create_self_subject_review(
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            )
            user = review.status.user_info
            sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount/"
            result({
                "user": user.username,
                "pod": (user.extra or {}).get("authentication.kubernetes.io/pod-name"),
                "namespace_file": open(sa_dir + "namespace").read(),
                "has_ca": open(sa_dir + "ca.crt").read().startswith("-----BEGIN CERTIFICATE"),
            })
        """)
        pod = pods.run_to_end(python_pod("whoami", code), timeout=90)

        assert pod["status"]["phase"] == "Succeeded", pods.describe("whoami")
        seen = json.loads(pods.terminated(pod)["message"])
        assert seen["user"] == f"system:serviceaccount:{pods.namespace}:default"
        assert seen["pod"] == ["whoami"], "the token is bound to the pod"
        assert seen["namespace_file"] == pods.namespace
        assert seen["has_ca"] is True

    def test_custom_termination_message_path_and_log_fallback(self, pods: Pods) -> None:
        custom = python_pod(
            "custom-path",
            "open('/mnt/videogen-test/result', 'w').write('custom path works')",
            terminationMessagePath="/mnt/videogen-test/result",
        )
        fallback = python_pod(
            "fallback",
            "import sys; print('traceback-ish detail'); sys.exit(2)",
            terminationMessagePolicy="FallbackToLogsOnError",
        )
        assert pods.terminated(pods.run_to_end(custom))["message"] == "custom path works"
        assert "traceback-ish detail" in pods.terminated(pods.run_to_end(fallback))["message"]


class TestStopping:
    def test_deleting_a_running_pod_stops_its_process(self, pods: Pods, core_v1: CoreV1Api) -> None:
        pods.create(python_pod("sleeper", "import time; time.sleep(600)"))
        pods.wait_phase("sleeper", "Running")
        pid = pods.wait_pid("sleeper")
        assert psutil.Process(pid).is_running()

        core_v1.delete_namespaced_pod("sleeper", pods.namespace)

        wait_for(lambda: process_gone(pid), timeout=30, what=f"pid {pid} to exit")
        pods.gone("sleeper")

    def test_active_deadline_kills_the_pod(self, pods: Pods) -> None:
        manifest = python_pod("deadline", "import time; time.sleep(600)")
        manifest["spec"]["activeDeadlineSeconds"] = 2
        pods.create(manifest)
        pid = pods.wait_pid("deadline")

        pod = pods.wait_phase("deadline", *TERMINAL, timeout=30)

        assert pod["status"]["phase"] == "Failed"
        assert pod["status"]["reason"] == "DeadlineExceeded"
        assert process_gone(pid)

    def test_grace_period_ends_in_sigkill(self, pods: Pods, core_v1: CoreV1Api) -> None:
        code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
        pods.create(python_pod("stubborn", code))
        pid = pods.wait_pid("stubborn")

        core_v1.delete_namespaced_pod("stubborn", pods.namespace, grace_period_seconds=1)

        wait_for(lambda: process_gone(pid), timeout=15, what=f"pid {pid} to be killed")
        pods.gone("stubborn")


class TestAgentLifecycle:
    def test_node_stays_ready_through_lease_heartbeats(self, core_v1: CoreV1Api, gpu_node: LocalGpuNode) -> None:
        from kubernetes.client import CoordinationV1Api

        leases = CoordinationV1Api(core_v1.api_client)

        def renew_time() -> str:
            lease = raw(leases.read_namespaced_lease, gpu_node.name, "kube-node-lease")
            return str(lease["spec"]["renewTime"])

        first = renew_time()
        wait_for(lambda: renew_time() != first, timeout=30, what="the node's Lease to be renewed")

        node = raw(core_v1.read_node, gpu_node.name)
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        assert not node["spec"].get("taints"), "the node lifecycle controller must see a healthy node"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"

    def test_without_mount_namespaces_pods_reach_the_api_through_kubeconfig(
        self, pods: Pods, gpu_node: LocalGpuNode, tmp_path: Path
    ) -> None:
        code = WRITE_RESULT + script("""
            import os
            from kubernetes import client, config
            config.load_config()  # KUBECONFIG here; in-cluster files with mount namespaces
            review = client.AuthenticationV1Api().create_self_subject_review(
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            )
            result({"user": review.status.user_info.username, "kubeconfig": bool(os.environ.get("KUBECONFIG"))})
        """)
        manifest = python_pod("plain", code)
        manifest["spec"]["nodeName"] = "local-plain-0"
        pods.create(manifest)

        with LocalGpuNode(
            gpu_node.kubeconfig, name="local-plain-0", gpus=0, state_dir=tmp_path / "plain", private_mounts=False
        ) as plain:
            pods.node = plain
            pod = pods.wait_phase("plain", *TERMINAL)

        assert pod["status"]["phase"] == "Succeeded", pods.describe("plain")
        seen = json.loads(pods.terminated(pod)["message"])
        assert seen == {"user": f"system:serviceaccount:{pods.namespace}:default", "kubeconfig": True}

    def test_pods_bound_before_the_agent_starts_are_run(
        self, pods: Pods, core_v1: CoreV1Api, gpu_node: LocalGpuNode, tmp_path: Path
    ) -> None:
        manifest = python_pod("early", "print('ran')")
        manifest["spec"]["nodeName"] = "local-late-0"
        pods.create(manifest)

        late = LocalGpuNode(gpu_node.kubeconfig, name="local-late-0", gpus=0, state_dir=tmp_path / "late")
        with late:
            pods.node = late
            pod = pods.wait_phase("early", *TERMINAL)
            assert pod["status"]["phase"] == "Succeeded"
            assert "ran" in late.logs(pods.namespace, "early", "main")

        # Stopping the agent removes its Node.
        with pytest.raises(ApiException) as missing:
            core_v1.read_node("local-late-0")
        assert missing.value.status == 404


def test_gpu_is_free_for_the_next_pod_as_soon_as_one_finishes(pods: Pods) -> None:
    """Two one-GPU pods on a one-GPU node run one after the other; the second is never
    refused by the node (no UnexpectedAdmissionError) in the moment the first finishes."""
    first = pods.create(python_pod(unique_name("first"), "import time; time.sleep(2)", gpus=1))
    second = pods.create(python_pod(unique_name("second"), "print('second')", gpus=1))
    for name in (first, second):
        pod = pods.wait_phase(name, "Succeeded", "Failed", timeout=120)
        assert pod["status"]["phase"] == "Succeeded", pods.describe(name)


def test_a_volume_over_the_checkouts_parent_does_not_hide_the_project(pods: Pods) -> None:
    """CI may clone under /tmp while runner pods mount an emptyDir at /tmp: the project's
    virtualenv (the "image") must stay where it is."""
    from videogen_devcluster.binaries import REPO_ROOT

    parent = REPO_ROOT.parent
    if parent == Path("/"):
        pytest.skip("the checkout sits at the filesystem root")
    manifest = python_pod(
        unique_name("hidden-parent"),
        "import videogen_api, sys; print(sys.prefix)",
        volumeMounts=[{"name": "scratch", "mountPath": str(parent)}],
    )
    manifest["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    name = pods.create(manifest)
    pod = pods.wait_phase(name, "Succeeded", "Failed", timeout=60)
    assert pod["status"]["phase"] == "Succeeded", pods.describe(name)


def test_a_command_that_cannot_start_fails_with_the_reason(pods: Pods) -> None:
    manifest = python_pod(unique_name("no-such-command"), "unused")
    manifest["spec"]["containers"][0]["command"] = ["/no/such/program"]
    manifest["spec"]["containers"][0]["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    manifest["spec"]["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    name = pods.create(manifest)
    pod = pods.wait_phase(name, "Failed", "Succeeded", timeout=60)
    terminated = pods.terminated(pod)
    assert terminated["exitCode"] == 128, pods.describe(name)
    assert "/no/such/program" in terminated.get("message", ""), pods.describe(name)
