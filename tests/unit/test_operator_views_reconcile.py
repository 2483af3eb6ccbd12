"""Reconcile and admission from the views: no reads from the API, bounded writes, errors kept
with their job. The fake API below records calls and answers the way the API server does
(409 on a second create, 422 with a Status message for a refused object); the integration
tests run the same paths against the real API server."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import wait as settle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from videogen_api import v1alpha1 as api
from videogen_operator import manifests
from videogen_operator.manifests import JobRef
from videogen_operator.reconcile import Reconciler, needs_timer
from videogen_operator.settings import OperatorSettings
from videogen_operator.views import Views, slim_job, slim_pod

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NS = "team-a"


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class RecordingApi:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.created: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, str, str]] = []
        self.deleted_jobs: list[str] = []
        self.deleted_secrets: list[str] = []
        self.gets: list[str] = []
        self.rv = 100
        self.statuses: dict[str, dict[str, Any]] = {}
        self.specs: dict[str, dict[str, Any]] = {}

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        name = obj["metadata"]["name"]
        if any(c["kind"] == obj["kind"] and c["metadata"]["name"] == name for c in self.created):
            return None
        self.rv += 1
        created = json.loads(json.dumps(obj))
        created["metadata"].update(uid=f"uid-{name}", resourceVersion=str(self.rv), creationTimestamp=stamp(NOW))
        self.created.append(created)
        return created

    def patch_vgj_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        self.patches.append((name, status))
        self.rv += 1
        merged = dict(self.statuses.get(name, {}))
        for key, value in status.items():  # a JSON merge patch: null removes the field
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        self.statuses[name] = merged
        meta = {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": str(self.rv),
            "generation": 1,
        }
        return {"metadata": meta, "spec": self.specs.get(name, {}), "status": merged}

    def post_event(self, vgj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((vgj["metadata"]["name"], event_type, reason))

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets.append(name)
        return None

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name, "namespace": namespace}, "data": {}}

    def create_if_missing(self, obj: dict[str, Any]) -> bool:
        return self.create(obj) is not None

    def delete_secret(self, namespace: str, name: str) -> None:
        self.deleted_secrets.append(name)

    def priority_of(self, class_name: str | None) -> int:
        return 0

    def priority_class_exists(self, class_name: str) -> bool:
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        self.deleted_jobs.append(name)

    def jobs_created(self) -> list[str]:
        return [c["metadata"]["name"] for c in self.created if c["kind"] == "Job"]


def refused(body: str) -> ApiException:
    err = ApiException(status=422, reason="Unprocessable Entity")
    err.body = body
    return err


class RefusingApi(RecordingApi):
    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Job" and name in self.refuse:
            raise refused(json.dumps({"message": f'Job.batch "{name}" is invalid: tolerationSeconds: forbidden'}))
        return super().create(obj)


def vgj(name: str, minute: int = 0, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body_spec = {"model": "hf://org/tiny", "task": "text-to-video", "prompt": "a cat", "seed": 1}
    body_spec.update(spec)
    return {
        "metadata": {
            "namespace": NS,
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": stamp(NOW + timedelta(minutes=minute)),
        },
        "spec": body_spec,
        "status": status or {},
    }


def queued(name: str, minute: int = 0, **spec: Any) -> dict[str, Any]:
    return vgj(name, minute, {"phase": "Queued", "reason": "Queued", "specHash": "h", "attempts": 0}, **spec)


def setup(
    bodies: list[dict[str, Any]],
    jobs: dict[str, list[dict[str, Any]]] | None = None,
    pods: dict[str, list[dict[str, Any]]] | None = None,
    api_: RecordingApi | None = None,
    workloads: dict[str, list[dict[str, Any]]] | None = None,
    **settings: Any,
) -> tuple[Reconciler, RecordingApi]:
    index = {(b["metadata"]["namespace"], b["metadata"]["name"]): [b] for b in bodies}
    views = Views(index, jobs or {}, pods or {}, workloads=workloads)
    for b in bodies:  # what the VideoGenJob event handler does for each listed object
        views.observe_vgj(b)
    fake = api_ or RecordingApi()
    fake.statuses = {b["metadata"]["name"]: dict(b["status"]) for b in bodies}
    fake.specs = {b["metadata"]["name"]: b["spec"] for b in bodies}
    # These jobs name hf:// URIs: a cluster that allows unlisted models (the catalog's own tests
    # are in test_operator_catalog.py).
    settings.setdefault("allow_unlisted_models", True)
    s = OperatorSettings(s3_bucket="videos", status_min_interval_seconds=0, **settings)
    return Reconciler(fake, s, None, clock=lambda: NOW, views=views), fake  # type: ignore[arg-type]


def ref(body: dict[str, Any]) -> JobRef:
    m = body["metadata"]
    return JobRef(m["namespace"], m["name"], m["uid"])


def status_of(r: Reconciler, name: str) -> dict[str, Any]:
    found = r.views.vgj(NS, name)
    assert found is not None
    return dict(found["status"])


def test_a_refused_job_fails_with_the_api_message_and_the_job_behind_it_starts() -> None:
    bad, good = queued("bad", 0), queued("good", 1)
    r, fake = setup([bad, good], api_=RefusingApi(refuse={manifests.child_name(ref(bad))}), max_running=1)
    settle(r.admit())
    s = status_of(r, "bad")
    assert (s["phase"], s["reason"]) == ("Failed", "CreateFailed")
    assert "tolerationSeconds: forbidden" in s["message"] and "Job" in s["message"]
    assert ("bad", "Warning", "CreateFailed") in fake.events
    settle(r.admit())  # the terminal transition kicks the next pass
    assert fake.jobs_created() == [manifests.child_name(ref(good))]
    r.reconcile(NS, "good")  # what the new Job's watch event starts
    assert status_of(r, "good")["reason"] == "PodStarting"


def test_a_tenant_job_with_the_operator_labels_does_not_take_a_slot() -> None:
    waiting = queued("mine")
    fake_owner = {"metadata": {"name": "lookalike", "namespace": NS, "uid": "x"}, "spec": {}, "status": {"active": 1}}
    # Owned by (claims) the waiting job's uid, but not under the name the operator derives.
    r, fake = setup([waiting], jobs={"uid-mine": [slim_job(fake_owner)]}, max_running=1)
    settle(r.admit())
    assert fake.jobs_created() == [manifests.child_name(ref(waiting))]


def test_system_priority_classes_are_refused_naming_the_field() -> None:
    body = vgj("vip", resources={"priorityClassName": "system-node-critical"})
    r, fake = setup([body])
    r.reconcile(NS, "vip")
    s = status_of(r, "vip")
    assert (s["phase"], s["reason"]) == ("Failed", "ValidationFailed")
    assert s["message"].startswith("spec.resources.priorityClassName:")
    assert fake.created == []


def test_allow_list_limits_priority_classes_per_namespace() -> None:
    body = vgj("prio", resources={"priorityClassName": "batch-high"})
    r, _ = setup([body], allowed_priority_classes={NS: ["batch-low"]})
    r.reconcile(NS, "prio")
    assert "not allowed in namespace" in status_of(r, "prio")["message"]


def test_a_new_job_under_the_cap_is_written_once_on_its_way_to_the_job() -> None:
    r, fake = setup([vgj("fresh")])
    r.reconcile(NS, "fresh")
    assert fake.patches == [] and fake.created == [], "accepted: the admission pass writes its first status"
    settle(r.admit())
    assert [c["kind"] for c in fake.created] == ["ServiceAccount", "Role", "RoleBinding", "Job"]
    assert fake.patches == [] and fake.events == [], "a starter's work ends at the Job"
    r.reconcile(NS, "fresh")  # what the new Job's watch event starts
    assert len(fake.patches) == 1, "Pending and the admission go out in one write"
    assert [e[2] for e in fake.events] == ["Created", "PodStarting"]
    s = status_of(r, "fresh")
    assert (s["phase"], s["reason"], s["jobName"]) == ("Queued", "PodStarting", manifests.child_name(ref(vgj("fresh"))))
    assert s["specHash"] and s["attempts"] == 0


def test_a_new_job_with_room_and_nothing_waiting_starts_from_its_first_reconcile() -> None:
    """No admission pass between a new job and its Job when that pass could decide nothing else."""
    r, fake = setup([vgj("fresh")], max_running=2)
    settle(r.admit())  # a pass has counted what is held (nothing) and found nobody waiting
    outcome = r.reconcile(NS, "fresh")
    assert outcome.started is not None and not outcome.needs_admission
    settle([outcome.started])
    assert fake.jobs_created() == [manifests.child_name(ref(vgj("fresh")))]
    settle(r.admit())
    assert len(fake.jobs_created()) == 1, "never started twice"
    r.reconcile(NS, "fresh")  # what the new Job's watch event starts
    assert [e[2] for e in fake.events] == ["Created", "PodStarting"]


def test_no_new_job_starts_on_the_count_of_a_pass_long_past() -> None:
    """A replica that stopped being the active one runs no passes (the other may have started jobs
    since): a count older than a few sweep periods admits nothing without a pass."""
    r, fake = setup([vgj("late")], max_running=2)
    settle(r.admit())
    r.clock = lambda: NOW + timedelta(seconds=3 * r.settings.resync_seconds + 1)
    assert r.reconcile(NS, "late").started is None
    settle(r.admit())  # a pass now counts afresh, and admits it
    assert fake.jobs_created() == [manifests.child_name(ref(vgj("late")))]


def test_jobs_admitted_at_once_count_against_the_caps() -> None:
    """Against the cluster-wide cap, and the namespace's share of it."""
    r, fake = setup([vgj("a", 1), vgj("b", 2)], max_running=2)  # half of 2 per namespace: 1
    settle(r.admit())
    first = r.reconcile(NS, "a").started
    assert first is not None
    assert r.reconcile(NS, "b").started is None, "the namespace's share is taken"
    settle([first])
    r, fake = setup([vgj("a", 1), vgj("b", 2), vgj("c", 3)], max_running=2, namespace_share_percent=0)
    settle(r.admit())
    started = [r.reconcile(NS, n).started for n in ("a", "b", "c")]
    assert [s is not None for s in started] == [True, True, False], "the third waits for the pass"
    settle([s for s in started if s is not None])
    settle(r.admit())
    assert fake.jobs_created() == [manifests.child_name(ref(vgj(n, 0))) for n in ("a", "b")]
    assert status_of(r, "c")["queuePosition"] == 1


@pytest.mark.parametrize("newcomer_namespace", [NS, "team-b"], ids=["same-tenant", "second-tenant"])
def test_a_new_job_never_starts_ahead_of_one_that_waits(newcomer_namespace: str) -> None:
    """A freed GPU goes to the job that waited, even when a new job's reconcile sees room first: here a
    2-GPU job waits behind a running one (cap 2), and a 1-GPU newcomer (of the same tenant, or of a
    second tenant) would fit the count of the last pass."""
    holder, job, pod = _running_holder("Running")
    pods = {"j": [pod]}
    waited = queued("waited", 1, resources={"gpus": 2})
    newcomer = vgj("newcomer", 2)
    newcomer["metadata"]["namespace"] = newcomer_namespace
    r, fake = setup(
        [holder, waited, newcomer],
        jobs={"uid-holder": [job]},
        pods=pods,
        max_running=2,
        namespace_share_percent=0,
    )
    settle(r.admit())
    assert fake.jobs_created() == [] and status_of(r, "waited")["queuePosition"] == 1
    pods["j"] = [slim_pod({"metadata": {"name": "holder-pod", "namespace": NS}, "status": {"phase": "Succeeded"}})]
    assert r.reconcile(newcomer_namespace, "newcomer").started is None
    settle(r.admit())
    assert fake.jobs_created() == [manifests.child_name(ref(waited))]


def test_a_job_handed_over_since_the_last_pass_keeps_new_jobs_waiting_for_the_next() -> None:
    """A job that may wait now (its tenant resumed it) was handed over after the pass that found
    nobody waiting: a new job does not start ahead of it before the next pass has looked."""
    holder, job, pod = _running_holder("Running")
    paused = queued("paused", 1, suspend=True)
    r, fake = setup(
        [holder, paused, vgj("newcomer", 2)],
        jobs={"uid-holder": [job]},
        pods={"j": [pod]},
        max_running=2,
        namespace_share_percent=0,
    )
    settle(r.admit())  # one GPU of two held, nobody waiting (the suspended job does not wait)
    resumed = queued("paused", 1)
    resumed["metadata"]["resourceVersion"] = "900"
    r.views._vgjs[(NS, "paused")] = [resumed]  # type: ignore[index]
    assert r.reconcile(NS, "paused").needs_admission
    assert r.reconcile(NS, "newcomer").started is None
    settle(r.admit())
    assert fake.jobs_created() == [manifests.child_name(ref(paused))], "the job that was first goes first"


def test_a_new_job_over_the_cap_gets_one_write_with_its_place_in_the_queue() -> None:
    holder = vgj("holder", 0, {"phase": "Running", "reason": "Running", "jobName": "x"})
    job = slim_job(
        {
            "metadata": {"name": manifests.child_name(ref(holder)), "namespace": NS, "uid": "j"},
            "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
            "status": {"active": 1},
        }
    )
    r, fake = setup([holder, vgj("first", 1), vgj("second", 2)], jobs={"uid-holder": [job]}, max_running=1)
    r.reconcile(NS, "first")
    r.reconcile(NS, "second")
    settle(r.admit())
    assert fake.created == []
    assert len(fake.patches) == 2, "one write per new job"
    # Queue statuses are written side by side: each job's own Events keep their order.
    for name in ("first", "second"):
        assert [e[2] for e in fake.events if e[0] == name] == ["Created", "Queued"]
    assert [status_of(r, n).get("queuePosition") for n in ("first", "second")] == [1, 2]
    settle(r.admit())
    assert len(fake.patches) == 2, "positions unchanged: nothing rewritten"


def test_a_new_job_whose_spec_changed_after_it_was_accepted_waits_for_its_next_reconcile() -> None:
    body = vgj("edited")
    r, fake = setup([body])
    r.reconcile(NS, "edited")
    body["metadata"]["generation"] = 2  # the tenant edited the spec; that reconcile has not run yet
    settle(r.admit())
    assert fake.created == [] and fake.patches == []
    started = r.reconcile(NS, "edited").started  # nothing waits: admitted at once
    assert started is not None
    settle([started])
    assert fake.jobs_created() == [manifests.child_name(ref(body))]
    r.reconcile(NS, "edited")  # what the new Job's watch event starts
    assert status_of(r, "edited")["reason"] == "PodStarting"


def test_queue_positions_cost_a_bounded_number_of_writes() -> None:
    holder = vgj("holder", 0, {"phase": "Running", "reason": "Running", "jobName": "x"})
    job = slim_job(
        {
            "metadata": {"name": manifests.child_name(ref(holder)), "namespace": NS, "uid": "j"},
            "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
            "status": {"active": 1},
        }
    )
    waiting = [queued(f"w{i:02d}", i + 1) for i in range(40)]
    r, fake = setup([holder, *waiting], jobs={"uid-holder": [job]}, max_running=1, queue_positions_exact=3)
    settle(r.admit())
    assert fake.created == []
    assert sorted(name for name, _ in fake.patches) == ["w00", "w01", "w02"]
    assert status_of(r, "w02")["queuePosition"] == 3
    assert "queuePosition" not in status_of(r, "w03")
    before = len(fake.patches)
    settle(r.admit())
    assert len(fake.patches) == before, "nothing moved, nothing written"


def _running_holder(pod_phase: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A running job, its Job (active, no verdict from the Job controller yet) and its pod."""
    holder = vgj("holder", 0, {"phase": "Running", "reason": "Running", "jobName": "x"})
    job = slim_job(
        {
            "metadata": {"name": manifests.child_name(ref(holder)), "namespace": NS, "uid": "j"},
            "spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
            "status": {"active": 1},
        }
    )
    pod = slim_pod({"metadata": {"name": "holder-pod", "namespace": NS}, "status": {"phase": pod_phase}})
    return holder, job, pod


def test_a_gpu_is_free_once_the_runner_pod_succeeded_before_the_job_controller_says_so() -> None:
    holder, job, pod = _running_holder("Running")
    pods = {"j": [pod]}
    r, fake = setup([holder, queued("next", 1)], jobs={"uid-holder": [job]}, pods=pods, max_running=1)
    settle(r.admit())
    assert fake.jobs_created() == [], "the holder's pod runs: its GPU is taken"
    pods["j"] = [slim_pod({"metadata": {"name": "holder-pod", "namespace": NS}, "status": {"phase": "Succeeded"}})]
    settle(r.admit())  # the Job still says active=1 and has no Complete condition
    assert fake.jobs_created() == [manifests.child_name(ref(queued("next", 1)))]


class PriorityApi(RecordingApi):
    """PriorityClass values the platform may change while jobs wait."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, int] = {}

    def priority_of(self, class_name: str | None) -> int:
        return self.values.get(class_name or "", 0)


def _two_waiting_behind_a_holder(
    **second_spec: Any,
) -> tuple[Reconciler, PriorityApi, dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """A cap of 1 taken by a running job; "first" and then "second" wait, each pass has read them."""
    holder, job, pod = _running_holder("Running")
    pods = {"j": [pod]}
    fake = PriorityApi()
    second = queued("second", 2, **second_spec)
    r, _ = setup([holder, queued("first", 1), second], jobs={"uid-holder": [job]}, pods=pods, api_=fake, max_running=1)
    settle(r.admit())
    assert (status_of(r, "first")["queuePosition"], status_of(r, "second")["queuePosition"]) == (1, 2)
    writes = len(fake.patches)
    settle(r.admit())  # reads the versions its own writes left; nothing moved
    assert len(fake.patches) == writes
    return r, fake, pods, second


def _free_the_slot(r: Reconciler, pods: dict[str, list[dict[str, Any]]]) -> None:
    pods["j"] = [slim_pod({"metadata": {"name": "holder-pod", "namespace": NS}, "status": {"phase": "Succeeded"}})]
    settle(r.admit())


def test_a_waiting_jobs_new_version_is_read_again_by_the_next_pass() -> None:
    """The admission pass keeps what it read of each waiting job while the object is unchanged; a
    new version (the tenant suspends the job at the head of the queue) is read again."""
    r, fake, pods, second = _two_waiting_behind_a_holder()
    suspended = queued("first", 1, suspend=True)
    suspended["metadata"]["resourceVersion"] = "900"
    r.views._vgjs[(NS, "first")] = [suspended]  # type: ignore[index]
    _free_the_slot(r, pods)
    assert fake.jobs_created() == [manifests.child_name(ref(second))]


def test_a_priority_class_raised_while_jobs_wait_reorders_them() -> None:
    """What a pass keeps of an unchanged job does not keep its PriorityClass's old value."""
    r, fake, pods, second = _two_waiting_behind_a_holder(resources={"priorityClassName": "batch"})
    fake.values["batch"] = 1000  # the platform raises the class; the job object does not change
    _free_the_slot(r, pods)
    assert fake.jobs_created() == [manifests.child_name(ref(second))]


def _forged_pod(phase: str, exit_code: int) -> dict[str, Any]:
    """Tenant B's pod in its own namespace, naming tenant A's runner Job (uid "j") as controller."""
    terminated = {"exitCode": exit_code, "reason": "Error", "message": "forged", "startedAt": stamp(NOW)}
    return slim_pod(
        {
            "metadata": {"name": "forged", "namespace": "team-b", "creationTimestamp": stamp(NOW)},
            "status": {"phase": phase, "containerStatuses": [{"name": "runner", "state": {"terminated": terminated}}]},
        }
    )


def test_another_tenants_pod_claiming_the_runner_job_frees_no_gpu_and_fails_nothing() -> None:
    """The pod index is keyed by the controller's uid, which the dependent only claims. A Succeeded
    pod elsewhere must not free tenant A's slot; a failed one with a never-retry exit code must not
    end A's job, count as an attempt, or put its message on A's status."""
    holder, job, pod = _running_holder("Running")
    pods = {"j": [pod, _forged_pod("Succeeded", 0)]}
    r, fake = setup([holder, queued("next", 1)], jobs={"uid-holder": [job]}, pods=pods, max_running=1)
    settle(r.admit())
    assert fake.jobs_created() == [], "A's own pod still runs: its GPU is taken"
    # A's reconcile with the forged failed pod in the index writes what it writes without it.
    written = []
    for forged in ([], [_forged_pod("Failed", int(api.ExitCode.INVALID_INPUT))]):
        r, fake = setup([holder], jobs={"uid-holder": [job]}, pods={"j": [pod, *forged]}, max_running=1)
        outcome = r.reconcile(NS, "holder")
        written.append(([(t.phase, t.reason) for t in outcome.transitions], fake.patches, fake.events))
    assert written[1] == written[0]
    assert "forged" not in json.dumps(written[1], default=str)
    assert all(phase not in api.TERMINAL_PHASES for phase, _ in written[1][0])


class GatedPatchApi(RecordingApi):
    """Status writes wait until the test opens the gate; creates go through."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def patch_vgj_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        assert self.gate.wait(60), "the gate never opened"
        return super().patch_vgj_status(namespace, name, status, resource_version)


def _in_thread(fn: Any) -> list[Any]:
    """fn() on a thread of its own; fails if it does not return (it must not wait for the gate)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.extend(fn()), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the admission pass waited for queue-status writes"
    return out


def test_a_freed_gpu_is_handed_on_while_the_queue_statuses_are_still_being_written() -> None:
    holder, job, pod = _running_holder("Running")
    head = vgj("head", 1, {"phase": "Queued", "reason": "Queued", "specHash": "h", "attempts": 0, "queuePosition": 1})
    fresh = [vgj(f"w{i:02d}", i + 2) for i in range(40)]  # twice the queue writers: some wait their turn
    pods = {"j": [pod]}
    gated = GatedPatchApi()
    r, fake = setup(
        [holder, head, *fresh],
        jobs={"uid-holder": [job]},
        pods=pods,
        api_=gated,
        max_running=1,
        queue_positions_exact=3,
    )
    for body in fresh:
        r.reconcile(NS, body["metadata"]["name"])
    first_pass = _in_thread(r.admit)  # 40 first statuses due, none written yet
    pods["j"] = [slim_pod({"metadata": {"name": "holder-pod", "namespace": NS}, "status": {"phase": "Succeeded"}})]
    second_pass = _in_thread(r.admit)
    deadline = time.monotonic() + 30
    while not fake.jobs_created() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.jobs_created() == [manifests.child_name(ref(head))]
    assert fake.patches == [], "the Job came before any queue-status write"
    gated.gate.set()
    settle([*first_pass, *second_pass])
    assert "head" not in [name for name, _ in fake.patches], "the admitted job is not written back to Queued"
    assert [status_of(r, f"w{i:02d}").get("queuePosition") for i in range(5)] == [1, 2, 3, None, None]
    assert all(status_of(r, b["metadata"]["name"])["phase"] == "Queued" for b in fresh)


def _pod(name: str, created: datetime, **status: Any) -> dict[str, Any]:
    return slim_pod(
        {"metadata": {"name": name, "namespace": NS, "creationTimestamp": stamp(created)}, "status": status}
    )


def test_a_disruption_keeps_a_job_that_has_run_running_and_is_not_an_attempt() -> None:
    body = vgj(
        "drained",
        status={"phase": "Running", "reason": "Running", "startTime": stamp(NOW), "attempts": 1, "jobName": "j"},
        startupTimeoutSeconds=60,
    )
    job_name = manifests.child_name(ref(body))
    job = slim_job(
        {
            "metadata": {"name": job_name, "namespace": NS, "uid": "job-uid", "creationTimestamp": stamp(NOW)},
            "status": {"active": 1, "failed": 0},
        }
    )
    evicted = _pod(
        "p1",
        NOW - timedelta(minutes=30),
        phase="Failed",
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
    )
    waiting = _pod(
        "p2",
        NOW - timedelta(minutes=10),  # far past startupTimeoutSeconds: the GPU is busy
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 GPUs"}],
    )
    r, fake = setup([body], jobs={"uid-drained": [job]}, pods={"job-uid": [evicted, waiting]})
    r.reconcile(NS, "drained")
    s = status_of(r, "drained")
    assert (s["phase"], s["reason"]) == ("Running", "Retrying"), s
    assert s["attempts"] == 1
    assert "disrupted" in s["message"] and "Unschedulable" in s["message"]
    assert fake.deleted_jobs == []
    r.views._pods["job-uid"] = [waiting]  # type: ignore[index]  # the evicted pod object is removed
    r.reconcile(NS, "drained")
    s = status_of(r, "drained")
    assert "disrupted" in s["message"] and s["lastFailure"]["location"] == "disruption", s["message"]


def test_a_job_that_never_ran_times_out_from_its_current_pods_creation() -> None:
    body = vgj(
        "slow",
        status={"phase": "Queued", "reason": "PodStarting", "attempts": 0, "jobName": "j"},
        startupTimeoutSeconds=300,
    )
    job = slim_job(
        {
            "metadata": {
                "name": manifests.child_name(ref(body)),
                "namespace": NS,
                "uid": "job-uid",
                "creationTimestamp": stamp(NOW - timedelta(hours=1)),
            },
            "status": {"active": 1, "startTime": stamp(NOW - timedelta(hours=1))},
        }
    )
    fresh = _pod("p2", NOW - timedelta(seconds=30), phase="Pending")
    r, _ = setup([body], jobs={"uid-slow": [job]}, pods={"job-uid": [fresh]})
    r.reconcile(NS, "slow")
    assert status_of(r, "slow")["reason"] == "PodStarting", "30 s into its pod's life, not an hour into the Job's"


RESULT = {
    "output": {"uri": "s3://videos/videogen/team-a/kept.mp4", "sizeBytes": 10, "sha256": "ab", "format": "mp4"},
    "seed": 1,
    "timings": {"total": 1.0},
    "memoryMode": "none (cpu)",
    "adjustments": [],
    "specHash": "h",
}


def test_a_result_recorded_on_the_job_survives_the_job_being_collected() -> None:
    body = vgj(
        "kept",
        status={
            "phase": "Running",
            "reason": "Running",
            "jobName": "gone",
            "startTime": stamp(NOW),
            "runnerResult": RESULT,
        },
    )
    r, _ = setup([body])
    r.reconcile(NS, "kept")
    s = status_of(r, "kept")
    assert (s["phase"], s["reason"]) == ("Succeeded", "Succeeded")
    # The location comes from the spec (the recorded result is untrusted), the description from the result.
    assert s["output"]["uri"].startswith(f"s3://videos/videogen/{NS}/kept-")
    assert s["output"]["format"] == RESULT["output"]["format"]


def test_job_missing_only_when_neither_the_job_nor_a_result_exists() -> None:
    body = vgj("lost", status={"phase": "Running", "reason": "Running", "jobName": "gone", "startTime": stamp(NOW)})
    r, fake = setup([body])
    r.reconcile(NS, "lost")
    assert fake.gets == ["gone"], "the view may lag: the API server is asked once before calling it lost"
    assert status_of(r, "lost")["reason"] == "JobMissing"


def test_the_sweep_visits_only_jobs_whose_state_moves_with_time() -> None:
    assert needs_timer(vgj("new"))
    assert needs_timer(vgj("s", status={"phase": "Queued", "reason": "PodStarting"}))
    assert needs_timer(vgj("r", status={"phase": "Running", "reason": "Retrying"}))
    assert not needs_timer(queued("q"))
    assert not needs_timer(vgj("run", status={"phase": "Running", "reason": "Running"}))
    assert not needs_timer(vgj("done", status={"phase": "Succeeded", "reason": "Succeeded"}))


def test_no_api_reads_on_a_reconcile() -> None:
    r, fake = setup([queued("idle")])
    for _ in range(5):
        r.reconcile(NS, "idle")
    assert fake.gets == [] and fake.created == []
    assert api.Reason.CREATE_FAILED == "CreateFailed"


def test_outputs_finalizer_is_added_honoured_and_dropped_from_the_spec() -> None:
    from videogen_api import v1alpha1 as api
    from videogen_operator.reconcile import needs_finalizer_work

    def vgj(policy: str | None, finalizers: list[str], deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": "j", "namespace": "n", "finalizers": finalizers}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "spec": {"output": {"deletePolicy": policy}} if policy else {}}

    held = [api.OUTPUTS_FINALIZER]
    assert needs_finalizer_work(vgj("Delete", [])), "Delete without the finalizer: add it"
    assert not needs_finalizer_work(vgj("Delete", held))
    assert needs_finalizer_work(vgj("Keep", held)), "policy changed to Keep: drop it"
    assert not needs_finalizer_work(vgj(None, [])) and not needs_finalizer_work(vgj(None, ["other/finalizer"]))
    assert needs_finalizer_work(vgj("Delete", held, deleting=True)), "being deleted: clean up, then release"
    assert needs_finalizer_work(vgj("Keep", held, deleting=True)), "released even when the policy changed"
    assert not needs_finalizer_work(vgj("Delete", [], deleting=True)), "never added once deletion started"


class SlowApi(RecordingApi):
    """Creates take a moment, as over the network: parallel admissions overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []
        self._guard = threading.Lock()

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        with self._guard:
            self.attempts.append(obj["kind"])
        time.sleep(0.02)
        with self._guard:
            return super().create(obj)


def test_a_burst_in_a_new_namespace_asks_for_its_runner_rbac_once() -> None:
    bodies = [vgj(f"b{i:02d}", i) for i in range(12)]
    r, fake = setup(bodies, api_=SlowApi(), max_running=0)
    for b in bodies:
        r.reconcile(NS, b["metadata"]["name"])
    settle(r.admit())
    assert len(fake.jobs_created()) == 12
    attempts = fake.attempts  # type: ignore[attr-defined]
    assert [attempts.count(k) for k in ("ServiceAccount", "Role", "RoleBinding")] == [1, 1, 1]


def test_a_pass_counts_the_starts_still_under_way_against_the_cap_and_never_starts_one_twice() -> None:
    first, second = vgj("first", 0), vgj("second", 1)
    r, fake = setup([first, second], api_=SlowApi(), max_running=1)
    r.reconcile(NS, "first")
    r.reconcile(NS, "second")
    launched = r.admit()
    again = r.admit()  # first's start is under way: its GPU is taken, and it is not admitted again
    settle([*launched, *again])
    assert fake.attempts.count("Job") == 1  # type: ignore[attr-defined]
    assert fake.jobs_created() == [manifests.child_name(ref(first))]
    assert status_of(r, "second")["queuePosition"] == 1


def _starting_job(startup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    body = vgj(
        "starting",
        status={"phase": "Queued", "reason": "PodStarting", "attempts": 0, "jobName": "j"},
        startupTimeoutSeconds=startup,
    )
    job = slim_job(
        {
            "metadata": {
                "name": manifests.child_name(ref(body)),
                "namespace": NS,
                "uid": "job-uid",
                "creationTimestamp": stamp(NOW - timedelta(seconds=10)),
            },
            "status": {"active": 1, "startTime": stamp(NOW - timedelta(seconds=10))},
        }
    )
    return body, job


def test_the_sweep_leaves_a_starting_pod_alone_until_its_deadline_is_near() -> None:
    body, job = _starting_job(300)
    pod = _pod("p1", NOW - timedelta(seconds=10), phase="Pending")
    r, _ = setup([body], jobs={"uid-starting": [job]}, pods={"job-uid": [pod]})
    assert r.due(body), "never looked at: the sweep reconciles it"
    r.reconcile(NS, "starting")
    assert not r.due(status_body(r, "starting")), "290 s before its startup deadline"
    assert r.due(status_body(r, "starting"), full=True), "the full sweep still looks at every unfinished job"


def test_a_starting_job_whose_deadline_has_come_is_due_at_once() -> None:
    body, job = _starting_job(60)
    pod = _pod("p1", NOW - timedelta(seconds=59), phase="Pending")
    r, _ = setup([body], jobs={"uid-starting": [job]}, pods={"job-uid": [pod]})
    r.reconcile(NS, "starting")
    assert status_of(r, "starting")["reason"] == "PodStarting"
    assert not r.due(status_body(r, "starting"))
    time.sleep(1.1)
    assert r.due(status_body(r, "starting")), "a second later its deadline has come"


def test_a_pod_the_job_controller_cannot_create_keeps_its_job_in_the_sweep() -> None:
    body, job = _starting_job(300)
    failed = {(NS, job["metadata"]["name"]): [{"message": "exceeded quota: pods", "lastTimestamp": stamp(NOW)}]}
    r, _ = setup([body], jobs={"uid-starting": [job]})
    r.views = Views(r.views._vgjs, {"uid-starting": [job]}, {}, failed)  # type: ignore[attr-defined]
    r.views.observe_vgj(body)
    r.reconcile(NS, "starting")
    assert status_of(r, "starting")["reason"] == "PodCreateFailed"
    assert r.due(status_body(r, "starting")), "a FailedCreate Event starts no reconcile: the sweep must look"


def test_a_new_job_with_the_admission_pass_is_not_swept() -> None:
    r, _ = setup([vgj("fresh")])
    body = status_body(r, "fresh")
    assert r.due(body)
    r.reconcile(NS, "fresh")
    assert not r.due(body) and not r.due(body, full=True), "admission runs every sweep; no second cache lookup"


def status_body(r: Reconciler, name: str) -> dict[str, Any]:
    found = r.views.vgj(NS, name)
    assert found is not None
    return found
