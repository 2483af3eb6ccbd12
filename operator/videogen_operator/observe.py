"""Read what a runner Job and its pods say, as plain data. Pure functions.

Kubernetes spreads the story of one run over the Job's conditions and each
pod's conditions and container states; this module condenses it into the few
facts the phase machine needs, including *why* a pod is not running yet — the
thing users miss most when a job sits Pending.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from videogen_api import v1alpha1 as api
from videogen_operator.manifests import RUNNER_CONTAINER
from videogen_operator.phases import iso

# Waiting reasons that will not fix themselves quickly; surfaced as lastFailure.
STUCK_WAITING_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str
    location: str
    exit_code: int | None = None
    time: datetime | None = None

    def to_status(self, now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reason": self.reason,
            "message": self.message,
            "location": self.location,
            "time": iso(self.time or now),
        }
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out


@dataclass
class JobView:
    """Condensed state of one runner Job."""

    exists: bool
    suspended: bool = False
    complete: bool = False
    failed: bool = False
    failed_reason: str | None = None
    failed_message: str | None = None
    started_at: datetime | None = None
    created_at: datetime | None = None
    attempts: int = 0
    running_pod: str | None = None
    finished_pod: str | None = None
    running_since: datetime | None = None
    current_pod: str | None = None
    waiting: Failure | None = None
    last_failure: Failure | None = None
    result: api.RunnerResult | None = None
    result_error: str | None = None
    pods: list[str] = field(default_factory=list)
    # The current (not yet finished) pod's creation: the startup deadline counts from here.
    current_created_at: datetime | None = None
    # The latest moment any pod was created or finished: a replacement is due after it.
    last_pod_activity: datetime | None = None
    # The most recent disruption (eviction, preemption, node shutdown): never the runner's fault.
    disruption: Failure | None = None
    # Whether the most recent pod that ended was lost to a disruption (not the runner's failure).
    lost_to_disruption: bool = False
    # Wall time the runner pods held their devices, summed over the pods that ended.
    held_seconds: float = 0.0
    # When a runner container first started running (kept even when the operator never saw it
    # running: a short job can start and finish between two reconciles).
    runner_started_at: datetime | None = None


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and cond.get("status") == "True":
            return dict(cond)
    return None


def _runner_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == RUNNER_CONTAINER:
            return dict(status)
    return {}


def runner_failure(terminated: dict[str, Any]) -> Failure:
    """Turn a terminated runner container into a Failure with the runner's own words."""
    code = int(terminated.get("exitCode", 0))
    message = (terminated.get("message") or "").strip()
    reason: str = str(api.reason_for_exit_code(code))
    if terminated.get("reason") == "OOMKilled":
        reason = api.Reason.OOM_KILLED
        message = message or "the runner was killed for exceeding its memory limit"
    try:
        parsed = api.RunnerFailure.model_validate_json(message)
        reason, message = str(parsed.reason), parsed.message
    except (ValidationError, ValueError):
        # Not the runner's JSON (a crash before it could write one): keep the log tail short.
        message = message[-1000:] or f"runner exited with code {code}"
    return Failure(
        reason=reason,
        message=message,
        location="runner",
        exit_code=code,
        time=parse_time(terminated.get("finishedAt")),
    )


def _waiting_failure(pod: dict[str, Any]) -> Failure | None:
    scheduled = None
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            scheduled = cond
    if scheduled and scheduled.get("status") == "False":
        return Failure(
            reason=api.Reason.UNSCHEDULABLE
            if scheduled.get("reason") == "Unschedulable"
            else str(scheduled.get("reason")),
            message=scheduled.get("message") or "the pod cannot be scheduled",
            location="scheduler",
            time=parse_time(scheduled.get("lastTransitionTime")),
        )
    waiting = (_runner_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in STUCK_WAITING_REASONS:
        return Failure(
            reason=str(waiting["reason"]),
            message=waiting.get("message") or str(waiting["reason"]),
            location="pod",
        )
    return None


def _held_seconds(pod: dict[str, Any], state: dict[str, Any]) -> float:
    """From the pod's start on its node (devices allocated) to its runner's end; 0 while it runs."""
    start = parse_time((pod.get("status") or {}).get("startTime"))
    end = parse_time((state.get("terminated") or {}).get("finishedAt"))
    return max(0.0, (end - start).total_seconds()) if start and end else 0.0


def _parse_result(pod: dict[str, Any]) -> tuple[api.RunnerResult | None, str | None]:
    terminated = (_runner_status(pod).get("state") or {}).get("terminated") or {}
    message = terminated.get("message") or ""
    for candidate in (message, *reversed(message.strip().splitlines())):
        try:
            return api.RunnerResult.model_validate(json.loads(candidate)), None
        except (ValueError, ValidationError):
            continue
    return None, f"the runner succeeded but its result could not be read: {message[:200]!r}"


# Failure.location of a disruption (not the runner's failure, not an attempt).
DISRUPTION = "disruption"
# Pod status reasons that mean the node or the cluster took the pod away.
DISRUPTION_REASONS = frozenset({"Evicted", "Preempting", "Preempted", "NodeShutdown", "Shutdown", "Terminated"})


def disrupted(pod: dict[str, Any]) -> bool:
    """Lost to a disruption (drain, eviction, preemption, node shutdown), not failed by the runner.

    The Job's podFailurePolicy ignores the same pods (DisruptionTarget), so they are
    not attempts: retries are for the runner's own failures."""
    if _condition(pod, "DisruptionTarget") is not None:
        return True
    return str((pod.get("status") or {}).get("reason") or "") in DISRUPTION_REASONS


def _pod_times(pod: dict[str, Any]) -> list[datetime]:
    times = [parse_time((pod.get("metadata") or {}).get("creationTimestamp"))]
    terminated = (_runner_status(pod).get("state") or {}).get("terminated") or {}
    times.append(parse_time(terminated.get("finishedAt")))
    times.append(parse_time((pod.get("metadata") or {}).get("deletionTimestamp")))
    return [t for t in times if t is not None]


def result_from_status(status: dict[str, Any]) -> api.RunnerResult | None:
    """The result the runner recorded on the VideoGenJob, if it parses (it is verified later)."""
    raw = status.get("runnerResult")
    if not isinstance(raw, dict):
        return None
    try:
        return api.RunnerResult.model_validate(raw)
    except ValidationError:
        return None


def view_job(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> JobView:
    if job is None:
        return JobView(exists=False)
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    view = JobView(
        exists=True,
        suspended=bool(spec.get("suspend")),
        started_at=parse_time(status.get("startTime")),
        created_at=parse_time((job.get("metadata") or {}).get("creationTimestamp")),
    )
    ordered = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    view.pods = [p["metadata"]["name"] for p in ordered]
    # Each runner pod is one attempt (restartPolicy Never keeps failed pods). The
    # Job's counters can briefly count one pod twice (active and succeeded), so
    # they only fill in when pods are already gone.
    counted = int(status.get("failed") or 0) + (1 if (status.get("active") or status.get("succeeded")) else 0)
    view.attempts = max(counted, len([p for p in ordered if not disrupted(p)]))
    activity = [t for p in ordered for t in _pod_times(p)]
    view.last_pod_activity = max(activity) if activity else None

    for pod in ordered:
        state = _runner_status(pod).get("state") or {}
        view.held_seconds += _held_seconds(pod, state)
        began = parse_time(((state.get("running") or state.get("terminated")) or {}).get("startedAt"))
        if began is not None and (view.runner_started_at is None or began < view.runner_started_at):
            view.runner_started_at = began
        if disrupted(pod):
            pod_status = pod.get("status") or {}
            cond = _condition(pod, "DisruptionTarget") or {}
            view.disruption = Failure(
                reason=str(cond.get("reason") or pod_status.get("reason") or "Disrupted"),
                message=str(cond.get("message") or pod_status.get("message") or "the runner pod was disrupted"),
                location=DISRUPTION,
            )
            view.lost_to_disruption = True
        elif "terminated" in state and state["terminated"].get("exitCode", 0) != 0:
            view.last_failure = runner_failure(state["terminated"])
            view.lost_to_disruption = False
        elif (pod.get("status") or {}).get("phase") == "Failed" and "terminated" not in state:
            view.last_failure = Failure(
                reason=str((pod.get("status") or {}).get("reason") or api.Reason.POD_FAILED),
                message=(pod.get("status") or {}).get("message") or "the runner pod failed",
                location="pod",
            )
            view.lost_to_disruption = False
    done = [p for p in ordered if (p.get("status") or {}).get("phase") == "Succeeded"]
    if done:
        view.finished_pod = done[-1]["metadata"]["name"]
    active = [p for p in ordered if (p.get("status") or {}).get("phase") in (None, "Pending", "Running")]
    active = [p for p in active if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if active:
        pod = active[-1]
        view.current_pod = pod["metadata"]["name"]
        view.current_created_at = parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
        running = (_runner_status(pod).get("state") or {}).get("running")
        if running is not None:
            view.running_pod = view.current_pod
            view.running_since = parse_time(running.get("startedAt"))
        else:
            view.waiting = _waiting_failure(pod)
    elif ordered:
        view.current_pod = view.pods[-1]

    complete = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    # One completion, restartPolicy Never: the runner pod's exit 0 is the Job's success, which the
    # Job controller records a moment later. Acting on the pod saves the job a status write
    # ("finished; recording the result") and its result a wait; the output is still verified at
    # the spec's location before the job is called Succeeded.
    if complete or (done and not active and not failed):
        view.complete = True
        if done:
            view.current_pod = done[-1]["metadata"]["name"]
            view.result, view.result_error = _parse_result(done[-1])
        else:
            view.result_error = "the runner pod that succeeded is gone; its result could not be read"
    elif failed:
        view.failed = True
        view.failed_reason = failed.get("reason")
        view.failed_message = failed.get("message")
    return view


def job_failure(view: JobView) -> Failure:
    """Why a failed Job failed, in the runner's terms where possible."""
    if view.failed_reason == "DeadlineExceeded":
        return Failure(
            reason=api.Reason.DEADLINE_EXCEEDED,
            message=view.failed_message or "the job ran past spec.timeoutSeconds",
            location="job",
        )
    if view.last_failure is not None:
        return view.last_failure
    reason = (
        api.Reason.BACKOFF_LIMIT_EXCEEDED if view.failed_reason == "BackoffLimitExceeded" else api.Reason.POD_FAILED
    )
    return Failure(reason=reason, message=view.failed_message or "the runner job failed", location="job")
