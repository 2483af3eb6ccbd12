"""Kueue's Workload for a runner Job, condensed into what the job's status says. Pure functions.

Kueue makes one Workload (`workloads.kueue.x-k8s.io`) per Job that carries the
`kueue.x-k8s.io/queue-name` label, owned by that Job, and explains its decisions in
the Workload's status conditions: `QuotaReserved=False` with the scheduler's reason
("couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu
in flavor default, 1 more needed", "LocalQueue q doesn't exist"), `Evicted=True` when it
took the quota back (preemption, PodsReady timeout, a stopped queue, deactivation),
`Admitted` once admission checks passed. The shapes and message formats here are those of
Kueue v0.17 (v1beta2; v1beta1 has the same conditions), see
pkg/workload/workload.go and pkg/controller/core/workload_controller.go there.

A Workload's status is written by Kueue, but a tenant who may write Workloads in its own
namespace could write one too: what is read here only ever becomes the message and reason
of that namespace's own job, never an action.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from videogen_api import v1alpha1 as api
from videogen_operator.manifests import OWNER_ANNOTATION

GROUP = "kueue.x-k8s.io"
WORKLOADS = "workloads"
# Set by Kueue on a Job's Workload (v0.9 and later): the Job's uid.
JOB_UID_LABEL = f"{GROUP}/job-uid"
# Kueue truncates condition messages at 32 KiB; a job's status message stays readable.
DETAIL_LIMIT = 600
# The conditions the status is made from (the rest of a Workload's status is not kept).
_KEPT_CONDITIONS = frozenset(
    {"QuotaReserved", "Admitted", "Evicted", "Preempted", "Requeued", "Finished", "BlockedOnPreemptionGates"}
)
_LOCAL_QUEUE_MISSING = re.compile(r"^LocalQueue \S+ doesn't exist")


def _controller_job_uid(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
            uid = ref.get("uid")
            return str(uid) if uid else None
    return None


def job_uid_of(workload: Mapping[str, Any]) -> str | None:
    """The uid of the Job this Workload stands for: its controller reference (Kueue's job-uid label
    only where the reference is missing)."""
    meta = workload.get("metadata") or {}
    return _controller_job_uid(meta) or ((meta.get("labels") or {}).get(JOB_UID_LABEL) or None)


def _templates(workload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    pod_sets = (workload.get("spec") or {}).get("podSets") or []
    return [((ps or {}).get("template") or {}).get("metadata") or {} for ps in pod_sets]


def is_runner_workload(workload: Mapping[str, Any]) -> bool:
    """Whether the Workload was made for one of our runner Jobs: Kueue copies the Job's pod template
    into the Workload, labels included (Workloads carry none of the Job's own labels to filter by)."""
    return any((meta.get("labels") or {}).get(api.LABEL_MANAGED_BY) == api.MANAGED_BY for meta in _templates(workload))


def owner_key(workload: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, VideoGenJob name) of the job whose runner this Workload admits, from the pod template."""
    namespace = (workload.get("metadata") or {}).get("namespace")
    for meta in _templates(workload):
        owner = (meta.get("annotations") or {}).get(OWNER_ANNOTATION)
        if owner and namespace:
            return str(namespace), str(owner)
    return None


def _short(text: Any) -> str:
    value = " ".join(str(text or "").split())
    return value if len(value) <= DETAIL_LIMIT else value[: DETAIL_LIMIT - 1] + "…"


def slim_workload(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a Workload: its identity and the conditions it explains itself with."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    conditions = [
        {
            "type": c.get("type"),
            "status": c.get("status"),
            "reason": c.get("reason"),
            "message": _short(c.get("message")),
            "lastTransitionTime": c.get("lastTransitionTime"),
        }
        for c in status.get("conditions") or []
        if c.get("type") in _KEPT_CONDITIONS
    ]
    checks = [
        {"name": c.get("name"), "state": c.get("state"), "message": _short(c.get("message"))}
        for c in status.get("admissionChecks") or []
    ]
    slim: dict[str, Any] = {
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "jobUid": job_uid_of(body),
        "active": (body.get("spec") or {}).get("active", True) is not False,
        "conditions": conditions,
    }
    if checks:
        slim["admissionChecks"] = checks
    requeue_at = (status.get("requeueState") or {}).get("requeueAt")
    if requeue_at:
        slim["requeueAt"] = requeue_at
    return slim


@dataclass(frozen=True)
class Eviction:
    """Kueue took the quota back (Evicted=True): a disruption, never the runner's failure."""

    reason: str
    message: str
    time: str | None


@dataclass(frozen=True)
class Wait:
    """Why Kueue holds the Job, as the job's status says it."""

    reason: str
    message: str
    eviction: Eviction | None = None


def _conditions(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in workload.get("conditions") or [] if c.get("type")}


def _true(cond: Mapping[str, Any] | None) -> bool:
    return cond is not None and cond.get("status") == "True"


def _checks(workload: Mapping[str, Any]) -> str:
    pending = [c for c in workload.get("admissionChecks") or [] if c.get("state") != "Ready"]
    return "; ".join(
        f"admission check {c.get('name')} is {c.get('state') or 'Pending'}"
        + (f": {c['message']}" if c.get("message") else "")
        for c in pending
    )


def _detail(workload: Mapping[str, Any], eviction: Eviction | None) -> str:
    """The most telling of Kueue's own words on why the Workload is not admitted now."""
    conds = _conditions(workload)
    quota, admitted = conds.get("QuotaReserved"), conds.get("Admitted")
    parts: list[str] = []
    if not workload.get("active", True) and eviction is None:
        parts.append("Kueue's Workload is deactivated (spec.active is false)")
    if _true(conds.get("Finished")):
        finished = conds["Finished"]
        parts.append(f"Kueue finished the Workload ({finished.get('reason')}: {finished.get('message')})")
    elif _true(quota) and not _true(admitted):
        # Quota is held; admission checks (e.g. a ProvisioningRequest) are not all Ready yet.
        parts.append(str(quota.get("message") or "quota reserved") if quota else "quota reserved")
        parts.append(_checks(workload) or str((admitted or {}).get("message") or ""))
    elif quota is not None and not _true(quota):
        message = str(quota.get("message") or "")
        # After an eviction Kueue repeats the eviction's message here until it tries again.
        if message and (eviction is None or message != eviction.message):
            parts.append(message)
    blocked = conds.get("BlockedOnPreemptionGates")
    if _true(blocked) and blocked is not None and blocked.get("message"):
        parts.append(str(blocked["message"]))
    requeued = conds.get("Requeued")
    if workload.get("requeueAt") and requeued is not None and not _true(requeued):
        parts.append(f"Kueue requeues it at {workload['requeueAt']}")
    return "; ".join(p for p in parts if p)


def local_queue_missing(workload: Mapping[str, Any]) -> bool:
    """Kueue says the Workload's LocalQueue does not exist (QuotaReserved=False, Inadmissible)."""
    quota = _conditions(workload).get("QuotaReserved")
    return (
        quota is not None
        and not _true(quota)
        and quota.get("reason") == "Inadmissible"
        and bool(_LOCAL_QUEUE_MISSING.match(str(quota.get("message") or "")))
    )


def waiting_message(queue_name: str, *, again: bool = False) -> str:
    return f"waiting for Kueue to admit the Job {'again ' if again else ''}in LocalQueue {queue_name!r}"


def missing_queue_message(queue_name: str, namespace: str, *, kueue_installed: bool) -> str:
    maybe = "" if kueue_installed else " (or Kueue is not installed)"
    return (
        f"spec.queueName: Kueue LocalQueue {queue_name!r} does not exist in namespace {namespace!r}{maybe}; "
        "the Job waits suspended until it does"
    )


def describe_wait(workload: Mapping[str, Any], queue_name: str, namespace: str, *, has_run: bool) -> Wait:
    """The reason and message of a job whose Job Kueue holds suspended, from its (slim) Workload.

    A job that has run waits as Running/Retrying (Kueue evicting it is a disruption, like a
    drained node); one that has not waits as WaitingForAdmission, or LocalQueueMissing when
    Kueue says its LocalQueue does not exist."""
    conds = _conditions(workload)
    evicted = conds.get("Evicted")
    eviction = None
    if _true(evicted) and evicted is not None:
        eviction = Eviction(
            str(evicted.get("reason") or "Evicted"),
            str(evicted.get("message") or "evicted by Kueue"),
            evicted.get("lastTransitionTime"),
        )
    detail = _detail(workload, eviction)
    if has_run or eviction is not None:
        head = f"evicted by Kueue ({eviction.reason}: {eviction.message}); " if eviction else "suspended by Kueue; "
        message = head + waiting_message(queue_name, again=True)
        reason = api.Reason.RETRYING if has_run else api.Reason.WAITING_FOR_ADMISSION
    elif local_queue_missing(workload):
        return Wait(api.Reason.LOCAL_QUEUE_MISSING, missing_queue_message(queue_name, namespace, kueue_installed=True))
    else:
        message, reason = waiting_message(queue_name), api.Reason.WAITING_FOR_ADMISSION
    return Wait(reason, f"{message}: {detail}" if detail else message, eviction)


def same_wording(old: str | None, new: str) -> bool:
    """Whether two messages differ only in their numbers ("1 more needed" -> "2 more needed").

    A change of wording is news and is written at once; a changing count waits for the
    status write interval (Kueue rewrites counts as the queue moves)."""
    return re.sub(r"\d+", "#", old or "") == re.sub(r"\d+", "#", new)
