"""Progress against the real API server: a watcher sees the VideoGenJob's status move through every
stage, written with nothing more than the narrow Role the operator grants the runner.

The run is slowed down with the runner's test-only knobs (VIDEOGEN_TEST_STAGE_DELAY_SECONDS,
VIDEOGEN_TEST_STEP_DELAY_SECONDS) so each stage outlasts the 2-second write interval.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from runner_support import TinyModels, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_devcluster.kubeconfig import write_kubeconfig

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api

    from videogen_devcluster import ControlPlane, S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

STAGES = ["loading", "generating", "encoding", "uploading", "done"]


def create_job(k8s_api: ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> str:
    from kubernetes import client

    body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name}, "spec": spec}
    created = client.CustomObjectsApi(k8s_api).create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, body
    )
    return str(created["metadata"]["uid"])


def runner_kubeconfig(
    control_plane: ControlPlane, core_v1: CoreV1Api, k8s_api: ApiClient, namespace: str, job: str, path: Path
) -> Path:
    """The runner's identity exactly as the operator makes it (its own builders: the namespace's runner
    ServiceAccount, a Role allowing get/patch of VideoGenJob status in that namespace, the RoleBinding),
    as a kubeconfig with its token."""
    from kubernetes import client

    from videogen_operator import manifests
    from videogen_operator.settings import OperatorSettings

    uid = client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, job
    )["metadata"]["uid"]
    ref = manifests.JobRef(namespace=namespace, name=job, uid=uid)
    settings = OperatorSettings()
    account = manifests.build_runner_service_account(namespace)
    core_v1.create_namespaced_service_account(namespace, account)
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    rbac.create_namespaced_role(namespace, manifests.build_runner_role(namespace))
    rbac.create_namespaced_role_binding(namespace, manifests.build_runner_role_binding(namespace, settings))
    token = core_v1.create_namespaced_service_account_token(
        manifests.runner_service_account_name(ref, settings),
        namespace,
        {"spec": {"audiences": [], "expirationSeconds": 3600}},
    ).status.token
    return write_kubeconfig(
        path, server=control_plane.api_url, ca_cert=control_plane.ca_cert_path, token=token, name="runner"
    )


class ProgressWatcher:
    """Records every status.progress the watch delivers for one VideoGenJob."""

    def __init__(self, k8s_api: ApiClient, namespace: str, name: str) -> None:
        self.k8s_api, self.namespace, self.name = k8s_api, namespace, name
        self.seen: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stop = threading.Event()

    def _run(self) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.k8s_api)
        w = watch.Watch()
        for event in w.stream(
            custom.list_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            field_selector=f"metadata.name={self.name}",
            timeout_seconds=180,
        ):
            progress = (event["object"].get("status") or {}).get("progress")
            if progress and (not self.seen or progress != self.seen[-1]):
                self.seen.append(progress)
            if (progress and progress.get("stage") == "done") or self.stop.is_set():
                w.stop()

    def stages(self) -> list[str]:
        out: list[str] = []
        for progress in self.seen:
            if not out or out[-1] != progress["stage"]:
                out.append(progress["stage"])
        return out


def run_runner(env: dict[str, str], spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("videogen-runner")
    return subprocess.run(
        [str(exe)],
        env={**env, api.ENV_SPEC: json.dumps(spec)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_status_shows_progress_moving_through_the_stages(
    control_plane: ControlPlane,
    videogen_crds: None,
    namespace: str,
    k8s_api: ApiClient,
    core_v1: CoreV1Api,
    s3: S3Server,
    bucket: str,
    tiny_models: TinyModels,
    s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    spec = tiny_spec(str(tiny_models.wan_t2v), steps=4, output={"bucket": bucket})
    uid = create_job(k8s_api, namespace, "fox", spec)
    kubeconfig = runner_kubeconfig(control_plane, core_v1, k8s_api, namespace, "fox", tmp_path / "kubeconfig")
    watcher = ProgressWatcher(k8s_api, namespace, "fox")
    watcher.thread.start()
    time.sleep(0.5)

    env = {
        **s3_env,
        api.ENV_JOB_NAMESPACE: namespace,
        api.ENV_JOB_NAME: "fox",
        api.ENV_JOB_UID: uid,
        "KUBECONFIG": str(kubeconfig),
        "VIDEOGEN_TEST_STAGE_DELAY_SECONDS": "2.5",
        "VIDEOGEN_TEST_STEP_DELAY_SECONDS": "1.2",
    }
    proc = run_runner(env, spec)
    watcher.thread.join(timeout=30)
    watcher.stop.set()

    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "progress write failed" not in proc.stderr, "the narrow Role is enough"
    assert watcher.stages() == STAGES, watcher.seen
    steps = [p["step"] for p in watcher.seen if p["stage"] == "generating"]
    assert steps == sorted(steps) and len(set(steps)) >= 2, steps
    generating = next(p for p in watcher.seen if p["stage"] == "generating" and p["step"])
    assert generating["summary"] == f"generating {generating['step']}/4 ({generating['percent']}%)"
    assert watcher.seen[0]["stage"] == "loading" and watcher.seen[0].get("step") is None
    assert watcher.seen[-1] | {"updatedAt": None} == {
        "stage": "done",
        "step": 4,
        "totalSteps": 4,
        "percent": 100,
        "summary": "done (100%)",
        "updatedAt": None,
    }
    # Every write the watch delivered moved forward: in stage order, step order and time order.
    # (How often the runner may write is its reporter's unit test, on a fake clock.)
    order = [(STAGES.index(p["stage"]), p.get("step") or 0, p["percent"]) for p in watcher.seen]
    assert order == sorted(order), order
    stamps = [datetime.fromisoformat(p["updatedAt"].replace("Z", "+00:00")) for p in watcher.seen]
    assert stamps == sorted(stamps), stamps


def test_a_forbidden_progress_write_does_not_fail_the_run(
    control_plane: ControlPlane,
    videogen_crds: None,
    namespace: str,
    k8s_api: ApiClient,
    core_v1: CoreV1Api,
    bucket: str,
    tiny_models: TinyModels,
    s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from kubernetes import client

    spec = tiny_spec(str(tiny_models.wan_t2v), output={"bucket": bucket})
    create_job(k8s_api, namespace, "fox", spec)
    # A job of another namespace: the runner's Role covers its own namespace only, so when the
    # runner claims to be that job every write is refused.
    elsewhere, other = "default", f"other-{namespace}"[:63]
    create_job(k8s_api, elsewhere, other, spec)
    custom = client.CustomObjectsApi(k8s_api)
    try:
        kubeconfig = runner_kubeconfig(control_plane, core_v1, k8s_api, namespace, "fox", tmp_path / "kubeconfig")
        env = {**s3_env, api.ENV_JOB_NAMESPACE: elsewhere, api.ENV_JOB_NAME: other, "KUBECONFIG": str(kubeconfig)}

        proc = run_runner(env, spec)

        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "progress write failed" in proc.stderr and "Forbidden" in proc.stderr
        body = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, elsewhere, api.PLURAL, other)
        assert "progress" not in (body.get("status") or {})
    finally:
        custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, elsewhere, api.PLURAL, other)
    assert os.environ.get("KUBECONFIG") != str(kubeconfig), "the test's own client was not touched"
