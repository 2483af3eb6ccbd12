"""The local control plane is a real Kubernetes: authn/authz, controllers, garbage collection, clean exit."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from videogen_devcluster import KUBERNETES_VERSION, ControlPlane, DevCluster, LocalGpuNode, StartupError
from videogen_devcluster.kubeapi import JSON, body, raw
from videogen_devcluster.kubeconfig import http_get
from videogen_devcluster.pytest_fixtures import Kubectl
from videogen_devcluster.testing import python_pod, wait_for

pytestmark = pytest.mark.cluster


def job_manifest(name: str, script: str, *, parallelism: int = 1) -> JSON:
    pod = python_pod("unused", script)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "parallelism": parallelism,
            "completions": parallelism,
            "backoffLimit": 0,
            "template": {"metadata": {"labels": {"job": name}}, "spec": pod["spec"]},
        },
    }


def absent(read: Callable[[], object]) -> bool:
    """True once ``read`` answers 404."""
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def pods_of(core: client.CoreV1Api, namespace: str, job: str) -> list[JSON]:
    items: list[JSON] = raw(core.list_namespaced_pod, namespace, label_selector=f"job={job}")["items"]
    return items


class TestApiServer:
    def test_readyz_and_livez(self, control_plane: ControlPlane) -> None:
        for check in ("readyz", "livez"):
            status, text = http_get(
                f"{control_plane.api_url}/{check}", ca_cert=control_plane.ca_cert_path, token=control_plane.admin_token
            )
            assert (status, text) == (200, "ok")

    def test_kubectl_is_the_pinned_build_and_reports_real_versions(
        self, control_plane: ControlPlane, kubectl: Kubectl
    ) -> None:
        assert shutil.which("kubectl") == str(control_plane.binaries.kubectl), "never the machine's kubectl"

        versions = json.loads(kubectl("version", "-o", "json").stdout)

        assert versions["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
        assert versions["clientVersion"]["gitVersion"] == KUBERNETES_VERSION

    def test_python_client_uses_the_session_kubeconfig(self, control_plane: ControlPlane) -> None:
        # The fixtures load the kubeconfig into the library's default client, as code under test expects.
        version = client.VersionApi().get_code()
        assert version.git_version == KUBERNETES_VERSION


class TestAuthorization:
    def test_anonymous_requests_are_refused(self, control_plane: ControlPlane) -> None:
        status, _ = http_get(f"{control_plane.api_url}/api/v1/secrets", ca_cert=control_plane.ca_cert_path)
        assert status in (401, 403)

    def test_unprivileged_service_account_cannot_list_secrets(
        self, control_plane: ControlPlane, core_v1: client.CoreV1Api, namespace: str
    ) -> None:
        raw(core_v1.create_namespaced_service_account, namespace, body({"metadata": {"name": "nobody"}}))
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
        token = raw(core_v1.create_namespaced_service_account_token, "nobody", namespace, body(request))["status"][
            "token"
        ]

        url = f"{control_plane.api_url}/api/v1/namespaces/{namespace}/secrets"
        status, text = http_get(url, ca_cert=control_plane.ca_cert_path, token=token)

        assert status == 403, text
        assert f"system:serviceaccount:{namespace}:nobody" in text
        assert http_get(url, ca_cert=control_plane.ca_cert_path, token=control_plane.admin_token)[0] == 200

    def test_rbac_grants_take_effect(self, control_plane: ControlPlane, kubectl: Kubectl, namespace: str) -> None:
        kubectl("create", "serviceaccount", "reader", "-n", namespace)
        kubectl("create", "role", "secret-reader", "--verb=list", "--resource=secrets", "-n", namespace)
        kubectl(
            "create", "rolebinding", "reader", "--role=secret-reader", f"--serviceaccount={namespace}:reader",
            "-n", namespace,
        )  # fmt: skip
        token = kubectl("create", "token", "reader", "-n", namespace).stdout.strip()

        url = f"{control_plane.api_url}/api/v1/namespaces/{namespace}/secrets"
        assert wait_for(
            lambda: http_get(url, ca_cert=control_plane.ca_cert_path, token=token)[0] == 200,
            timeout=10,
            what="the RoleBinding to apply",
        )


class TestControllers:
    def test_job_creates_a_pod_that_runs_to_completion(
        self, batch_v1: client.BatchV1Api, core_v1: client.CoreV1Api, namespace: str
    ) -> None:
        raw(batch_v1.create_namespaced_job, namespace, body(job_manifest("hello", "print('hi from a Job')")))

        (pod,) = wait_for(lambda: pods_of(core_v1, namespace, "hello"), what="the Job's pod")
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
        job = wait_for(
            lambda: (
                (j := raw(batch_v1.read_namespaced_job, "hello", namespace)).get("status", {}).get("succeeded") and j
            ),
            what="the Job to succeed",
        )
        assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])

    @pytest.mark.parametrize("propagation", ["Background", "Foreground"])
    def test_garbage_collector_deletes_a_deleted_jobs_pods(
        self,
        propagation: str,
        batch_v1: client.BatchV1Api,
        core_v1: client.CoreV1Api,
        gpu_node: LocalGpuNode,
        namespace: str,
    ) -> None:
        raw(
            batch_v1.create_namespaced_job,
            namespace,
            body(job_manifest("long", "import time; time.sleep(600)", parallelism=2)),
        )

        def both_pods() -> list[JSON] | None:
            found = pods_of(core_v1, namespace, "long")
            return found if len(found) == 2 else None

        def pid_of(pod: JSON) -> int:
            name = pod["metadata"]["name"]
            return wait_for(lambda: gpu_node.container_pid(namespace, name, "main"), what=f"{name}'s process")

        pids = [pid_of(pod) for pod in wait_for(both_pods, what="two pods of the Job")]

        batch_v1.delete_namespaced_job("long", namespace, propagation_policy=propagation)

        wait_for(lambda: not pods_of(core_v1, namespace, "long"), timeout=60, what="the pods to be collected")
        assert wait_for(lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout=30, what="processes")
        wait_for(lambda: absent(lambda: batch_v1.read_namespaced_job("long", namespace)), what="the Job to go")

    def test_namespace_deletion_removes_its_contents(self, core_v1: client.CoreV1Api, kubectl: Kubectl) -> None:
        kubectl("create", "namespace", "short-lived")
        kubectl("create", "configmap", "c", "-n", "short-lived", "--from-literal=a=b")

        kubectl("delete", "namespace", "short-lived", "--wait=false")

        wait_for(
            lambda: absent(lambda: core_v1.read_namespace("short-lived")),
            timeout=60,
            what="the namespace controller to finish",
        )


class TestLifecycle:
    def test_stop_leaves_no_process_behind(self, tmp_path: Path) -> None:
        dc = DevCluster(tmp_path / "second", with_s3=True, with_gpu_node=True, node_name="second-node")
        dc.start()
        try:
            result = dc.kubectl("run", "sleeper", "--image=none", "--restart=Never", "--command", "--", "sleep", "600")
            assert result.returncode == 0, result.stderr
            node = dc.gpu_node
            assert node is not None
            pod_pid = wait_for(lambda: node.container_pid("default", "sleeper", "sleeper"), what="the pod's process")
            pids = [*dc.pids().values(), pod_pid]
            descendants = [c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)]
            assert len(set(pids)) == 6, dc.pids()  # etcd, apiserver, controller manager, scheduler, S3, pod
        finally:
            dc.stop()

        alive = [
            pid for pid in pids + descendants if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
        ]
        assert alive == []

    def test_startup_failure_names_the_component_and_shows_its_log(
        self, control_plane: ControlPlane, tmp_path: Path
    ) -> None:
        wrapper = tmp_path / "kube-apiserver"
        wrapper.write_text(f'#!/bin/sh\nexec {control_plane.binaries.kube_apiserver} --no-such-flag "$@"\n')
        wrapper.chmod(0o755)
        broken = dataclasses.replace(control_plane.binaries, kube_apiserver=wrapper)
        cp = ControlPlane(tmp_path / "broken", binaries=broken, startup_timeout=20)

        with pytest.raises(StartupError, match="kube-apiserver exited with status 1") as failure:
            cp.start()
        assert "unknown flag: --no-such-flag" in str(failure.value)
        assert not any(p.running() for p in cp.processes.values()), "etcd was stopped too"
