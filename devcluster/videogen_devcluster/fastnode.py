"""A "fast" GPU node for scale tests: it completes runner pods without running them.

The operator's scale benchmark needs thousands of runner pods to start and finish in
seconds, on a machine without a GPU. This node plays a kubelet whose containers run the
runner instantly: a pod bound to it is reported Running, then, after `run_seconds`,
Succeeded with the runner's result in the termination message, exactly as the real
runner writes it (a RunnerResult for the output location the pod's env names). With an
S3 client it also uploads a small object there, so an operator that verifies outputs
finds a real object. Nothing of this lives in the operator: it only sees pods change.

It reuses LocalGpuNode's Node registration, heartbeats, pod watch and deletion handling;
only what happens to a new pod differs.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from videogen_api import v1alpha1 as api

from .gpunode import TERMINAL_PHASES, LocalGpuNode
from .kubeapi import JSON
from .podworker import delete_pod_now, now_rfc3339

log = logging.getLogger(__name__)

FAST_NODE_LABEL = "videogen.dev/fast-node"
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42fast-node-video"


def runner_result(pod: JSON, sha256: str, size: int) -> dict[str, Any]:
    """The RunnerResult the runner would write for this pod's output location."""
    env = {
        e["name"]: e.get("value")
        for c in (pod.get("spec") or {}).get("containers") or []
        for e in c.get("env") or []
        if "value" in e
    }
    bucket, key = env.get(api.ENV_OUTPUT_BUCKET, "videos"), env.get(api.ENV_OUTPUT_KEY, "fast.mp4")
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return {
        "output": {
            "uri": f"s3://{bucket}/{key}",
            "sizeBytes": size,
            "sha256": sha256,
            "format": "mp4",
            "width": 64,
            "height": 64,
            "frames": 9,
            "fps": 8,
        },
        "seed": 0,
        "timings": {"total": 0.0},
        "memoryMode": "none (fast node)",
        "adjustments": [],
        "specHash": labels.get(api.LABEL_SPEC_HASH, ""),
    }


class FastGpuNode(LocalGpuNode):
    """LocalGpuNode whose pods complete at once (after `run_seconds`) instead of running."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        name: str = "fast-gpu-0",
        gpus: int = 100000,
        run_seconds: float = 0.0,
        s3_client: Any = None,
        workers: int = 4,
        **kwargs: Any,
    ) -> None:
        capacity = {"pods": str(gpus), "cpu": str(gpus), "memory": f"{gpus}Gi", **kwargs.pop("capacity", {})}
        labels = {FAST_NODE_LABEL: "true", **kwargs.pop("labels", {})}
        super().__init__(
            kubeconfig,
            name=name,
            gpus=gpus,
            capacity=capacity,
            labels=labels,
            private_mounts=False,
            provision_volumes=False,
            **kwargs,
        )
        self.run_seconds = run_seconds
        self.s3_client = s3_client
        self._completer = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fast-pod")
        self._handled: set[str] = set()
        self.completed = 0

    def _dispatch(self, kind: str, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if self._stop.is_set():
            return
        with self._lock:
            if kind == "DELETED":
                self._handled.discard(uid)
                self._deleted.discard(uid)
                return
            phase = (pod.get("status") or {}).get("phase")
            if meta.get("deletionTimestamp"):
                # Whatever it was doing, a deleted pod's containers are gone at once here.
                if uid not in self._deleted:
                    self._deleted.add(uid)
                    self._deleter.submit(self._delete_now, meta["namespace"], meta["name"], uid)
                return
            if phase in TERMINAL_PHASES or uid in self._handled:
                return
            self._handled.add(uid)
        self._completer.submit(self._complete, pod)

    def _delete_now(self, namespace: str, name: str, uid: str) -> None:
        try:
            delete_pod_now(self._require_core(), namespace, name, uid)
        except Exception as e:
            log.warning("could not delete pod %s/%s: %s", namespace, name, e)

    def _complete(self, pod: JSON) -> None:
        meta = pod["metadata"]
        ns, name = meta["namespace"], meta["name"]
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        started = now_rfc3339()
        try:
            core = self._require_core()
            core.patch_namespaced_pod_status(name, ns, {"status": self._status(containers, started, None)})
            if self.run_seconds:
                time.sleep(self.run_seconds)
            digest, size = self._upload(pod)
            result = json.dumps(runner_result(pod, digest, size), separators=(",", ":"))
            core.patch_namespaced_pod_status(name, ns, {"status": self._status(containers, started, result)})
            with self._lock:
                self.completed += 1
        except Exception as e:
            if not self._stop.is_set():
                log.warning("fast node could not complete pod %s/%s: %s", ns, name, e)
            with self._lock:
                self._handled.discard(meta["uid"])

    def _upload(self, pod: JSON) -> tuple[str, int]:
        data = VIDEO_BYTES + meta_uid(pod).encode()
        digest = hashlib.sha256(data).hexdigest()
        if self.s3_client is not None:
            output = runner_result(pod, digest, len(data))["output"]
            bucket, _, key = str(output["uri"]).removeprefix("s3://").partition("/")
            # The metadata the runner's grant signs into its PUT: the operator accepts only an
            # object that names the job which wrote it.
            job_uid = ((pod.get("metadata") or {}).get("labels") or {}).get(api.LABEL_JOB_UID, "")
            metadata = {api.S3_METADATA_SHA256: digest, api.S3_METADATA_JOB_UID: job_uid}
            self.s3_client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata)
        return digest, len(data)

    def _status(self, containers: list[str], started: str, result: str | None) -> JSON:
        now = now_rfc3339()
        done = result is not None

        def container(name: str) -> JSON:
            if done:
                state: JSON = {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "message": result,
                        "startedAt": started,
                        "finishedAt": now,
                    }
                }
            else:
                state = {"running": {"startedAt": started}}
            return {
                "name": name,
                "ready": not done,
                "started": not done,
                "restartCount": 0,
                "image": "videogen-runner",
                "imageID": "fast-node://videogen-runner",
                "containerID": f"fast-node://{name}",
                "state": state,
            }

        ready = "False" if done else "True"
        return {
            "phase": "Succeeded" if done else "Running",
            "startTime": started,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [container(n) for n in containers],
        }

    def stop(self) -> None:
        self._completer.shutdown(wait=False, cancel_futures=True)
        super().stop()


def meta_uid(pod: JSON) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")
