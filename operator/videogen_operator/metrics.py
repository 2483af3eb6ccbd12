"""Prometheus metrics of the operator, served at /metrics.

Names follow Kueue's and KubeRay's conventions (`<project>_<noun>[_unit][_total]`);
no label ever names a single job, so cardinality grows with namespaces and models,
never with jobs. What each series means:

- `videogen_jobs{namespace,phase}`: VideoGenJobs per phase right now, counted at
  scrape time from the objects the operator's watch has seen.
- `videogen_job_queue_wait_seconds{model,result}`: creation to the runner running
  (to the end, for jobs that never ran), observed when a job finishes.
- `videogen_job_run_seconds{model,result}`: runner running to the end, when a job finishes.
- `videogen_admission_wait_seconds`: creation to admission (a GPU slot granted by the
  operator's queue, or Kueue's admission).
- `videogen_jobs_finished_total{namespace,result,reason}`: jobs that reached a terminal phase.
- `videogen_gpu_seconds_total{namespace,model}`: GPUs x wall time runner pods held them
  (the jobs' `status.gpuSeconds`), added when a job finishes.
- `videogen_reconcile_errors_total{kind}`: reconciles that raised (`videogenjob`,
  `admission`, `sweep`); each is retried on the next sweep.
- `videogen_api_requests_total{verb,code}`: the operator's own Kubernetes API requests
  (kopf's watch streams and peering are not included).

Counters live for the operator process (Prometheus' `rate`/`increase` handle restarts).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from videogen_api import v1alpha1 as api

log = logging.getLogger(__name__)
T = TypeVar("T")

TERMINAL = frozenset(p.value for p in api.TERMINAL_PHASES)
# Queue waits span seconds (an idle cluster) to hours (a busy one); runs span a tiny
# model's seconds to a production model's hour.
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
RUN_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
# Reasons after which a job has just been granted its GPU slot.
_ADMITTED_FROM = frozenset({api.Reason.CREATED, api.Reason.QUEUED, api.Reason.WAITING_FOR_ADMISSION})
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

REGISTRY = CollectorRegistry(auto_describe=True)

JOB_QUEUE_WAIT = Histogram(
    "videogen_job_queue_wait_seconds",
    "Seconds from a VideoGenJob's creation until its runner ran (or until it ended, if it never ran).",
    ["model", "result"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
JOB_RUN = Histogram(
    "videogen_job_run_seconds",
    "Seconds from a VideoGenJob's runner starting until the job ended.",
    ["model", "result"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
ADMISSION_WAIT = Histogram(
    "videogen_admission_wait_seconds",
    "Seconds from a VideoGenJob's creation until it was admitted (given a GPU slot).",
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "videogen_jobs_finished",
    "VideoGenJobs that reached a terminal phase, by result (phase) and reason.",
    ["namespace", "result", "reason"],
    registry=REGISTRY,
)
GPU_SECONDS = Counter(
    "videogen_gpu_seconds",
    "GPU-seconds held by the runner pods of finished VideoGenJobs (GPUs x wall time).",
    ["namespace", "model"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "videogen_reconcile_errors",
    "Reconciles that raised an error, by what was reconciled; each is retried on the next sweep.",
    ["kind"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "videogen_api_requests",
    "Kubernetes API requests the operator made, by verb and HTTP status code.",
    ["verb", "code"],
    registry=REGISTRY,
)


# --------------------------------------------------------------------------- jobs per phase


class _PhaseBook(Collector):
    """The phase of every VideoGenJob the watch has shown, exported at scrape time.

    With a source (the operator's watch-fed view of VideoGenJobs, see `use_job_source`) the
    counts come from that view, so the gauge and the reconciler see the same objects;
    without one, from the events passed to `seen`/`gone`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}
        self._source: Callable[[], Iterable[Mapping[str, Any]]] | None = None

    def seen(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        phase = str((obj.get("status") or {}).get("phase") or api.Phase.PENDING.value)
        with self._lock:
            self._phases[(str(meta.get("namespace")), str(meta.get("name")))] = phase

    def gone(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        with self._lock:
            self._phases.pop((str(meta.get("namespace")), str(meta.get("name"))), None)

    def use(self, source: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._source = source

    def counts(self) -> Tally[tuple[str, str]]:
        if self._source is not None:
            return Tally(
                (
                    str((obj.get("metadata") or {}).get("namespace")),
                    str((obj.get("status") or {}).get("phase") or api.Phase.PENDING.value),
                )
                for obj in self._source()
            )
        with self._lock:
            return Tally((key[0], phase) for key, phase in self._phases.items())

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "videogen_jobs",
            "VideoGenJobs by namespace and phase, as the operator sees them.",
            labels=["namespace", "phase"],
        )
        for (namespace, phase), count in sorted(self.counts().items()):
            family.add_metric([namespace, phase], count)
        yield family


PHASES = _PhaseBook()
REGISTRY.register(PHASES)


def job_seen(obj: Mapping[str, Any]) -> None:
    """A watch event showed this VideoGenJob (its phase feeds `videogen_jobs`)."""
    PHASES.seen(obj)


def job_gone(obj: Mapping[str, Any]) -> None:
    PHASES.gone(obj)


def use_job_source(source: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
    """Count `videogen_jobs` from `source` (the watch-fed view) at scrape time."""
    PHASES.use(source)


# --------------------------------------------------------------------------- status writes


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def status_written(body: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any], moved: Any) -> None:
    """Called by the reconciler after each status write; `moved` is the phase machine's
    Transition (phase and reason), or None when only details changed."""
    if moved is None:
        return
    phase, reason = str(moved.phase), str(moved.reason)
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace"))
    model = str((body.get("spec") or {}).get("model") or "")
    created = _time(meta.get("creationTimestamp"))
    PHASES.seen({"metadata": meta, "status": {"phase": phase}})
    # From the queue, or (a new job the admission pass took at once) from no status at all.
    admitted = old.get("reason") in _ADMITTED_FROM or not old.get("phase")
    if reason == api.Reason.POD_STARTING and admitted and not new.get("startTime"):
        waited = _seconds(created, datetime.now(UTC))
        if waited is not None:
            ADMISSION_WAIT.observe(waited)
    if phase not in TERMINAL:
        return
    JOBS_FINISHED.labels(namespace, phase, reason).inc()
    started, completed = _time(new.get("startTime")), _time(new.get("completionTime"))
    queued = _seconds(created, started or completed)
    if queued is not None:
        JOB_QUEUE_WAIT.labels(model, phase).observe(queued)
    ran = _seconds(started, completed)
    if ran is not None:
        JOB_RUN.labels(model, phase).observe(ran)
    gpu_seconds = float(new.get("gpuSeconds") or 0)
    if gpu_seconds > 0:
        GPU_SECONDS.labels(namespace, model).inc(gpu_seconds)


# --------------------------------------------------------------------------- errors and API requests


def count_errors(work: Callable[[Hashable], T], kind_of: Callable[[Hashable], str]) -> Callable[[Hashable], T]:
    """`work`, counting the calls that raise in `videogen_reconcile_errors_total{kind}`."""

    def counted(key: Hashable) -> T:
        try:
            return work(key)
        except Exception:
            RECONCILE_ERRORS.labels(kind_of(key)).inc()
            raise

    return counted


def reconcile_error(kind: str) -> None:
    RECONCILE_ERRORS.labels(kind).inc()


def request_verb(method: str, url: str) -> str:
    """The Kubernetes verb of one REST call: GET on a collection is list (or watch), on an object get."""
    method = method.upper()
    if method != "GET":
        return _VERBS.get(method, method.lower())
    parts = urlsplit(url)
    if parse_qs(parts.query).get("watch", ["false"])[0] in ("true", "1"):
        return "watch"
    segments = [s for s in parts.path.split("/") if s]
    # /api/v1/... or /apis/<group>/<version>/...
    rest = segments[2:] if segments[:1] == ["api"] else segments[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    return "list" if len(rest) <= 1 else "get"


def instrument(api_client: T) -> T:
    """Count every request `api_client` (a kubernetes.client.ApiClient) makes."""
    original = api_client.call_api  # type: ignore[attr-defined]

    def call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        verb = request_verb(method, url)
        try:
            response = original(method, url, *args, **kwargs)
        except Exception as err:
            API_REQUESTS.labels(verb, str(getattr(err, "status", None) or "error")).inc()
            raise
        API_REQUESTS.labels(verb, str(getattr(response, "status", "") or "unknown")).inc()
        return response

    api_client.call_api = call_api  # type: ignore[attr-defined]
    return api_client


def instrumented_api_client() -> Any:
    from kubernetes import client

    return instrument(client.ApiClient())


# --------------------------------------------------------------------------- the endpoint


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on `port` from a daemon thread (0 turns it off)."""
    if port <= 0:
        return
    try:
        start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError:
        # Jobs matter more than their metrics: keep running, say so loudly.
        log.exception("cannot serve /metrics on port %d", port)
        return
    log.info("metrics at http://%s:%d/metrics", addr, port)
