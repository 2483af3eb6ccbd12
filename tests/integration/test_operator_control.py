"""Suspend, resume, cancel, delete, and an operator killed mid-run."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from operator_support import Jobs, tiny_job

from videogen_devcluster.procs import pid_alive

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]
SLOW_RUNNER = '{"VIDEOGEN_TEST_STEP_DELAY_SECONDS": "0.5"}'


def wait_until(check: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def pods(devcluster: Any, namespace: str) -> list[dict[str, Any]]:
    """Every pod object in the namespace, terminating ones included: a pod with a deletion
    timestamp may still hold its GPU and run its process."""
    out = devcluster.kubectl("get", "pods", "-n", namespace, "-o", "json")
    return list(json.loads(out.stdout)["items"])


def runner_pids(devcluster: Any, namespace: str) -> list[int]:
    """Process ids of the runner containers the local node runs for this namespace."""
    node = devcluster.gpu_node
    return [pid for p in pods(devcluster, namespace) for pid in node.pids(namespace, p["metadata"]["name"]).values()]


def no_orphans(devcluster: Any, jobs: Jobs, namespace: str, pids: list[int]) -> bool:
    return pods(devcluster, namespace) == [] and jobs.runner_jobs() == [] and not any(pid_alive(p) for p in pids)


def test_suspend_stops_the_pod_and_resume_runs_the_job(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    start_operator(extra_runner_env=SLOW_RUNNER, cancel_grace_seconds=600)
    jobs.apply(tiny_job("pausable", steps=30, cache=False))
    jobs.wait_phase("pausable", "Running", timeout=120)
    jobs.patch_spec("pausable", {"suspend": True})
    status = wait_until(lambda: (s := jobs.status("pausable")).get("reason") == "Suspended" and s, what="Suspended")
    assert status["phase"] == "Queued"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "True"
    wait_until(lambda: not pods(devcluster, namespace), what="the runner pod to go away")

    jobs.patch_spec("pausable", {"suspend": False})
    final = jobs.wait_phase("pausable", "Succeeded", "Failed", timeout=240)
    assert final["phase"] == "Succeeded", final
    assert {c["type"]: c["status"] for c in final["conditions"]}["Suspended"] == "False"
    assert len(jobs.runner_jobs()) == 1


def test_suspended_past_the_grace_period_is_cancelled(jobs: Jobs, start_operator: Any) -> None:
    start_operator(cancel_grace_seconds=3)
    jobs.apply(tiny_job("abandoned", suspend=True))
    status = jobs.wait_phase("abandoned", "Cancelled", timeout=60)
    assert status["reason"] == "Cancelled"
    assert "cancel grace period" in status["message"]
    jobs.patch_spec("abandoned", {"suspend": False})
    time.sleep(3)
    assert jobs.status("abandoned")["phase"] == "Cancelled", "Cancelled is final"
    assert jobs.runner_jobs() == []


def test_delete_removes_job_pods_and_outputs_with_delete_policy(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    start_operator()
    jobs.apply(tiny_job("ephemeral", output={"deletePolicy": "Delete"}, cache=False))
    status = jobs.wait_phase("ephemeral", "Succeeded", "Failed", timeout=240)
    assert status["phase"] == "Succeeded", status
    bucket, _, key = status["output"]["uri"].removeprefix("s3://").partition("/")
    s3 = devcluster.s3_client()
    s3.head_object(Bucket=bucket, Key=key)
    finalizers = jobs.get("ephemeral")["metadata"].get("finalizers") or []
    assert "videogen.dev/delete-outputs" in finalizers, "deletion is held until the outputs are gone"

    deleted = devcluster.kubectl("delete", "vgj", "ephemeral", "-n", namespace, "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    keys = lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])]  # noqa: E731
    wait_until(lambda: keys() == [], what="the video and poster to be deleted")
    wait_until(lambda: jobs.runner_jobs() == [], what="the runner Job to be garbage-collected")
    wait_until(lambda: pods(devcluster, namespace) == [], what="the runner pods to be garbage-collected")

    # Runner RBAC is one ServiceAccount/Role/RoleBinding per namespace, shared by its jobs:
    # nothing per job is left behind, and the shared set carries no owner that could go.
    out = devcluster.kubectl(
        "get",
        "serviceaccounts,roles,rolebindings",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/managed-by=videogen-operator",
        "-o",
        "json",
    )
    rbac = json.loads(out.stdout)["items"]
    assert sorted(o["kind"] for o in rbac) == ["Role", "RoleBinding", "ServiceAccount"]
    assert {o["metadata"]["name"] for o in rbac} == {"videogen-runner"}


def test_delete_while_running_stops_the_runner(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    start_operator(extra_runner_env=SLOW_RUNNER)
    jobs.apply(tiny_job("interrupted", steps=60, cache=False))
    jobs.wait_phase("interrupted", "Running", timeout=120)
    pids = wait_until(lambda: runner_pids(devcluster, namespace), what="the runner process")
    assert devcluster.kubectl("delete", "vgj", "interrupted", "-n", namespace).returncode == 0
    wait_until(lambda: no_orphans(devcluster, jobs, namespace, pids), what="no pod, Job or runner process left")


def test_operator_killed_mid_run_converges_with_exactly_one_job(jobs: Jobs, start_operator: Any) -> None:
    first = start_operator(extra_runner_env=SLOW_RUNNER)
    names = ["crash-a", "crash-b"]
    for name in names:
        jobs.apply(tiny_job(name, steps=20, cache=False))
    jobs.wait_phase("crash-a", "Running", timeout=120)
    first.kill()
    time.sleep(2)
    start_operator(extra_runner_env=SLOW_RUNNER)
    for name in names:
        status = jobs.wait_phase(name, "Succeeded", "Failed", timeout=300)
        assert status["phase"] == "Succeeded", status
        assert status["attempts"] == 1, json.dumps(status, indent=1)
    owners = sorted(j["metadata"]["annotations"]["videogen.dev/owner"] for j in jobs.runner_jobs())
    assert owners == names, "exactly one runner Job per VideoGenJob"


def test_a_queued_job_can_be_suspended_and_resumed(jobs: Jobs, start_operator: Any) -> None:
    start_operator(max_running=1, extra_runner_env=SLOW_RUNNER, cancel_grace_seconds=600)
    jobs.apply(tiny_job("holder", steps=16, cache=False))
    jobs.wait_phase("holder", "Running", timeout=120)
    jobs.apply(tiny_job("waiter", cache=False))
    wait_until(lambda: jobs.status("waiter").get("queuePosition") == 1, what="waiter queued at position 1")

    jobs.patch_spec("waiter", {"suspend": True})
    held = wait_until(lambda: (s := jobs.status("waiter")).get("reason") == "Suspended" and s, what="Suspended")
    assert held["phase"] == "Queued" and "queuePosition" not in held
    jobs.patch_spec("waiter", {"suspend": False})

    final = jobs.wait_phase("waiter", "Succeeded", "Failed", timeout=240)
    assert final["phase"] == "Succeeded", final
    assert {c["type"]: c["status"] for c in final["conditions"]}["Suspended"] == "False"
    assert jobs.status("holder")["phase"] == "Succeeded"
    assert jobs.status("holder")["completionTime"] <= final["startTime"], "the cap held: one job at a time"
