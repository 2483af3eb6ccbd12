"""Status writes: only on change, at most one per interval unless the phase moves,
Events on every transition, and nothing written for a terminal job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from videogen_api import v1alpha1 as api
from videogen_operator.reconcile import Outcome, Reconciler
from videogen_operator.settings import OperatorSettings


class RecordingKube:
    """Stands in for the API only where no Kubernetes behaviour is involved: it records writes."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.versions: list[str | None] = []

    def patch_vgj_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        self.patches.append(status)
        self.versions.append(resource_version)
        rv = str(int(resource_version or 0) + 1)
        return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": rv}, "status": status}

    def post_event(self, vgj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason))


BODY = {"metadata": {"namespace": "ns", "name": "job", "uid": "u", "generation": 1, "resourceVersion": "7"}}


def reconciler(interval: float = 2.0) -> tuple[Reconciler, RecordingKube]:
    kube = RecordingKube()
    settings = OperatorSettings(status_min_interval_seconds=interval)
    return Reconciler(kube, settings, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)), kube  # type: ignore[arg-type]


def test_unchanged_status_is_not_written() -> None:
    r, kube = reconciler()
    status = {"phase": "Running", "message": "x"}
    r._write(BODY, status, dict(status), None, Outcome())
    assert kube.patches == []


def test_non_transition_updates_are_throttled_but_transitions_are_not() -> None:
    r, kube = reconciler(interval=60)
    from videogen_operator.phases import transition

    now = datetime(2026, 1, 1, tzinfo=UTC)
    s1, t1 = transition({}, api.Phase.RUNNING, api.Reason.RUNNING, "attempt 1", now, 1)
    s1 = r._write(BODY, {}, s1, t1, Outcome())
    s2 = dict(s1, attempts=2)
    r._write(BODY, s1, s2, None, Outcome())
    assert len(kube.patches) == 1, "a second non-transition write within the interval is deferred"
    s3, t3 = transition(s1, api.Phase.SUCCEEDED, api.Reason.SUCCEEDED, "done", now, 1)
    r._write(BODY, s1, s3, t3, Outcome())
    assert len(kube.patches) == 2, "a transition is never delayed"
    assert kube.events == [("Normal", "Running"), ("Normal", "Succeeded")]


def test_removed_fields_are_deleted_with_null() -> None:
    r, kube = reconciler(interval=0)
    r._write(BODY, {"phase": "Queued", "queuePosition": 2}, {"phase": "Queued"}, None, Outcome())
    assert kube.patches == [{"phase": "Queued", "queuePosition": None}]


def test_runner_progress_is_not_overwritten() -> None:
    r, kube = reconciler(interval=0)
    old = {"phase": "Running", "progress": {"stage": "generating"}, "attempts": 1}
    r._write(BODY, old, dict(old, attempts=2), None, Outcome())
    assert "progress" not in kube.patches[0]


def test_writes_are_conditional_on_the_resource_version_read() -> None:
    r, kube = reconciler(interval=0)
    body: dict[str, Any] = {"metadata": {"namespace": "ns", "name": "job", "uid": "u", "resourceVersion": "7"}}
    r._write(body, {"phase": "Queued"}, {"phase": "Running"}, None, Outcome())
    r._write(body, {"phase": "Running"}, {"phase": "Running", "attempts": 1}, None, Outcome())
    assert kube.versions == ["7", "8"], "each write carries the resourceVersion of the object it was computed from"
