"""Admission under the caps: priority, then age; no cross-namespace head-of-line blocking."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from videogen_operator.queue import Waiting, plan_admission, queue_message

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def w(ns: str, name: str, minutes: int, priority: int = 0) -> Waiting:
    return Waiting(ns, name, priority, T0 + timedelta(minutes=minutes))


def test_oldest_first_under_a_global_cap_with_names_breaking_ties() -> None:
    plan = plan_admission([w("a", "late", 2), w("a", "tie-b", 1), w("a", "tie-a", 1)], Counter(), 1, 0)
    assert plan.admit == [("a", "tie-a")]
    assert plan.positions == {("a", "tie-b"): 1, ("a", "late"): 2}


def test_priority_beats_age() -> None:
    plan = plan_admission([w("a", "old", 1), w("a", "urgent", 5, priority=100)], Counter(), 1, 0)
    assert plan.admit == [("a", "urgent")]
    assert plan.positions == {("a", "old"): 1}


def test_running_jobs_use_up_the_cap() -> None:
    plan = plan_admission([w("a", "x", 1)], Counter({"b": 2}), 2, 0)
    assert plan.admit == []
    assert plan.positions == {("a", "x"): 1}


def test_namespace_cap_does_not_block_other_namespaces() -> None:
    plan = plan_admission([w("a", "a1", 1), w("a", "a2", 2), w("b", "b1", 3)], Counter({"a": 1}), 0, 1)
    assert plan.admit == [("b", "b1")]
    assert plan.positions == {("a", "a1"): 1, ("a", "a2"): 2}


def test_zero_means_no_cap() -> None:
    plan = plan_admission([w("a", str(i), i) for i in range(5)], Counter({"a": 10}), 0, 0)
    assert len(plan.admit) == 5


def test_queue_message_names_position_and_cap() -> None:
    assert (
        queue_message(2, 3, 1, 0)
        == "waiting for a GPU slot: position 2 of 3 in the queue (cap: 1 running cluster-wide)"
    )
