"""One pod on the local node: its containers as local processes and its status in the API.

A worker thread per pod follows what the kubelet does for a pod, reduced to what a process can show:
admission (GPUs), volumes, init containers one after another, then all containers at once, restarts
per ``restartPolicy`` (with a shorter back-off than the kubelet's), ``activeDeadlineSeconds``, and
graceful stop when the pod is deleted. Of ``securityContext`` only ``readOnlyRootFilesystem`` is
honoured; processes run as the agent's user (``runAsUser``, ``fsGroup`` and capabilities are ignored).
Probes, lifecycle hooks, resource limits and sidecar (restartable init) containers are not implemented.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _podexec
from .binaries import REPO_ROOT
from .kubeapi import JSON, raw
from .kubeapi import body as as_body
from .kubeconfig import write_kubeconfig
from .podenv import ContainerConfigError, EnvResolver, command_line
from .podvolumes import DEFAULT_TERMINATION_PATH, Mount, VolumeContext, container_mounts, prepare_volumes
from .procs import ManagedProcess, tail_file

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api

log = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"
PODEXEC = Path(_podexec.__file__).resolve()


def runtime_paths() -> list[str]:
    """Host paths a container's program needs whatever the pod mounts: the project (the "image"),
    its virtualenv and Python."""
    return sorted({str(REPO_ROOT), sys.prefix, sys.base_prefix, sys.exec_prefix})


MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_BYTES = 2048
RESTART_BACKOFF_INITIAL = 1.0
RESTART_BACKOFF_MAX = 60.0
TICK = 0.2
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exit_code(returncode: int) -> int:
    # Popen reports death by signal N as -N; container runtimes report 128 + N.
    return returncode if returncode >= 0 else 128 - returncode


class GpuAllocator:
    """Hands out device indices 0..count-1, the way a device plugin would."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._lock = threading.Lock()
        self._owned: dict[str, list[int]] = {}

    def allocate(self, owner: str, n: int) -> list[int] | None:
        with self._lock:
            used = {i for ids in self._owned.values() for i in ids}
            free = [i for i in range(self.count) if i not in used]
            if n > len(free):
                return None
            self._owned[owner] = free[:n]
            return free[:n]

    def release(self, owner: str) -> None:
        with self._lock:
            self._owned.pop(owner, None)


@dataclass
class NodeRuntime:
    """What pod workers need from their node."""

    node_name: str
    core: CoreV1Api
    pods_dir: Path
    claims_dir: Path
    logs_dir: Path
    base_env: dict[str, str]
    service_env: dict[str, str]
    entrypoints: dict[str, list[str]]
    allocatable: dict[str, str]
    private_mounts: bool
    gpus: GpuAllocator
    python: str

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.logs_dir / namespace / pod / f"{container}.log"

    def read(self, kind: str, namespace: str, name: str) -> JSON | None:
        from kubernetes.client.exceptions import ApiException

        readers: dict[str, Callable[..., Any]] = {
            "Secret": self.core.read_namespaced_secret,
            "ConfigMap": self.core.read_namespaced_config_map,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
        }
        try:
            if kind == "PersistentVolume":
                return raw(self.core.read_persistent_volume, name)
            return raw(readers[kind], name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def request_token(self, namespace: str, service_account: str, body: JSON) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            response = raw(self.core.create_namespaced_service_account_token, service_account, namespace, as_body(body))
        except ApiException as e:
            if e.status == 404:
                raise ContainerConfigError(
                    f'serviceaccount "{service_account}" not found', reason="ContainerCreating"
                ) from None
            raise
        return str(response["status"]["token"])


@dataclass
class _Container:
    spec: JSON
    init: bool
    gpu_ids: list[int] = field(default_factory=list)
    restart_count: int = 0
    proc: ManagedProcess | None = None
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    started_at: str = ""
    started_wall: float = 0.0
    next_start: float = 0.0
    done: bool = False  # exited and will not be restarted
    ever_started: bool = False

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    @property
    def succeeded(self) -> bool:
        return self.done and self.exit_code == 0

    def status(self) -> JSON:
        running = self.proc is not None
        status: JSON = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.spec.get("image", ""),
            "ready": running,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.ever_started:
            status["containerID"] = f"local://{self.name}-{self.restart_count}"
        return status


def gpu_request(container: JSON) -> int:
    resources = container.get("resources") or {}
    value = (resources.get("limits") or {}).get(GPU_RESOURCE) or (resources.get("requests") or {}).get(GPU_RESOURCE)
    return int(value or 0)


class _PodGoneError(Exception):
    """The pod object no longer exists (or was replaced by another with the same name)."""


class PodWorker:
    def __init__(self, runtime: NodeRuntime, pod: JSON, on_exit: Callable[[PodWorker], None]) -> None:
        self.rt = runtime
        self._pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._gone = False
        self._stopping = False
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init_containers = [_Container(c, init=True) for c in spec.get("initContainers", [])]
        self.containers = [_Container(c, init=False) for c in spec["containers"]]
        self.phase = "Pending"
        self.reason: str | None = None
        self.message: str | None = None
        self.start_time = ""
        self._started_mono = 0.0
        self._volumes_ready = False
        self._volumes: dict[str, Path] = {}
        self._conditions: dict[str, JSON] = {}
        self._published: JSON | None = None
        self.pod_dir = runtime.pods_dir / self.uid
        self.thread = threading.Thread(target=self._run, name=f"pod {self.namespace}/{self.name}", daemon=True)

    # -- called from other threads -------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def update(self, pod: JSON) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def gone(self) -> None:
        self._gone = True
        self._wake.set()

    def shutdown(self) -> None:
        """The agent stops: kill the processes promptly and leave the API alone."""
        self._stopping = True
        self._wake.set()

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.init_containers + self.containers if c.proc is not None}

    @property
    def pod(self) -> JSON:
        with self._lock:
            return self._pod

    # -- the lifecycle ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._lifecycle()
        except _PodGoneError:
            log.debug("pod %s/%s is gone", self.namespace, self.name)
        except Exception:
            log.exception("pod %s/%s: local node agent failed", self.namespace, self.name)
        finally:
            self._kill_all(grace=2.0, record=False)
            self.rt.gpus.release(self.uid)
            self._on_exit(self)

    def _lifecycle(self) -> None:
        pod = self.pod
        status = pod.get("status") or {}
        if self._ran_before(status):
            self._set_terminal(
                "Failed", "NodeAgentRestarted", "the local node agent restarted and lost the pod's processes"
            )
            self._publish()
            return
        self.start_time = status.get("startTime") or now_rfc3339()
        self._started_mono = time.monotonic()
        if not self._admit():
            return
        self._publish()
        while True:
            if self._interrupted():
                return
            if not self._volumes_ready:
                self._prepare_volumes()
            if self._volumes_ready:
                self._step()
            if self.phase in ("Succeeded", "Failed"):
                self._publish()
                return
            self._publish()
            self._wake.wait(TICK)
            self._wake.clear()

    @staticmethod
    def _ran_before(status: JSON) -> bool:
        if status.get("phase") in ("Succeeded", "Failed"):
            return False
        return any(
            "running" in (cs.get("state") or {}) or "terminated" in (cs.get("state") or {})
            for cs in status.get("containerStatuses", []) + status.get("initContainerStatuses", [])
        )

    def _admit(self) -> bool:
        """Device allocation, as the kubelet's admission does; a pod that does not fit fails at once."""
        wanted = max(
            [sum(gpu_request(c.spec) for c in self.containers)] + [gpu_request(c.spec) for c in self.init_containers]
        )
        if wanted == 0:
            return True
        ids = self.rt.gpus.allocate(self.uid, wanted)
        if ids is None:
            self._set_terminal(
                "Failed",
                "UnexpectedAdmissionError",
                f"Allocate failed due to requested number of devices unavailable for {GPU_RESOURCE}. "
                f"Requested: {wanted}, Available: fewer",
            )
            self._publish()
            return False
        offset = 0
        for c in self.containers:
            n = gpu_request(c.spec)
            c.gpu_ids, offset = ids[offset : offset + n], offset + n
        for c in self.init_containers:
            c.gpu_ids = ids[: gpu_request(c.spec)]
        return True

    def _interrupted(self) -> bool:
        """Handles deletion, the active deadline and agent shutdown; True when the worker is done."""
        if self._gone or self._stopping:
            return True
        pod = self.pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            self._kill_all(grace=float(grace), record=True)
            self._set_terminal(self._terminal_phase(), self.reason, self.message)
            with contextlib.suppress(_PodGoneError):
                self._publish()
            self._delete_now()
            return True
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - self._started_mono >= float(deadline):
            self._kill_all(grace=float(pod["spec"].get("terminationGracePeriodSeconds", 30)), record=True)
            self._set_terminal(
                "Failed", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
            )
            self._publish()
            return True
        return False

    def _prepare_volumes(self) -> None:
        ctx = VolumeContext(
            pod=self.pod,
            pod_dir=self.pod_dir,
            claims_dir=self.rt.claims_dir,
            read=self.rt.read,
            request_token=self.rt.request_token,
            allocatable=self.rt.allocatable,
        )
        try:
            self._volumes = prepare_volumes(ctx)
        except ContainerConfigError as e:
            self._all_waiting(e.reason, e.message)
            self._wake.wait(1.0)
            return
        self._volumes_ready = True
        first = "PodInitializing" if self.init_containers else "ContainerCreating"
        self._all_waiting(first, None, init_too=False)

    def _all_waiting(self, reason: str, message: str | None, init_too: bool = True) -> None:
        waiting: JSON = {"reason": reason}
        if message:
            waiting["message"] = message
        for c in (self.init_containers if init_too else []) + self.containers:
            if c.proc is None and not c.ever_started:
                c.state = {"waiting": dict(waiting)}

    def _active(self) -> list[_Container]:
        for c in self.init_containers:
            if not c.succeeded:
                return [] if c.done else [c]
        return self.containers

    def _step(self) -> None:
        now = time.monotonic()
        for c in self._active():
            if c.proc is not None:
                rc = c.proc.poll()
                if rc is not None:
                    self._on_container_exit(c, rc, killed=False)
            elif not c.done and now >= c.next_start:
                self._start_container(c)
        self.phase = self._phase(terminating=False)

    def _start_container(self, c: _Container) -> None:
        pod = self.pod
        try:
            resolver = EnvResolver(pod=pod, read=self.rt.read, allocatable=self.rt.allocatable)
            container_env = resolver.resolve(c.spec, self.rt.service_env)
            argv = command_line(c.spec, container_env, self.rt.entrypoints)
            term_dir = self.pod_dir / "termination"
            term_dir.mkdir(parents=True, exist_ok=True)
            term_file = term_dir / f"{c.name}-{c.restart_count}"
            term_file.write_bytes(b"")
            # Anyone may write the message, whatever user the process ends up as.
            term_file.chmod(0o666)
            mounts = container_mounts(c.spec, self._volumes, term_file)
        except ContainerConfigError as e:
            waiting: JSON = {"reason": e.reason, "message": e.message}
            c.state = {"waiting": waiting}
            c.next_start = time.monotonic() + 2.0
            return
        env = {**self.rt.base_env, "HOSTNAME": self.name}
        if not self.rt.private_mounts:
            env.update(self._fallback_kubeconfig(mounts))
        if c.gpu_ids:
            ids = ",".join(str(i) for i in c.gpu_ids)
            env.update(CUDA_VISIBLE_DEVICES=ids, NVIDIA_VISIBLE_DEVICES=ids)
        env.update(container_env)
        start_error = term_dir / f"{c.name}-{c.restart_count}.start-error"
        start_error.unlink(missing_ok=True)
        spec = {
            "argv": argv,
            "env": env,
            "cwd": c.spec.get("workingDir"),
            "default_cwd": str(self.pod_dir / "workdir"),
            "mounts": [{"source": str(m.source), "target": m.target, "read_only": m.read_only} for m in mounts],
            "private_mounts": self.rt.private_mounts,
            "read_only_root": bool((c.spec.get("securityContext") or {}).get("readOnlyRootFilesystem")),
            "start_error_file": str(start_error),
            "keep_visible": runtime_paths(),
        }
        spec_file = self.pod_dir / f"exec-{c.name}-{c.restart_count}.json"
        fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        log_path = self.rt.log_path(self.namespace, self.name, c.name)
        c.proc = ManagedProcess(
            f"{self.namespace}/{self.name}/{c.name}",
            [self.rt.python, "-I", str(PODEXEC), str(spec_file)],
            log_path,
            env={"PATH": env.get("PATH", os.defpath)},
            cwd=self.pod_dir,
            append_log=c.restart_count > 0,
        )
        c.ever_started = True
        c.started_at = now_rfc3339()
        c.started_wall = time.time()
        c.state = {"running": {"startedAt": c.started_at}}
        log.info("pod %s/%s: started container %s (pid %d): %s", self.namespace, self.name, c.name, c.proc.pid, argv)

    def _fallback_kubeconfig(self, mounts: list[Mount]) -> dict[str, str]:
        """Without mount namespaces, the pod's token reaches it through KUBECONFIG instead."""
        for m in mounts:
            token, ca = m.source / "token", m.source / "ca.crt"
            if m.target.rstrip("/") == SERVICE_ACCOUNT_DIR and token.exists() and ca.exists():
                host = self.rt.service_env["KUBERNETES_SERVICE_HOST"]
                port = self.rt.service_env["KUBERNETES_SERVICE_PORT"]
                path = write_kubeconfig(
                    self.pod_dir / "kubeconfig",
                    server=f"https://{host}:{port}",
                    ca_cert=ca,
                    token=token.read_text().strip(),
                    name="in-cluster",
                )
                return {"KUBECONFIG": str(path)}
        return {}

    def _termination_message(self, c: _Container, exit_code: int) -> str:
        term_dir = self.pod_dir / "termination"
        start_error = term_dir / f"{c.name}-{c.restart_count}.start-error"
        if start_error.exists():
            return str(start_error.read_text(errors="replace")[:MAX_TERMINATION_MESSAGE])
        message_file = term_dir / f"{c.name}-{c.restart_count}"
        if not self.rt.private_mounts:
            # Nothing redirected the path: the process wrote the host's file (if it could).
            host_file = Path(c.spec.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)
            with contextlib.suppress(OSError):
                if host_file.stat().st_mtime >= c.started_wall:
                    message_file = host_file
        try:
            with open(message_file, "rb") as f:
                message = f.read(MAX_TERMINATION_MESSAGE).decode(errors="replace")
        except OSError:
            message = ""
        if not message and exit_code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            log_path = self.rt.log_path(self.namespace, self.name, c.name)
            message = tail_file(log_path, FALLBACK_LOG_BYTES)
        return message

    def _on_container_exit(self, c: _Container, returncode: int, *, killed: bool) -> None:
        code = _exit_code(returncode)
        start_failed = (self.pod_dir / "termination" / f"{c.name}-{c.restart_count}.start-error").exists()
        reason = "StartError" if start_failed else ("Completed" if code == 0 else "Error")
        terminated: JSON = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": f"local://{c.name}-{c.restart_count}",
        }
        if returncode < 0:
            terminated["signal"] = -returncode
        message = self._termination_message(c, code)
        if message:
            terminated["message"] = message
        c.proc = None
        c.state = {"terminated": terminated}
        log.info("pod %s/%s: container %s exited with %d (%s)", self.namespace, self.name, c.name, code, reason)
        if killed:
            c.done = True
            return
        if c.init:
            restart = code != 0 and self.restart_policy != "Never"
            if code == 0:
                c.done = True
        else:
            restart = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)
        if not restart:
            c.done = True
            return
        delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_INITIAL * 2**c.restart_count)
        c.last_state = c.state
        c.restart_count += 1
        c.next_start = time.monotonic() + delay
        c.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={c.name} pod={self.name}",
            }
        }

    def _kill_all(self, *, grace: float, record: bool) -> None:
        """SIGTERM every running container's process group, SIGKILL what is left after ``grace``."""
        running = [c for c in self.init_containers + self.containers if c.proc is not None]
        if not running:
            return
        for c in running:
            assert c.proc is not None
            c.proc.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.proc is not None and c.proc.popen.poll() is None for c in running):
            time.sleep(0.05)
        for c in running:
            proc = c.proc
            assert proc is not None
            rc = proc.stop(grace=0)
            if record:
                self._on_container_exit(c, rc, killed=True)
            else:
                c.proc = None

    def _phase(self, *, terminating: bool) -> str:
        if self.phase in ("Succeeded", "Failed"):
            return self.phase
        for c in self.init_containers:
            if not c.succeeded:
                return "Failed" if c.done else "Pending"
        running = sum(c.proc is not None for c in self.containers)
        waiting = sum(c.proc is None and not c.done and c.restart_count == 0 for c in self.containers)
        stopped = len(self.containers) - running - waiting
        succeeded = sum(c.exit_code == 0 for c in self.containers if c.proc is None and "terminated" in c.state)
        if waiting > 0 and not terminating:
            return "Pending"
        if running > 0:
            return "Running"
        if stopped > 0:
            if terminating:
                return "Succeeded" if stopped == succeeded else "Failed"
            if self.restart_policy == "Always":
                return "Running"
            if stopped == succeeded:
                return "Succeeded"
            if self.restart_policy == "Never":
                return "Failed"
            return "Running"
        return "Pending"

    def _terminal_phase(self) -> str:
        phase = self._phase(terminating=True)
        return phase if phase in ("Succeeded", "Failed") else "Failed"

    def _set_terminal(self, phase: str, reason: str | None, message: str | None) -> None:
        if self.phase not in ("Succeeded", "Failed"):
            self.phase = phase
            self.reason, self.message = reason, message
        for c in self.init_containers + self.containers:
            if "terminated" not in c.state and c.proc is None:
                c.done = True

    # -- status in the API -----------------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> JSON:
        status = "True" if ok else "False"
        previous = self._conditions.get(kind)
        since = previous["lastTransitionTime"] if previous and previous["status"] == status else now_rfc3339()
        condition: JSON = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        self._conditions[kind] = condition
        return condition

    def _status(self) -> JSON:
        terminal = self.phase in ("Succeeded", "Failed")
        pending_init = [c.name for c in self.init_containers if not c.succeeded]
        unready = [c.name for c in self.containers if c.proc is None]
        if terminal and self.phase == "Succeeded":
            ready_reason: str | None = "PodCompleted"
        else:
            ready_reason = "ContainersNotReady" if unready else None
        ready_message = f"containers with unready status: [{' '.join(unready)}]" if unready else None
        init_ok = not pending_init
        init_reason = None if init_ok else ("PodCompleted" if terminal else "ContainersNotInitialized")
        init_message = None if init_ok else f"containers with incomplete status: [{' '.join(pending_init)}]"
        conditions = [
            self._condition("PodReadyToStartContainers", self._volumes_ready and not terminal),
            self._condition("Initialized", init_ok, init_reason, init_message),
            self._condition("Ready", not unready and not terminal, ready_reason, ready_message),
            self._condition("ContainersReady", not unready and not terminal, ready_reason, ready_message),
        ]
        status: JSON = {
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time or now_rfc3339(),
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.reason:
            status["reason"] = self.reason
        if self.message:
            status["message"] = self.message
        return status

    def _publish(self) -> None:
        """Writes our view of the status, keeping conditions others own; retries on conflicts."""
        from kubernetes.client.exceptions import ApiException

        if self.phase in ("Succeeded", "Failed"):
            # Free the devices before the API says the pod is done: the scheduler
            # binds the next GPU pod as soon as it reads a terminal phase, and the
            # kubelet would not refuse that pod either.
            self.rt.gpus.release(self.uid)
        ours = self._status()
        if ours == self._published:
            return
        core = self.rt.core
        for _ in range(20):
            try:
                current = raw(core.read_namespaced_pod, self.name, self.namespace)
            except ApiException as e:
                if e.status == 404:
                    raise _PodGoneError from None
                raise
            if current["metadata"]["uid"] != self.uid:
                raise _PodGoneError
            merged = dict(current.get("status") or {})
            mine = {c["type"] for c in ours["conditions"]}
            others = [c for c in merged.get("conditions", []) if c["type"] not in mine]
            merged.update(ours)
            merged["conditions"] = others + ours["conditions"]
            if merged.get("phase") in ("Succeeded", "Failed") and ours["phase"] != merged.get("phase"):
                return  # a terminal phase is final; never move a pod back
            current["status"] = merged
            try:
                core.replace_namespaced_pod_status(self.name, self.namespace, as_body(current))
            except ApiException as e:
                if e.status == 409:
                    continue
                if e.status == 404:
                    raise _PodGoneError from None
                log.error("pod %s/%s: status update refused: %s", self.namespace, self.name, e.body)
                return
            self._published = ours
            return
        log.warning("pod %s/%s: gave up writing status after repeated conflicts", self.namespace, self.name)

    def _delete_now(self) -> None:
        delete_pod_now(self.rt.core, self.namespace, self.name, self.uid)


def delete_pod_now(core: CoreV1Api, namespace: str, name: str, uid: str) -> None:
    """What the kubelet does once a deleted pod's containers stopped: remove the object for good."""
    from kubernetes.client import V1DeleteOptions, V1Preconditions
    from kubernetes.client.exceptions import ApiException

    try:
        core.delete_namespaced_pod(
            name,
            namespace,
            body=V1DeleteOptions(grace_period_seconds=0, preconditions=V1Preconditions(uid=uid)),
        )
    except ApiException as e:
        if e.status not in (404, 409):
            raise


def service_env(api_host: str, api_port: int) -> dict[str, str]:
    """The variables the kubelet sets for the ``kubernetes`` Service, pointing at the real API server."""
    return {
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        "KUBERNETES_PORT": f"tcp://{api_host}:{api_port}",
        "KUBERNETES_PORT_443_TCP": f"tcp://{api_host}:{api_port}",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": str(api_port),
        "KUBERNETES_PORT_443_TCP_ADDR": api_host,
    }


def base_env(extra_path: list[str], passthrough: Mapping[str, str]) -> dict[str, str]:
    """The stand-in for an image's ENV: PATH with the project's virtualenv first, plus passthrough."""
    system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": os.pathsep.join([*extra_path, system_path]), "HOME": "/root", **passthrough}
