"""Progress: into the VideoGenJob's status (rate-limited, coalesced) and into the logs (a bar).

Writes go through a background thread so the denoising loop never waits on the
API server, and the newest state always wins: a stage change made within the
2-second window is written when the window opens, unless something newer has
replaced it by then. Failing writes are logged and otherwise ignored; progress
is a convenience, never a reason for a run to fail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from videogen_api import v1alpha1 as api

from .errors import one_line
from .spec_input import JobIdentity

log = logging.getLogger(__name__)

MIN_WRITE_INTERVAL_SECONDS = 2.0
_BAR_WIDTH = 20
MERGE_PATCH = "application/merge-patch+json"

T = TypeVar("T")

# Share of the whole run each stage covers; generating moves through its range step by step.
STAGE_PERCENT: Mapping[api.Stage, tuple[int, int]] = {
    api.Stage.LOADING: (0, 10),
    api.Stage.GENERATING: (10, 85),
    api.Stage.ENCODING: (85, 95),
    api.Stage.UPLOADING: (95, 99),
    api.Stage.DONE: (100, 100),
}


def overall_percent(stage: api.Stage, step: int | None = None, total: int | None = None) -> int:
    low, high = STAGE_PERCENT[stage]
    if step is None or not total:
        return low
    return low + (high - low) * min(step, total) // total


def summarize(stage: api.Stage, step: int | None, total: int | None, percent: int) -> str:
    if stage is api.Stage.GENERATING and step is not None and total:
        return f"generating {step}/{total} ({percent}%)"
    return f"{stage.value} ({percent}%)"


def make_progress(stage: api.Stage, step: int | None, total: int | None, now: datetime) -> api.Progress:
    percent = overall_percent(stage, step, total)
    return api.Progress(
        stage=stage,
        step=step,
        total_steps=total,
        percent=percent,
        summary=summarize(stage, step, total, percent),
        updated_at=now,
    )


def progress_bar(percent: int) -> str:
    filled = _BAR_WIDTH * percent // 100
    return "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "]"


class Coalescer(Generic[T]):
    """At most one write per interval; the newest offered state wins. Pure (time is passed in).
    Generic over the state: a job's Progress here, a model's download progress in the loader."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: T | None = None
        self._last_write: float | None = None

    @property
    def pending(self) -> T | None:
        return self._pending

    def offer(self, progress: T) -> None:
        self._pending = progress

    def discard(self) -> None:
        self._pending = None

    def next_due(self) -> float | None:
        """The earliest time the pending state may be written (None when nothing is pending)."""
        if self._pending is None:
            return None
        return float("-inf") if self._last_write is None else self._last_write + self.interval

    def take_due(self, now: float) -> T | None:
        due = self.next_due()
        if due is None or now < due:
            return None
        progress, self._pending = self._pending, None
        self._last_write = now
        return progress


class ProgressSink(Protocol):
    def write(self, progress: api.Progress) -> None: ...


class StaleJobError(RuntimeError):
    """The VideoGenJob of this name was deleted and created again: its status is not ours to write."""


class KubeStatusSink:
    """Merge-patches status.progress of one VideoGenJob through the status subresource."""

    def __init__(self, identity: JobIdentity, api_client: Any) -> None:
        from kubernetes import client

        assert identity.namespace and identity.name
        self.namespace = identity.namespace
        self.name = identity.name
        self.uid = identity.uid
        self._api: Any = client.CustomObjectsApi(api_client)
        self._checked = False
        self._stale = False

    def _check_same_job(self) -> None:
        """Once: the object under this name must be our job, not a newer one that reuses the name
        (a merge patch on the status subresource has no uid precondition of its own)."""
        if self._checked or not self.uid:
            self._checked = True
            return
        current = self._api.get_namespaced_custom_object_status(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, self.name, _request_timeout=(5, 10)
        )
        uid = (current.get("metadata") or {}).get("uid")
        if uid != self.uid:
            self._stale = True
            raise StaleJobError(f"{self.namespace}/{self.name} is now uid {uid}, not this run's {self.uid}")
        self._checked = True

    def write(self, progress: api.Progress) -> None:
        # Every field, unset ones as null: a merge patch would otherwise keep stale values
        # from the previous write (e.g. a step count while loading).
        self.write_status({"progress": progress.model_dump(by_alias=True, mode="json")})

    def write_status(self, fields: dict[str, Any]) -> None:
        """Merge-patch these status fields of this run's own VideoGenJob (never a namesake's)."""
        if self._stale:
            raise StaleJobError(f"{self.namespace}/{self.name} belongs to another run; not writing")
        self._check_same_job()
        body: dict[str, Any] = {"status": fields}
        self._api.patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            self.name,
            body,
            _content_type=MERGE_PATCH,
            _request_timeout=(5, 10),
        )


def make_sink(identity: JobIdentity, env: Mapping[str, str]) -> ProgressSink | None:
    """A status sink when the job's identity is known and credentials load; else None (logs only)."""
    if not identity.in_cluster:
        log.info("no %s/%s: progress goes to the logs only", api.ENV_JOB_NAMESPACE, api.ENV_JOB_NAME)
        return None
    try:
        from kubernetes import client, config

        kubeconfig = env.get("KUBECONFIG")
        configuration = client.Configuration()
        # The loaders are untyped; bind them as Any once rather than silencing each call.
        load_kube_config: Any = config.load_kube_config
        load_incluster_config: Any = config.load_incluster_config
        if kubeconfig:
            load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            load_incluster_config(client_configuration=configuration)
        return KubeStatusSink(identity, client.ApiClient(configuration))
    except Exception as exc:
        log.warning("cannot write progress to %s (%s); logs only", identity.describe(), one_line(str(exc), 200))
        return None


@dataclass
class _StepClock:
    started: float | None = None
    steps_done: int = 0

    def eta(self, step: int, total: int, now: float) -> str:
        if self.started is None or step <= 0:
            return ""
        per_step = (now - self.started) / step
        return f" {per_step:.2f}s/step, ETA {per_step * (total - step):.0f}s"


class CoalescingWriter(Generic[T]):
    """A background thread that hands the newest offered state to `write`, at most once per
    interval, so the caller never waits on the API server. `write` must not raise."""

    def __init__(
        self,
        write: Callable[[T], None],
        *,
        interval: float = MIN_WRITE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        name: str = "progress-writer",
    ) -> None:
        self._write = write
        self._clock = clock
        self._coalescer: Coalescer[T] = Coalescer(interval)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, state: T) -> None:
        with self._cond:
            self._coalescer.offer(state)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    due = self._coalescer.next_due()
                    if due is None:
                        if self._closed:
                            return
                        self._cond.wait()
                        continue
                    wait = due - self._clock()
                    if wait <= 0:
                        break
                    self._cond.wait(timeout=wait)
                state = self._coalescer.take_due(self._clock())
            if state is not None:
                self._write(state)

    def close(self, *, flush: bool = True, timeout: float = MIN_WRITE_INTERVAL_SECONDS + 10) -> None:
        """Stop the thread; with flush, the last state is written first (waiting for its slot)."""
        with self._cond:
            if not flush:
                self._coalescer.discard()
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            log.warning("progress writer did not finish within %.0fs; the last update may be missing", timeout)


class ProgressReporter:
    """Stage and step updates from the run, written to a sink by a background thread."""

    def __init__(
        self,
        sink: ProgressSink | None,
        *,
        interval: float = MIN_WRITE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._stage: api.Stage | None = None
        self._total: int | None = None
        self._failures = 0
        self._steps = _StepClock()
        self.writes: list[api.Progress] = []  # what reached the sink, for tests and logs
        self._writer: CoalescingWriter[api.Progress] | None = None
        if sink is not None:
            self._writer = CoalescingWriter(self._write, interval=interval, clock=clock)

    @property
    def stage_now(self) -> api.Stage | None:
        return self._stage

    def stage(self, stage: api.Stage, step: int | None = None, total: int | None = None) -> None:
        self._stage = stage
        if stage is api.Stage.GENERATING:
            self._steps = _StepClock(started=self._clock())
            self._total = total
        elif step is None and self._total is not None:
            # After denoising the step count stays visible as finished (30/30), not blank.
            step = total = self._total
        self._update(stage, step, total)

    def step(self, step: int, total: int) -> None:
        self._stage = api.Stage.GENERATING
        self._total = total
        self._update(api.Stage.GENERATING, step, total)

    def _update(self, stage: api.Stage, step: int | None, total: int | None) -> None:
        progress = make_progress(stage, step, total, datetime.now(UTC))
        eta = self._steps.eta(step, total, self._clock()) if step is not None and total else ""
        log.info("%s %s%s", progress_bar(progress.percent or 0), progress.summary, eta)
        if self._writer is not None:
            self._writer.offer(progress)

    def _write(self, progress: api.Progress) -> None:
        assert self._sink is not None
        # Stamped when written: updatedAt tells when the status last changed, even
        # when the state itself was produced a moment earlier and waited for its slot.
        progress = progress.model_copy(update={"updated_at": datetime.now(UTC)})
        try:
            self._sink.write(progress)
        except Exception as exc:
            self._failures += 1
            level = logging.WARNING if self._failures <= 3 else logging.DEBUG
            log.log(
                level, "progress write failed (%d so far, run continues): %s", self._failures, one_line(str(exc), 300)
            )
            return
        self.writes.append(progress)

    def close(self, *, flush: bool = True, timeout: float = MIN_WRITE_INTERVAL_SECONDS + 10) -> None:
        """Stop the writer; with flush, the last state is written first (waiting for its slot)."""
        if self._writer is not None:
            self._writer.close(flush=flush, timeout=timeout)
