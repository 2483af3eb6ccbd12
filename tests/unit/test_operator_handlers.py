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
