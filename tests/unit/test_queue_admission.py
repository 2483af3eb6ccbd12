"""Admission under the caps: priority, then age; no cross-namespace head-of-line blocking."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from videogen_operator.queue import Waiting, further_back_message, namespace_cap, plan_admission, queue_message

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
        queue_message(2, 1, 0)
        == "waiting for a GPU slot: position 2 in the queue (cap: 1 running cluster-wide, counted in GPUs)"
    )


def test_message_behind_the_exact_positions_does_not_depend_on_the_queue() -> None:
    """It never changes while the job waits, so it is written once, not on every admission."""
    assert further_back_message(3, 8, 4) == (
        "waiting for a GPU slot: behind the first 3 jobs in the queue "
        "(cap: 8 running cluster-wide and 4 per namespace, counted in GPUs)"
    )


def test_caps_count_gpus_not_jobs() -> None:
    big = Waiting("a", "big", 0, T0, gpus=4)
    small = Waiting("a", "small", 0, T0 + timedelta(minutes=1), gpus=1)
    plan = plan_admission([big, small], Counter({"b": 5}), 8, 0)
    assert plan.admit == [("a", "small")], "4 GPUs do not fit in the 3 left; the 1-GPU job behind it does"
    assert plan.positions == {("a", "big"): 1}


def test_default_namespace_share_keeps_one_tenant_from_taking_every_gpu() -> None:
    assert namespace_cap(8, 0, 50) == 4
    assert namespace_cap(1, 0, 50) == 1, "never below one GPU"
    assert namespace_cap(8, 2, 50) == 2, "an explicit per-namespace cap wins"
    assert namespace_cap(0, 0, 50) == 0, "no global cap, no share"
    burst = [w("greedy", f"g{i}", i) for i in range(10)]
    plan = plan_admission([*burst, w("quiet", "q", 20)], Counter(), 8, namespace_cap(8, 0, 50))
    assert sum(1 for ns, _ in plan.admit if ns == "greedy") == 4
    assert ("quiet", "q") in plan.admit, "the later tenant still starts although the burst came first"
