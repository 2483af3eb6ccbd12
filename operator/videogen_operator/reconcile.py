"""Level-triggered reconciliation of one VideoGenJob, and the admission pass.

Every call starts from the watch-fed views (views.py), never from a LIST, so a
reconcile costs no read request and at most the writes it needs. An operator
killed at any point and restarted converges to the same answer: the Job's name
is deterministic, creating it twice is a 409, status writes are conditional on
the resourceVersion they were computed from (a stale copy never overwrites a
newer phase), and the phase machine refuses to leave a terminal phase.

Errors stay with their job: a child object the API server refuses ends that job
`Failed/CreateFailed` with the API's message; throttling, server errors and
timeouts propagate to the dispatcher, which retries that key with backoff while
the admission pass moves on to the next job.

Locking: one lock per VideoGenJob serialises its reconciles; the admission
pass takes the admission lock first and per-job locks inside it, and a
reconcile never takes the admission lock, so the two cannot deadlock.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from videogen_api import v1alpha1 as api
from videogen_api.catalog import is_catalog_name
from videogen_operator import credentials, kueue, manifests, metrics
from videogen_operator.catalog import ModelDecision, identity_of_job, resolve_job_model
from videogen_operator.catalog_access import CatalogAccess
from videogen_operator.kube import Kube, api_message, describe_error, is_refusal
from videogen_operator.manifests import JobRef
from videogen_operator.observe import (
    DISRUPTION,
    Failure,
    JobView,
    job_failure,
    parse_time,
    result_from_status,
    view_job,
)
from videogen_operator.outputs import Outputs, VerificationError
from videogen_operator.phases import (
    Transition,
    is_terminal,
    iso,
    now_utc,
    progress_summary,
    set_suspended,
    suspended_since,
    transition,
)
from videogen_operator.priorities import check_priority_class
from videogen_operator.queue import (
    Waiting,
    fits,
    further_back_message,
    namespace_cap,
    plan_admission,
    queue_message,
)
from videogen_operator.results import ObjectStore
from videogen_operator.settings import OperatorSettings
from videogen_operator.validation import SpecError, parse_spec, validate_spec
from videogen_operator.views import Views, slim_job, vgj_owner_uid

log = logging.getLogger(__name__)
Phase = api.Phase
# Starts under way at once (each is an S3 request and two API round trips: the grant Secret, the
# Job). Under a burst the API server answers each in 0.2-0.6 s, so the starters' round trips, not
# the operator's CPU, bound how fast Jobs appear. 1,000 resident + 1,000 burst (bench/results):
# 8 starters, about 10 Jobs/s and p99 create -> Job 69 s; 32, about 17/s and 11 s (each start also
# wrote its status then); 32 starting only, the starters' queue still added up to 3 s at the burst's
# head; 64, no queue (admitted -> started p99 0.1 s) and p50/p99 3.0/5.3 s -> 1.8/3.5 s.
ADMIT_PARALLELISM = 64
# Queue-status writes (a waiting job's first status, its exact position) under way at once. They
# run beside the admission pass, not in it: written one after another inside the pass, a burst's
# 900 first statuses held the pass (and so every freed GPU) for minutes (bench/results, capped run).
QUEUE_WRITERS = 8
# A queue-status write waits at most this long while starts are under way: the CPU and the API
# server's answers go to the Jobs first (as routine reconciles wait for urgent ones, dispatch.py).
START_HOLD_SECONDS = 2.0
# A new job is admitted without a pass only on a count at most this many sweep periods old.
CLAIMED_MAX_AGE_PERIODS = 3
# A first grant is issued just before its Job is created, up to this much earlier under load.
_GRANT_ISSUE_SKEW_SECONDS = 60
Reason = api.Reason


@dataclass
class Outcome:
    """What one reconcile asks of its caller."""

    needs_admission: bool = False
    transitions: list[Transition] = field(default_factory=list)
    # A start it launched (a new job admitted at once, see Reconciler._admit_at_once).
    started: concurrent.futures.Future[None] | None = None


@dataclass
class _Pass:
    """One reconcile of one VideoGenJob: what it read, and its status as last written."""

    body: dict[str, Any]
    ref: JobRef
    parsed: api.VideoGenJobSpec | None  # None only where the spec is invalid or not needed
    digest: str
    now: datetime
    status: dict[str, Any]
    outcome: Outcome
    # The Pending transition of a job seen for the first time, not yet written: it goes
    # out with the next write of the same pass (one write instead of two).
    deferred: Transition | None = None
    # What spec.model means here (a Ready catalog model, one to wait for, an unlisted URI).
    model: ModelDecision = field(default_factory=ModelDecision)
    # A new job this pass left to the admission pass, unwritten (its deferred Pending goes with it).
    handed_to_admission: bool = False

    @property
    def spec(self) -> api.VideoGenJobSpec:
        assert self.parsed is not None, "this step needs a valid spec"
        return self.parsed

    @property
    def generation(self) -> int | None:
        value = self.body["metadata"].get("generation")
        return int(value) if value is not None else None


def _first_sight(p: _Pass) -> None:
    """A job without a phase: Pending (Created), deferred so that it goes out with the next write."""
    p.status, p.deferred = transition(
        dict(p.status, specHash=p.digest, attempts=0),
        Phase.PENDING,
        Reason.CREATED,
        "accepted; waiting for admission",
        p.now,
        p.generation,
    )


class _RefusedError(Exception):
    """The API server refused one of the job's child objects: retrying will not help."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(f"the API server refused the runner's {kind} {name}: {message}")


# Reasons of a Queued job whose state moves with time (deadlines, grace periods,
# an absent LocalQueue that may appear): the periodic sweep reconciles these.
_TIMED_QUEUED_REASONS = frozenset(
    {
        Reason.POD_STARTING,
        Reason.SUSPENDED,
        Reason.UNSCHEDULABLE,
        Reason.IMAGE_PULL_BACK_OFF,
        Reason.POD_CREATE_FAILED,
        Reason.LOCAL_QUEUE_MISSING,
        Reason.RECONCILE_ERROR,
        Reason.MODEL_NOT_READY,
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
        "InvalidImageName",
    }
)


_TERMINAL_VALUES = frozenset(p.value for p in api.TERMINAL_PHASES)


def needs_timer(vgj: dict[str, Any]) -> bool:
    """Whether the periodic sweep must reconcile this job (time alone can change its state)."""
    status = vgj.get("status") or {}
    phase, reason = status.get("phase"), status.get("reason")
    if phase in {p.value for p in api.TERMINAL_PHASES}:
        return False
    if not phase or phase == Phase.PENDING:
        return True
    if phase == Phase.QUEUED:
        return reason in _TIMED_QUEUED_REASONS or reason not in (Reason.QUEUED, Reason.WAITING_FOR_ADMISSION)
    return reason in (Reason.RETRYING, Reason.RECONCILE_ERROR)


def deletes_outputs(vgj: Mapping[str, Any]) -> bool:
    return ((vgj.get("spec") or {}).get("output") or {}).get("deletePolicy") == api.DeletePolicy.DELETE


def needs_finalizer_work(vgj: Mapping[str, Any]) -> bool:
    """Whether the outputs finalizer must be added, honoured (the job is being deleted) or dropped."""
    meta = vgj.get("metadata") or {}
    has = api.OUTPUTS_FINALIZER in (meta.get("finalizers") or [])
    if meta.get("deletionTimestamp"):
        return has
    return has != deletes_outputs(vgj)


def _own_copy(body: dict[str, Any]) -> dict[str, Any]:
    """A private copy of a view's object: a pass updates its metadata and status as it writes."""
    return {
        "metadata": dict(body.get("metadata") or {}),
        "spec": body.get("spec") or {},
        "status": copy.deepcopy(body.get("status") or {}),
    }


def ref_of(body: dict[str, Any]) -> JobRef:
    meta = body["metadata"]
    return JobRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])


def _is_kueue_managed(job: dict[str, Any]) -> bool:
    return api.KUEUE_QUEUE_LABEL in ((job.get("metadata") or {}).get("labels") or {})


def job_finished(job: Mapping[str, Any]) -> bool:
    """The Job controller's verdict is in (Complete or Failed): its pods hold no GPU any more."""
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _spec_gpus(spec: Mapping[str, Any]) -> int:
    """GPUs a job asks for (spec.resources.gpus, 1 when unset): its slots under the caps."""
    return int((spec.get("resources") or {}).get("gpus") or 1)


@dataclass
class _QueueEntry:
    """One unfinished job as the admission pass sees it, from one version of the object."""

    uid: str
    version: str
    phase_unset: bool  # new: may wait only once a reconcile accepted it (Reconciler._is_fresh)
    model: str
    job_named: bool  # status names a Job (made before, or the tenant says so)
    priority_class: str
    waiting: Waiting


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        store: ObjectStore | None = None,
        clock: Callable[[], datetime] = now_utc,
        views: Views | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.store = store
        self.outputs = Outputs(kube, settings, store)
        self.clock = clock
        self.views = views if views is not None else Views({}, {}, {})
        # Namespaces where the shared runner ServiceAccount/Role/RoleBinding exist (made once per namespace).
        self._rbac_ready: set[str] = set()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._admission_lock = threading.Lock()
        self._starter = concurrent.futures.ThreadPoolExecutor(max_workers=ADMIT_PARALLELISM, thread_name_prefix="admit")
        self._queue_writer = concurrent.futures.ThreadPoolExecutor(
            max_workers=QUEUE_WRITERS, thread_name_prefix="queue"
        )
        # Waiting jobs whose queue status is to be written: the latest pass's (position, exact, per
        # namespace cap). One write per job at a time; a newer pass only updates what it will write.
        self._positions_due: dict[tuple[str, str], tuple[int, int, int]] = {}
        self._positions_guard = threading.Lock()
        self._no_starts = threading.Event()  # set while no start is under way
        self._no_starts.set()
        self.catalog = CatalogAccess(kube, settings)
        self._last_write: dict[tuple[str, str], float] = {}
        # New jobs a reconcile accepted and handed to admission before any status write:
        # (generation accepted, spec hash). Their first write is the admission's (see _queue_fresh).
        self._fresh: dict[tuple[str, str], tuple[int | None, str]] = {}
        # Jobs a pass admitted whose start is still under way: (uid, namespace, GPUs). The next pass
        # counts their GPUs until their Job is in view, and does not admit them twice.
        self._launching: dict[tuple[str, str], tuple[str, str, int]] = {}
        # When a job's timed state needs a look again (time.monotonic()): a pod starting under its
        # startup deadline, a suspension under its grace period. Unset: every sweep.
        self._recheck: dict[tuple[str, str], float] = {}
        # When the grant this operator last wrote for a Job Kueue holds expires (renewals only).
        self._grant_expiry: dict[tuple[str, str], datetime] = {}
        # The admission pass's reading of each unfinished job, by (namespace, name) (_queue_entry).
        self._queue_entries: dict[tuple[str, str], _QueueEntry] = {}
        # Admission without a pass (_admit_at_once): the GPUs per namespace the last pass counted as
        # held or starting, plus what was admitted since (None until a pass has run); whether that
        # pass left no job waiting; whether a reconcile has since handed a job over that may wait.
        self._claimed: Counter[str] | None = None
        self._claimed_at: datetime | None = None  # when that pass ran
        self._nothing_waits = False
        self._handed_over = False

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # ================================================================== one job

    def reconcile(self, namespace: str, name: str) -> Outcome:
        with self._lock((namespace, name)):
            body = self.views.vgj(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self._forget((namespace, name))
                return Outcome(needs_admission=True)
            return self._reconcile(_own_copy(body))

    def _forget(self, key: tuple[str, str]) -> None:
        self._last_write.pop(key, None)
        self._grant_expiry.pop(key, None)
        self._fresh.pop(key, None)
        self._recheck.pop(key, None)
        self.views.forget_vgj(*key)
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                self._locks.pop(key, None)

    def due(self, vgj: dict[str, Any], full: bool = False) -> bool:
        """Whether the periodic sweep should reconcile this job now (`full`: the sweep that looks at
        every unfinished job, the safety net for a lost event).

        Not a new job already with the admission pass (a pass runs every sweep), and not a timed
        state before its time: a thousand pods starting would otherwise cost a thousand reconciles
        every period for deadlines minutes away."""
        if self._is_fresh(vgj):
            return False
        phase = (vgj.get("status") or {}).get("phase")
        if full:
            return phase not in _TERMINAL_VALUES
        if not needs_timer(vgj):
            return False
        meta = vgj["metadata"]
        at = self._recheck.get((meta["namespace"], meta["name"]))
        if at is None or time.monotonic() >= at:
            return True
        # A pod the Job controller cannot create shows only in an Event, which starts no reconcile.
        job = self.views.job_of(meta["namespace"], str(meta.get("uid") or ""), manifests.child_name(ref_of(vgj)))
        return job is not None and bool(self.views.failed_creates(meta["namespace"], job["metadata"]["name"]))

    def _reconcile(self, body: dict[str, Any]) -> Outcome:
        status: dict[str, Any] = dict(body.get("status") or {})
        outcome = Outcome()
        if is_terminal(status):
            return outcome
        ref = ref_of(body)
        now = self.clock()
        self._recheck.pop((ref.namespace, ref.name), None)
        job = self.views.job_of(ref.namespace, ref.uid, manifests.child_name(ref))
        try:
            spec = parse_spec(body.get("spec"))
            decision, digest = self._model_of(ref, spec, job)
            check_priority_class(ref.namespace, spec, self.settings)
            validate_spec(ref, spec, self.settings, digest, self.kube.priority_class_exists)
        except SpecError as err:
            p = _Pass(body, ref, None, "", now, status, outcome)
            failed = dict(status, lastFailure=Failure(err.reason, str(err), "operator").to_status(now))
            failed.pop("queuePosition", None)
            self._move(p, failed, Phase.FAILED, err.reason, str(err))
            return outcome
        p = _Pass(body, ref, spec, digest, now, status, outcome, model=decision)
        if not status.get("phase"):
            _first_sight(p)

        view = view_job(job, self.views.pods_of(job))
        if view.exists:
            self._with_job(p, view, job or {})
        else:
            self._without_job(p)
        if p.deferred is not None and not p.handed_to_admission:
            self._flush(p)
        return outcome

    def _model_of(
        self, ref: JobRef, spec: api.VideoGenJobSpec, job: dict[str, Any] | None
    ) -> tuple[ModelDecision, str]:
        """What spec.model means for this job, and the job's spec hash.

        A catalog model's revision is part of the hash. Once the runner Job exists, the revision is
        the one in its (immutable) pod template, so an upgrade of the model mid-run never changes the
        hash a running job verifies its output under. Refusals raise SpecError with the model reason."""
        created = parse_time(
            (self.views.vgj(ref.namespace, ref.name) or {}).get("metadata", {}).get("creationTimestamp")
        )
        decision = resolve_job_model(ref.namespace, spec, self.views.model(spec.model), self.settings, created)
        pinned = identity_of_job(job)
        if pinned is not None:
            return decision, api.spec_hash(spec, pinned)
        if decision.fail is not None and job is None:
            raise SpecError(decision.fail[1], decision.fail[0])
        identity = decision.model.identity if decision.model is not None else None
        return decision, api.spec_hash(spec, identity)

    def _move(
        self, p: _Pass, base: dict[str, Any], phase: api.Phase, reason: str, message: str, *, force: bool = False
    ) -> None:
        """Transition `base` to (phase, reason, message) and write it if anything changed."""
        new, t = transition(base, phase, reason, message, p.now, p.generation)
        earlier: list[Transition] = []
        if p.deferred is not None:
            # First sight of the job: one write carries Pending and what follows it.
            earlier = [p.deferred] if t is not None else []
            t, force, p.deferred = t or p.deferred, True, None
        p.status = self._write(p.body, p.body.get("status") or {}, new, t, p.outcome, force=force, earlier=earlier)
        if t is not None and phase in api.TERMINAL_PHASES and p.status is new and new.get("jobName"):
            # The runner is done: its presigned URLs go with it.
            self.outputs.release(p.ref, p.parsed, p.digest)

    def _flush(self, p: _Pass) -> None:
        """Write the Pending status of a new job that nothing else moved in this pass."""
        t, p.deferred = p.deferred, None
        p.status = self._write(p.body, p.body.get("status") or {}, p.status, t, p.outcome, force=True)

    # ------------------------------------------------------------------ before the Job exists

    def _without_job(self, p: _Pass) -> None:
        status, spec = p.status, p.spec
        if status.get("jobName"):
            recorded = result_from_status(status)
            if recorded is None:
                # The view may lag behind a Job made a moment ago: ask the API server once
                # before calling it lost (rare: a Job normally outlives its VideoGenJob's run).
                live = self.kube.get_job(p.ref.namespace, str(status["jobName"]))
                if live is not None and vgj_owner_uid(live) == p.ref.uid:
                    self.views.remember_job(p.ref.uid, live)
                    job = slim_job(live)
                    self._with_job(p, view_job(job, self.views.pods_of(job)), job)
                    return
            else:
                # The Job was collected after the runner recorded its result on the
                # VideoGenJob: the run is over; _succeeded decides whether to accept it.
                self._succeeded(p, dict(status), JobView(exists=False, complete=True, result=recorded))
                return
            # We created a Job before and it is gone while the job was not done:
            # re-creating it could run the generation twice, so fail loudly instead.
            message = f"runner Job {status['jobName']} disappeared before the job finished"
            failure = Failure(Reason.JOB_MISSING, message, "job").to_status(p.now)
            self._move(p, dict(status, lastFailure=failure), Phase.FAILED, Reason.JOB_MISSING, message)
            return

        if p.model.wait is not None:
            self._wait_for_model(p, p.model.wait)
            return
        first_look = status.get("phase") == Phase.PENDING or status.get("reason") == Reason.MODEL_NOT_READY
        if status.get("specHash") != p.digest:
            # A catalog model's hash is known once the model is Ready.
            status = p.status = dict(status, specHash=p.digest)
        # Looked up once, when the job is accepted (or its model became Ready): a queued job
        # does not re-query the API and the bucket on every sweep.
        hit = self._cache_hit(p.ref, spec, p.digest) if first_look else None
        if hit is not None:
            message = f"identical to an earlier job (spec hash {p.digest}); reused {hit.get('uri')} without a GPU"
            done = dict(
                status,
                output=self._with_fresh_url(hit, spec),
                seed=spec.seed,
                progress={"stage": api.Stage.DONE, "percent": 100, "summary": "done (cache hit)"},
            )
            self._move(p, done, Phase.SUCCEEDED, Reason.CACHE_HIT, message)
            return

        if spec.suspend:
            self._hold_suspended(p, dict(status), job_exists=False)
            return
        if suspended_since(status) is not None:
            resumed = set_suspended(status, False, "resumed; waiting for a GPU slot", p.now, p.generation)
            p.status = self._write(p.body, status, resumed, None, p.outcome, force=True)

        if spec.queue_name:
            if not self._try_start(p, suspended=True):
                return
            base = dict(p.status, jobName=manifests.child_name(p.ref))
            base.pop("queuePosition", None)
            reason, message = self._kueue_state(p)
            self._move(p, base, Phase.QUEUED, reason, message, force=True)
            return

        if p.deferred is not None:
            # Seen for the first time and valid: no Queued write on the way to its Job. The
            # admission pass writes its first status, PodStarting when a slot is free, else
            # Queued with its place in the queue (one write either way, see _queue_fresh).
            self._fresh[(p.ref.namespace, p.ref.name)] = (p.generation, p.digest)
            p.handed_to_admission = True
            p.outcome.started = self._admit_at_once(p)
            if p.outcome.started is not None:
                return  # a starter makes its Job now; no pass needed
        elif p.status.get("phase") == Phase.PENDING or p.status.get("reason") == Reason.MODEL_NOT_READY:
            message = f"waiting for a GPU slot (cap: {self._caps_text()})"
            self._move(p, p.status, Phase.QUEUED, Reason.QUEUED, message, force=True)
        self._handed_over = True  # it may wait now: no job starts ahead of it before the next pass
        p.outcome.needs_admission = True

    def _wait_for_model(self, p: _Pass, message: str) -> None:
        """Queued/ModelNotReady until the catalog model is Ready; a model that never appears fails the
        job once its startup timeout has passed since creation (a typo must not wait forever)."""
        spec = p.spec
        if self.views.model(spec.model) is None:
            created = parse_time(p.body["metadata"].get("creationTimestamp")) or p.now
            if (p.now - created).total_seconds() >= spec.startup_timeout_seconds:
                text = (
                    f"spec.model: VideoGenModel {spec.model!r} does not exist "
                    f"(waited {spec.startup_timeout_seconds}s, the job's startupTimeoutSeconds)"
                )
                failure = Failure(Reason.MODEL_UNAVAILABLE, text, "operator").to_status(p.now)
                self._move(p, dict(p.status, lastFailure=failure), Phase.FAILED, Reason.MODEL_UNAVAILABLE, text)
                return
        base = dict(p.status)
        base.pop("queuePosition", None)
        self._move(p, base, Phase.QUEUED, Reason.MODEL_NOT_READY, message)

    def _caps_text(self) -> str:
        return (
            further_back_message(0, self.settings.max_running, self._namespace_cap())
            .rpartition("(cap: ")[2]
            .rstrip(")")
        )

    def _kueue_state(self, p: _Pass) -> tuple[str, str]:
        """WaitingForAdmission, or LocalQueueMissing when Kueue has no such queue (nothing would ever admit it)."""
        spec = p.spec
        assert spec.queue_name
        if self.kube.local_queue_exists(p.ref.namespace, spec.queue_name):
            return Reason.WAITING_FOR_ADMISSION, kueue.waiting_message(spec.queue_name)
        return Reason.LOCAL_QUEUE_MISSING, kueue.missing_queue_message(
            spec.queue_name, p.ref.namespace, kueue_installed=False
        )

    def _renew_grant_if_due(self, p: _Pass, job: dict[str, Any]) -> None:
        """A Job Kueue holds keeps URLs that last for a run starting now: once what is left of its
        grant is shorter than a run needs (credentials.run_lifetime), a grant issued now replaces it.
        Not while a pod of it is alive (it may be using the grant it read)."""
        if any(
            (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for pod in self.views.pods_of(job)
        ):
            return
        key = (p.ref.namespace, p.ref.name)
        expires = self._grant_expiry.get(key)
        if expires is None:
            # The first grant, issued just before its Job (a restart forgets a renewal: this
            # renews early, never late).
            made = parse_time((job.get("metadata") or {}).get("creationTimestamp")) or p.now
            lifetime = credentials.grant_lifetime(p.spec, self.settings)
            expires = made + timedelta(seconds=lifetime - _GRANT_ISSUE_SKEW_SECONDS)
        if (expires - p.now).total_seconds() >= credentials.run_lifetime(p.spec, self.settings):
            return
        renewed = self.outputs.renew_grant(p.ref, p.spec, p.digest, p.now)
        if renewed is None:
            return
        self._grant_expiry[key] = renewed
        self.kube.post_event(
            p.body,
            "Normal",
            Reason.GRANT_RENEWED,
            f"Kueue still holds the job: its storage URLs were renewed (valid until {iso(renewed)})",
        )

    def _wait_for_kueue(self, p: _Pass, base: dict[str, Any], job: dict[str, Any]) -> None:
        """Kueue holds the Job suspended: say why in Kueue's words, from its Workload's conditions.

        The Workload comes from a watch-fed view (handlers.workload_index), so this costs no
        read; the LocalQueue is read only while no Workload is known (Kueue has not made one
        yet, or is not installed) and the job has never run. A job that has run stays
        Running/Retrying while Kueue re-admits it: an eviction is a disruption, not an attempt."""
        spec = p.spec
        assert spec.queue_name
        has_run = bool(p.status.get("startTime"))
        workload = self.views.workload_of(job)
        if workload is not None:
            wait = kueue.describe_wait(workload, spec.queue_name, p.ref.namespace, has_run=has_run)
            reason, message = wait.reason, wait.message
            if wait.eviction is not None:
                e = wait.eviction
                # Kept in lastFailure, timed by Kueue's condition (a stable value: no rewrite per pass).
                base["lastFailure"] = Failure(e.reason, e.message, DISRUPTION, time=parse_time(e.time)).to_status(p.now)
        elif has_run:
            again = kueue.waiting_message(spec.queue_name, again=True)
            reason, message = Reason.RETRYING, f"suspended by Kueue; {again}"
        else:
            reason, message = self._kueue_state(p)
        phase = Phase.RUNNING if has_run else Phase.QUEUED
        # New wording is news; a count that moves with the queue waits for the write interval.
        self._move(p, base, phase, reason, message, force=not kueue.same_wording(p.status.get("message"), message))

    def _cache_hit(self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str) -> dict[str, Any] | None:
        # Only results the operator verified itself, within the cache's scope (never other jobs' status).
        return self.outputs.cache_hit(ref, spec, digest)

    def _with_fresh_url(self, output: dict[str, Any], spec: api.VideoGenJobSpec) -> dict[str, Any]:
        output = {k: v for k, v in output.items() if k not in ("url", "urlExpiresAt")}
        seconds = spec.output.presign_seconds or 0
        if self.store is not None and seconds > 0 and output.get("uri"):
            url = self.store.presign(str(output["uri"]), seconds)
            if url:
                output["url"] = url
                output["urlExpiresAt"] = iso(datetime.fromtimestamp(self.clock().timestamp() + seconds, UTC))
        return output

    def _recheck_in(self, p: _Pass, seconds: float) -> None:
        """Nothing in this job's state moves with time for `seconds` (its events still reconcile it)."""
        self._recheck[(p.ref.namespace, p.ref.name)] = time.monotonic() + max(0.0, seconds)

    def _hold_suspended(self, p: _Pass, base: dict[str, Any], *, job_exists: bool) -> None:
        """spec.suspend: the pod goes away; past the grace period the job is Cancelled for good."""
        grace = self.settings.cancel_grace_seconds
        since = suspended_since(p.status)
        if since is not None and (p.now - since).total_seconds() >= grace:
            if job_exists:
                self.kube.delete_job(p.ref.namespace, manifests.child_name(p.ref))
            message = f"suspended for longer than the cancel grace period ({grace}s)"
            self._move(p, base, Phase.CANCELLED, Reason.CANCELLED, message)
            return
        self._recheck_in(p, grace - ((p.now - since).total_seconds() if since is not None else 0.0))
        message = f"suspended by spec.suspend; set it to false to resume, or it is cancelled after {grace}s"
        held = set_suspended(base, True, message, p.now, p.generation)
        held.pop("queuePosition", None)
        self._move(p, held, Phase.QUEUED, Reason.SUSPENDED, message)

    # ------------------------------------------------------------------ creating the Job

    def _try_start(self, p: _Pass, *, suspended: bool) -> bool:
        """_start, with a refusal ending this job (and only this job) Failed/CreateFailed."""
        try:
            self._start(p.ref, p.spec, p.digest, p.model, suspended=suspended)
        except _RefusedError as err:
            message = str(err)
            failure = Failure(Reason.CREATE_FAILED, message, "operator").to_status(p.now)
            base = dict(p.status, lastFailure=failure)
            base.pop("queuePosition", None)
            self._move(p, base, Phase.FAILED, Reason.CREATE_FAILED, message)
            return False
        return True

    def _create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.kube.create(obj)
        except ApiException as err:
            if is_refusal(err):
                raise _RefusedError(obj["kind"], obj["metadata"]["name"], api_message(err)) from err
            raise

    def _ensure_runner_rbac(self, namespace: str) -> None:
        """The runner ServiceAccount, Role and RoleBinding: one set per namespace, made once."""
        if namespace in self._rbac_ready:
            return
        # The first job of a burst in a new namespace makes them; the others wait for it
        # (without the lock, every job admitted in the same pass posted all three, 409s).
        with self._lock(("", namespace)):
            if namespace in self._rbac_ready:
                return
            if not self.settings.runner_service_account:
                self._create(manifests.build_runner_service_account(namespace))
            self._create(manifests.build_runner_role(namespace))
            self._create(manifests.build_runner_role_binding(namespace, self.settings))
            self._rbac_ready.add(namespace)

    def _start(
        self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str, model: ModelDecision, *, suspended: bool
    ) -> None:
        """Create (if missing) everything the runner pod needs, the Job last."""
        self._ensure_runner_rbac(ref.namespace)
        # The catalog reaches the namespace as a read-only claim (no credentials, no hostPath).
        claim = self.catalog.namespace_claim(ref.namespace, required=model.model is not None)
        mount = manifests.CacheMount(model=model.model, claim=claim)
        # The runner's only credentials: presigned URLs for this job's own objects.
        self.outputs.ensure_grant(ref, spec, digest, self.clock())
        job = manifests.build_job(ref, spec, self.settings, digest, suspend=suspended, mount=mount)
        created = self._create(job)
        if created is not None:
            self.views.remember_job(ref.uid, created)

    # ------------------------------------------------------------------ while the Job exists

    def _with_job(self, p: _Pass, view: JobView, job: dict[str, Any]) -> None:
        spec, status = p.spec, p.status
        # Never fewer than recorded: the pods a suspension (Kueue's eviction) deleted leave no count on the Job.
        attempts = max(view.attempts, int(status.get("attempts") or 0))
        base = dict(status, jobName=manifests.child_name(p.ref), attempts=attempts)
        if view.current_pod:
            base["podName"] = view.current_pod
        if view.last_failure:
            base["lastFailure"] = view.last_failure.to_status(p.now)
        if view.held_seconds:
            base["gpuSeconds"] = round(view.held_seconds * spec.resources.gpus, 1)
        if not base.get("startTime") and view.runner_started_at is not None:
            base["startTime"] = iso(view.runner_started_at)

        if view.complete:
            if view.result is None:
                recorded = result_from_status(status)
                if recorded is not None:
                    # The succeeded pod is gone (or its message unreadable): the runner's own record.
                    view.result, view.result_error = recorded, None
            self._succeeded(p, base, view)
            return
        if view.failed:
            failure = job_failure(view)
            base["lastFailure"] = failure.to_status(p.now)
            self._move(p, base, Phase.FAILED, failure.reason, failure.message)
            return

        if spec.suspend:
            if not view.suspended:
                self.kube.set_job_suspended(p.ref.namespace, base["jobName"], True)
            self._hold_suspended(p, base, job_exists=True)
            return
        if view.suspended:
            if _is_kueue_managed(job):
                if suspended_since(status) is not None:
                    self.kube.set_job_suspended(p.ref.namespace, base["jobName"], False)
                self._renew_grant_if_due(p, job)
                resumed = set_suspended(base, False, "resumed; waiting for Kueue", p.now, p.generation)
                self._wait_for_kueue(p, resumed, job)
            else:
                # Resuming takes a GPU slot again, so it goes through admission.
                self._handed_over = True
                p.outcome.needs_admission = True
            return
        if suspended_since(status) is not None:
            base = set_suspended(base, False, "resumed", p.now, p.generation)
        base.pop("queuePosition", None)

        if view.running_pod:
            message = f"runner pod {view.running_pod} is running"
            if view.attempts > 1:
                message += f" (attempt {view.attempts} of {spec.retries + 1})"
            self._move(p, base, Phase.RUNNING, Reason.RUNNING, message)
        elif view.finished_pod:
            # The runner exited 0 and the Job controller marks the Job Complete a
            # moment later: never fall back to Queued in between.
            self._move(p, base, Phase.RUNNING, Reason.RUNNING, "the runner finished; recording the result")
        elif status.get("startTime"):
            self._between_attempts(p, base, view, job)
        else:
            self._starting(p, base, view, job)

    def _pod_create_failure(self, p: _Pass, view: JobView, job: dict[str, Any]) -> Failure | None:
        """The Job controller's latest FailedCreate (quota, webhook, policy) while no pod exists."""
        if view.current_pod and view.current_created_at is not None:
            return None
        events = self.views.failed_creates(p.ref.namespace, str(job.get("metadata", {}).get("name") or ""))
        if not events:
            return None
        latest = max(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return Failure(Reason.POD_CREATE_FAILED, str(latest.get("message") or "FailedCreate"), "job")

    def _between_attempts(self, p: _Pass, base: dict[str, Any], view: JobView, job: dict[str, Any]) -> None:
        """A job that has run and has no running pod: a retry or a disruption's replacement is on its way.

        It stays Running (it has run; going back to Queued would be a lie), and no startup
        deadline applies: a replacement after a drain may wait for a GPU for as long as
        the job's own timeoutSeconds allows (the Job's activeDeadlineSeconds enforces it)."""
        waiting = self._pod_create_failure(p, view, job) or view.waiting
        if view.disruption is not None and (view.last_failure is None or view.lost_to_disruption):
            # Kept in lastFailure: the disrupted pod object is removed soon, the cause must not be.
            base["lastFailure"] = view.disruption.to_status(p.now)
        last = base.get("lastFailure") or {}
        if last.get("location") == DISRUPTION:
            message = (
                f"the runner pod was disrupted ({last.get('reason')}: {last.get('message')}); "
                "waiting for its replacement"
            )
        elif view.last_failure is not None:
            failure = view.last_failure
            message = f"attempt {view.attempts - 1} failed ({failure.reason}: {failure.message}); retrying"
        else:
            message = "waiting for the runner pod's replacement"
        if waiting is not None:
            message += f"; {waiting.reason}: {waiting.message}"
        elif view.current_pod:
            message += f"; pod {view.current_pod} is starting"
        self._move(p, base, Phase.RUNNING, Reason.RETRYING, message)

    def _starting(self, p: _Pass, base: dict[str, Any], view: JobView, job: dict[str, Any]) -> None:
        """The pod has not run yet: say why, and fail it once the startup deadline passes."""
        limit = p.spec.startup_timeout_seconds
        # Counted from the current pod's creation (a pod that waits for a GPU after an
        # earlier pod failed gets its own full allowance), else from the last pod activity or
        # the Job's (re)start (a Job Kueue admits after hours starts its clock then).
        times = [t for t in (view.last_pod_activity, view.started_at, view.created_at) if t is not None]
        started = view.current_created_at or (max(times) if times else p.now)
        create_failure = self._pod_create_failure(p, view, job)
        elapsed = (p.now - started).total_seconds()
        if elapsed < limit:
            self._recheck_in(p, limit - elapsed)
        if elapsed >= limit:
            why = create_failure or view.waiting or view.last_failure
            message = f"the runner pod did not start within startupTimeoutSeconds ({limit}s)"
            if why:
                message += f": {why.reason}: {why.message}"
            self.kube.delete_job(p.ref.namespace, base["jobName"])
            base["lastFailure"] = Failure(
                why.reason if why else Reason.STARTUP_TIMEOUT, message, why.location if why else "pod"
            ).to_status(p.now)
            self._move(p, base, Phase.FAILED, Reason.STARTUP_TIMEOUT, message)
            return
        waiting = create_failure or view.waiting
        if waiting:
            base["lastFailure"] = waiting.to_status(p.now)
            reason: str = waiting.reason
            message = f"{reason}: {waiting.message}"
        elif _is_kueue_managed(job) and p.status.get("reason") == Reason.WAITING_FOR_ADMISSION:
            reason, message = Reason.POD_STARTING, "admitted by Kueue; the runner pod is starting"
        else:
            reason, message = Reason.POD_STARTING, "the runner pod is starting"
        self._move(p, base, Phase.QUEUED, reason, message)

    def _succeeded(self, p: _Pass, base: dict[str, Any], view: JobView) -> None:
        if view.attempts <= 1:
            base.pop("lastFailure", None)
        message = view.result_error or "the video is ready"
        if view.result is not None:
            result = view.result
            try:
                output = self._with_fresh_url(
                    self.outputs.accept(p.ref, p.spec, p.digest, result.output.to_wire()), p.spec
                )
            except VerificationError as err:
                message = f"the runner reported success, but {err}"
                base["lastFailure"] = Failure(Reason.OUTPUT_VERIFICATION_FAILED, message, "operator").to_status(p.now)
                self._move(p, base, Phase.FAILED, Reason.OUTPUT_VERIFICATION_FAILED, message)
                return
            base.update(
                output=output,
                timings=result.timings.to_wire(),
                seed=result.seed,
                memoryMode=result.memory_mode,
                adjustments=list(result.adjustments),
                acceleration=list(result.acceleration),
            )
            message = f"the video is ready at {output.get('uri')}"
        base["progress"] = {
            "stage": api.Stage.DONE,
            "percent": 100,
            "summary": progress_summary("done", percent=100),
            "updatedAt": iso(p.now),
        }
        self._move(p, base, Phase.SUCCEEDED, Reason.SUCCEEDED, message)

    # ------------------------------------------------------------------ status writes

    def _write(
        self,
        body: dict[str, Any],
        old: dict[str, Any],
        new: dict[str, Any],
        t: Transition | None,
        outcome: Outcome,
        *,
        force: bool = False,
        earlier: list[Transition] | None = None,
    ) -> dict[str, Any]:
        """Merge-patch status when it changed; throttled to one write per interval
        unless the phase machine moved (a transition is never delayed).

        `earlier` are transitions this same write also carries (a new job's Pending,
        written together with its Queued): each gets its Event, in order."""
        if new == old:
            return old
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        last = self._last_write.get(key, 0.0)
        if t is None and not force and time.monotonic() - last < self.settings.status_min_interval_seconds:
            return old
        patch: dict[str, Any] = {k: v for k, v in new.items() if k != "progress" or v != old.get("progress")}
        for gone in set(old) - set(new):
            patch[gone] = None
        # Conditional on the resourceVersion this pass read: a 409 (Conflict) aborts the
        # pass, and the watch event of whatever changed the object reconciles it again.
        written = self.kube.patch_vgj_status(meta["namespace"], meta["name"], patch, meta.get("resourceVersion"))
        if written is None:
            return old
        meta["resourceVersion"] = (written.get("metadata") or {}).get("resourceVersion")
        body["status"] = dict(written.get("status") or new)
        self.views.remember_vgj(written)
        self._last_write[key] = time.monotonic()
        metrics.status_written(body, old, new, t)
        for done in [*(earlier or []), *([t] if t is not None else [])]:
            outcome.transitions.append(done)
            self.kube.post_event(body, done.event_type, done.reason, done.message)
            log.info(
                "%s/%s -> %s (%s)",
                meta["namespace"],
                meta["name"],
                done.phase,
                done.reason,
                extra={"vgj": f"{meta['namespace']}/{meta['name']}", "phase": done.phase, "reason": done.reason},
            )
        return new

    # ================================================================== admission

    def admit(self) -> list[concurrent.futures.Future[None]]:
        """Start queued jobs in priority/creation order while the caps (in GPUs) allow.

        Everything is read from the views: a pass costs the writes of the jobs it
        admits and of the few exact queue positions that moved, nothing per waiting job.
        A job whose start fails stays with that job; the jobs behind it still start.

        The starts run on the starter pool, first admitted first started, and the pass does
        not wait for them (the next pass counts them): a burst's jobs start one after another
        instead of each waiting for its whole batch. The waiting jobs' queue statuses are written
        on a pool of their own, after the starts and outside the pass, so a pass takes
        milliseconds however many jobs wait: a freed GPU is handed on at once. Returns what it
        launched: the starts, and the queue-status writes it scheduled."""
        launched: list[concurrent.futures.Future[None]] = []
        with self._admission_lock:
            # Whatever was handed over before this point is in the views this pass reads.
            self._handed_over = False
            # Read before the Jobs: a start that ends in between has put its Job in view already.
            starting = dict(self._launching)
            # Only unfinished jobs can wait; the GPUs held are counted from the Jobs, whatever
            # their owners' (tenant-writable) status says: thousands of finished jobs cost nothing.
            vgjs = self.views.unfinished_vgjs()
            running: Counter[str] = Counter()
            jobs_by_owner: dict[str, dict[str, Any]] = {}
            for owner_uid, job in self.views.jobs():
                owner = self.views.vgj_by_uid(owner_uid)
                meta = job.get("metadata") or {}
                # Only the Job the operator made for a live VideoGenJob counts: a tenant's
                # look-alike Job (same labels, its own name or owner) changes nothing.
                if owner is None or meta.get("namespace") != owner["metadata"]["namespace"]:
                    continue
                if meta.get("name") != manifests.child_name(ref_of(owner)):
                    continue
                jobs_by_owner[owner_uid] = job
                if self._holds_gpus(job):
                    running[meta["namespace"]] += int(job.get("gpus") or 1)
            for uid, namespace, gpus in starting.values():
                if uid not in jobs_by_owner:  # admitted, its Job not made (or not in view) yet
                    running[namespace] += gpus
            waiting: list[Waiting] = []
            uids: dict[tuple[str, str], str] = {}
            bodies: dict[tuple[str, str], dict[str, Any]] = {}
            # A pass looks at every unfinished job: what many share is worked out once per pass, and
            # what depends on one object alone once per version of it (_queue_entry).
            model_ready: dict[str, bool] = {}
            entries: dict[tuple[str, str], _QueueEntry] = {}
            for vgj in vgjs:
                meta = vgj["metadata"]
                key = (meta["namespace"], meta["name"])
                entry = self._queue_entry(key, vgj)
                if entry is None or key in starting:
                    continue
                entries[key] = entry
                if entry.phase_unset and not self._is_fresh(vgj):
                    continue  # waits for its first reconcile
                if entry.model not in model_ready:
                    model_ready[entry.model] = self._model_ready(vgj["spec"])
                if not model_ready[entry.model]:
                    continue  # waits for its catalog model, not for a GPU: no slot, no queue position
                own_job = jobs_by_owner.get(entry.uid)
                if own_job is not None and not (own_job.get("spec") or {}).get("suspend"):
                    continue
                if own_job is None and entry.job_named:
                    continue  # the Job vanished: reconcile reports it
                item = entry.waiting
                if entry.priority_class:  # a class's value may change: read (from the cache) each pass
                    priority = self.kube.priority_of(entry.priority_class)
                    if priority != item.priority:
                        item = entry.waiting = replace(item, priority=priority)
                waiting.append(item)
                uids[key] = entry.uid
                bodies[key] = vgj
            self._queue_entries = entries  # only unfinished jobs' entries live on
            per_ns = self._namespace_cap()
            plan = plan_admission(waiting, running, self.settings.max_running, per_ns)
            gpus_of = {w.key: w.gpus for w in waiting}
            claimed = Counter(running)
            for key in plan.admit:
                self._launching[key] = (uids[key], key[0], gpus_of[key])
                self._no_starts.clear()
                claimed[key[0]] += gpus_of[key]
                launched.append(self._starter.submit(self._start_admitted, key, jobs_by_owner))
            self._claimed, self._nothing_waits = claimed, plan.waiting_total == 0
            self._claimed_at = self.clock()
            exact = self.settings.queue_positions_exact
            for key, position in plan.positions.items():
                if self._position_needs_write(bodies[key], position, exact):
                    scheduled = self._schedule_position(key, (position, exact, per_ns))
                    if scheduled is not None:
                        launched.append(scheduled)
        return launched

    def _namespace_cap(self) -> int:
        return namespace_cap(
            self.settings.max_running,
            self.settings.max_running_per_namespace,
            self.settings.namespace_share_percent,
        )

    def _admit_at_once(self, p: _Pass) -> concurrent.futures.Future[None] | None:
        """Admit a new job from its first reconcile, without waiting for the next admission pass,
        when that pass could decide nothing else: the last pass left no job waiting, no job that
        may wait was handed over since, and the caps leave room for it counted against what that
        pass saw held or starting plus what was admitted since. (Jobs that end in between only make
        the count too high: the pass their end starts counts again.) Queue order is unaffected: it
        orders waiting jobs, and none waits. The count must be recent: an active replica's sweep runs
        a pass every period, and a replica that stopped being the active one (another may have
        started jobs meanwhile) runs none. Returns the start it launched, or None."""
        key = (p.ref.namespace, p.ref.name)
        gpus = _spec_gpus(p.body.get("spec") or {})
        with self._admission_lock:
            claimed, counted_at = self._claimed, self._claimed_at
            if claimed is None or counted_at is None or not self._nothing_waits or self._handed_over:
                return None
            if key in self._launching:
                return None
            if (
                abs((self.clock() - counted_at).total_seconds())
                > CLAIMED_MAX_AGE_PERIODS * self.settings.resync_seconds
            ):
                return None
            if not self._model_ready(p.body.get("spec") or {}):
                return None  # it waits for its catalog model, not for a GPU (the pass says so)
            cap = self.settings.max_running
            if not fits(sum(claimed.values()), claimed[key[0]], gpus, cap, self._namespace_cap()):
                return None  # it waits: the pass gives it its place
            claimed[key[0]] += gpus
            self._launching[key] = (p.ref.uid, key[0], gpus)
            self._no_starts.clear()
        return self._starter.submit(self._start_admitted, key, {})

    def _queue_entry(self, key: tuple[str, str], vgj: dict[str, Any]) -> _QueueEntry | None:
        """What admission needs from this version of the object (None: it cannot wait for a GPU),
        kept from the last pass while the object's uid and resourceVersion are the same."""
        meta = vgj["metadata"]
        known = self._queue_entries.get(key)
        if known is not None and known.version == meta.get("resourceVersion") and known.uid == meta.get("uid"):
            return known
        uid, version = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
        status = vgj.get("status") or {}
        spec = vgj.get("spec") or {}
        phase = status.get("phase")
        if meta.get("deletionTimestamp") or phase not in (None, "", Phase.PENDING, Phase.QUEUED):
            return None
        if spec.get("suspend") or spec.get("queueName") or status.get("reason") == Reason.MODEL_NOT_READY:
            return None
        resources = spec.get("resources") or {}
        priority_class = str(resources.get("priorityClassName") or "")
        created = parse_time(meta.get("creationTimestamp")) or self.clock()
        item = Waiting(key[0], key[1], self.kube.priority_of(priority_class or None), created, _spec_gpus(spec))
        return _QueueEntry(
            uid=uid,
            version=version,
            phase_unset=not phase,
            model=str(spec.get("model") or ""),
            job_named=bool(status.get("jobName")),
            priority_class=priority_class,
            waiting=item,
        )

    def _position_needs_write(self, found: dict[str, Any], position: int, exact: int) -> bool:
        """Whether a waiting job's status (as in the view) does not show this place yet."""
        current = found.get("status") or {}
        if self._is_fresh(found):
            return True  # not written yet: this is its first status, whatever its place
        if position > exact:
            return current.get("queuePosition") is not None  # leaves the exact range: once
        return not (current.get("queuePosition") == position and current.get("reason") == Reason.QUEUED)

    def _schedule_position(
        self, key: tuple[str, str], due: tuple[int, int, int]
    ) -> concurrent.futures.Future[None] | None:
        """Have `due` written for `key`; a write already scheduled for it writes this one instead."""
        with self._positions_guard:
            pending = key in self._positions_due
            self._positions_due[key] = due
        return None if pending else self._queue_writer.submit(self._write_position, key)

    def _write_position(self, key: tuple[str, str]) -> None:
        self._no_starts.wait(START_HOLD_SECONDS)
        # What is due is taken under the job's lock: of two writers for one job (a newer pass
        # scheduled one while a write was under way) the later always writes the newer place.
        with self._lock(key):
            with self._positions_guard:
                due = self._positions_due.pop(key, None)
            if due is None:
                return
            try:
                self._update_position(key, *due)
            except Exception as err:  # the next pass that finds it unwritten tries again
                log.warning("queue position of %s/%s not written: %s", key[0], key[1], err)

    def _is_fresh(self, body: dict[str, Any]) -> bool:
        """A new job a reconcile accepted (this very generation of its spec) and left to admission
        unwritten. Anything else without a phase waits for its first reconcile."""
        meta = body["metadata"]
        accepted = self._fresh.get((meta["namespace"], meta["name"]))
        if accepted is None or (body.get("status") or {}).get("phase"):
            return False
        generation = meta.get("generation")
        return accepted[0] == (int(generation) if generation is not None else None)

    def _model_ready(self, spec: dict[str, Any]) -> bool:
        """A catalog model that is Ready now (unlisted URIs count as ready: admission decides)."""
        name = str(spec.get("model") or "")
        if not is_catalog_name(name):
            return True
        model = self.views.model(name)
        status = (model or {}).get("status") or {}
        return status.get("phase") == "Ready" and status.get("observedGeneration") == (model or {}).get(
            "metadata", {}
        ).get("generation")

    def _start_admitted(self, key: tuple[str, str], jobs_by_owner: dict[str, dict[str, Any]]) -> None:
        try:
            self._admit_one(key, jobs_by_owner)
        except Exception as err:  # one job's trouble never stops the others; the next pass retries it
            log.warning("admitting %s/%s failed, retrying later: %s", key[0], key[1], err)
        finally:
            self._launching.pop(key, None)
            if not self._launching:
                self._no_starts.set()

    def _holds_gpus(self, job: dict[str, Any]) -> bool:
        meta = job.get("metadata") or {}
        if job_finished(job) or (job.get("spec") or {}).get("suspend") or meta.get("deletionTimestamp"):
            return False
        if _is_kueue_managed(job):
            return False  # Kueue's quota, not ours
        if any((pod.get("status") or {}).get("phase") == "Succeeded" for pod in self.views.pods_of(job)):
            # One completion ends a runner Job: its pod has exited and given its GPU back, and no
            # other comes. The Job controller says Complete only later (behind its own client's
            # rate limit, 15 s later in the capped benchmark): until then a freed GPU sat idle
            # while jobs waited, and the queue moved in waves.
            return False
        # A Job whose pod could not be created holds no GPU, so it must not hold a slot.
        status = job.get("status") or {}
        return bool(status.get("active")) or not self.views.failed_creates(
            meta.get("namespace", ""), meta.get("name", "")
        )

    def _admit_one(self, key: tuple[str, str], jobs_by_owner: dict[str, dict[str, Any]]) -> None:
        with self._lock(key):
            found = self.views.vgj(*key)
            if found is None:
                return
            body = _own_copy(found)
            status = dict(body.get("status") or {})
            if is_terminal(status) or (body.get("spec") or {}).get("suspend"):
                return
            fresh = self._is_fresh(body)
            if status.get("phase") not in (Phase.PENDING, Phase.QUEUED) and not fresh:
                return
            ref = ref_of(body)
            job = jobs_by_owner.get(ref.uid)
            try:
                spec = parse_spec(body.get("spec"))
                decision, digest = self._model_of(ref, spec, job)
            except SpecError:
                return  # reconcile reports it
            if job is None and decision.model is None and not decision.unlisted:
                return  # its model is not Ready (reconcile says so)
            p = _Pass(body, ref, spec, digest, self.clock(), status, Outcome(), model=decision)
            if fresh:
                _first_sight(p)  # its first write, Pending with what follows
                self._fresh.pop(key, None)
            if job is None:
                if not self._try_start(p, suspended=False):
                    return
                # The starter's work ends at the Job: its status (jobName, PodStarting, with the
                # Created of a new job) is written by the owner's reconcile that the Job's own
                # watch event starts, as for any change of a Job. Writing it here held a starter
                # for three more round trips (a patch and two Events): in a burst the starters,
                # not the API server, set how fast Jobs appeared. A crash in between leaves a Job
                # that the next reconcile finds by its deterministic name, as before.
                return
            self.kube.set_job_suspended(p.ref.namespace, manifests.child_name(p.ref), False)
            base = set_suspended(p.status, False, "resumed", p.now, p.generation)
            base.pop("queuePosition", None)
            self._move(p, base, Phase.QUEUED, Reason.POD_STARTING, "admitted; the runner pod is starting", force=True)

    def _update_position(self, key: tuple[str, str], position: int, exact: int, per_ns: int) -> None:
        """Exact positions for the first `exact` waiting jobs; behind them, one fixed message
        (written only when a job leaves the exact range), so an admission costs O(exact) writes.
        Runs under the job's lock, after the pass that computed `position`: a job admitted since
        is left alone."""
        found = self.views.vgj(*key)
        if found is None or key in self._launching or not self._position_needs_write(found, position, exact):
            return
        job = self.views.job_of(
            found["metadata"]["namespace"], str(found["metadata"].get("uid") or ""), manifests.child_name(ref_of(found))
        )
        if job is not None and not (job.get("spec") or {}).get("suspend"):
            return  # admitted and started meanwhile: its reconcile writes what it shows now
        body = _own_copy(found)
        status = dict(body.get("status") or {})
        fresh = self._is_fresh(body)
        if status.get("phase") not in (Phase.PENDING, Phase.QUEUED) and not fresh:
            return
        if (body.get("spec") or {}).get("suspend"):
            return
        # A new job stays fresh until its first status is written: a pass that runs meanwhile still
        # counts it as waiting, in its place (and schedules its newer place).
        p = _Pass(body, ref_of(body), None, self._fresh.get(key, (None, ""))[1], self.clock(), status, Outcome())
        if fresh:
            _first_sight(p)
        if position <= exact:
            base = dict(status, queuePosition=position)
            message = queue_message(position, self.settings.max_running, per_ns)
        else:
            base = dict(status)
            base.pop("queuePosition", None)
            message = further_back_message(exact, self.settings.max_running, per_ns)
        if suspended_since(status) is not None:
            base = set_suspended(base, False, "resumed; waiting for a GPU slot", p.now, p.generation)
        # A new position is news to the user even though the phase stays Queued.
        self._move(p, base, Phase.QUEUED, Reason.QUEUED, message, force=True)
        self._fresh.pop(key, None)

    # ================================================================== errors

    def record_error(self, namespace: str, name: str, error: BaseException) -> None:
        """A reconcile that keeps failing: say so on the job (message and a Warning Event), keep its phase."""
        found = self.views.vgj(namespace, name)
        if found is None:
            return
        body = _own_copy(found)
        status = dict(body.get("status") or {})
        if is_terminal(status):
            return
        text = describe_error(error)
        message = f"the operator could not reconcile this job and retries: {text[:500]}"
        if status.get("message") == message:
            return
        meta = body["metadata"]
        written = self.kube.patch_vgj_status(namespace, name, {"message": message}, meta.get("resourceVersion"))
        if written is not None:
            self.views.remember_vgj(written)
            self.kube.post_event(body, "Warning", Reason.RECONCILE_ERROR, message)

    # ================================================================== deletion

    def sync_outputs_finalizer(self, namespace: str, name: str) -> None:
        """output.deletePolicy: Delete — hold the job's deletion until its objects are gone.

        Our own finalizer rather than kopf's on.delete: kopf's change detection would then run on
        every event of every VideoGenJob (a deep copy and a diff of the whole object), which was a
        quarter of the operator's CPU in the scale benchmark. The finalizer keeps kopf's name, so
        objects finalized by earlier versions are honoured. Conditional writes: a 409 retries."""
        found = self.views.vgj(namespace, name)
        if found is None or not needs_finalizer_work(found):
            return
        body = _own_copy(found)
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            if deletes_outputs(body):
                deleted = self.cleanup_outputs(body)
                if deleted:
                    log.info("deleted %s (output.deletePolicy: Delete)", ", ".join(deleted))
            finalizers.remove(api.OUTPUTS_FINALIZER)
        elif deletes_outputs(body):
            finalizers.append(api.OUTPUTS_FINALIZER)
        else:
            finalizers.remove(api.OUTPUTS_FINALIZER)
        written = self.kube.set_vgj_finalizers(namespace, name, finalizers, str(meta.get("resourceVersion") or ""))
        if written is not None:
            self.views.remember_vgj(written)

    def cleanup_outputs(self, body: dict[str, Any]) -> list[str]:
        """output.deletePolicy: Delete — remove the job's own objects at its spec's location, never
        shared ones and never what its status names."""
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError:
            return []
        digest = api.spec_hash(spec)
        recorded = str((body.get("status") or {}).get("specHash") or "")
        if is_catalog_name(spec.model) and re.fullmatch(r"[0-9a-f]{16}", recorded):
            # A catalog model's hash includes the revision the job ran, which only its status still
            # says once the Job is gone. Safe to take from status: the location stays inside the
            # namespace's prefix and only objects this job's uid wrote are deleted.
            digest = recorded
        return self.outputs.cleanup(body, ref_of(body), spec, self.views.vgjs(), digest)
