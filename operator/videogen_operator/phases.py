"""The VideoGenJob phase machine, as pure functions over status dicts.

Pending -> Queued -> Running -> Succeeded | Failed | Cancelled. Terminal phases
never change again: that is what keeps a GitOps re-sync from re-running a job.
Every transition sets phase, reason, message, the matching conditions and
timestamps; callers post an Event for each transition this returns.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from videogen_api import v1alpha1 as api

Phase = api.Phase
Cond = api.ConditionType

# The conditions that are True in each phase; every other managed one is False.
_TRUE_IN_PHASE: dict[api.Phase, frozenset[api.ConditionType]] = {
    Phase.PENDING: frozenset({Cond.ACCEPTED}),
    Phase.QUEUED: frozenset({Cond.ACCEPTED, Cond.QUEUED}),
    Phase.RUNNING: frozenset({Cond.ACCEPTED, Cond.RUNNING}),
    Phase.SUCCEEDED: frozenset({Cond.ACCEPTED, Cond.COMPLETE}),
    Phase.FAILED: frozenset({Cond.FAILED}),
    Phase.CANCELLED: frozenset({Cond.ACCEPTED, Cond.CANCELLED}),
}
_MANAGED = (Cond.ACCEPTED, Cond.QUEUED, Cond.RUNNING, Cond.COMPLETE, Cond.FAILED, Cond.CANCELLED)

WARNING_REASONS = frozenset(
    {
        api.Reason.VALIDATION_FAILED,
        api.Reason.UNSCHEDULABLE,
        api.Reason.IMAGE_PULL_BACK_OFF,
        api.Reason.OOM_KILLED,
        api.Reason.STARTUP_TIMEOUT,
        api.Reason.DEADLINE_EXCEEDED,
        api.Reason.BACKOFF_LIMIT_EXCEEDED,
        api.Reason.POD_FAILED,
        api.Reason.JOB_MISSING,
        api.Reason.RETRYING,
        api.Reason.CREATE_FAILED,
        api.Reason.POD_CREATE_FAILED,
        api.Reason.LOCAL_QUEUE_MISSING,
        api.Reason.RECONCILE_ERROR,
        *api.EXIT_CODE_REASONS.values(),
    }
)


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def is_terminal(status: dict[str, Any]) -> bool:
    return status.get("phase") in {p.value for p in api.TERMINAL_PHASES}


@dataclass(frozen=True)
class Transition:
    """A phase or reason change that deserves an Event."""

    phase: str
    reason: str
    message: str

    @property
    def event_type(self) -> str:
        return "Warning" if self.reason in WARNING_REASONS or self.phase == Phase.FAILED else "Normal"


def set_condition(
    conditions: list[dict[str, Any]],
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Upsert one metav1.Condition; lastTransitionTime moves only when status flips."""
    wanted = "True" if status else "False"
    out = [dict(c) for c in conditions if c.get("type") != ctype]
    previous = next((c for c in conditions if c.get("type") == ctype), None)
    transition_time = previous["lastTransitionTime"] if previous and previous.get("status") == wanted else iso(now)
    cond: dict[str, Any] = {
        "type": ctype,
        "status": wanted,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition_time,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    out.append(cond)
    order = {c.value: i for i, c in enumerate(api.ConditionType)}
    return sorted(out, key=lambda c: order.get(c["type"], len(order)))


def transition(
    status: dict[str, Any],
    phase: api.Phase,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> tuple[dict[str, Any], Transition | None]:
    """Return the new status for (phase, reason, message), and the Transition if anything changed.

    Refuses to leave a terminal phase: callers may ask, the machine says no."""
    if is_terminal(status) and status.get("phase") != phase:
        return status, None
    new = copy.deepcopy(status)
    changed = (status.get("phase"), status.get("reason")) != (phase.value, reason)
    new["phase"] = phase.value
    new["reason"] = reason
    new["message"] = message
    new["observedGeneration"] = generation
    conditions = list(new.get("conditions") or [])
    true_now = _TRUE_IN_PHASE[phase]
    for ctype in _MANAGED:
        if ctype in true_now:
            conditions = set_condition(conditions, ctype, True, reason, message, now, generation)
        elif any(c.get("type") == ctype for c in conditions) or ctype in (Cond.COMPLETE, Cond.FAILED):
            previous = next((c for c in conditions if c.get("type") == ctype), None)
            keep_reason = previous["reason"] if previous and previous.get("status") == "False" else reason
            keep_message = previous.get("message", "") if previous and previous.get("status") == "False" else ""
            conditions = set_condition(conditions, ctype, False, keep_reason, keep_message, now, generation)
    new["conditions"] = conditions
    if phase is Phase.RUNNING and not new.get("startTime"):
        new["startTime"] = iso(now)
    if phase in api.TERMINAL_PHASES and not new.get("completionTime"):
        new["completionTime"] = iso(now)
    return new, Transition(phase.value, reason, message) if changed else None


def set_suspended(
    status: dict[str, Any], suspended: bool, message: str, now: datetime, generation: int | None
) -> dict[str, Any]:
    new = copy.deepcopy(status)
    reason = api.Reason.SUSPENDED if suspended else api.Reason.RESUMED
    existing = next((c for c in new.get("conditions") or [] if c.get("type") == Cond.SUSPENDED), None)
    if existing is None and not suspended:
        return new
    new["conditions"] = set_condition(
        list(new.get("conditions") or []), Cond.SUSPENDED, suspended, reason, message, now, generation
    )
    return new


def suspended_since(status: dict[str, Any]) -> datetime | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == Cond.SUSPENDED and cond.get("status") == "True":
            return datetime.fromisoformat(str(cond["lastTransitionTime"]).replace("Z", "+00:00"))
    return None


def progress_summary(stage: str, step: int | None = None, total: int | None = None, percent: int | None = None) -> str:
    parts = [stage]
    if step is not None and total:
        parts.append(f"{step}/{total}")
    if percent is not None:
        parts.append(f"({percent}%)")
    return " ".join(parts)


def status_without_volatile(status: dict[str, Any]) -> dict[str, Any]:
    """What the operator owns, for change detection: the runner owns progress."""
    return {k: v for k, v in status.items() if k != "progress"}
