"""The operator on the dev cluster: its prerequisites, its settings and the
process itself. Shared by the end-to-end tests and `make demo`, so both run
the operator exactly the same way."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .binaries import REPO_ROOT
from .devcluster import DevCluster

OPERATOR_NAMESPACE = "videogen-system"
S3_SECRET = "videogen-s3"
BUCKET = "videos"
PEERING_NAME = "videogen-operator"
# family -> the hf:// name the demo and tests install it under.
TINY_MODELS = {"wan-t2v": "videogen-demo/tiny-wan-t2v", "wan-i2v": "videogen-demo/tiny-wan-i2v"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_tiny_models(model_cache: Path, families: tuple[str, ...] = tuple(TINY_MODELS)) -> None:
    """Tiny random-weight pipelines, saved under `build/<family>` and installed in the
    Hugging Face cache layout under `hf/` (HF_HOME of the runners)."""
    for family in families:
        out = model_cache / "build" / family
        # A model built before tiny models shipped their CPU-sized profile would make the minimal
        # spec run at the family's real presets (832x480x81 on a CPU): rebuild it.
        if (out / "model_index.json").exists() and (out / "videogen-profile.json").exists():
            continue
        if out.exists():
            shutil.rmtree(out)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "videogen_runner.tiny_models",
                "--family",
                family,
                "--out",
                str(out),
                "--hf-cache",
                str(model_cache / "hf"),
                "--repo-id",
                TINY_MODELS[family],
            ],
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )


def _kubectl_ok(dc: DevCluster, *args: str, input: str | None = None) -> None:
    result = dc.kubectl(*args, input=input)
    # `kubectl create secret` says "already exists" where other kinds say "(AlreadyExists)".
    if result.returncode != 0 and "already exists" not in result.stderr.lower():
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr}")


def prepare_cluster(dc: DevCluster) -> None:
    """CRDs, the operator's namespace and S3 credentials Secret, and the bucket."""
    if dc.s3 is None:
        raise RuntimeError("the operator needs the dev cluster's S3 server")
    _kubectl_ok(dc, "apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    _kubectl_ok(dc, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    _kubectl_ok(dc, "create", "namespace", OPERATOR_NAMESPACE)
    env = dc.s3.env()
    _kubectl_ok(
        dc,
        "create",
        "secret",
        "generic",
        S3_SECRET,
        "-n",
        OPERATOR_NAMESPACE,
        f"--from-literal=AWS_ACCESS_KEY_ID={env['AWS_ACCESS_KEY_ID']}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={env['AWS_SECRET_ACCESS_KEY']}",
    )
    _kubectl_ok(dc, "apply", "-f", "-", input=yaml.safe_dump_all(loader_rbac()))
    client = dc.s3_client()
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)


CACHE_CLAIM = "videogen-models"
# The chart's default model cache: a claim in the operator's namespace, shared read-only into job namespaces.
CATALOG_SETTINGS = {
    "model_cache_type": "pvc",
    "model_cache_claim_name": CACHE_CLAIM,
    "allow_unlisted_models": "false",
}


def create_cache_claim(dc: DevCluster, size: str = "200Gi") -> str:
    """The operator's model-cache claim, as the chart's defaults create it (ReadWriteMany, default class, 200Gi:
    the chart's own render test applies the same claim in the same cluster)."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CACHE_CLAIM, "namespace": OPERATOR_NAMESPACE},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}},
    }
    _kubectl_ok(dc, "apply", "-f", "-", input=yaml.safe_dump(claim))
    return CACHE_CLAIM


def upload_model_dir(dc: DevCluster, model_dir: Path, prefix: str, bucket: str = BUCKET) -> int:
    """Upload a save_pretrained directory below s3://<bucket>/<prefix>/ (a platform team's model
    store); returns the number of files."""
    client = dc.s3_client()
    count = 0
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(model_dir).as_posix()}")
        count += 1
    return count


def model_manifest(name: str, source: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "videogen.dev/v1alpha1",
        "kind": "VideoGenModel",
        "metadata": {"name": name},
        "spec": {"source": source, **spec},
    }


def loader_rbac() -> list[dict[str, Any]]:
    """The model loader's ServiceAccount (operator's namespace) and its one permission: reporting
    progress on VideoGenModels' status (what the chart installs too)."""
    name = "videogen-model-loader"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": ["videogen.dev"], "resources": ["videogenmodels"], "verbs": ["get"]},
                {"apiGroups": ["videogen.dev"], "resources": ["videogenmodels/status"], "verbs": ["get", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": OPERATOR_NAMESPACE}],
        },
    ]


def create_peering(dc: DevCluster, namespace: str | None) -> None:
    """kopf peering is on, as in production: its peering object must exist."""
    if namespace is None:
        obj: dict[str, Any] = {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": PEERING_NAME},
        }
    else:
        obj = {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": PEERING_NAME, "namespace": namespace},
        }
    _kubectl_ok(dc, "apply", "-f", "-", input=yaml.safe_dump(obj))


def operator_env(dc: DevCluster, model_cache: Path, namespaces: list[str], **settings: Any) -> dict[str, str]:
    """The operator's environment for this dev cluster; `settings` are VIDEOGEN_* overrides."""
    if dc.s3 is None:
        raise RuntimeError("the operator needs the dev cluster's S3 server")
    env = {
        **os.environ,
        **dc.env(),
        "VIDEOGEN_NAMESPACES": ",".join(namespaces),
        "VIDEOGEN_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
        "VIDEOGEN_S3_ENDPOINT": dc.s3.endpoint_url,
        "VIDEOGEN_S3_BUCKET": BUCKET,
        "VIDEOGEN_S3_SECRET_NAME": S3_SECRET,
        "VIDEOGEN_MODEL_CACHE_TYPE": "hostPath",
        "VIDEOGEN_MODEL_CACHE_HOST_PATH": str(model_cache),
        # The local node has the machine's CPUs and memory; real GPU nodes get the chart's defaults.
        "VIDEOGEN_RUNNER_CPU_REQUEST": "100m",
        "VIDEOGEN_RUNNER_MEMORY_REQUEST": "256Mi",
        "VIDEOGEN_LOADER_CPU_REQUEST": "100m",
        "VIDEOGEN_LOADER_MEMORY_REQUEST": "256Mi",
        "VIDEOGEN_RESYNC_SECONDS": "1",
        "VIDEOGEN_LIVENESS_PORT": str(free_port()),
        "VIDEOGEN_METRICS_PORT": str(free_port()),
        "VIDEOGEN_PEERING_LIFETIME_SECONDS": "5",
        # Most tests name the tiny models by URI; the catalog's tests turn this off (the chart's default).
        "VIDEOGEN_ALLOW_UNLISTED_MODELS": "true",
    }
    env.update({f"VIDEOGEN_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class OperatorProcess:
    """`python -m videogen_operator` as a real process: start, stop, kill -9."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.liveness_port = int(env["VIDEOGEN_LIVENESS_PORT"])
        self.metrics_port = int(env.get("VIDEOGEN_METRICS_PORT") or 0)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "videogen_operator"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1) as rsp:
                    if rsp.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"operator not healthy within {timeout:.0f}s:\n{self.logs()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like an OOM kill or a lost node."""
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
