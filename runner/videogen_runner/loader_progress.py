"""The loader's download progress: merge-patched onto the VideoGenModel's status.progress (at most
every 2 seconds, by a background thread, so a slow API server never slows the download) and logged.

The loader's ServiceAccount may only get and patch videogenmodels/status. The uid is checked once
before the first write: a model deleted and created again under the same name is not this loader's
to report on. Without a cluster identity (no KUBECONFIG, not in a pod) progress goes to the logs only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from videogen_api import catalog
from videogen_api import v1alpha1 as api

from .errors import one_line
from .progress import MERGE_PATCH, MIN_WRITE_INTERVAL_SECONDS, CoalescingWriter, StaleJobError

log = logging.getLogger(__name__)

# How often a line goes to the logs while bytes flow (the status has its own 2-second limit).
LOG_INTERVAL_SECONDS = 10.0


class ModelStatusSink:
    """Merge-patches status.progress of one (cluster-scoped) VideoGenModel, checking its uid once."""

    def __init__(self, name: str, uid: str, api_client: Any) -> None:
        from kubernetes import client

        self.name = name
        self.uid = uid
        self._api: Any = client.CustomObjectsApi(api_client)
        self._checked = False
        self._stale = False

    def _check_same_model(self) -> None:
        if self._checked:
            return
        current = self._api.get_cluster_custom_object_status(
            api.GROUP, api.VERSION, catalog.MODEL_PLURAL, self.name, _request_timeout=(5, 10)
        )
        uid = (current.get("metadata") or {}).get("uid")
        if uid != self.uid:
            self._stale = True
            raise StaleJobError(f"VideoGenModel {self.name} is now uid {uid}, not this loader's {self.uid}")
        self._checked = True

    def write(self, progress: catalog.ModelProgress) -> None:
        if self._stale:
            raise StaleJobError(f"VideoGenModel {self.name} belongs to another loader; not writing")
        self._check_same_model()
        # Every field, unset ones as null, so a merge patch leaves nothing stale behind.
        body = {"status": {"progress": progress.model_dump(by_alias=True, mode="json")}}
        self._api.patch_cluster_custom_object_status(
            api.GROUP,
            api.VERSION,
            catalog.MODEL_PLURAL,
            self.name,
            body,
            _content_type=MERGE_PATCH,
            _request_timeout=(5, 10),
        )


def make_model_sink(name: str, uid: str, env: Mapping[str, str]) -> ModelStatusSink | None:
    """A status sink when the loader has a cluster identity (KUBECONFIG, or a pod's ServiceAccount);
    else None: progress goes to the logs only."""
    kubeconfig = env.get("KUBECONFIG")
    if not kubeconfig and not env.get("KUBERNETES_SERVICE_HOST"):
        log.info("no cluster identity (KUBECONFIG or a pod's ServiceAccount): progress goes to the logs only")
        return None
    try:
        from kubernetes import client, config

        configuration = client.Configuration()
        load_kube_config: Any = config.load_kube_config
        load_incluster_config: Any = config.load_incluster_config
        if kubeconfig:
            load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            load_incluster_config(client_configuration=configuration)
        return ModelStatusSink(name, uid, client.ApiClient(configuration))
    except Exception as exc:
        log.warning("cannot write progress to VideoGenModel %s (%s); logs only", name, one_line(str(exc), 200))
        return None


def summarize(
    files_done: int, files_total: int, bytes_done: int, bytes_total: int, percent: int, verb: str = "downloading"
) -> str:
    """e.g. 'downloading 3/12 files, 1.2GB/14.7GB (8%)'."""
    done, total = catalog.human_size(bytes_done), catalog.human_size(bytes_total)
    return f"{verb} {files_done}/{files_total} files, {done}/{total} ({percent}%)"


class DownloadProgress:
    """Counts files and bytes as they arrive (from any thread) and reports them."""

    def __init__(
        self,
        sink: ModelStatusSink | None,
        *,
        verb: str = "downloading",
        interval: float = MIN_WRITE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._verb = verb
        self._clock = clock
        self._lock = threading.Lock()
        self.files_total = 0
        self.bytes_total = 0
        self.files_done = 0
        self.bytes_done = 0
        self._failures = 0
        self._last_log: float | None = None
        self.writes: list[catalog.ModelProgress] = []  # what reached the status
        self._writer: CoalescingWriter[catalog.ModelProgress] | None = None
        if sink is not None:
            self._writer = CoalescingWriter(self._write, interval=interval, clock=clock, name="model-progress")

    def start(self, files_total: int, bytes_total: int, *, files_done: int = 0, bytes_done: int = 0) -> None:
        with self._lock:
            self.files_total, self.bytes_total = files_total, bytes_total
            self.files_done, self.bytes_done = files_done, bytes_done
        self._report(force_log=True)

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_done += count
        self._report()

    def set_bytes(self, count: int) -> None:
        """For sources that are only observed from outside (a Hub download's growing cache)."""
        with self._lock:
            self.bytes_done = min(count, self.bytes_total) if self.bytes_total else count
        self._report()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
        self._report()

    def snapshot(self) -> catalog.ModelProgress:
        with self._lock:
            files_done, files_total = self.files_done, self.files_total
            bytes_done, bytes_total = self.bytes_done, self.bytes_total
        percent = min(100, bytes_done * 100 // bytes_total) if bytes_total else (100 if files_done else 0)
        return catalog.ModelProgress(
            files_done=files_done,
            files_total=files_total,
            bytes_done=bytes_done,
            bytes_total=bytes_total,
            percent=percent,
            summary=summarize(files_done, files_total, bytes_done, bytes_total, percent, self._verb),
            updated_at=datetime.now(UTC),
        )

    def _report(self, *, force_log: bool = False) -> None:
        progress = self.snapshot()
        now = self._clock()
        done = progress.files_done == progress.files_total
        if force_log or done or self._last_log is None or now - self._last_log >= LOG_INTERVAL_SECONDS:
            self._last_log = now
            log.info("%s", progress.summary)
        if self._writer is not None:
            self._writer.offer(progress)

    def _write(self, progress: catalog.ModelProgress) -> None:
        assert self._sink is not None
        progress = progress.model_copy(update={"updated_at": datetime.now(UTC)})
        try:
            self._sink.write(progress)
        except Exception as exc:
            self._failures += 1
            level = logging.WARNING if self._failures <= 3 else logging.DEBUG
            log.log(level, "progress write failed (%d so far, the download continues): %s", self._failures, exc)
            return
        self.writes.append(progress)

    def close(self, *, flush: bool = True) -> None:
        if self._writer is not None:
            self._writer.close(flush=flush)
