"""kopf's discovery scanned again while a watched resource is not served: what a CRD event would do,
for as long as kopf does not watch it (rescan.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from kopf._core.reactor import observation

from videogen_operator import rescan


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str
    plural: str


class FakeInsights:
    def __init__(self) -> None:
        self.watched_resources: set[Resource] = set()
        self.ready_resources = asyncio.Event()


def test_the_group_is_scanned_again_until_kopf_watches_the_resource_and_again_once_it_is_gone() -> None:
    async def scenario() -> list[dict[str, Any]]:
        insights = FakeInsights()
        scans: list[dict[str, Any]] = []

        async def process(*, raw_event: dict[str, Any], settings: Any, registry: Any, insights: Any) -> None:
            scans.append(raw_event)
            if len(scans) == 3:  # discovery caught up: kopf now watches it
                insights.watched_resources.add(Resource("kueue.x-k8s.io", "workloads"))

        task = asyncio.create_task(
            rescan.rescan_while_unserved(
                process,
                settings=None,
                registry=None,
                insights=insights,
                group="kueue.x-k8s.io",
                plural="workloads",
                every=0.01,
            )
        )
        await asyncio.sleep(0.05)
        assert scans == [], "nothing before kopf's own first scan"
        insights.ready_resources.set()
        await asyncio.sleep(0.2)
        assert len(scans) == 3, "scanned until served, then not any more"
        insights.watched_resources.clear()  # the CRD deleted: unserved again
        await asyncio.sleep(0.1)
        task.cancel()
        return scans

    scans = asyncio.run(scenario())
    assert len(scans) > 3
    assert all(s == {"type": "MODIFIED", "object": {"spec": {"group": "kueue.x-k8s.io"}}} for s in scans)


def test_install_wraps_kopfs_observer_once_and_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[Any] = []

    async def original(*, settings: Any, registry: Any, insights: Any) -> None:
        called.append(insights)

    async def process(*, raw_event: Any, settings: Any, registry: Any, insights: Any) -> None:
        return None

    monkeypatch.setattr(observation, "resource_observer", original)
    monkeypatch.setattr(observation, "process_discovered_resource_event", process)
    assert rescan.install("kueue.x-k8s.io", "workloads")
    wrapped = observation.resource_observer
    assert wrapped is not original
    assert rescan.install("kueue.x-k8s.io", "workloads") and observation.resource_observer is wrapped, "once"
    insights = FakeInsights()
    asyncio.run(wrapped(settings=None, registry=None, insights=insights))
    assert called == [insights]


def test_a_kopf_whose_observer_differs_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    async def other(*, settings: Any) -> None:
        return None

    monkeypatch.setattr(observation, "resource_observer", other)
    assert not rescan.install("kueue.x-k8s.io", "workloads")
    assert observation.resource_observer is other
