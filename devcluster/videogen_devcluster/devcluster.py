"""Control plane + S3 + local GPU node as one composable unit, for tests, the CLI and demos."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Self

from .binaries import REPO_ROOT, Binaries, find_binaries
from .controlplane import ControlPlane
from .gpunode import LocalGpuNode
from .procs import Service
from .s3 import S3Server

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


class DevCluster(Service):
    """Everything a VideoGenJob needs locally, under one state directory::

        with DevCluster() as dc:
            dc.kubectl("get", "nodes")
            dc.s3_client().list_buckets()

    Layout of ``state_dir``: ``controlplane/`` (certs, etcd data, ``logs/<component>.log``), ``s3/``
    (``data/<bucket>/``, ``logs/``), ``node/`` (``logs/<ns>/<pod>/<container>.log``, pod volumes),
    plus ``kubeconfig`` and ``env`` once started.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        with_s3: bool = True,
        with_gpu_node: bool = True,
        gpus: int = 1,
        node_name: str = "local-gpu-0",
        keep_state: bool | None = None,
        binaries: Binaries | None = None,
    ) -> None:
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="videogen-devcluster-")) if state_dir is None else state_dir
        self.keep_state = (not self._owns_state_dir) if keep_state is None else keep_state
        self.binaries = binaries or find_binaries()
        self.control_plane = ControlPlane(self.state_dir / "controlplane", binaries=self.binaries)
        self.s3: S3Server | None = S3Server(self.state_dir / "s3", binaries=self.binaries) if with_s3 else None
        self.gpu_node: LocalGpuNode | None = None
        self._node_args = (gpus, node_name) if with_gpu_node else None
        self.timings: dict[str, float] = {}

    @property
    def kubeconfig_path(self) -> Path:
        return self.control_plane.kubeconfig_path

    @property
    def env_path(self) -> Path:
        return self.state_dir / "env"

    def env(self) -> dict[str, str]:
        """KUBECONFIG, PATH (project kubectl/helm and the virtualenv first) and the AWS_* variables."""
        venv_bin = REPO_ROOT / ".venv" / "bin"
        env = self.control_plane.env()
        env["PATH"] = os.pathsep.join([str(self.binaries.bin_dir), str(venv_bin), os.environ.get("PATH", "")])
        if self.s3 is not None:
            env.update(self.s3.env())
        return env

    def kubectl(self, *args: str, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.control_plane.kubectl(*args, check=check, input=input)

    def api_client(self) -> ApiClient:
        return self.control_plane.api_client()

    def s3_client(self) -> S3Client:
        if self.s3 is None:
            raise RuntimeError("this DevCluster runs without S3")
        return self.s3.client()

    def pids(self) -> dict[str, int]:
        pids = dict(self.control_plane.pids())
        if self.s3 is not None and self.s3.process is not None:
            pids["versitygw"] = self.s3.process.pid
        return pids

    def start(self) -> Self:
        try:
            self._timed("control plane", self.control_plane.start)
            if self.s3 is not None:
                self._timed("s3", self.s3.start)
            if self._node_args is not None:
                self.gpu_node = LocalGpuNode(
                    self.kubeconfig_path,
                    state_dir=self.state_dir / "node",
                    gpus=self._node_args[0],
                    name=self._node_args[1],
                )
                self._timed("gpu node", self.gpu_node.start)
        except BaseException:
            self.stop()
            raise
        self.write_env_file(self.env_path)
        return self

    def _timed(self, what: str, start: Callable[[], object]) -> None:
        began = time.monotonic()
        start()
        self.timings[what] = time.monotonic() - began

    def stop(self) -> None:
        # Pods first (they talk to the API and S3), the API server last.
        if self.gpu_node is not None:
            self.gpu_node.stop()
        if self.s3 is not None:
            self.s3.stop()
        self.control_plane.stop()
        if self._owns_state_dir and not self.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def write_env_file(self, path: Path) -> Path:
        """``export NAME=value`` lines, for ``source`` or ``eval``."""
        lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env().items())]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def describe(self) -> str:
        lines = [
            f"  API server   {self.control_plane.api_url}  (kubeconfig {self.kubeconfig_path})",
            f"  kubectl      {self.binaries.kubectl}",
        ]
        if self.s3 is not None:
            lines.append(f"  S3           {self.s3.endpoint_url}  (data in {self.s3.data_dir})")
        if self.gpu_node is not None:
            mode = "private mount namespaces" if self.gpu_node.private_mounts else "no mount namespaces"
            lines.append(
                f"  GPU node     {self.gpu_node.name}  ({self.gpu_node.gpus} x nvidia.com/gpu, {mode}; "
                f"pod logs in {self.gpu_node.logs_dir})"
            )
        lines.append(f"  state        {self.state_dir}")
        return "\n".join(lines)
