"""The thin kopf handlers: which keys a watch event kicks."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import kopf

from videogen_operator import handlers
from videogen_operator.manifests import OWNER_ANNOTATION


class RecordingDispatch:
    def __init__(self) -> None:
        self.kicks: list[tuple[Hashable, bool]] = []

    async def kick(self, key: Hashable, *, urgent: bool = False) -> None:
        self.kicks.append((key, urgent))


def runtime_with(dispatch: RecordingDispatch) -> kopf.Memo:
    # Only the dispatch is used by these handlers; the rest of a Runtime needs a cluster.
    runtime = object.__new__(handlers.Runtime)
    runtime.dispatch = dispatch  # type: ignore[assignment]
    return kopf.Memo(runtime=runtime)


def runner_job(conditions: list[dict[str, str]]) -> kopf.Body:
    raw: dict[str, Any] = {
        "metadata": {"name": "clip-1a2b3c4d", "namespace": "team-a", "annotations": {OWNER_ANNOTATION: "clip"}},
        "status": {"conditions": conditions},
    }
    return kopf.Body(raw)


def test_a_running_jobs_event_reconciles_its_owner_only() -> None:
    dispatch = RecordingDispatch()
    job = runner_job([{"type": "Suspended", "status": "False"}])
    asyncio.run(handlers.job_event(body=job, memo=runtime_with(dispatch)))
    assert dispatch.kicks == [(("team-a", "clip"), False)]


def test_a_finished_job_moves_the_queue_at_once() -> None:
    """Its owner may have gone Succeeded on the pod's exit 0 already, so the owner's reconcile changes
    nothing: the Job's Complete is what frees the GPU slot, and it kicks the admission pass itself."""
    for verdict in ("Complete", "Failed"):
        dispatch = RecordingDispatch()
        job = runner_job([{"type": verdict, "status": "True"}])
        asyncio.run(handlers.job_event(body=job, memo=runtime_with(dispatch)))
        assert dispatch.kicks == [(("team-a", "clip"), False), (handlers.ADMISSION, True)], verdict


class SweepViews:
    def unfinished_vgjs(self) -> list[dict[str, Any]]:
        return [{"metadata": {"namespace": "team-a", "name": "clip"}}]

    def models(self) -> list[dict[str, Any]]:
        return []


class SweepReconciler:
    views = SweepViews()

    def due(self, vgj: dict[str, Any], full: bool) -> bool:
        return True


def sweeping_runtime(dispatch: RecordingDispatch) -> handlers.Runtime:
    """A Runtime as the startup handler leaves it: active by peering, kopf's watches not listed yet."""
    runtime = object.__new__(handlers.Runtime)
    runtime.dispatch = dispatch  # type: ignore[assignment]
    runtime.reconciler = SweepReconciler()  # type: ignore[assignment]
    runtime.sweeps, runtime.active, runtime.indexed = 0, False, False
    runtime._check_active = lambda: True  # type: ignore[method-assign]
    return runtime


def test_the_sweep_acts_only_once_kopf_has_listed_the_runner_jobs_and_pods() -> None:
    """The sweep starts in the startup handler, before kopf's watches list: an admission pass then
    would count no Job holding a GPU and start jobs over the cap. kopf calls no event handler before
    every index has listed, so the first handler call is the signal; until it, a sweep kicks nothing."""
    dispatch = RecordingDispatch()
    runtime = sweeping_runtime(dispatch)
    memo = kopf.Memo(runtime=runtime)
    asyncio.run(runtime.sweep_once())
    assert runtime.active and dispatch.kicks == []
    # Any handler says the indices are filled: here a Pod event of no runner of ours.
    asyncio.run(handlers.pod_event(body=kopf.Body({"metadata": {"name": "p", "namespace": "team-a"}}), memo=memo))
    assert dispatch.kicks == []
    asyncio.run(runtime.sweep_once())
    assert dispatch.kicks == [(("team-a", "clip"), False), (handlers.ADMISSION, True)]
