"""Level-triggered reconciliation of one VideoGenJob, and the admission pass.

Every call starts from what the API server says now (never from memory), so
an operator killed at any point and restarted converges to the same answer:
the Job's name is deterministic, creating it twice is a 409, and the phase
machine refuses to leave a terminal phase.

Locking: one lock per VideoGenJob serialises its reconciles; the admission
pass takes the admission lock first and per-job locks inside it, and a
reconcile never takes the admission lock, so the two cannot deadlock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from videogen_api import v1alpha1 as api
from videogen_operator import manifests, metrics
from videogen_operator.kube import Kube
from videogen_operator.manifests import JobRef
from videogen_operator.observe import Failure, JobView, job_failure, parse_time, view_job
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
from videogen_operator.queue import Waiting, plan_admission, queue_message
from videogen_operator.results import ObjectStore, split_uri
from videogen_operator.settings import OperatorSettings
from videogen_operator.validation import SpecError, parse_spec, validate_spec

log = logging.getLogger(__name__)
Phase = api.Phase
Reason = api.Reason


@dataclass
class Outcome:
    """What one reconcile asks of its caller."""

    needs_admission: bool = False
    transitions: list[Transition] = field(default_factory=list)


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

    @property
    def spec(self) -> api.VideoGenJobSpec:
        assert self.parsed is not None, "this step needs a valid spec"
        return self.parsed

    @property
    def generation(self) -> int | None:
        value = self.body["metadata"].get("generation")
        return int(value) if value is not None else None


def _kueue_message(spec: api.VideoGenJobSpec) -> str:
    return f"waiting for Kueue to admit the Job in LocalQueue {spec.queue_name!r}"


def ref_of(body: dict[str, Any]) -> JobRef:
    meta = body["metadata"]
    return JobRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])


def _is_kueue_managed(job: dict[str, Any]) -> bool:
    return api.KUEUE_QUEUE_LABEL in ((job.get("metadata") or {}).get("labels") or {})


def _job_finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        store: ObjectStore | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.store = store
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._admission_lock = threading.Lock()
        self._last_write: dict[tuple[str, str], float] = {}

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    # ================================================================== one job

    def reconcile(self, namespace: str, name: str) -> Outcome:
        with self._lock((namespace, name)):
            body = self.kube.get_vgj(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self._forget((namespace, name))
                return Outcome(needs_admission=True)
            return self._reconcile(body)

    def _forget(self, key: tuple[str, str]) -> None:
        self._last_write.pop(key, None)
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                self._locks.pop(key, None)

    def _reconcile(self, body: dict[str, Any]) -> Outcome:
        status: dict[str, Any] = dict(body.get("status") or {})
        outcome = Outcome()
        if is_terminal(status):
            return outcome
        ref = ref_of(body)
        now = self.clock()
        try:
            spec = parse_spec(body.get("spec"))
            digest = api.spec_hash(spec)
            validate_spec(ref, spec, self.settings, digest, self.kube.priority_class_exists)
        except SpecError as err:
            p = _Pass(body, ref, None, "", now, status, outcome)
            failed = dict(status, lastFailure=Failure(Reason.VALIDATION_FAILED, str(err), "operator").to_status(now))
            self._move(p, failed, Phase.FAILED, Reason.VALIDATION_FAILED, str(err))
            return outcome
        p = _Pass(body, ref, spec, digest, now, status, outcome)

        if not status.get("phase"):
            self._move(
                p,
                dict(status, specHash=digest, attempts=0),
                Phase.PENDING,
                Reason.CREATED,
                "accepted; waiting for admission",
            )

        job = self.kube.get_job(ref.namespace, manifests.child_name(ref))
        pods = self.kube.list_job_pods(ref.namespace, ref.uid) if job else []
        view = view_job(job, pods)
        if view.exists:
            self._with_job(p, view, job or {})
        else:
            self._without_job(p)
        return outcome

    def _move(
        self, p: _Pass, base: dict[str, Any], phase: api.Phase, reason: str, message: str, *, force: bool = False
    ) -> None:
        """Transition `base` to (phase, reason, message) and write it if anything changed."""
        new, t = transition(base, phase, reason, message, p.now, p.generation)
        p.status = self._write(p.body, p.status, new, t, p.outcome, force=force)

    # ------------------------------------------------------------------ before the Job exists

    def _without_job(self, p: _Pass) -> None:
        status, spec = p.status, p.spec
        if status.get("jobName"):
            # We created a Job before and it is gone while the job was not done:
            # re-creating it could run the generation twice, so fail loudly instead.
            message = f"runner Job {status['jobName']} disappeared before the job finished"
            failure = Failure(Reason.JOB_MISSING, message, "job").to_status(p.now)
            self._move(p, dict(status, lastFailure=failure), Phase.FAILED, Reason.JOB_MISSING, message)
            return

        # Looked up once, when the job is accepted: a queued job does not re-query
        # the API and the bucket on every sweep.
        hit = self._cache_hit(p.ref, spec, p.digest) if status.get("phase") == Phase.PENDING else None
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
            self._start(p.ref, spec, p.digest, suspended=True)
            self._mark_job_created(p)
            self._move(p, p.status, Phase.QUEUED, Reason.WAITING_FOR_ADMISSION, _kueue_message(spec))
            return

        if p.status.get("phase") == Phase.PENDING:
            self._move(p, p.status, Phase.QUEUED, Reason.QUEUED, "waiting for a GPU slot")
        p.outcome.needs_admission = True

    def _cache_hit(self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str) -> dict[str, Any] | None:
        if not (self.settings.cache_enabled and spec.cache and spec.seed is not None):
            return None
        for other in self.kube.list_vgjs(self.settings.namespaces):
            other_status = other.get("status") or {}
            if (
                other["metadata"].get("uid") != ref.uid
                and other_status.get("phase") == Phase.SUCCEEDED
                and other_status.get("specHash") == digest
                and (other_status.get("output") or {}).get("uri")
                and (other.get("spec") or {}).get("seed") is not None
            ):
                output = dict(other_status["output"])
                if self.store is None or self.store.output_still_valid(output):
                    return output
        if self.store is not None:
            bucket, _ = manifests.resolve_output(ref, spec, self.settings, digest)
            return self.store.lookup(bucket, digest)
        return None

    def _with_fresh_url(self, output: dict[str, Any], spec: api.VideoGenJobSpec) -> dict[str, Any]:
        output = {k: v for k, v in output.items() if k not in ("url", "urlExpiresAt")}
        seconds = spec.output.presign_seconds or 0
        if self.store is not None and seconds > 0 and output.get("uri"):
            url = self.store.presign(str(output["uri"]), seconds)
            if url:
                output["url"] = url
                output["urlExpiresAt"] = iso(datetime.fromtimestamp(self.clock().timestamp() + seconds, UTC))
        return output

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
        message = f"suspended by spec.suspend; set it to false to resume, or it is cancelled after {grace}s"
        held = set_suspended(base, True, message, p.now, p.generation)
        held.pop("queuePosition", None)
        self._move(p, held, Phase.QUEUED, Reason.SUSPENDED, message)

    # ------------------------------------------------------------------ creating the Job

    def _start(self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str, *, suspended: bool) -> None:
        """Create (if missing) everything the runner pod needs, the Job last."""
        if not self.settings.runner_service_account:
            self.kube.create_if_missing(manifests.build_runner_service_account(ref, digest))
        self.kube.create_if_missing(manifests.build_runner_role(ref, digest))
        self.kube.create_if_missing(manifests.build_runner_role_binding(ref, digest, self.settings))
        self._ensure_s3_secret(ref.namespace)
        self.kube.create_if_missing(manifests.build_job(ref, spec, self.settings, digest, suspend=suspended))

    def _ensure_s3_secret(self, namespace: str) -> None:
        name = self.settings.s3_secret_name
        if namespace == self.settings.operator_namespace or self.kube.get_secret(namespace, name) is not None:
            return
        source = self.kube.get_secret(self.settings.operator_namespace, name)
        if source is None:
            # The pod will report CreateContainerConfigError, which is lifted into status.
            log.warning(
                "S3 secret %s exists neither in %s nor in %s", name, namespace, self.settings.operator_namespace
            )
            return
        self.kube.create_if_missing(manifests.build_secret_copy(source, namespace))

    def _mark_job_created(self, p: _Pass) -> None:
        """Record the Job's name at once: from now on a missing Job means it was lost, not never made."""
        new = dict(p.status, jobName=manifests.child_name(p.ref))
        new.pop("queuePosition", None)
        p.status = self._write(p.body, p.status, new, None, p.outcome, force=True)

    # ------------------------------------------------------------------ while the Job exists

    def _with_job(self, p: _Pass, view: JobView, job: dict[str, Any]) -> None:
        spec, status = p.spec, p.status
        base = dict(status, jobName=manifests.child_name(p.ref), attempts=view.attempts)
        if view.current_pod:
            base["podName"] = view.current_pod
        if view.last_failure:
            base["lastFailure"] = view.last_failure.to_status(p.now)
        if view.held_seconds:
            base["gpuSeconds"] = round(view.held_seconds * spec.resources.gpus, 1)

        if view.complete:
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
                resumed = set_suspended(base, False, "resumed; waiting for Kueue", p.now, p.generation)
                self._move(p, resumed, Phase.QUEUED, Reason.WAITING_FOR_ADMISSION, _kueue_message(spec))
            else:
                # Resuming takes a GPU slot again, so it goes through admission.
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
        elif status.get("startTime") and view.last_failure is not None:
            failure = view.last_failure
            message = f"attempt {view.attempts - 1} failed ({failure.reason}: {failure.message}); retrying"
            self._move(p, base, Phase.RUNNING, Reason.RETRYING, message)
        else:
            self._starting(p, base, view, job)

    def _starting(self, p: _Pass, base: dict[str, Any], view: JobView, job: dict[str, Any]) -> None:
        """The pod has not run yet: say why, and fail it once the startup deadline passes."""
        limit = p.spec.startup_timeout_seconds
        started = view.started_at or view.created_at or p.now
        if (p.now - started).total_seconds() >= limit:
            why = view.waiting or view.last_failure
            message = f"the runner pod did not start within startupTimeoutSeconds ({limit}s)"
            if why:
                message += f": {why.reason}: {why.message}"
            self.kube.delete_job(p.ref.namespace, base["jobName"])
            base["lastFailure"] = Failure(
                why.reason if why else Reason.STARTUP_TIMEOUT, message, why.location if why else "pod"
            ).to_status(p.now)
            self._move(p, base, Phase.FAILED, Reason.STARTUP_TIMEOUT, message)
            return
        if view.waiting:
            base["lastFailure"] = view.waiting.to_status(p.now)
            reason: str = view.waiting.reason
            message = f"{reason}: {view.waiting.message}"
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
            output = result.output.to_wire()
            if not output.get("url") and output.get("uri"):
                output = self._with_fresh_url(output, p.spec)
            base.update(
                output=output,
                timings=result.timings.to_wire(),
                seed=result.seed,
                memoryMode=result.memory_mode,
                adjustments=list(result.adjustments),
            )
            message = f"the video is ready at {output.get('uri')}"
            if self.store is not None and p.spec.seed is not None and output.get("uri"):
                bucket, _ = split_uri(str(output["uri"]))
                self.store.record(bucket, p.digest, output)
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
    ) -> dict[str, Any]:
        """Merge-patch status when it changed; throttled to one write per interval
        unless the phase machine moved (a transition is never delayed)."""
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
        if not self.kube.patch_vgj_status(meta["namespace"], meta["name"], patch):
            return old
        self._last_write[key] = time.monotonic()
        metrics.status_written(body, old, new, t)
        if t is not None:
            outcome.transitions.append(t)
            self.kube.post_event(body, t.event_type, t.reason, t.message)
            log.info(
                "%s/%s -> %s (%s)",
                meta["namespace"],
                meta["name"],
                t.phase,
                t.reason,
                extra={"vgj": f"{meta['namespace']}/{meta['name']}", "phase": t.phase, "reason": t.reason},
            )
        return new

    # ================================================================== admission

    def admit(self) -> None:
        """Start queued jobs in priority/creation order while the caps allow."""
        with self._admission_lock:
            vgjs = self.kube.list_vgjs(self.settings.namespaces)
            jobs = self.kube.list_runner_jobs()
            jobs_by_uid = {((j.get("metadata") or {}).get("labels") or {}).get(api.LABEL_JOB_UID): j for j in jobs}
            running: Counter[str] = Counter(
                j["metadata"]["namespace"]
                for j in jobs
                if not _job_finished(j)
                and not (j.get("spec") or {}).get("suspend")
                and not _is_kueue_managed(j)
                and not (j.get("metadata") or {}).get("deletionTimestamp")
            )
            waiting: list[Waiting] = []
            by_key: dict[tuple[str, str], dict[str, Any]] = {}
            for vgj in vgjs:
                status = vgj.get("status") or {}
                spec = vgj.get("spec") or {}
                if status.get("phase") not in (Phase.PENDING, Phase.QUEUED) or vgj["metadata"].get("deletionTimestamp"):
                    continue
                if spec.get("suspend") or spec.get("queueName"):
                    continue
                job = jobs_by_uid.get(vgj["metadata"]["uid"])
                if job is not None and not (job.get("spec") or {}).get("suspend"):
                    continue
                if job is None and status.get("jobName"):
                    continue  # the Job vanished: reconcile reports it
                meta = vgj["metadata"]
                priority = self.kube.priority_of((spec.get("resources") or {}).get("priorityClassName"))
                created = parse_time(meta.get("creationTimestamp")) or self.clock()
                waiting.append(Waiting(meta["namespace"], meta["name"], priority, created))
                by_key[(meta["namespace"], meta["name"])] = vgj
            plan = plan_admission(waiting, running, self.settings.max_running, self.settings.max_running_per_namespace)
            for key in plan.admit:
                self._admit_one(key, by_key[key], jobs_by_uid.get(by_key[key]["metadata"]["uid"]))
            for key, position in plan.positions.items():
                self._update_position(key, position, plan.waiting_total)

    def _admit_one(self, key: tuple[str, str], snapshot: dict[str, Any], job: dict[str, Any] | None) -> None:
        with self._lock(key):
            body = self.kube.get_vgj(*key)
            if body is None or body["metadata"].get("uid") != snapshot["metadata"]["uid"]:
                return
            status = dict(body.get("status") or {})
            if is_terminal(status) or (body.get("spec") or {}).get("suspend"):
                return
            try:
                spec = parse_spec(body.get("spec"))
            except SpecError:
                return  # reconcile reports it
            digest = status.get("specHash") or api.spec_hash(spec)
            p = _Pass(body, ref_of(body), spec, digest, self.clock(), status, Outcome())
            if job is None:
                self._start(p.ref, spec, digest, suspended=False)
                self._mark_job_created(p)
                base = dict(p.status)
            else:
                self.kube.set_job_suspended(p.ref.namespace, manifests.child_name(p.ref), False)
                base = set_suspended(p.status, False, "resumed", p.now, p.generation)
            base.pop("queuePosition", None)
            self._move(p, base, Phase.QUEUED, Reason.POD_STARTING, "admitted; the runner pod is starting")

    def _update_position(self, key: tuple[str, str], position: int, total: int) -> None:
        with self._lock(key):
            body = self.kube.get_vgj(*key)
            if body is None:
                return
            status = dict(body.get("status") or {})
            if status.get("phase") not in (Phase.PENDING, Phase.QUEUED) or (body.get("spec") or {}).get("suspend"):
                return
            p = _Pass(body, ref_of(body), None, "", self.clock(), status, Outcome())
            base = dict(status, queuePosition=position)
            if suspended_since(status) is not None:
                base = set_suspended(base, False, "resumed; waiting for a GPU slot", p.now, p.generation)
            message = queue_message(position, total, self.settings.max_running, self.settings.max_running_per_namespace)
            # A new position is news to the user even though the phase stays Queued.
            self._move(p, base, Phase.QUEUED, Reason.QUEUED, message, force=status.get("queuePosition") != position)

    # ================================================================== deletion

    def cleanup_outputs(self, body: dict[str, Any]) -> list[str]:
        """output.deletePolicy: Delete — remove the job's own objects, never shared ones."""
        status = body.get("status") or {}
        output = status.get("output") or {}
        if not output.get("uri") or self.store is None:
            return []
        if status.get("reason") == Reason.CACHE_HIT:
            return []  # the objects belong to the job that made them
        uid = body["metadata"]["uid"]
        for other in self.kube.list_vgjs(self.settings.namespaces):
            if other["metadata"].get("uid") == uid or other["metadata"].get("deletionTimestamp"):
                continue
            if ((other.get("status") or {}).get("output") or {}).get("uri") == output["uri"]:
                log.info(
                    "keeping %s: VideoGenJob %s/%s still refers to it",
                    output["uri"],
                    other["metadata"]["namespace"],
                    other["metadata"]["name"],
                )
                return []
        return self.store.delete_output(output, status.get("specHash"))
