"""Kueue's Workload conditions reach the job's status, against the real API server and Kueue's own
Workload CRD (v0.17, from its Go module: hack/fetch-kueue-crds.sh). No Kueue controller runs: the
test plays its part exactly as Kueue's job integration does for a batch/v1 Job: a Workload owned by
the runner Job with the Job's pod template, status conditions in Kueue's message formats, and the
Job's spec.suspend flipped on admission and eviction."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_support import Jobs, install_kueue_crd, local_queue, tiny_job
from test_operator_faults import SLOW_RUNNER, PhaseRecorder, wait_until

from videogen_devcluster.operator_process import OPERATOR_NAMESPACE, OperatorProcess, create_peering, operator_env

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]

QUEUE = "gpu-queue"
WORKLOAD_CRD = "workloads.kueue.x-k8s.io"
INSUFFICIENT = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor default, "
    "1 more needed"
)
PREEMPTED = (
    "Preempted to accommodate a workload (UID: 7d0c1f2e-0000-4000-8000-000000000001, JobUID: "
    "0a9b8c7d-0000-4000-8000-000000000002) due to prioritization in the ClusterQueue; preemptor path: /gpu-cq; "
    "preemptee path: /gpu-cq"
)


@pytest.fixture
def without_workload_crd(devcluster: Any) -> Iterator[None]:
    """No Workload CRD when the test starts (a cluster without Kueue), and none after it: the rest of
    the session's operators start without it too."""
    devcluster.kubectl("delete", "crd", WORKLOAD_CRD, "--ignore-not-found", "--wait=true")
    yield
    devcluster.kubectl("delete", "crd", WORKLOAD_CRD, "--ignore-not-found", "--wait=true")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(ctype: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": ctype, "status": str(status), "reason": reason, "message": message, "lastTransitionTime": now()}


class PlayKueue:
    """Kueue's side of one Job: its Workload (named and owned as Kueue's jobframework does) and the Job's suspend."""

    def __init__(self, devcluster: Any, namespace: str, job: dict[str, Any]) -> None:
        self.dc, self.namespace = devcluster, namespace
        self.job_name, self.job_uid = job["metadata"]["name"], job["metadata"]["uid"]
        digest = hashlib.sha1(f"Job\nbatch\n{self.job_name}\n{self.job_uid}".encode()).hexdigest()
        self.name = f"job-{self.job_name}-{digest[:5]}"
        workload = {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "Workload",
            "metadata": {
                "name": self.name,
                "namespace": namespace,
                "labels": {"kueue.x-k8s.io/job-uid": self.job_uid},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": self.job_name,
                        "uid": self.job_uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "queueName": QUEUE,
                "podSets": [{"name": "main", "count": 1, "template": job["spec"]["template"]}],
            },
        }
        created = self.dc.kubectl("create", "-f", "-", input=json.dumps(workload))
        assert created.returncode == 0, created.stderr

    def status(self, *conditions: dict[str, Any], admitted: bool = False) -> None:
        admission = (
            {
                "clusterQueue": "gpu-cq",
                "podSetAssignments": [
                    {
                        "name": "main",
                        "flavors": {"nvidia.com/gpu": "default"},
                        "resourceUsage": {"nvidia.com/gpu": "1"},
                        "count": 1,
                    }
                ],
            }
            if admitted
            else None
        )
        patch = {"status": {"conditions": list(conditions), "admission": admission}}
        args = ["patch", "workloads.kueue.x-k8s.io", self.name, "-n", self.namespace, "--subresource=status"]
        patched = self.dc.kubectl(*args, "--type=merge", "-p", json.dumps(patch))
        assert patched.returncode == 0, patched.stderr

    def suspend(self, suspend: bool) -> None:
        patch = json.dumps({"spec": {"suspend": suspend}})
        patched = self.dc.kubectl("patch", "job", self.job_name, "-n", self.namespace, "--type=merge", "-p", patch)
        assert patched.returncode == 0, patched.stderr

    def job_active(self) -> int:
        job = json.loads(self.dc.kubectl("get", "job", self.job_name, "-n", self.namespace, "-o", "json").stdout)
        return int((job.get("status") or {}).get("active") or 0)

    def admit(self) -> None:
        self.status(
            cond("QuotaReserved", True, "QuotaReserved", "Quota reserved in ClusterQueue gpu-cq"),
            cond("Admitted", True, "Admitted", "The workload is admitted"),
            admitted=True,
        )
        self.suspend(False)


def test_the_workloads_conditions_are_the_jobs_message_and_an_eviction_is_a_disruption(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any, without_workload_crd: None
) -> None:
    local_queue(devcluster, namespace, QUEUE)
    # Kueue is not installed when the operator starts: it starts, and picks the Workload CRD up later.
    start_operator(extra_runner_env=SLOW_RUNNER)
    install_kueue_crd(devcluster, "workloads")
    jobs.apply(tiny_job("kueued", queueName=QUEUE, cache=False, steps=12, timeoutSeconds=600))
    status = wait_until(
        lambda: (s := jobs.status("kueued")).get("reason") == "WaitingForAdmission" and s, what="WaitingForAdmission"
    )
    assert status["message"] == f"waiting for Kueue to admit the Job in LocalQueue {QUEUE!r}"
    (job,) = jobs.runner_jobs()
    assert job["spec"]["suspend"] is True

    kueue = PlayKueue(devcluster, namespace, job)
    kueue.status(cond("QuotaReserved", False, "Pending", INSUFFICIENT))
    status = wait_until(
        lambda: INSUFFICIENT in (s := jobs.status("kueued")).get("message", "") and s, what="Kueue's message"
    )
    assert (status["phase"], status["reason"]) == ("Queued", "WaitingForAdmission")
    assert status["message"] == f"waiting for Kueue to admit the Job in LocalQueue {QUEUE!r}: {INSUFFICIENT}"

    with PhaseRecorder(jobs, ["kueued"]) as recorder:
        kueue.admit()
        jobs.wait_phase("kueued", "Running", timeout=180)

        # Preemption, as Kueue does it: Evicted (and Preempted) on the Workload, the Job suspended,
        # and once its pod is gone the quota released with the eviction's message.
        kueue.status(
            cond("QuotaReserved", True, "QuotaReserved", "Quota reserved in ClusterQueue gpu-cq"),
            cond("Admitted", True, "Admitted", "The workload is admitted"),
            cond("Evicted", True, "Preempted", PREEMPTED),
            cond("Preempted", True, "InClusterQueue", PREEMPTED),
            admitted=True,
        )
        kueue.suspend(True)
        wait_until(lambda: kueue.job_active() == 0, what="the suspended Job's pod to go")
        kueue.status(
            cond("QuotaReserved", False, "Pending", PREEMPTED),
            cond("Admitted", False, "NoReservation", "The workload has no reservation"),
            cond("Evicted", True, "Preempted", PREEMPTED),
            cond("Preempted", True, "InClusterQueue", PREEMPTED),
            cond("Requeued", True, "Preempted", PREEMPTED),
        )
        during = wait_until(
            lambda: "evicted by Kueue" in (s := jobs.status("kueued")).get("message", "") and s, what="the eviction"
        )
        time.sleep(3)  # a few sweeps: it stays as it is
        during = jobs.status("kueued")
        assert (during["phase"], during["reason"]) == ("Running", "Retrying"), during
        assert during["message"] == (
            f"evicted by Kueue (Preempted: {PREEMPTED}); waiting for Kueue to admit the Job again in LocalQueue {QUEUE!r}"
        )
        assert (during["lastFailure"]["reason"], during["lastFailure"]["location"]) == ("Preempted", "disruption")
        assert any(e["reason"] == "Retrying" and e["type"] == "Warning" for e in jobs.events("kueued"))

        # Kueue admits it again: the Evicted condition goes False ("Previously: ...") and the Job resumes.
        kueue.status(
            cond("QuotaReserved", True, "QuotaReserved", "Quota reserved in ClusterQueue gpu-cq"),
            cond("Admitted", True, "Admitted", "The workload is admitted"),
            cond("Evicted", False, "QuotaReserved", f"Previously: {PREEMPTED}"),
            cond("Preempted", False, "QuotaReserved", f"Previously: {PREEMPTED}"),
            admitted=True,
        )
        kueue.suspend(False)
        final = jobs.wait_phase("kueued", "Succeeded", "Failed", timeout=300)
    assert final["phase"] == "Succeeded", final
    assert final["attempts"] == 1, "an eviction is not an attempt"
    assert recorder.regressions() == []


def test_kueue_saying_the_local_queue_is_missing_is_local_queue_missing(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any, without_workload_crd: None
) -> None:
    """Kueue makes the Workload even when the LocalQueue is missing and says so; the operator takes
    that from the Workload (no LocalQueue read once Kueue has spoken)."""
    install_kueue_crd(devcluster, "workloads")
    start_operator()
    jobs.apply(tiny_job("lost", queueName="nowhere", cache=False))
    wait_until(jobs.runner_jobs, what="the runner Job")
    (job,) = jobs.runner_jobs()
    kueue = PlayKueue(devcluster, namespace, job)
    kueue.status(cond("QuotaReserved", False, "Inadmissible", "LocalQueue nowhere doesn't exist"))
    # Before the Workload, the operator could only tell that the LocalQueue is not there
    # ("... or Kueue is not installed"); Kueue's condition says which.
    status = wait_until(
        lambda: (
            (s := jobs.status("lost")).get("reason") == "LocalQueueMissing"
            and "not installed" not in s.get("message", "")
            and s
        ),
        what="Kueue's word on the LocalQueue",
    )
    assert status["phase"] == "Queued"
    assert status["message"] == (
        f"spec.queueName: Kueue LocalQueue 'nowhere' does not exist in namespace {namespace!r}; "
        "the Job waits suspended until it does"
    )


CHART = Path(__file__).resolve().parents[2] / "charts" / "videogen-operator"
NO_KUEUE_SA = "videogen-operator-without-workloads"


def kubeconfig_without_workloads(dc: Any, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount bound to the chart's cluster-wide rules less the Workloads one
    (RBAC written for an older chart, or by hand)."""
    rendered = subprocess.run(
        [
            str(dc.binaries.helm),
            "template",
            "videogen",
            str(CHART),
            "-n",
            OPERATOR_NAMESPACE,
            "-s",
            "templates/rbac.yaml",
            "--kube-version",
            "1.35.4",
        ],
        capture_output=True,
        text=True,
        env=dc.env(),
        check=True,
    )
    (role,) = [
        d
        for d in yaml.safe_load_all(rendered.stdout)
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "videogen-operator"
    ]
    rules = [r for r in role["rules"] if "workloads" not in r.get("resources", [])]
    assert len(rules) == len(role["rules"]) - 1, "the chart grants list/watch on Workloads"
    # Everything of the operator's own API group (the catalog's VideoGenModels included), so that the
    # Workloads rule is the only one missing.
    rules.append({"apiGroups": ["videogen.dev"], "resources": ["*"], "verbs": ["*"]})
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NO_KUEUE_SA, "namespace": OPERATOR_NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NO_KUEUE_SA},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NO_KUEUE_SA},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NO_KUEUE_SA},
            "subjects": [{"kind": "ServiceAccount", "name": NO_KUEUE_SA, "namespace": OPERATOR_NAMESPACE}],
        },
    ]
    applied = dc.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    assert applied.returncode == 0, applied.stderr
    token = dc.kubectl("create", "token", NO_KUEUE_SA, "-n", OPERATOR_NAMESPACE, "--duration=1h")
    assert token.returncode == 0, token.stderr
    config = yaml.safe_load(Path(dc.kubeconfig_path).read_text())
    for user in config["users"]:
        user["user"] = {"token": token.stdout.strip()}
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_operator_not_allowed_to_watch_workloads_still_runs_and_says_so(
    operator_base: Any, model_cache: Path, jobs: Jobs, namespace: str, tmp_path: Path, without_workload_crd: None
) -> None:
    """kopf holds every handler until each index has listed once, so a forbidden Workload watch would
    stall every event-driven reconcile: the operator asks RBAC first and does without Kueue's reasons.
    The sweep is made rare here, so only watch events can move the job."""
    dc = operator_base
    install_kueue_crd(dc, "workloads")
    local_queue(dc, namespace, QUEUE)
    create_peering(dc, namespace)
    env = operator_env(dc, model_cache, [namespace], resync_seconds=600)
    env["KUBECONFIG"] = str(kubeconfig_without_workloads(dc, tmp_path / "kubeconfig"))
    op = OperatorProcess(env, tmp_path / "operator-0.log").start()
    try:
        jobs.apply(tiny_job("unwatched", queueName=QUEUE, cache=False))
        status = wait_until(
            lambda: (s := jobs.status("unwatched")).get("reason") == "WaitingForAdmission" and s,
            what="the job to be reconciled",
        )
        (job,) = jobs.runner_jobs()
        PlayKueue(dc, namespace, job).status(cond("QuotaReserved", False, "Pending", INSUFFICIENT))
        time.sleep(3)
        assert (
            jobs.status("unwatched")["message"]
            == status["message"]
            == f"waiting for Kueue to admit the Job in LocalQueue {QUEUE!r}"
        )
        assert "not allowed to list and watch workloads.kueue.x-k8s.io" in op.logs()
    finally:
        op.stop()
