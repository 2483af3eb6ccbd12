"""A "local GPU node": a Node object the scheduler can place GPU pods on, and an agent that runs them.

The agent plays the kubelet's part for one node: it registers the Node (``nvidia.com/gpu`` capacity, no
taints), keeps it Ready through a Lease and status heartbeats, and runs each pod bound to it as local
processes (see ``podworker``). Images are ignored: containers run from the project's own environment,
with ``<repo>/.venv/bin`` first on PATH.

Each container process gets a private mount namespace in which its volumes, its service account token
(``/var/run/secrets/kubernetes.io/serviceaccount``) and its termination message file appear at the
paths the pod spec names (missing mount points are created on the host, empty, as a runtime would in
an image). Where mount namespaces are unavailable (not root), processes run without those mounts: the
API is then reachable through ``KUBECONFIG`` (a per-pod kubeconfig holding the pod's token), volumes are
not visible at their mount paths, and the termination message is whatever the process wrote to the
host's file at ``terminationMessagePath``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlparse

from .binaries import KUBERNETES_VERSION
from .kubeapi import JSON, close, new_client, raw
from .kubeapi import body as as_body
from .localpath import LocalPathProvisioner
from .podworker import (
    GPU_RESOURCE,
    PODEXEC,
    GpuAllocator,
    NodeRuntime,
    PodWorker,
    base_env,
    delete_pod_now,
    now_rfc3339,
    service_env,
)
from .procs import Service

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api

log = logging.getLogger(__name__)

LEASE_DURATION_SECONDS = 40
HEARTBEAT_SECONDS = 10.0
WATCH_READ_TIMEOUT = 30.0
TERMINAL_PHASES = ("Succeeded", "Failed")
DEFAULT_ENTRYPOINTS = {
    "videogen-runner": ["videogen-runner"],
    "videogen-operator": ["videogen-operator"],
}
# Host variables a pod inherits, the way an image would bake them in: model caches and GPU settings.
# Nothing else leaks in (notably not KUBECONFIG or AWS_*: pods get those from the cluster).
PASSTHROUGH_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "CUDA_", "NVIDIA_", "XDG_CACHE")
PASSTHROUGH_NAMES = ("LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def default_passthrough_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(PASSTHROUGH_PREFIXES) or k in PASSTHROUGH_NAMES}


def mount_namespaces_work(python: str) -> bool:
    """Whether this process may create private mount namespaces (root, or CAP_SYS_ADMIN)."""
    try:
        result = subprocess.run([python, "-I", str(PODEXEC), "--probe"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _host_capacity() -> dict[str, str]:
    import psutil

    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{psutil.virtual_memory().total // 1024}Ki",
        "ephemeral-storage": f"{shutil.disk_usage('/').total // 1024}Ki",
        "pods": "110",
    }


class LocalGpuNode(Service):
    """Registers Node ``name`` and runs the pods bound to it until ``stop()``.

    ``capacity`` overrides entries of the node's capacity (defaults: the host's CPUs and memory, 110 pods,
    ``gpus`` times ``nvidia.com/gpu``). ``entrypoints`` maps image names (last path component, no tag) to the
    command used when a container has no ``command`` of its own. With ``provision_volumes`` the agent also
    provisions PersistentVolumeClaims of the default StorageClass ``local-path`` as local directories.
    """

    def __init__(
        self,
        kubeconfig: Path,
        *,
        name: str = "local-gpu-0",
        gpus: int = 1,
        state_dir: Path | None = None,
        capacity: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        entrypoints: Mapping[str, list[str]] | None = None,
        passthrough_env: Mapping[str, str] | None = None,
        extra_path: list[str] | None = None,
        private_mounts: bool | None = None,
        delete_node_on_stop: bool = True,
        provision_volumes: bool = True,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.name = name
        self.gpus = gpus
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="videogen-node-")) if state_dir is None else state_dir
        self.capacity = {**_host_capacity(), GPU_RESOURCE: str(gpus), **(capacity or {})}
        self.labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": platform.machine().replace("x86_64", "amd64").replace("aarch64", "arm64"),
            "node.kubernetes.io/instance-type": "local",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(gpus),
            **(labels or {}),
        }
        self.entrypoints = dict(DEFAULT_ENTRYPOINTS if entrypoints is None else entrypoints)
        self.passthrough_env = default_passthrough_env() if passthrough_env is None else dict(passthrough_env)
        venv_bin = str(Path(sys.prefix) / "bin")
        self.extra_path = [venv_bin, *(extra_path or [])]
        self._private_mounts = private_mounts
        self.delete_node_on_stop = delete_node_on_stop
        self.provision_volumes = provision_volumes
        self._provisioner: LocalPathProvisioner | None = None
        self.python = sys.executable
        self._api: ApiClient | None = None
        self._core: CoreV1Api | None = None
        self._runtime: NodeRuntime | None = None
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._deleted: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deleter = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="pod-delete")
        self._watch_response: Any = None
        self.ready = threading.Event()
        self._started_at = now_rfc3339()

    # -- public surface ------------------------------------------------------------------------------

    @property
    def private_mounts(self) -> bool:
        return bool(self._runtime and self._runtime.private_mounts)

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """Where a container's stdout and stderr go (restarts append to the same file)."""
        return self.logs_dir / namespace / pod / f"{container}.log"

    def logs(self, namespace: str, pod: str, container: str) -> str:
        try:
            return self.log_path(namespace, pod, container).read_text(errors="replace")
        except OSError:
            return ""

    def pids(self, namespace: str, pod: str) -> dict[str, int]:
        """Process ids of a pod's running containers, by container name."""
        with self._lock:
            workers = [w for w in self._workers.values() if (w.namespace, w.name) == (namespace, pod)]
        return {k: v for w in workers for k, v in w.pids().items()}

    def container_pid(self, namespace: str, pod: str, container: str) -> int | None:
        return self.pids(namespace, pod).get(container)

    def all_pids(self) -> list[int]:
        with self._lock:
            workers = list(self._workers.values())
        return [pid for w in workers for pid in w.pids().values()]

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        from kubernetes import client

        started = time.monotonic()
        self._api = new_client(self.kubeconfig)
        self._core = client.CoreV1Api(self._api)
        server = urlparse(self._api.configuration.host)
        private = mount_namespaces_work(self.python) if self._private_mounts is None else self._private_mounts
        if not private:
            log.warning("mount namespaces are unavailable: pods run without volume, token and termination-log mounts")
        self._runtime = NodeRuntime(
            node_name=self.name,
            core=self._core,
            pods_dir=self.state_dir / "pods",
            claims_dir=self.state_dir / "claims",
            logs_dir=self.logs_dir,
            base_env=base_env(self.extra_path, self.passthrough_env),
            service_env=service_env(server.hostname or "127.0.0.1", server.port or 443),
            entrypoints=self.entrypoints,
            allocatable={k: v for k, v in self.capacity.items() if k != "pods"},
            private_mounts=private,
            gpus=GpuAllocator(self.gpus),
            python=self.python,
        )
        self._register()
        if self.provision_volumes:
            self._provisioner = LocalPathProvisioner(self._api, self.name, self.state_dir / "volumes")
            self._provisioner.start()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "pod-watch")):
            thread = threading.Thread(target=target, name=f"{self.name} {name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self.ready.wait(30):
            raise TimeoutError(f"node agent {self.name} did not list its pods within 30s")
        log.info("local GPU node %s ready in %.1fs (%d GPU)", self.name, time.monotonic() - started, self.gpus)
        return self

    def stop(self) -> None:
        """Kills every pod process, stops the agent threads and (by default) deletes the Node."""
        self._stop.set()
        response = self._watch_response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.shutdown()
        for w in workers:
            w.thread.join(15)
        for thread in self._threads:
            thread.join(5)
        self._deleter.shutdown(wait=True, cancel_futures=True)
        if self._provisioner is not None:
            self._provisioner.stop()
        if self.delete_node_on_stop and self._core is not None:
            self._delete_node()
        if self._api is not None:
            close(self._api)
            self._api = None
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- the Node object -------------------------------------------------------------------------------

    def _node_status(self) -> JSON:
        now = now_rfc3339()

        def condition(kind: str, status: str, reason: str, message: str) -> JSON:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._started_at,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
                condition("Ready", "True", "KubeletReady", "local GPU node agent is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": _read_first("/etc/machine-id"),
                "systemUUID": _read_first("/sys/class/dmi/id/product_uuid"),
                "bootID": _read_first("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": platform.platform(),
                "containerRuntimeVersion": "local-process://1",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.labels["kubernetes.io/arch"],
            },
        }

    def _register(self) -> None:
        from kubernetes.client.exceptions import ApiException

        core = self._require_core()
        self._started_at = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {},
        }
        try:
            core.create_node(as_body(body))
        except ApiException as e:
            if e.status != 409:
                raise
            # Left over from an agent that died: take it over, dropping taints put on it meanwhile.
            core.patch_node(self.name, {"metadata": {"labels": self.labels}, "spec": {"taints": None}})
        self._post_status()
        self._renew_lease()

    def _post_status(self) -> None:
        core = self._require_core()
        core.patch_node_status(self.name, {"status": self._node_status()})
        # The node lifecycle controller may have tainted the node before its first status arrived.
        node = raw(core.read_node, self.name)
        if node.get("spec", {}).get("taints"):
            core.patch_node(self.name, {"spec": {"taints": None}})

    def _renew_lease(self) -> None:
        from kubernetes.client.exceptions import ApiException

        coordination = self._coordination()
        micro_now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_now,
        }
        try:
            coordination.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": spec})
        except ApiException as e:
            if e.status != 404:
                raise
            node = raw(self._require_core().read_node, self.name)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": "kube-node-lease",
                    # Owned by the Node, so the garbage collector removes it with the node.
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node["metadata"]["uid"]}
                    ],
                },
                "spec": spec,
            }
            coordination.create_namespaced_lease("kube-node-lease", body)

    def _coordination(self) -> Any:
        from kubernetes import client

        return client.CoordinationV1Api(self._api)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._renew_lease()
                self._post_status()
            except Exception as e:
                if not self._stop.is_set():
                    log.warning("node %s heartbeat failed: %s", self.name, e)

    def _delete_node(self) -> None:
        from kubernetes.client.exceptions import ApiException

        with contextlib.suppress(ApiException, OSError):
            self._require_core().delete_node(self.name, _request_timeout=5)

    def _require_core(self) -> CoreV1Api:
        if self._core is None:
            raise RuntimeError("node agent not started")
        return self._core

    # -- pods ------------------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        core = self._require_core()
        selector = f"spec.nodeName={self.name}"
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist(core, selector)
                    self.ready.set()
                response: Any = core.list_pod_for_all_namespaces(
                    field_selector=selector,
                    watch=True,
                    allow_watch_bookmarks=True,
                    resource_version=resource_version,
                    timeout_seconds=300,
                    _preload_content=False,
                    _request_timeout=(5, WATCH_READ_TIMEOUT),
                )
                self._watch_response = response
                try:
                    for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                        if self._stop.is_set():
                            break
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            # 410 Gone: our resourceVersion is too old; start over from a fresh list.
                            log.debug("pod watch error: %s", obj.get("message"))
                            resource_version = None
                            break
                        resource_version = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self._dispatch(event["type"], obj)
                finally:
                    self._watch_response = None
                    response.release_conn()
            except ApiException as e:
                if e.status == 410:
                    resource_version = None
                elif not self._stop.is_set():
                    log.warning("pod watch failed: %s", e)
                    self._stop.wait(1)
            except Exception as e:
                # Read timeouts on an idle watch land here too; resume from the last version seen.
                if not self._stop.is_set():
                    log.debug("pod watch interrupted: %s", e)
                    self._stop.wait(0.2)

    def _relist(self, core: CoreV1Api, selector: str) -> str:
        listing = raw(core.list_pod_for_all_namespaces, field_selector=selector)
        seen = set()
        for pod in listing["items"]:
            seen.add(pod["metadata"]["uid"])
            self._dispatch("ADDED", pod)
        with self._lock:
            missing = [w for uid, w in self._workers.items() if uid not in seen]
        for w in missing:
            w.gone()
        return str(listing["metadata"]["resourceVersion"])

    def _dispatch(self, kind: str, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        if self._stop.is_set():
            return
        with self._lock:
            worker = self._workers.get(uid)
            if kind == "DELETED":
                self._finished.discard(uid)
                self._deleted.discard(uid)
                if worker is not None:
                    worker.gone()
                self._cleanup(uid, worker)
                return
            if worker is not None:
                worker.update(pod)
                return
            phase = (pod.get("status") or {}).get("phase")
            if uid in self._finished or phase in TERMINAL_PHASES:
                self._finished.add(uid)
                # The kubelet removes a deleted pod whose containers are gone; so do we, once.
                if pod["metadata"].get("deletionTimestamp") and uid not in self._deleted:
                    self._deleted.add(uid)
                    meta = pod["metadata"]
                    self._deleter.submit(self._delete_quietly, meta["namespace"], meta["name"], uid)
                return
            runtime = self._runtime
            assert runtime is not None
            worker = PodWorker(runtime, pod, self._worker_exited)
            self._workers[uid] = worker
        worker.start()

    def _delete_quietly(self, namespace: str, name: str, uid: str) -> None:
        try:
            delete_pod_now(self._require_core(), namespace, name, uid)
        except Exception as e:
            log.warning("could not delete pod %s/%s: %s", namespace, name, e)

    def _worker_exited(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]
            self._finished.add(worker.uid)
            if worker.pod["metadata"].get("deletionTimestamp"):
                self._deleted.add(worker.uid)

    def _cleanup(self, uid: str, worker: PodWorker | None) -> None:
        # Volumes go with the pod object, as the kubelet's do; logs stay for post-mortems.
        pod_dir = self.state_dir / "pods" / uid
        if worker is None:
            shutil.rmtree(pod_dir, ignore_errors=True)
        else:
            # The worker may still be killing processes that have the directory mounted; let it finish.
            def later() -> None:
                worker.thread.join(60)
                shutil.rmtree(pod_dir, ignore_errors=True)

            threading.Thread(target=later, name=f"cleanup {uid}", daemon=True).start()


def _read_first(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
