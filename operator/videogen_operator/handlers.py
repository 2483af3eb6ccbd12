"""kopf wiring. Thin on purpose: every decorator forwards to the Reconciler.

What kopf gives us: watch streams with reconnects, paginated initial LISTs and
server-side label/field selectors, the indices of runner Jobs, Pods, FailedCreate Events,
models and Workloads our views read (VideoGenJobs the views keep themselves: views.py),
peering (one active operator), the liveness endpoint, and JSON logging. What
we do ourselves: level-triggered reconciliation from the views, so restarts
never depend on kopf's per-handler progress bookkeeping; the finalizer for
`output.deletePolicy: Delete` (kopf's on.delete would run its change detection,
a deep copy and diff of the object, on every event of every VideoGenJob); and a
periodic sweep for what moves with time (startup deadlines, cancel grace
periods), which runs only in the replica kopf's peering made active (activity.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Hashable
from typing import Any, NamedTuple

import kopf

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_operator import heap, kueue, metrics, rescan
from videogen_operator.activity import is_active, own_identity, start_priority
from videogen_operator.dispatch import Coalescer
from videogen_operator.heap import HeapTrimmer
from videogen_operator.kube import Kube, is_transient, load_client_config, may_watch
from videogen_operator.manifests import OWNER_ANNOTATION
from videogen_operator.model_reconcile import ModelReconciler
from videogen_operator.phases import now_utc
from videogen_operator.reconcile import Reconciler, job_finished, needs_finalizer_work
from videogen_operator.results import ObjectStore
from videogen_operator.settings import OperatorSettings, load_settings
from videogen_operator.views import Views, controller_uid, slim_job, slim_model, slim_pod, vgj_owner_uid

log = logging.getLogger(__name__)
ADMISSION = ("", "")
RUNNER_LABELS = {api.LABEL_MANAGED_BY: api.MANAGED_BY}
RUNNER_SELECTOR = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
FAILED_CREATE_SELECTOR = "involvedObject.kind=Job,reason=FailedCreate"
ANNOTATION_PREFIX = api.GROUP
TERMINAL = frozenset(p.value for p in api.TERMINAL_PHASES)
# Every this many sweeps, every unfinished job is reconciled (a safety net for a lost event);
# in between, only the jobs whose state moves with time.
FULL_SWEEP_EVERY = 12
# Liveness fails when the sweep loop has not completed for this many periods.
STALE_SWEEP_PERIODS = 6
MIN_STALE_SWEEP_SECONDS = 60.0
RECONCILE_THREADS = 32
# After each admission pass, rest twice as long as it took before the next (dispatch.py says why):
# passes take at most a third of the time, and the kicks meanwhile are served by one pass.
ADMISSION_REST_RATIO = 2.0


class ModelKey(NamedTuple):
    """A dispatch key for one VideoGenModel (VideoGenJobs are keyed by (namespace, name))."""

    name: str


class FinalizerKey(NamedTuple):
    """A dispatch key for a VideoGenJob's outputs finalizer (add, honour on deletion, drop)."""

    namespace: str
    name: str


def _error_kind(key: Hashable) -> str:
    if key == ADMISSION:
        return "admission"
    if isinstance(key, FinalizerKey):
        return "finalizer"
    return "videogenmodel" if isinstance(key, ModelKey) else "videogenjob"


class Runtime:
    """Everything the handlers share, built once at startup."""

    def __init__(
        self,
        settings: OperatorSettings,
        loop: asyncio.AbstractEventLoop,
        views: Views,
        identity: str,
        priority: int,
    ) -> None:
        load_client_config()
        self.settings = settings
        self.loop = loop
        self.identity = identity
        self.priority = priority
        store = ObjectStore(settings) if (settings.s3_endpoint or settings.s3_bucket) else None
        self.reconciler = Reconciler(Kube(metrics.instrumented_api_client()), settings, store, views=views)
        self.models = ModelReconciler(self.reconciler.kube, settings, views)
        self.dispatch = Coalescer(
            metrics.count_errors(self._work, _error_kind),
            self._record_error,
            paced={ADMISSION: ADMISSION_REST_RATIO},
        )
        self.last_sweep = time.monotonic()
        self.sweeps = 0
        self.active = False
        # Whether kopf's indices (runner Jobs and Pods) have listed once: the sweep is started by the
        # startup handler, before kopf's watches list, and a pass that saw no Jobs would count the
        # cap's GPUs free. kopf runs no event handler before every index has listed, so the first
        # handler call sets it (_handler_runtime); until then the sweep acts on nothing.
        self.indexed = False
        self.heap = HeapTrimmer()

    def _work(self, key: Hashable) -> None:
        if key == ADMISSION:
            if self.active:
                self.reconciler.admit()
            return
        if isinstance(key, ModelKey):
            if self.active:
                self.models.reconcile(key.name)
            return
        if isinstance(key, FinalizerKey):
            self.reconciler.sync_outputs_finalizer(key.namespace, key.name)
            return
        assert isinstance(key, tuple)
        outcome = self.reconciler.reconcile(key[0], key[1])
        if outcome.needs_admission or any(t.phase in TERMINAL for t in outcome.transitions):
            # A job that waits, or one that freed its GPU slot, moves the queue.
            asyncio.run_coroutine_threadsafe(self.dispatch.kick(ADMISSION, urgent=True), self.loop)

    def _record_error(self, key: Hashable, error: BaseException) -> None:
        if isinstance(key, ModelKey):
            self.models.record_error(key.name, error)
            return
        if isinstance(key, FinalizerKey):
            self.reconciler.record_error(key.namespace, key.name, error)
            return
        if key != ADMISSION and isinstance(key, tuple):
            self.reconciler.record_error(key[0], key[1], error)

    def _check_active(self) -> bool:
        kube = self.reconciler.kube
        name = self.settings.peering_name
        if self.settings.clusterwide:
            bodies = [kube.get_peering(name, None)]
        else:
            bodies = [kube.get_peering(name, ns) for ns in self.settings.namespaces]
        return is_active(bodies, self.identity, self.priority, now_utc())

    async def sweep_once(self) -> None:
        try:
            self.active = await asyncio.to_thread(self._check_active)
        except Exception as err:
            log.warning("could not read the peering object (%s); not acting this period", err)
            self.active = False
            if not is_transient(err):
                raise
        if not self.active or not self.indexed:
            return
        self.sweeps += 1
        full = self.sweeps % FULL_SWEEP_EVERY == 1
        keys: list[Hashable] = [
            (vgj["metadata"]["namespace"], vgj["metadata"]["name"])
            for vgj in self.reconciler.views.unfinished_vgjs()
            if self.reconciler.due(vgj, full)
        ]
        keys.extend(
            ModelKey(m["metadata"]["name"]) for m in self.reconciler.views.models() if self.models.needs_work(m)
        )
        await asyncio.gather(*(self.dispatch.kick(k) for k in keys), self.dispatch.kick(ADMISSION, urgent=True))

    async def sweep_forever(self) -> None:
        """Deadlines and grace periods move with time, not with events."""
        while True:
            try:
                await self.sweep_once()
            except Exception:
                metrics.reconcile_error("sweep")
                log.exception("periodic sweep failed")
            else:
                self.last_sweep = time.monotonic()
            # In every replica (a standby holds the views too): what start-up and bursts freed
            # goes back to the system instead of staying in RSS (heap.py).
            await asyncio.to_thread(self.heap.maybe_trim)
            await asyncio.sleep(self.settings.resync_seconds)

    def sweep_age(self) -> float:
        return time.monotonic() - self.last_sweep

    def stale_after(self) -> float:
        return max(MIN_STALE_SWEEP_SECONDS, STALE_SWEEP_PERIODS * self.settings.resync_seconds)


class UnusedDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff base on every event of every watched object (a deep copy of the whole
    body, then a diff against the stored one) for on.create/update/resume/delete handlers and
    daemons. This operator registers none of them (handlers are on.event and indices only; a test
    keeps it so), so the diff base is never read: building it was the largest single cost of the
    operator's CPU per event in the scale benchmark."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def _handler_runtime(memo: kopf.Memo) -> Runtime:
    """The runtime, for an event handler. kopf calls none before each of its indices has listed
    once (kopf/_core/reactor/processing.py waits for `operator_indexed`), so a call here also says
    the views hold every runner Job and Pod: the sweep may act from now on."""
    runtime = memo.get("runtime")
    assert isinstance(runtime, Runtime)
    runtime.indexed = True
    return runtime


# ---------------------------------------------------------------------- indices (the views)


@kopf.index("batch", "v1", "jobs", labels=RUNNER_LABELS)
async def job_index(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    owner = vgj_owner_uid(body)
    return {owner: slim_job(body)} if owner else {}


@kopf.index("", "v1", "pods", labels=RUNNER_LABELS)
async def pod_index(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    owner = controller_uid(body.metadata, "Job")
    return {owner: slim_pod(body)} if owner else {}


@kopf.index(api.GROUP, api.VERSION, cat.MODEL_PLURAL)
async def model_index(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {body.metadata.name or "": slim_model(body)}


# Kueue's Workloads of our runner Jobs (registered by watch_kueue_workloads): why Kueue holds a job
# (quota, eviction) reaches its status from this view at no read per reconcile.
async def workload_index(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    job_uid = kueue.job_uid_of(body)
    return {job_uid: kueue.slim_workload(body)} if job_uid and kueue.is_runner_workload(body) else {}


@kopf.index("", "v1", "events")
async def failed_create_index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    involved = body.get("involvedObject") or {}
    if body.get("reason") != "FailedCreate" or involved.get("kind") != "Job":
        return {}
    return {
        (body.metadata.namespace or "", str(involved.get("name") or "")): {
            "message": body.get("message"),
            "lastTimestamp": body.get("lastTimestamp"),
            "eventTime": body.get("eventTime"),
        }
    }


# ---------------------------------------------------------------------- lifecycle


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    ours = memo.get("settings") or load_settings()
    assert isinstance(ours, OperatorSettings)
    # Keep kopf's bookkeeping in annotations: the status schema is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = UnusedDiffBase()
    # Watches can freeze silently behind load balancers; make the server and client end them.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    # The initial LISTs come in pages; the runner Jobs and Pods and the Job controller's
    # FailedCreate Events are filtered on the server: the rest of the cluster never streams in.
    settings.watching.chunk_size = 500
    settings.watching.label_selectors["batch", "v1", "jobs"] = RUNNER_SELECTOR
    settings.watching.label_selectors["", "v1", "pods"] = RUNNER_SELECTOR
    settings.watching.field_selectors["", "v1", "events"] = FAILED_CREATE_SELECTOR
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "videogen-operator"
    settings.peering.name = ours.peering_name
    settings.peering.clusterwide = ours.clusterwide
    # A crashed replica leaves its peering record behind; its replacement pauses
    # until that record expires, so keep the lifetime short.
    settings.peering.lifetime = ours.peering_lifetime_seconds
    settings.execution.max_workers = 16
    # Reconciles run on the loop's default executor (asyncio.to_thread): enough threads
    # that a burst of jobs is not serialised behind a few API round trips.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=RECONCILE_THREADS, thread_name_prefix="reconcile")
    )
    views = Views(
        None,  # VideoGenJobs: the views' own store (views.py says why), filled before any handler runs
        kwargs["job_index"],
        kwargs["pod_index"],
        kwargs["failed_create_index"],
        kwargs["model_index"],
        kwargs.get("workload_index"),  # absent where Workloads are not watched (watch_kueue_workloads)
    )
    identity = str(memo.get("identity") or own_identity())
    priority = int(memo.get("priority") or start_priority())
    runtime = await asyncio.to_thread(Runtime, ours, asyncio.get_running_loop(), views, identity, priority)
    pages = runtime.reconciler.kube.list_vgjs(None if ours.clusterwide else ours.namespaces)
    await asyncio.to_thread(views.load_vgjs, pages)
    # What start-up built lives until exit: out of the collector's full passes (heap.py says why).
    heap.settle_collector()
    memo["runtime"] = runtime
    metrics.use_job_source(runtime.reconciler.views.vgjs)
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


@kopf.on.probe(id="sweep")
def sweep_probe(memo: kopf.Memo, **_: Any) -> float:
    """Liveness: fails (HTTP 500 on /healthz) when the periodic sweep has not completed for several periods."""
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        return 0.0
    age = runtime.sweep_age()
    if age > runtime.stale_after():
        raise kopf.PermanentError(f"the periodic sweep has not completed for {age:.0f}s")
    return round(age, 1)


# ---------------------------------------------------------------------- events → reconciles


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def videogenjob_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    obj = event["object"]
    meta = obj.get("metadata") or {}
    runtime = _handler_runtime(memo)
    views = runtime.reconciler.views
    if event["type"] == "DELETED":
        views.apply_vgj_event(obj, deleted=True)
        metrics.job_gone(obj)
        await runtime.dispatch.kick(ADMISSION, urgent=True)
        return
    views.apply_vgj_event(obj)
    metrics.job_seen(obj)
    if needs_finalizer_work(obj):
        await runtime.dispatch.kick(FinalizerKey(meta["namespace"], meta["name"]))
    phase = (obj.get("status") or {}).get("phase")
    if phase in TERMINAL:
        return  # finished for good: nothing to reconcile (thousands of these at start-up)
    if views.is_own_write(obj):
        # Exactly what a reconcile of ours just wrote: it acted on this state already, and
        # whatever changes next (its pod, its Job, the tenant's spec) brings its own event.
        return
    # A job never seen before is on the way to its Job (create→Job latency): ahead of routine work.
    await runtime.dispatch.kick((meta["namespace"], meta["name"]), urgent=not phase)


@kopf.on.event(api.GROUP, api.VERSION, cat.MODEL_PLURAL)
async def videogenmodel_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A model changed: reconcile it, and the unfinished jobs that name it (they may wait for it)."""
    obj = event["object"]
    name = str((obj.get("metadata") or {}).get("name") or "")
    runtime = _handler_runtime(memo)
    if event["type"] != "DELETED":
        await runtime.dispatch.kick(ModelKey(name))
    waiting = [
        (vgj["metadata"]["namespace"], vgj["metadata"]["name"])
        for vgj in runtime.reconciler.views.unfinished_vgjs()
        if (vgj.get("spec") or {}).get("model") == name and (vgj.get("status") or {}).get("phase") not in TERMINAL
    ]
    await asyncio.gather(*(runtime.dispatch.kick(k) for k in waiting))


def _owner_key(body: kopf.Body) -> tuple[str, str] | None:
    owner = (body.metadata.annotations or {}).get(OWNER_ANNOTATION)
    namespace = body.metadata.namespace
    return (namespace, owner) if owner and namespace else None


@kopf.on.event("batch", "v1", "jobs", labels=RUNNER_LABELS)
async def job_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime = _handler_runtime(memo)
    key = _owner_key(body)
    kicks = [runtime.dispatch.kick(key)] if key else []
    if job_finished(body):
        # A finished Job frees its GPU slot, and its owner may have gone Succeeded already (on the
        # pod's exit 0, before this): the queue moves now, not at the next sweep.
        kicks.append(runtime.dispatch.kick(ADMISSION, urgent=True))
    await asyncio.gather(*kicks)


@kopf.on.event("", "v1", "pods", labels=RUNNER_LABELS)
async def pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime = _handler_runtime(memo)
    key = _owner_key(body)
    if key:
        await runtime.dispatch.kick(key)


async def workload_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Kueue changed a Workload of one of our runner Jobs: reconcile its VideoGenJob."""
    runtime = _handler_runtime(memo)
    key = kueue.owner_key(body) if kueue.is_runner_workload(body) else None
    if key:
        await runtime.dispatch.kick(key)


def watch_kueue_workloads(settings: OperatorSettings) -> bool:
    """Watch Kueue's Workloads (the index and the event handler above) where the operator may.

    Registered before kopf starts, and only when RBAC allows list and watch: kopf holds every
    handler until each index has listed once, and a forbidden watch gives up after its retries, so
    it would hold every event-driven reconcile for good (only the periodic sweep would still move
    jobs; tests/integration/test_operator_kueue.py shows it). Without the watch, a Kueue job's
    status says less and its LocalQueue is read instead.
    Versionless on purpose: kopf watches the version the cluster prefers (v1beta2 from Kueue
    v0.15, v1beta1 before), whose conditions read the same. Where Kueue is not installed kopf only
    logs "Unresolved resources cannot be served" and the view stays empty; kopf watches CRDs, so a
    Kueue installed later is picked up without a restart (and where API discovery lagged the CRD's
    events, by the re-scan of rescan.py within RESCAN_SECONDS). Workloads carry none of the Job's labels,
    so the server cannot filter them: every Workload streams in, and only ours (our pod template,
    which Kueue copies into the Workload) are kept."""
    namespaces = None if settings.clusterwide else list(settings.namespaces)
    try:
        allowed = may_watch(kueue.GROUP, kueue.WORKLOADS, namespaces)
    except Exception as err:  # an unanswered question is a no: the operator must start
        log.warning("could not ask whether Kueue Workloads may be watched (%s); not watching them", err)
        return False
    if not allowed:
        log.warning("not allowed to list and watch workloads.kueue.x-k8s.io: Kueue's reasons will not reach job status")
        return False
    kopf.index(kueue.GROUP, kueue.WORKLOADS)(workload_index)
    kopf.on.event(kueue.GROUP, kueue.WORKLOADS)(workload_event)
    # A Kueue installed while the operator runs: kopf may miss it (rescan.py says when and why).
    rescan.install(kueue.GROUP, kueue.WORKLOADS)
    return True
