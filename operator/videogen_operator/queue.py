"""Admission to the GPU: which waiting jobs may start under the caps. Pure.

Order is priority (higher first), then creation time, then namespace/name so
two operators (or one restarted) always agree. Kueue-managed jobs never enter
this queue: Kueue is their queue.

Caps count GPUs, not Jobs: a 4-GPU job uses four slots. Only the first few
waiting jobs get an exact position written to their status (each admission
moves every position by one, so exact positions for all N waiting jobs would
cost N status writes per admission); the rest show a fixed "further back"
message that never needs rewriting.
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
    gpus: int = 1

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


def namespace_cap(max_running: int, max_per_namespace: int, share_percent: int) -> int:
    """GPUs one namespace may hold: the explicit cap, else its share of the global cap (at least 1)."""
    if max_per_namespace:
        return max_per_namespace
    if max_running and share_percent:
        return max(1, -(-max_running * share_percent // 100))
    return 0


def fits(held_total: int, held_in_namespace: int, gpus: int, max_running: int, max_per_namespace: int) -> bool:
    """Whether `gpus` more fit both caps (0 means no cap), given what is held in all and in the namespace."""
    global_ok = max_running == 0 or held_total + gpus <= max_running
    return global_ok and (max_per_namespace == 0 or held_in_namespace + gpus <= max_per_namespace)


def plan_admission(
    waiting: list[Waiting],
    running: Counter[str],
    max_running: int,
    max_per_namespace: int,
) -> Plan:
    """Admit in queue order while both caps (in GPUs) allow; 0 means no cap.

    A job blocked only by its namespace's cap does not block jobs of other
    namespaces behind it (no head-of-line blocking across tenants)."""
    total = sum(running.values())
    per_ns = Counter(running)
    admit: list[tuple[str, str]] = []
    left: list[Waiting] = []
    for item in order(waiting):
        if fits(total, per_ns[item.namespace], item.gpus, max_running, max_per_namespace):
            admit.append(item.key)
            total += item.gpus
            per_ns[item.namespace] += item.gpus
        else:
            left.append(item)
    positions = {item.key: i + 1 for i, item in enumerate(left)}
    return Plan(admit=admit, positions=positions, waiting_total=len(left))


def _caps(max_running: int, max_per_namespace: int) -> str:
    caps = []
    if max_running:
        caps.append(f"{max_running} running cluster-wide")
    if max_per_namespace:
        caps.append(f"{max_per_namespace} per namespace")
    return (" and ".join(caps) + ", counted in GPUs") if caps else "no cap"


def queue_message(position: int, max_running: int, max_per_namespace: int) -> str:
    """The message of one of the first waiting jobs (its exact position is in status.queuePosition)."""
    return f"waiting for a GPU slot: position {position} in the queue (cap: {_caps(max_running, max_per_namespace)})"


def further_back_message(exact: int, max_running: int, max_per_namespace: int) -> str:
    """The message of every job behind the first `exact` ones: fixed, so it is written once."""
    return (
        f"waiting for a GPU slot: behind the first {exact} jobs in the queue "
        f"(cap: {_caps(max_running, max_per_namespace)})"
    )
