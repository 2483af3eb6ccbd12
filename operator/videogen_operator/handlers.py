"""kopf wiring. Thin on purpose: every decorator forwards to the Reconciler.

What kopf gives us: watch streams with reconnects, peering (one active
operator), the liveness endpoint, the deletion finalizer for
`output.deletePolicy: Delete`, and JSON logging. What we do ourselves:
level-triggered reconciliation from fresh reads, so restarts never depend on
kopf's per-handler progress bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any

import kopf

from videogen_api import v1alpha1 as api
from videogen_operator import metrics
from videogen_operator.dispatch import Coalescer
from videogen_operator.kube import Kube, load_client_config
from videogen_operator.manifests import OWNER_ANNOTATION
from videogen_operator.reconcile import Reconciler
from videogen_operator.results import ObjectStore
from videogen_operator.settings import OperatorSettings, load_settings

log = logging.getLogger(__name__)
ADMISSION = ("", "")
RUNNER_LABELS = {api.LABEL_MANAGED_BY: api.MANAGED_BY}
ANNOTATION_PREFIX = api.GROUP
TERMINAL = frozenset(p.value for p in api.TERMINAL_PHASES)


class Runtime:
    """Everything the handlers share, built once at startup."""

    def __init__(self, settings: OperatorSettings, loop: asyncio.AbstractEventLoop) -> None:
        load_client_config()
        self.settings = settings
        self.loop = loop
        store = ObjectStore(settings) if (settings.s3_endpoint or settings.s3_bucket) else None
        self.reconciler = Reconciler(Kube(metrics.instrumented_api_client()), settings, store)
        self.dispatch = Coalescer(
            metrics.count_errors(self._work, lambda k: "admission" if k == ADMISSION else "videogenjob")
        )

    def _work(self, key: Hashable) -> None:
        if key == ADMISSION:
            self.reconciler.admit()
            return
        assert isinstance(key, tuple)
        outcome = self.reconciler.reconcile(key[0], key[1])
        if outcome.needs_admission or any(
            t.phase in {p.value for p in api.TERMINAL_PHASES} for t in outcome.transitions
        ):
            # A job that waits, or one that freed its GPU slot, moves the queue.
            asyncio.run_coroutine_threadsafe(self.dispatch.kick(ADMISSION), self.loop)

    async def sweep_forever(self) -> None:
        """Deadlines and queue positions move with time, not with events."""
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            try:
                vgjs = await asyncio.to_thread(self.reconciler.kube.list_vgjs, self.settings.namespaces)
            except Exception:
                metrics.reconcile_error("sweep")
                log.exception("periodic sweep could not list VideoGenJobs")
                continue
            keys: list[Hashable] = [
                (vgj["metadata"]["namespace"], vgj["metadata"]["name"])
                for vgj in vgjs
                if (vgj.get("status") or {}).get("phase") not in TERMINAL
            ]
            await asyncio.gather(*(self.dispatch.kick(k) for k in [*keys, ADMISSION]))


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime = memo.get("runtime")
    assert isinstance(runtime, Runtime)
    return runtime


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours = memo.get("settings") or load_settings()
    assert isinstance(ours, OperatorSettings)
    # Keep kopf's bookkeeping in annotations: the status schema is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.finalizer = f"{api.GROUP}/delete-outputs"
    # Watches can freeze silently behind load balancers; make the server and client end them.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "videogen-operator"
    settings.peering.name = ours.peering_name
    settings.peering.clusterwide = ours.clusterwide
    # A crashed replica leaves its peering record behind; its replacement pauses
    # until that record expires, so keep the lifetime short.
    settings.peering.lifetime = ours.peering_lifetime_seconds
    settings.execution.max_workers = 16
    runtime = await asyncio.to_thread(Runtime, ours, asyncio.get_running_loop())
    memo["runtime"] = runtime
    metrics.serve(ours.metrics_port)
    memo["sweeper"] = asyncio.create_task(runtime.sweep_forever())
    log.info(
        "videogen-operator started",
        extra={"namespaces": ours.namespaces or "all", "max_running": ours.max_running},
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    sweeper = memo.get("sweeper")
    if isinstance(sweeper, asyncio.Task):
        sweeper.cancel()


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def videogenjob_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    obj = event["object"]
    meta = obj.get("metadata") or {}
    runtime = _runtime(memo)
    if event["type"] == "DELETED":
        metrics.job_gone(obj)
        await runtime.dispatch.kick(ADMISSION)
        return
    metrics.job_seen(obj)
    await runtime.dispatch.kick((meta["namespace"], meta["name"]))


def _owner_key(body: kopf.Body) -> tuple[str, str] | None:
    owner = (body.metadata.annotations or {}).get(OWNER_ANNOTATION)
    namespace = body.metadata.namespace
    return (namespace, owner) if owner and namespace else None


@kopf.on.event("batch", "v1", "jobs", labels=RUNNER_LABELS)
async def job_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    key = _owner_key(body)
    if key:
        await _runtime(memo).dispatch.kick(key)


@kopf.on.event("", "v1", "pods", labels=RUNNER_LABELS)
async def pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    key = _owner_key(body)
    if key:
        await _runtime(memo).dispatch.kick(key)


def _deletes_outputs(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("output") or {}).get("deletePolicy") == api.DeletePolicy.DELETE)


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL, when=_deletes_outputs)
async def delete_outputs(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    deleted = await asyncio.to_thread(_runtime(memo).reconciler.cleanup_outputs, dict(body))
    if deleted:
        logger.info("deleted %s (output.deletePolicy: Delete)", ", ".join(deleted))
