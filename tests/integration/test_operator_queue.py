"""A cap on running jobs: the rest wait in Queued, in order, with their position."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from operator_support import Jobs, local_queue, tiny_job

from videogen_api import v1alpha1 as api

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]


def test_cap_of_one_runs_three_jobs_one_after_another(jobs: Jobs, start_operator: Any) -> None:
    start_operator(max_running=1)
    names = ["q1", "q2", "q3"]
    for name in names:
        jobs.apply(tiny_job(name, cache=False))
        time.sleep(1.1)  # distinct creation timestamps: the queue is first come, first served

    samples: list[dict[str, dict[str, Any]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append({n: jobs.status(n) for n in names})
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for name in names:
            assert jobs.wait_phase(name, "Succeeded", "Failed", timeout=300)["phase"] == "Succeeded"
    finally:
        stop.set()
        sampler.join()

    for sample_ in samples:
        running = [n for n, s in sample_.items() if s.get("phase") == "Running"]
        assert len(running) <= 1, f"cap exceeded: {running}"
    positions = {
        (n, s.get("queuePosition")) for sample_ in samples for n, s in sample_.items() if s.get("queuePosition")
    }
    assert ("q3", 2) in positions or ("q3", 1) in positions, positions
    queued_messages = [s["message"] for sample_ in samples for s in sample_.values() if s.get("reason") == "Queued"]
    assert any("position" in m and "cap: 1 running cluster-wide" in m for m in queued_messages)
    finished = sorted(names, key=lambda n: jobs.status(n)["completionTime"])
    assert finished == names, "jobs run in creation order"


def test_a_missing_local_queue_is_on_the_job_and_in_a_warning(jobs: Jobs, start_operator: Any) -> None:
    start_operator()
    jobs.apply(tiny_job("no-queue", queueName="nowhere", cache=False))
    status = jobs.wait_phase("no-queue", "Queued", timeout=30)
    for _ in range(20):
        status = jobs.status("no-queue")
        if status.get("reason") == "LocalQueueMissing":
            break
        time.sleep(0.5)
    assert status["reason"] == "LocalQueueMissing", status
    assert "'nowhere'" in status["message"] and "spec.queueName" in status["message"]
    assert any(e["type"] == "Warning" and e["reason"] == "LocalQueueMissing" for e in jobs.events("no-queue"))


def test_queue_name_hands_the_job_to_kueue(devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any) -> None:
    """With spec.queueName the Job is created suspended with Kueue's label; the
    job shows Queued until Kueue admits it (here we admit it as Kueue does: by
    unsuspending the Job), and the operator's own cap does not hold it back."""
    local_queue(devcluster, namespace, "gpu-queue")
    start_operator(max_running=1)
    jobs.apply(tiny_job("kueued", queueName="gpu-queue", cache=False))
    status = jobs.wait_phase("kueued", "Queued", timeout=30)
    time.sleep(2)
    status = jobs.status("kueued")
    assert (status["phase"], status["reason"]) == ("Queued", "WaitingForAdmission")
    assert "gpu-queue" in status["message"]
    (job,) = jobs.runner_jobs()
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"

    admitted = devcluster.kubectl(
        "patch", "job", job["metadata"]["name"], "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    assert admitted.returncode == 0, admitted.stderr
    final = jobs.wait_phase("kueued", "Succeeded", "Failed", timeout=240)
    assert final["phase"] == "Succeeded", final


def test_a_tenant_job_with_the_operators_labels_takes_no_slot(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    """A Job a tenant dresses up as a runner (the operator's labels, holding a GPU) is not the
    operator's: only Jobs controlled by a VideoGenJob under the derived name count against caps."""
    impostor = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "looks-like-a-runner",
            "namespace": namespace,
            "labels": {
                api.LABEL_MANAGED_BY: api.MANAGED_BY,
                api.LABEL_COMPONENT: "runner",
                api.LABEL_JOB_UID: "00000000-0000-0000-0000-000000000000",
            },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY}},
                "spec": {
                    "restartPolicy": "Never",
                    # Never scheduled: the impostor stays active (and would hold its slot) for the whole test.
                    "nodeSelector": {"videogen.dev/nowhere": "true"},
                    "containers": [
                        {
                            "name": "runner",
                            "image": "busybox",
                            "command": ["sleep", "600"],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }
    applied = devcluster.kubectl("apply", "-f", "-", input=json.dumps(impostor))
    assert applied.returncode == 0, applied.stderr
    start_operator(max_running=1)
    jobs.apply(tiny_job("real", cache=False))
    # With the impostor counted, a cap of one would hold "real" in Queued until the impostor ends.
    assert jobs.wait_phase("real", "Succeeded", "Failed", timeout=300)["phase"] == "Succeeded"
    impostor_job = json.loads(
        devcluster.kubectl("get", "job", "looks-like-a-runner", "-n", namespace, "-o", "json").stdout
    )
    assert (impostor_job.get("status") or {}).get("active") == 1, "the impostor was active all along"


def test_system_priority_classes_are_refused(jobs: Jobs, start_operator: Any) -> None:
    """system-node-critical exists in every cluster; a tenant may still not put its job ahead of everyone."""
    start_operator()
    jobs.apply(tiny_job("jump-the-queue", resources={"priorityClassName": "system-node-critical"}))
    status = jobs.wait_phase("jump-the-queue", "Failed", "Succeeded", timeout=120)
    assert (status["phase"], status["reason"]) == ("Failed", "ValidationFailed"), status
    assert "spec.resources.priorityClassName" in status["message"] and "system-node-critical" in status["message"]
    assert not jobs.runner_jobs(), "no runner Job for a refused spec"
