"""Faults that used to stall or mis-report the system, against the real API server and runner.

Each test names the fault: an API-refused pod spec, a pod the Job controller may not create
(a ResourceQuota), a drain whose replacement pod waits past the startup deadline, a Job collected
right after its pod succeeded, two operator replicas, an operator restarted while its cap is full,
an operator SIGKILLed three times (once between creating the Job and writing status), a reconcile
that keeps failing (its status writes refused), and an API server restarted mid-run.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import pytest
from operator_support import Jobs, tiny_job

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow]
SLOW_RUNNER = '{"VIDEOGEN_TEST_STEP_DELAY_SECONDS": "0.5"}'
ORDER = {"": 0, "Pending": 1, "Queued": 2, "Running": 3, "Succeeded": 4, "Failed": 4, "Cancelled": 4}


def wait_until(check: Any, timeout: float = 120, what: str = "condition", interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def runner_pods(devcluster: Any, namespace: str) -> list[dict[str, Any]]:
    out = devcluster.kubectl(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/managed-by=videogen-operator", "-o", "json"
    )
    return list(json.loads(out.stdout)["items"]) if out.returncode == 0 else []


def s3_sha256(devcluster: Any, uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return hashlib.sha256(devcluster.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


class PhaseRecorder:
    """Samples every job's status; fails a test on a phase that goes backwards."""

    def __init__(self, jobs: Jobs, names: list[str]) -> None:
        self.jobs, self.names = jobs, names
        self.samples: list[dict[str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = {}
            for name in self.names:
                try:
                    sample[name] = self.jobs.status(name)
                except AssertionError:
                    continue
            self.samples.append(sample)
            time.sleep(0.3)

    def __enter__(self) -> PhaseRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def regressions(self) -> list[str]:
        out = []
        last: dict[str, str] = {}
        for sample in self.samples:
            for name, status in sample.items():
                phase = status.get("phase") or ""
                if ORDER[phase] < ORDER[last.get(name, "")] and status.get("reason") != "Suspended":
                    out.append(f"{name}: {last[name]} -> {phase}")
                last[name] = phase
        return out


def test_a_job_whose_pod_spec_the_api_refuses_does_not_block_the_jobs_behind_it(
    jobs: Jobs, start_operator: Any
) -> None:
    start_operator(max_running=1)
    # Valid for the CRD, refused by the API server: tolerationSeconds needs effect NoExecute.
    bad = {"tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}]}
    jobs.apply(tiny_job("refused", resources=bad, cache=False))
    time.sleep(1.1)
    jobs.apply(tiny_job("behind", cache=False))

    refused = jobs.wait_phase("refused", "Failed", "Succeeded", timeout=60)
    assert (refused["phase"], refused["reason"]) == ("Failed", "CreateFailed"), refused
    assert "tolerationSeconds" in refused["message"] or "NoExecute" in refused["message"], refused["message"]
    warnings = [e for e in jobs.events("refused") if e["type"] == "Warning" and e["reason"] == "CreateFailed"]
    assert warnings, "the refusal is an Event on the job, not only a log line"

    behind = jobs.wait_phase("behind", "Succeeded", "Failed", timeout=300)
    assert behind["phase"] == "Succeeded", behind


def test_a_pod_the_job_controller_cannot_create_is_on_the_jobs_status_and_a_warning_event_until_fixed(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    # A ResourceQuota that allows no pod: the runner Job is created, but the Job controller's
    # pod creation is refused at admission (its FailedCreate Event is all that says so).
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods-here", "namespace": namespace},
        "spec": {"hard": {"pods": "0"}},
    }
    applied = devcluster.kubectl("apply", "-f", "-", input=json.dumps(quota))
    assert applied.returncode == 0, applied.stderr

    def accounted() -> bool:
        found = devcluster.kubectl("get", "quota", "no-pods-here", "-n", namespace, "-o", "json")
        return found.returncode == 0 and bool(json.loads(found.stdout).get("status", {}).get("hard"))

    wait_until(accounted, what="the quota controller to account the quota")
    start_operator()
    # A long startup allowance: the Job controller backs off its pod creation (up to a minute)
    # after the refusals, and the job must still be waiting, not failed, when the quota goes.
    jobs.apply(tiny_job("over-quota", cache=False, startupTimeoutSeconds=600))

    def refused() -> dict[str, Any] | None:
        status = jobs.status("over-quota")
        return status if status.get("reason") == "PodCreateFailed" else None

    waiting = wait_until(refused, timeout=120, what="PodCreateFailed on the job's status")
    assert waiting["phase"] == "Queued", waiting
    assert "exceeded quota" in waiting["message"] and "no-pods-here" in waiting["message"], waiting["message"]
    assert waiting["lastFailure"]["reason"] == "PodCreateFailed", waiting
    assert jobs.runner_jobs(), "the runner Job exists; only its pod was refused"
    warnings = wait_until(
        lambda: [e for e in jobs.events("over-quota") if e["type"] == "Warning" and e["reason"] == "PodCreateFailed"],
        timeout=30,
        what="a Warning Event PodCreateFailed on the job",
    )
    assert "no-pods-here" in warnings[0]["message"], warnings

    # The namespace's admin lifts the quota: the same job runs, nothing to resubmit.
    assert devcluster.kubectl("delete", "quota", "no-pods-here", "-n", namespace).returncode == 0
    final = jobs.wait_phase("over-quota", "Succeeded", "Failed", timeout=300)
    assert final["phase"] == "Succeeded", final
    assert final["attempts"] == 1, "a refused pod creation is not an attempt"
    assert "lastFailure" not in final, final


def test_a_drained_pod_whose_replacement_waits_past_the_startup_deadline_is_replaced_and_succeeds(
    devcluster: Any, core_v1: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    from kubernetes import client

    start_operator(extra_runner_env=SLOW_RUNNER)
    jobs.apply(tiny_job("drained", steps=12, cache=False, startupTimeoutSeconds=15, timeoutSeconds=600))
    jobs.wait_phase("drained", "Running", timeout=180)
    (pod,) = [p for p in runner_pods(devcluster, namespace) if p["status"].get("phase") == "Running"]
    node = pod["spec"]["nodeName"]

    with PhaseRecorder(jobs, ["drained"]) as recorder:
        assert devcluster.kubectl("cordon", node).returncode == 0
        try:
            # What `kubectl drain` does to the pod: the eviction API (DisruptionTarget on the pod).
            eviction = client.V1Eviction(
                metadata=client.V1ObjectMeta(name=pod["metadata"]["name"], namespace=namespace)
            )
            core_v1.create_namespaced_pod_eviction(pod["metadata"]["name"], namespace, eviction)
            waiting = wait_until(
                lambda: [
                    p
                    for p in runner_pods(devcluster, namespace)
                    if p["metadata"]["name"] != pod["metadata"]["name"] and p["status"].get("phase") == "Pending"
                ],
                what="the replacement pod, unschedulable on the cordoned node",
            )
            assert waiting
            time.sleep(25)  # longer than startupTimeoutSeconds
            during = jobs.status("drained")
            assert (during["phase"], during["reason"]) == ("Running", "Retrying"), during
            assert "disrupted" in during["message"], during["message"]
        finally:
            devcluster.kubectl("uncordon", node)
        final = jobs.wait_phase("drained", "Succeeded", "Failed", timeout=300)
    assert final["phase"] == "Succeeded", final
    assert final["attempts"] == 1, "a disruption is not an attempt"
    assert recorder.regressions() == []


def test_a_job_removed_right_after_its_pod_succeeded_still_yields_succeeded_with_the_output(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    op = start_operator()
    jobs.apply(tiny_job("collected", cache=False))
    jobs.wait_phase("collected", "Running", timeout=180)
    op.kill()  # nobody reads the pod's termination message while it exists
    wait_until(
        lambda: any(p["status"].get("phase") == "Succeeded" for p in runner_pods(devcluster, namespace)),
        timeout=240,
        what="the runner pod to succeed",
    )
    (job,) = jobs.runner_jobs()
    # What a short ttlSecondsAfterFinished does: the Job and its pods are gone.
    deleted = devcluster.kubectl(
        "delete", "job", job["metadata"]["name"], "-n", namespace, "--cascade=foreground", "--timeout=60s"
    )
    assert deleted.returncode == 0, deleted.stderr
    wait_until(lambda: not runner_pods(devcluster, namespace), what="the runner pod to be gone")

    start_operator()
    final = jobs.wait_phase("collected", "Succeeded", "Failed", timeout=120)
    assert (final["phase"], final["reason"]) == ("Succeeded", "Succeeded"), final
    assert final["output"]["sha256"] == s3_sha256(devcluster, final["output"]["uri"])


def test_two_operator_replicas_never_exceed_the_cap_nor_regress_a_phase(jobs: Jobs, start_operator: Any) -> None:
    first = start_operator(max_running=1, extra_runner_env=SLOW_RUNNER)
    start_operator(max_running=1, extra_runner_env=SLOW_RUNNER)
    names = ["r1", "r2", "r3"]
    with PhaseRecorder(jobs, names) as recorder:
        for name in names:
            jobs.apply(tiny_job(name, steps=6, cache=False))
            time.sleep(1.1)
        jobs.wait_phase("r1", "Running", timeout=180)
        first.kill()  # the standby takes over once the active replica's peering record expires
        for name in names:
            assert jobs.wait_phase(name, "Succeeded", "Failed", timeout=400)["phase"] == "Succeeded"
    assert recorder.regressions() == []
    for sample in recorder.samples:
        running = [n for n, s in sample.items() if s.get("phase") == "Running"]
        assert len(running) <= 1, f"cap exceeded: {running}"
    assert sorted(j["metadata"]["annotations"]["videogen.dev/owner"] for j in jobs.runner_jobs()) == names


def test_an_operator_restarted_with_its_cap_full_starts_no_job_until_a_gpu_frees(
    jobs: Jobs, start_operator: Any
) -> None:
    """A restarted operator's first admission pass must count the Jobs that hold the cap: it runs
    only once kopf's indices have listed them (helm upgrade, a rescheduled pod)."""
    op = start_operator(max_running=2, extra_runner_env=SLOW_RUNNER)
    held, waiting = ["held-1", "held-2"], ["waits-1", "waits-2"]
    for name in held:
        jobs.apply(tiny_job(name, steps=40, cache=False))
    for name in held:
        jobs.wait_phase(name, "Running", timeout=180)
    for name in waiting:
        jobs.apply(tiny_job(name, cache=False))
    for name in waiting:
        jobs.wait_phase(name, "Queued", timeout=60)
    op.stop()
    start_operator(max_running=2, extra_runner_env=SLOW_RUNNER)
    # Until a held job ends, no waiting job may have a Job (the cap's GPUs are all held).
    early: list[str] = []
    while not any(jobs.status(n).get("phase") in ("Succeeded", "Failed") for n in held):
        owners = [j["metadata"]["annotations"]["videogen.dev/owner"] for j in jobs.runner_jobs()]
        early.extend(o for o in owners if o in waiting)
        time.sleep(0.2)
    assert early == [], f"started over the cap after the restart: {sorted(set(early))}"
    for name in held + waiting:
        assert jobs.wait_phase(name, "Succeeded", "Failed", timeout=400)["phase"] == "Succeeded"


REFUSE_JOB_NAME = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: %(name)s}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [videogen.dev]
        apiVersions: ["*"]
        operations: [UPDATE]
        resources: [videogenjobs/status]
  matchConditions:
    - name: this-namespace
      expression: object.metadata.namespace == "%(namespace)s"
  validations:
    - expression: "!has(object.status.jobName) || has(oldObject.status.jobName)"
      message: test fault - status writes that record a Job are refused
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: %(name)s}
spec:
  policyName: %(name)s
  validationActions: [Deny]
"""


def test_an_operator_sigkilled_three_times_in_one_run_leaves_one_job_and_a_converged_status(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    # Kill 1 lands between creating the Job and recording it: the API server refuses the
    # status write that would record it (an admission policy), so the operator is caught
    # with the Job created and the status not yet written.
    policy = f"vgj-fault-{namespace}"[:63]
    applied = devcluster.kubectl("apply", "-f", "-", input=REFUSE_JOB_NAME % {"name": policy, "namespace": namespace})
    assert applied.returncode == 0, applied.stderr
    try:
        op = start_operator(extra_runner_env=SLOW_RUNNER)
        jobs.apply(tiny_job("killed", steps=16, cache=False))
        wait_until(jobs.runner_jobs, what="the runner Job")
        assert "jobName" not in jobs.status("killed")
        op.kill()
    finally:
        devcluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy)
    time.sleep(1)

    op = start_operator(extra_runner_env=SLOW_RUNNER)
    jobs.wait_phase("killed", "Running", timeout=180)
    op.kill()  # kill 2: while it runs
    time.sleep(2)
    op = start_operator(extra_runner_env=SLOW_RUNNER)
    wait_until(
        lambda: (jobs.status("killed").get("progress") or {}).get("stage") == "generating",
        timeout=180,
        what="generating",
    )
    op.kill()  # kill 3: mid-generation
    time.sleep(2)
    start_operator(extra_runner_env=SLOW_RUNNER)

    final = jobs.wait_phase("killed", "Succeeded", "Failed", timeout=300)
    assert final["phase"] == "Succeeded", final
    assert final["attempts"] == 1
    (job,) = jobs.runner_jobs()
    assert final["jobName"] == job["metadata"]["name"]
    assert final["output"]["sha256"] == s3_sha256(devcluster, final["output"]["uri"])


REFUSE_START = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: %(name)s}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [videogen.dev]
        apiVersions: ["*"]
        operations: [UPDATE]
        resources: [videogenjobs/status]
  matchConditions:
    - name: this-namespace
      expression: object.metadata.namespace == "%(namespace)s"
  validations:
    - expression: "!has(object.status.phase) || !(object.status.phase in ['Running', 'Succeeded'])"
      message: test fault - jobs of this namespace may not start
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: %(name)s}
spec:
  policyName: %(name)s
  validationActions: [Deny]
"""


def test_a_reconcile_that_keeps_failing_is_on_the_jobs_status_and_a_warning_event_until_it_passes(
    devcluster: Any, jobs: Jobs, namespace: str, start_operator: Any
) -> None:
    # Every status write that would move the job on is refused (an admission policy), so each
    # reconcile fails the same way; only the error itself may be written.
    policy = f"vgj-stuck-{namespace}"[:63]
    applied = devcluster.kubectl("apply", "-f", "-", input=REFUSE_START % {"name": policy, "namespace": namespace})
    assert applied.returncode == 0, applied.stderr
    try:
        start_operator()
        jobs.apply(tiny_job("stuck", cache=False))

        def recorded() -> dict[str, Any] | None:
            status = jobs.status("stuck")
            return status if "could not reconcile" in str(status.get("message")) else None

        stuck = wait_until(recorded, timeout=180, what="the reconcile error on the job's status")
        assert stuck["phase"] in ("Pending", "Queued"), stuck
        # The API server's own words, not the HTTP client's dump of headers.
        assert "test fault - jobs of this namespace may not start" in stuck["message"], stuck["message"]
        assert "HTTP response headers" not in stuck["message"], stuck["message"]
        warnings = wait_until(
            lambda: [e for e in jobs.events("stuck") if e["type"] == "Warning" and e["reason"] == "ReconcileError"],
            timeout=30,
            what="a Warning Event ReconcileError on the job",
        )
        assert "test fault - jobs of this namespace may not start" in warnings[0]["message"], warnings
    finally:
        devcluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy)
    final = jobs.wait_phase("stuck", "Succeeded", "Failed", timeout=300)
    assert final["phase"] == "Succeeded", final
    assert "could not reconcile" not in final["message"]


def test_the_api_server_restarted_mid_run(devcluster: Any, jobs: Jobs, start_operator: Any) -> None:
    start_operator(extra_runner_env=SLOW_RUNNER)
    jobs.apply(tiny_job("through-restart", steps=16, cache=False))
    jobs.wait_phase("through-restart", "Running", timeout=180)

    cp = devcluster.control_plane
    old = cp.processes["kube-apiserver"]
    old.stop()
    time.sleep(3)
    cp._spawn("kube-apiserver", old.argv)  # same flags, same port, same etcd
    wait_until(lambda: devcluster.kubectl("get", "--raw", "/readyz").returncode == 0, timeout=120, what="readyz")

    final = jobs.wait_phase("through-restart", "Succeeded", "Failed", timeout=300)
    assert final["phase"] == "Succeeded", final
    assert final["attempts"] == 1
    assert len(jobs.runner_jobs()) == 1
