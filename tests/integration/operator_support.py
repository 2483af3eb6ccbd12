"""Helpers for the operator's end-to-end tests (the fixtures live in conftest.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import yaml

from videogen_api import v1alpha1 as api
from videogen_devcluster.operator_process import BUCKET, TINY_MODELS
from videogen_devcluster.tools import kueue_crd

__all__ = ["BUCKET", "TINY_I2V", "TINY_T2V", "Jobs", "install_kueue_crd", "local_queue", "tiny_job"]

TINY_T2V = f"hf://{TINY_MODELS['wan-t2v']}"
TINY_I2V = f"hf://{TINY_MODELS['wan-i2v']}"


class Jobs:
    """Read and write VideoGenJobs in one namespace, as a user would."""

    def __init__(self, devcluster: Any, namespace: str) -> None:
        self.dc = devcluster
        self.namespace = namespace

    def apply(self, manifest: dict[str, Any]) -> None:
        manifest = json.loads(json.dumps(manifest))
        manifest["metadata"]["namespace"] = self.namespace
        result = self.dc.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
        assert result.returncode == 0, result.stderr

    def get(self, name: str) -> dict[str, Any]:
        result = self.dc.kubectl("get", "vgj", name, "-n", self.namespace, "-o", "json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert isinstance(data, dict)
        return data

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        result = self.dc.kubectl(
            "patch", "vgj", name, "-n", self.namespace, "--type=merge", "-p", json.dumps({"spec": spec})
        )
        assert result.returncode == 0, result.stderr

    def wait_phase(self, name: str, *phases: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            if status.get("phase") in phases:
                return status
            time.sleep(0.5)
        raise AssertionError(f"{name} did not reach {phases} in {timeout}s; status: {json.dumps(status, indent=1)}")

    def runner_jobs(self) -> list[dict[str, Any]]:
        out = self.dc.kubectl(
            "get", "jobs", "-n", self.namespace, "-l", f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}", "-o", "json"
        )
        return list(json.loads(out.stdout)["items"])

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.dc.kubectl(
            "get", "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        return list(json.loads(out.stdout)["items"])


def tiny_job(name: str, **spec: Any) -> dict[str, Any]:
    """A VideoGenJob for the tiny text-to-video model: a few seconds on CPU."""
    base: dict[str, Any] = {
        "model": TINY_T2V,
        "task": "text-to-video",
        "prompt": "a tiny test video of a cat",
        "preset": "fast",
        "width": 64,
        "height": 64,
        "numFrames": 9,
        "fps": 8,
        "steps": 2,
        "startupTimeoutSeconds": 120,
        "timeoutSeconds": 300,
    }
    base.update(spec)
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name}, "spec": base}


def install_kueue_crd(devcluster: Any, plural: str) -> None:
    """One of Kueue's own CRDs (hack/fetch-kueue-crds.sh), installed and Established; no Kueue controller
    runs: the tests play its part. Server-side apply: the Workload CRD is too big for the annotation."""
    applied = devcluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(kueue_crd(plural)))
    assert applied.returncode == 0, applied.stderr
    established = '{.status.conditions[?(@.type=="Established")].status}'
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # `kubectl wait` fails outright while the CRD has no conditions yet
        got = devcluster.kubectl("get", "crd", f"{plural}.kueue.x-k8s.io", "-o", f"jsonpath={established}")
        if got.stdout.strip() == "True":
            return
        time.sleep(0.5)
    raise AssertionError(f"Kueue's {plural} CRD was not Established within 120s")


def local_queue(devcluster: Any, namespace: str, name: str) -> None:
    """A Kueue LocalQueue `name` in `namespace` (Kueue's CRD; the operator only asks whether it exists)."""
    install_kueue_crd(devcluster, "localqueues")
    queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": "gpu-cq"},
    }
    for _ in range(30):  # a CRD just Established may take a moment to be served everywhere
        if devcluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(queue)).returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"LocalQueue {namespace}/{name} could not be created")
