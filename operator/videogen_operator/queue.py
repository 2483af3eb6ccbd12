"""Admission to the GPU: which waiting jobs may start under the caps. Pure.

Order is priority (higher first), then creation time, then namespace/name so
two operators (or one restarted) always agree. Kueue-managed jobs never enter
this queue: Kueue is their queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Waiting:
    namespace: str
    name: str
    priority: int
    created: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Plan:
    admit: list[tuple[str, str]]
    positions: dict[tuple[str, str], int]
    waiting_total: int


def order(waiting: list[Waiting]) -> list[Waiting]:
    return sorted(waiting, key=lambda w: (-w.priority, w.created, w.namespace, w.name))


def plan_admission(
    waiting: list[Waiting],
    running: Counter[str],
    max_running: int,
    max_per_namespace: int,
) -> Plan:
    """Admit in queue order while both caps allow; 0 means no cap.

    A job blocked only by its namespace's cap does not block jobs of other
    namespaces behind it (no head-of-line blocking across tenants)."""
    total = sum(running.values())
    per_ns = Counter(running)
    admit: list[tuple[str, str]] = []
    left: list[Waiting] = []
    for item in order(waiting):
        global_ok = max_running == 0 or total < max_running
        ns_ok = max_per_namespace == 0 or per_ns[item.namespace] < max_per_namespace
        if global_ok and ns_ok:
            admit.append(item.key)
            total += 1
            per_ns[item.namespace] += 1
        else:
            left.append(item)
    positions = {item.key: i + 1 for i, item in enumerate(left)}
    return Plan(admit=admit, positions=positions, waiting_total=len(left))


def queue_message(position: int, total: int, max_running: int, max_per_namespace: int) -> str:
    caps = []
    if max_running:
        caps.append(f"{max_running} running cluster-wide")
    if max_per_namespace:
        caps.append(f"{max_per_namespace} per namespace")
    limit = " and ".join(caps) or "no cap"
    return f"waiting for a GPU slot: position {position} of {total} in the queue (cap: {limit})"
