"""The phase machine: transitions, conditions, terminal phases that never move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from videogen_api import v1alpha1 as api
from videogen_operator.phases import set_suspended, suspended_since, transition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Phase = api.Phase
Reason = api.Reason


def conditions(status: dict[str, object]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}  # type: ignore[index,union-attr]


def test_pending_to_running_to_succeeded_sets_conditions_and_times() -> None:
    s, t = transition({}, Phase.PENDING, Reason.CREATED, "accepted", T0, 1)
    assert t is not None and t.phase == "Pending"
    s, t = transition(s, Phase.RUNNING, Reason.RUNNING, "running", T0 + timedelta(seconds=5), 1)
    assert s["startTime"] == "2026-01-01T00:00:05Z"
    assert conditions(s)["Running"] == "True"
    s, t = transition(s, Phase.SUCCEEDED, Reason.SUCCEEDED, "done", T0 + timedelta(seconds=9), 1)
    assert conditions(s) == {"Accepted": "True", "Running": "False", "Complete": "True", "Failed": "False"}
    assert s["completionTime"] == "2026-01-01T00:00:09Z"
    assert s["observedGeneration"] == 1
    assert t is not None and t.event_type == "Normal"


def test_terminal_phases_never_change() -> None:
    s, _ = transition({}, Phase.FAILED, Reason.VALIDATION_FAILED, "bad", T0, 1)
    again, t = transition(s, Phase.RUNNING, Reason.RUNNING, "x", T0, 2)
    assert again["phase"] == "Failed" and t is None


def test_failure_is_a_warning_event() -> None:
    _, t = transition({}, Phase.FAILED, Reason.MODEL_NOT_FOUND, "no such model", T0, 1)
    assert t is not None and t.event_type == "Warning"


def test_same_phase_and_reason_is_not_a_new_transition() -> None:
    s, _ = transition({}, Phase.QUEUED, Reason.QUEUED, "position 2", T0, 1)
    s2, t = transition(s, Phase.QUEUED, Reason.QUEUED, "position 1", T0 + timedelta(seconds=3), 1)
    assert t is None
    assert s2["message"] == "position 1"
    queued = next(c for c in s2["conditions"] if c["type"] == "Queued")
    assert queued["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_suspended_condition_records_since_when() -> None:
    s = set_suspended({}, True, "suspended", T0, 1)
    assert suspended_since(s) == T0
    s = set_suspended(s, False, "resumed", T0 + timedelta(seconds=1), 1)
    assert suspended_since(s) is None
