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
from datetime import datetime
from typing import Any

from videogen_api import v1alpha1 as api
from videogen_operator import manifests
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
        generation = body["metadata"].get("generation")
        now = self.clock()

        try:
            spec = parse_spec(body.get("spec"))
            digest = api.spec_hash(spec)
            validate_spec(ref, spec, self.settings, digest, self.kube.priority_class_exists)
        except SpecError as err:
            new, t = transition(status, Phase.FAILED, Reason.VALIDATION_FAILED, str(err), now, generation)
            new["lastFailure"] = Failure(Reason.VALIDATION_FAILED, str(err), "operator").to_status(now)
            self._write(body, status, new, t, outcome)
            return outcome

        if not status.get("phase"):
            new, t = transition(
                status, Phase.PENDING, Reason.CREATED, "accepted; waiting for admission", now, generation
            )
            new["specHash"] = digest
            new["attempts"] = 0
            status = self._write(body, status, new, t, outcome)

        job_name = manifests.child_name(ref)
        job = self.kube.get_job(ref.namespace, job_name)
        pods = self.kube.list_job_pods(ref.namespace, ref.uid) if job else []
        view = view_job(job, pods)
        if not view.exists:
            self._without_job(body, ref, spec, digest, status, now, outcome)
        else:
            self._with_job(body, ref, spec, digest, status, view, job or {}, now, outcome)
        return outcome

    # ------------------------------------------------------------------ before the Job exists

    def _without_job(
        self,
        body: dict[str, Any],
        ref: JobRef,
        spec: api.VideoGenJobSpec,
        digest: str,
        status: dict[str, Any],
        now: datetime,
        outcome: Outcome,
    ) -> None:
        generation = body["metadata"].get("generation")
        if status.get("jobName"):
            # We created a Job before and it is gone while the job was not done:
            # re-creating it could run the generation twice, so fail loudly instead.
            message = f"runner Job {status['jobName']} disappeared before the job finished"
            new, t = transition(status, Phase.FAILED, Reason.JOB_MISSING, message, now, generation)
            new["lastFailure"] = Failure(Reason.JOB_MISSING, message, "job").to_status(now)
            self._write(body, status, new, t, outcome)
            return

        # Looked up once, when the job is accepted: a queued job does not re-query
        # the API and the bucket on every sweep.
        hit = self._cache_hit(ref, spec, digest) if status.get("phase") == Phase.PENDING else None
        if hit is not None:
            message = f"identical to an earlier job (spec hash {digest}); reused {hit.get('uri')} without a GPU"
            new, t = transition(status, Phase.SUCCEEDED, Reason.CACHE_HIT, message, now, generation)
            new["output"] = self._with_fresh_url(hit, spec)
            new["seed"] = spec.seed
            new["progress"] = {"stage": api.Stage.DONE, "percent": 100, "summary": "done (cache hit)"}
            self._write(body, status, new, t, outcome)
            return

        if spec.suspend:
            self._hold_suspended(body, ref, status, status, now, outcome, job_exists=False)
            return

        if suspended_since(status) is not None:
            resumed = set_suspended(status, False, "resumed; waiting for a GPU slot", now, generation)
            status = self._write(body, status, resumed, None, outcome, force=True)

        if spec.queue_name:
            self._start(ref, spec, digest, suspended=True)
            status = self._mark_job_created(body, status, ref, outcome)
            new, t = transition(
                status,
                Phase.QUEUED,
                Reason.WAITING_FOR_ADMISSION,
                f"waiting for Kueue to admit the Job in LocalQueue {spec.queue_name!r}",
                now,
                generation,
            )
            self._write(body, status, new, t, outcome)
            return

        if status.get("phase") == Phase.PENDING:
            new, t = transition(status, Phase.QUEUED, Reason.QUEUED, "waiting for a GPU slot", now, generation)
            self._write(body, status, new, t, outcome)
        outcome.needs_admission = True

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
                output["urlExpiresAt"] = iso(datetime.fromtimestamp(self.clock().timestamp() + seconds))
        return output

    def _hold_suspended(
        self,
        body: dict[str, Any],
        ref: JobRef,
        old: dict[str, Any],
        base: dict[str, Any],
        now: datetime,
        outcome: Outcome,
        *,
        job_exists: bool,
    ) -> None:
        """spec.suspend: the pod goes away; past the grace period the job is Cancelled for good."""
        generation = body["metadata"].get("generation")
        grace = self.settings.cancel_grace_seconds
        since = suspended_since(old)
        if since is not None and (now - since).total_seconds() >= grace:
            if job_exists:
                self.kube.delete_job(ref.namespace, manifests.child_name(ref))
            message = f"suspended for longer than the cancel grace period ({grace}s)"
            new, t = transition(base, Phase.CANCELLED, Reason.CANCELLED, message, now, generation)
            self._write(body, old, new, t, outcome)
            return
        message = f"suspended by spec.suspend; set it to false to resume, or it is cancelled after {grace}s"
        new = set_suspended(base, True, message, now, generation)
        new, t = transition(new, Phase.QUEUED, Reason.SUSPENDED, message, now, generation)
        new.pop("queuePosition", None)
        self._write(body, old, new, t, outcome)

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

    def _mark_job_created(
        self, body: dict[str, Any], status: dict[str, Any], ref: JobRef, outcome: Outcome
    ) -> dict[str, Any]:
        new = dict(status)
        new["jobName"] = manifests.child_name(ref)
        new.pop("queuePosition", None)
        return self._write(body, status, new, None, outcome, force=True)

    # ------------------------------------------------------------------ while the Job exists

    def _with_job(
        self,
        body: dict[str, Any],
        ref: JobRef,
        spec: api.VideoGenJobSpec,
        digest: str,
        status: dict[str, Any],
        view: JobView,
        job: dict[str, Any],
        now: datetime,
        outcome: Outcome,
    ) -> None:
        generation = body["metadata"].get("generation")
        base = dict(status)
        base["jobName"] = manifests.child_name(ref)
        base["attempts"] = view.attempts
        if view.current_pod:
            base["podName"] = view.current_pod
        if view.last_failure:
            base["lastFailure"] = view.last_failure.to_status(now)

        if view.complete:
            self._succeeded(body, ref, spec, digest, status, base, view, now, outcome)
            return
        if view.failed:
            failure = job_failure(view)
            base["lastFailure"] = failure.to_status(now)
            new, t = transition(base, Phase.FAILED, failure.reason, failure.message, now, generation)
            self._write(body, status, new, t, outcome)
            return

        if spec.suspend:
            if not view.suspended:
                self.kube.set_job_suspended(ref.namespace, base["jobName"], True)
            self._hold_suspended(body, ref, status, base, now, outcome, job_exists=True)
            return
        if view.suspended:
            if _is_kueue_managed(job):
                resumed = set_suspended(base, False, "resumed; waiting for Kueue", now, generation)
                if suspended_since(status) is not None:
                    self.kube.set_job_suspended(ref.namespace, base["jobName"], False)
                new, t = transition(
                    resumed,
                    Phase.QUEUED,
                    Reason.WAITING_FOR_ADMISSION,
                    f"waiting for Kueue to admit the Job in LocalQueue {spec.queue_name!r}",
                    now,
                    generation,
                )
                self._write(body, status, new, t, outcome)
            else:
                # Resuming takes a GPU slot again, so it goes through admission.
                outcome.needs_admission = True
            return
        if suspended_since(status) is not None:
            base = set_suspended(base, False, "resumed", now, generation)

        if view.running_pod:
            message = f"runner pod {view.running_pod} is running"
            if view.attempts > 1:
                message += f" (attempt {view.attempts} of {spec.retries + 1})"
            base.pop("queuePosition", None)
            new, t = transition(base, Phase.RUNNING, Reason.RUNNING, message, now, generation)
            self._write(body, status, new, t, outcome)
            return

        if view.finished_pod:
            # The runner exited 0; the Job controller marks the Job Complete a moment later.
            # Never fall back to Queued in between.
            new, t = transition(
                base, Phase.RUNNING, Reason.RUNNING, "the runner finished; recording the result", now, generation
            )
            self._write(body, status, new, t, outcome)
            return
        if status.get("startTime") and view.last_failure is not None:
            failure = view.last_failure
            message = f"attempt {view.attempts - 1} failed ({failure.reason}: {failure.message}); retrying"
            new, t = transition(base, Phase.RUNNING, Reason.RETRYING, message, now, generation)
            self._write(body, status, new, t, outcome)
            return

        started = view.started_at or view.created_at or now
        waited = (now - started).total_seconds()
        if waited >= spec.startup_timeout_seconds:
            why = view.waiting or view.last_failure
            message = f"the runner pod did not start within startupTimeoutSeconds ({spec.startup_timeout_seconds}s)"
            if why:
                message += f": {why.reason}: {why.message}"
            self.kube.delete_job(ref.namespace, base["jobName"])
            base["lastFailure"] = Failure(
                why.reason if why else Reason.STARTUP_TIMEOUT, message, why.location if why else "pod"
            ).to_status(now)
            new, t = transition(base, Phase.FAILED, Reason.STARTUP_TIMEOUT, message, now, generation)
            self._write(body, status, new, t, outcome)
            return

        if view.waiting:
            base["lastFailure"] = view.waiting.to_status(now)
            reason: str = view.waiting.reason
            message = f"{reason}: {view.waiting.message}"
        elif _is_kueue_managed(job) and status.get("reason") == Reason.WAITING_FOR_ADMISSION:
            reason, message = Reason.POD_STARTING, "admitted by Kueue; the runner pod is starting"
        else:
            reason, message = Reason.POD_STARTING, "the runner pod is starting"
        base.pop("queuePosition", None)
        new, t = transition(base, Phase.QUEUED, reason, message, now, generation)
        self._write(body, status, new, t, outcome)

    def _succeeded(
        self,
        body: dict[str, Any],
        ref: JobRef,
        spec: api.VideoGenJobSpec,
        digest: str,
        status: dict[str, Any],
        base: dict[str, Any],
        view: JobView,
        now: datetime,
        outcome: Outcome,
    ) -> None:
        generation = body["metadata"].get("generation")
        if view.attempts <= 1:
            base.pop("lastFailure", None)
        message = "the video is ready"
        if view.result is not None:
            result = view.result
            output = result.output.to_wire()
            if not output.get("url") and output.get("uri"):
                output = self._with_fresh_url(output, spec)
            base["output"] = output
            base["timings"] = result.timings.to_wire()
            base["seed"] = result.seed
            base["memoryMode"] = result.memory_mode
            base["adjustments"] = list(result.adjustments)
            message = f"the video is ready at {output.get('uri')}"
            if self.store is not None and spec.seed is not None and output.get("uri"):
                bucket, _ = split_uri(str(output["uri"]))
                self.store.record(bucket, digest, output)
        else:
            message = view.result_error or message
        base["progress"] = {
            "stage": api.Stage.DONE,
            "percent": 100,
            "summary": progress_summary("done", percent=100),
            "updatedAt": iso(now),
        }
        new, t = transition(base, Phase.SUCCEEDED, Reason.SUCCEEDED, message, now, generation)
        self._write(body, status, new, t, outcome)

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
            ref = ref_of(body)
            outcome = Outcome()
            try:
                spec = parse_spec(body.get("spec"))
            except SpecError:
                return  # reconcile reports it
            digest = status.get("specHash") or api.spec_hash(spec)
            if job is None:
                self._start(ref, spec, digest, suspended=False)
                status = self._mark_job_created(body, status, ref, outcome)
            else:
                self.kube.set_job_suspended(ref.namespace, manifests.child_name(ref), False)
                status = set_suspended(status, False, "resumed", self.clock(), body["metadata"].get("generation"))
            new, t = transition(
                status,
                Phase.QUEUED,
                Reason.POD_STARTING,
                "admitted; the runner pod is starting",
                self.clock(),
                body["metadata"].get("generation"),
            )
            new.pop("queuePosition", None)
            self._write(body, body.get("status") or {}, new, t, outcome, force=True)

    def _update_position(self, key: tuple[str, str], position: int, total: int) -> None:
        with self._lock(key):
            body = self.kube.get_vgj(*key)
            if body is None:
                return
            status = dict(body.get("status") or {})
            if status.get("phase") not in (Phase.PENDING, Phase.QUEUED) or (body.get("spec") or {}).get("suspend"):
                return
            old = status
            if suspended_since(status) is not None:
                status = set_suspended(status, False, "resumed; waiting for a GPU slot", self.clock(), None)
            message = queue_message(position, total, self.settings.max_running, self.settings.max_running_per_namespace)
            new, t = transition(
                status, Phase.QUEUED, Reason.QUEUED, message, self.clock(), body["metadata"].get("generation")
            )
            new["queuePosition"] = position
            self._write(body, old, new, t, Outcome(), force=old.get("queuePosition") != position)

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
