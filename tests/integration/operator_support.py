"""Helpers for the operator's end-to-end tests (the fixtures live in conftest.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from videogen_api import v1alpha1 as api

OPERATOR_NAMESPACE = "videogen-system"
S3_SECRET = "videogen-s3"
BUCKET = "videos"
TINY_MODELS = {"t2v": ("wan-t2v", "videogen-demo/tiny-wan-t2v"), "i2v": ("wan-i2v", "videogen-demo/tiny-wan-i2v")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """`python -m videogen_operator` as a real process: start, stop, kill -9."""

    def __init__(self, env: dict[str, str], log_path: Path, liveness_port: int) -> None:
        self.env = env
        self.log_path = log_path
        self.liveness_port = liveness_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "videogen_operator"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as rsp:
                    if rsp.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"operator not healthy within 60s:\n{self.logs()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like an OOM kill or a node loss."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


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
        "model": f"hf://{TINY_MODELS['t2v'][1]}",
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
