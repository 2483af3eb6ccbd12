"""Kueue's Workload conditions in the job's status: the pure condensing (kueue.py) and the
reconcile that uses it, from the views (the fake API of test_operator_views_reconcile records
calls; the integration test tests/integration/test_operator_kueue.py runs the same path against the real API
server and Kueue's real Workload CRD). Condition messages are Kueue v0.17's own formats."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from test_operator_views_reconcile import NOW, NS, RecordingApi, ref, setup, stamp, status_of, vgj
from test_tenancy_policy import FakeStore

from videogen_api import v1alpha1 as api
from videogen_operator import credentials, kueue, manifests
from videogen_operator.outputs import Outputs
from videogen_operator.reconcile import Reconciler
from videogen_operator.views import slim_job, slim_pod

QUEUE = "gpu-queue"
INSUFFICIENT = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor default, "
    "1 more needed"
)
PREEMPTED = (
    "Preempted to accommodate a workload (UID: 7d0c1f2e-1111-2222-3333-444455556666, JobUID: "
    "0a9b8c7d-1111-2222-3333-444455556666) due to prioritization in the ClusterQueue; preemptor path: /gpu-cq; "
    "preemptee path: /gpu-cq"
)


def cond(ctype: str, status: bool, reason: str, message: str, minute: int = 0) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": stamp(NOW + timedelta(minutes=minute)),
    }


def workload(
    *conditions: dict[str, Any],
    job_uid: str = "job-uid",
    owner: str = "kjob",
    ours: bool = True,
    **status: Any,
) -> dict[str, Any]:
    """A Workload as Kueue makes it for a batch/v1 Job: owned by the Job, the pod template copied."""
    labels = {api.LABEL_MANAGED_BY: api.MANAGED_BY} if ours else {"app": "someone-else"}
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": f"job-{owner}-abcde",
            "namespace": NS,
            "uid": f"wl-{job_uid}",
            "resourceVersion": "7",
            "creationTimestamp": stamp(NOW),
            "labels": {kueue.JOB_UID_LABEL: job_uid},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": owner,
                    "uid": job_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [{"manager": "kueue"}],
        },
        "spec": {
            "active": True,
            "queueName": QUEUE,
            "podSets": [
                {
                    "name": "main",
                    "count": 1,
                    "template": {
                        "metadata": {"labels": labels, "annotations": {manifests.OWNER_ANNOTATION: owner}},
                        "spec": {"containers": [{"name": "runner", "image": "runner:dev"}]},
                    },
                }
            ],
        },
        "status": {"conditions": list(conditions), **status},
    }


def describe(body: dict[str, Any], *, has_run: bool = False) -> kueue.Wait:
    return kueue.describe_wait(kueue.slim_workload(body), QUEUE, NS, has_run=has_run)


# ----------------------------------------------------------------------------- the Workload


def test_a_workload_of_our_runner_is_recognised_by_its_copied_pod_template() -> None:
    ours, theirs = workload(), workload(ours=False)
    assert kueue.is_runner_workload(ours) and not kueue.is_runner_workload(theirs)
    assert kueue.job_uid_of(ours) == "job-uid"
    assert kueue.owner_key(ours) == (NS, "kjob")


def test_the_job_uid_comes_from_the_controller_reference_before_the_label() -> None:
    body = workload()
    body["metadata"]["labels"][kueue.JOB_UID_LABEL] = "a-label-says-otherwise"
    assert kueue.job_uid_of(body) == "job-uid"
    del body["metadata"]["ownerReferences"]
    assert kueue.job_uid_of(body) == "a-label-says-otherwise"


def test_the_slim_workload_keeps_conditions_and_drops_the_pod_template() -> None:
    body = workload(cond("QuotaReserved", False, "Pending", "x" * 5000), cond("PodsReady", False, "WaitForStart", "w"))
    slim = kueue.slim_workload(body)
    assert "spec" not in slim and "managedFields" not in slim["metadata"]
    assert [c["type"] for c in slim["conditions"]] == ["QuotaReserved"]
    assert len(slim["conditions"][0]["message"]) == kueue.DETAIL_LIMIT


# ----------------------------------------------------------------------------- pending


def test_a_new_workload_without_conditions_says_only_that_it_waits() -> None:
    wait = describe(workload())
    assert (wait.reason, wait.message) == (
        "WaitingForAdmission",
        "waiting for Kueue to admit the Job in LocalQueue 'gpu-queue'",
    )
    assert wait.eviction is None


def test_insufficient_quota_is_in_the_message() -> None:
    wait = describe(workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT)))
    assert wait.reason == "WaitingForAdmission"
    assert wait.message == f"waiting for Kueue to admit the Job in LocalQueue 'gpu-queue': {INSUFFICIENT}"


def test_kueue_saying_the_local_queue_is_missing_is_local_queue_missing() -> None:
    wait = describe(workload(cond("QuotaReserved", False, "Inadmissible", f"LocalQueue {QUEUE} doesn't exist")))
    assert wait.reason == "LocalQueueMissing"
    assert "spec.queueName" in wait.message and "'gpu-queue'" in wait.message
    assert "not installed" not in wait.message


def test_other_inadmissible_reasons_wait_with_kueues_words() -> None:
    wait = describe(workload(cond("QuotaReserved", False, "Inadmissible", "ClusterQueue gpu-cq is inactive")))
    assert wait.reason == "WaitingForAdmission"
    assert wait.message.endswith(": ClusterQueue gpu-cq is inactive")


def test_reserved_quota_waiting_for_admission_checks_names_the_checks() -> None:
    body = workload(
        cond("QuotaReserved", True, "QuotaReserved", "Quota reserved in ClusterQueue gpu-cq"),
        cond("Admitted", False, "NoChecks", "The workload has not all checks ready"),
        admissionChecks=[
            {
                "name": "dws-prov",
                "state": "Pending",
                "message": "Waiting for resources. Currently there are not enough resources available to fulfill the request.",
                "lastTransitionTime": stamp(NOW),
            },
            {"name": "ready-one", "state": "Ready", "message": "", "lastTransitionTime": stamp(NOW)},
        ],
    )
    message = describe(body).message
    assert "Quota reserved in ClusterQueue gpu-cq" in message
    assert "admission check dws-prov is Pending: Waiting for resources" in message
    assert "ready-one" not in message


def test_a_deactivated_workload_says_so() -> None:
    body = workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT))
    body["spec"]["active"] = False
    assert "deactivated (spec.active is false)" in describe(body).message


# ----------------------------------------------------------------------------- evicted


def evicted_workload() -> dict[str, Any]:
    """What Kueue leaves once a preempted Job's pods are gone (jobframework's eviction handling)."""
    return workload(
        cond("QuotaReserved", False, "Pending", PREEMPTED, 5),
        cond("Admitted", False, "NoReservation", "The workload has no reservation", 5),
        cond("Evicted", True, "Preempted", PREEMPTED, 5),
        cond("Preempted", True, "InClusterQueue", PREEMPTED, 5),
        cond("Requeued", True, "Preempted", PREEMPTED, 5),
    )


def test_an_eviction_of_a_job_that_has_run_is_a_retry_with_kueues_reason() -> None:
    wait = describe(evicted_workload(), has_run=True)
    assert wait.reason == "Retrying"
    assert wait.message == (
        f"evicted by Kueue (Preempted: {PREEMPTED}); waiting for Kueue to admit the Job again in LocalQueue 'gpu-queue'"
    ), "the eviction's message is said once, not again as the quota's"
    assert wait.eviction == kueue.Eviction("Preempted", PREEMPTED, stamp(NOW + timedelta(minutes=5)))


def test_an_evicted_job_that_never_ran_still_waits_for_admission() -> None:
    body = workload(
        cond("QuotaReserved", False, "Pending", INSUFFICIENT, 6),
        cond("Evicted", True, "PodsReadyTimeout", "Exceeded the PodsReady timeout team-a/job-kjob-abcde", 5),
        cond("Requeued", False, "PodsReadyTimeout", "Exceeded the PodsReady timeout team-a/job-kjob-abcde", 5),
        requeueState={"count": 1, "requeueAt": "2026-01-01T12:07:00Z"},
    )
    wait = describe(body)
    assert wait.reason == "WaitingForAdmission"
    assert wait.message.startswith("evicted by Kueue (PodsReadyTimeout: Exceeded the PodsReady timeout")
    assert wait.message.endswith(
        f"again in LocalQueue 'gpu-queue': {INSUFFICIENT}; Kueue requeues it at 2026-01-01T12:07:00Z"
    )


def test_counts_that_move_with_the_queue_are_the_same_wording() -> None:
    one = describe(workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT))).message
    two = describe(workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT.replace("1 more", "2 more")))).message
    assert one != two and kueue.same_wording(one, two)
    assert not kueue.same_wording(kueue.waiting_message(QUEUE), one)


# ----------------------------------------------------------------------------- reconcile


class QueueApi(RecordingApi):
    """The fake API, with the one Kueue read the operator may make: does the LocalQueue exist?"""

    def __init__(self) -> None:
        super().__init__()
        self.queue_reads = 0

    def local_queue_exists(self, namespace: str, name: str) -> bool:
        self.queue_reads += 1
        return True


def kueue_setup(
    body: dict[str, Any],
    *workloads: dict[str, Any],
    fake: QueueApi | None = None,
    pods: list[dict[str, Any]] | None = None,
) -> tuple[Reconciler, QueueApi, dict[str, list[dict[str, Any]]]]:
    """A VideoGenJob whose runner Job Kueue holds suspended, and the Workload index (by Job uid)."""
    job = slim_job(
        {
            "metadata": {
                "name": manifests.child_name(ref(body)),
                "namespace": NS,
                "uid": "job-uid",
                "creationTimestamp": stamp(NOW),
                "labels": {api.KUEUE_QUEUE_LABEL: QUEUE},
            },
            "spec": {"suspend": True},
            "status": {},
        }
    )
    index: dict[str, list[dict[str, Any]]] = {}
    for w in workloads:
        index.setdefault(str(kueue.job_uid_of(w)), []).append(kueue.slim_workload(w))
    fake = fake or QueueApi()
    r, _ = setup(
        [body], jobs={body["metadata"]["uid"]: [job]}, pods={"job-uid": pods or []}, api_=fake, workloads=index
    )
    return r, fake, index


def waiting(name: str) -> dict[str, Any]:
    return vgj(name, status={"phase": "Queued", "reason": "WaitingForAdmission", "jobName": "x"}, queueName=QUEUE)


def test_a_reconcile_shows_the_workloads_condition_without_reading_the_api() -> None:
    r, fake, _ = kueue_setup(waiting("kjob"), workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT)))
    r.reconcile(NS, "kjob")
    s = status_of(r, "kjob")
    assert (s["phase"], s["reason"]) == ("Queued", "WaitingForAdmission")
    assert s["message"].endswith(INSUFFICIENT)
    assert len(fake.patches) == 1 and fake.gets == [] and fake.queue_reads == 0
    r.reconcile(NS, "kjob")
    assert len(fake.patches) == 1, "nothing changed, nothing written"


def test_without_a_workload_the_local_queue_is_read_and_another_jobs_workload_changes_nothing() -> None:
    r, fake, _ = kueue_setup(
        waiting("kjob"), workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT), job_uid="other")
    )
    r.reconcile(NS, "kjob")
    assert status_of(r, "kjob")["message"] == kueue.waiting_message(QUEUE)
    assert fake.queue_reads == 1


def test_a_job_that_ran_and_was_evicted_stays_running_with_the_eviction_as_a_disruption() -> None:
    started = stamp(NOW - timedelta(minutes=3))
    body = vgj(
        "kjob",
        status={"phase": "Running", "reason": "Running", "jobName": "x", "startTime": started, "attempts": 1},
        queueName=QUEUE,
    )
    r, fake, _ = kueue_setup(body, evicted_workload())
    r.reconcile(NS, "kjob")
    s = status_of(r, "kjob")
    assert (s["phase"], s["reason"]) == ("Running", "Retrying")
    assert s["message"].startswith("evicted by Kueue (Preempted: Preempted to accommodate a workload")
    assert s["lastFailure"]["location"] == "disruption" and s["lastFailure"]["reason"] == "Preempted"
    assert s["lastFailure"]["time"] == stamp(NOW + timedelta(minutes=5)), "Kueue's time: stable across passes"
    assert s["attempts"] == 1
    assert ("kjob", "Warning", "Retrying") in fake.events
    before = len(fake.patches)
    r.reconcile(NS, "kjob")
    assert len(fake.patches) == before and fake.queue_reads == 0


def test_a_new_count_waits_for_the_write_interval_but_new_wording_does_not() -> None:
    r, fake, index = kueue_setup(waiting("kjob"), workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT)))
    r.settings = r.settings.model_copy(update={"status_min_interval_seconds": 3600})
    r.reconcile(NS, "kjob")
    assert len(fake.patches) == 1, "Kueue's first words are news: written at once"
    more = workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT.replace("1 more", "2 more")))
    index["job-uid"] = [kueue.slim_workload(more)]
    r.reconcile(NS, "kjob")
    assert len(fake.patches) == 1, "a count that moved waits for the interval"
    inactive = workload(cond("QuotaReserved", False, "Inadmissible", "ClusterQueue gpu-cq is inactive"))
    index["job-uid"] = [kueue.slim_workload(inactive)]
    r.reconcile(NS, "kjob")
    assert len(fake.patches) == 2 and status_of(r, "kjob")["message"].endswith("ClusterQueue gpu-cq is inactive")


# ----------------------------------------------------------------------------- the grant while Kueue holds the Job


class GrantApi(QueueApi):
    """Records the grant Secrets written over the old one (the Secret is never read)."""

    def __init__(self) -> None:
        super().__init__()
        self.replaced: list[dict[str, Any]] = []

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.replaced.append(obj)
        return obj


class RenewingStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.aborted: list[tuple[str, str, str | None]] = []

    def abort_multipart(self, bucket: str, key: str, upload_id: str | None = None, *, keep: str | None = None) -> int:
        self.aborted.append((bucket, key, keep))
        return 1


def grant_setup(
    pods: list[dict[str, Any]] | None = None,
) -> tuple[Reconciler, GrantApi, RenewingStore, int, int]:
    body = waiting("kjob")
    held = workload(cond("QuotaReserved", False, "Pending", INSUFFICIENT))
    r, fake, _ = kueue_setup(body, held, fake=GrantApi(), pods=pods)
    assert isinstance(fake, GrantApi)
    store = RenewingStore()
    r.store = store  # type: ignore[assignment]
    r.outputs = Outputs(fake, r.settings, store)  # type: ignore[arg-type]
    spec = api.VideoGenJobSpec.model_validate(body["spec"])
    return r, fake, store, credentials.grant_lifetime(spec, r.settings), credentials.run_lifetime(spec, r.settings)


def at(r: Reconciler, seconds: float) -> datetime:
    when = NOW + timedelta(seconds=seconds)
    r.clock = lambda: when
    return when


def test_kueue_holding_a_job_longer_than_its_urls_last_gets_a_grant_issued_now_once() -> None:
    r, fake, store, lifetime, run = grant_setup()
    assert lifetime == run + r.settings.kueue_grant_wait_seconds
    at(r, lifetime - run - 120)  # the Job was made at NOW with its first grant: enough is left
    r.reconcile(NS, "kjob")
    assert fake.replaced == []
    now = at(r, lifetime - run)  # what is left would not last a run that started now
    r.reconcile(NS, "kjob")
    assert len(fake.replaced) == 1
    secret = fake.replaced[0]
    assert secret["metadata"]["name"] == manifests.grant_secret_name(ref(waiting("kjob")))
    grant = json.loads(secret["stringData"][api.GRANT_SECRET_KEY])
    assert grant["expiresAt"] == (now + timedelta(seconds=lifetime)).isoformat()
    assert store.seconds == {lifetime}
    upload = grant["multipart"]["uploadId"]
    assert store.aborted == [("videos", grant["video"]["key"], upload)], "every other upload of its key goes"
    assert ("kjob", "Normal", "GrantRenewed") in fake.events
    r.reconcile(NS, "kjob")
    assert len(fake.replaced) == 1, "the new grant is good for a while: no second write"
    at(r, 2 * (lifetime - run) + 1)  # waited through the renewed grant too
    r.reconcile(NS, "kjob")
    assert len(fake.replaced) == 2


def test_a_grant_is_not_replaced_under_a_live_pod() -> None:
    pod = slim_pod({"metadata": {"name": "p", "namespace": NS}, "status": {"phase": "Running"}})
    r, fake, _, lifetime, run = grant_setup(pods=[pod])
    at(r, lifetime - run)
    r.reconcile(NS, "kjob")
    assert fake.replaced == []
