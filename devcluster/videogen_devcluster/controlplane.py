"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller manager, scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

from .binaries import Binaries, find_binaries
from .kubeapi import new_client
from .kubeconfig import http_get, write_kubeconfig
from .pki import ClusterPki, generate_pki
from .procs import ManagedProcess, Service, StartupError, free_port, wait_until

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"


class ControlPlane(Service):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler, all on 127.0.0.1.

    ``state_dir`` holds certificates, kubeconfigs, etcd data and one log per component
    (``logs/<component>.log``). Without one, a temporary directory is used and removed on ``stop()``
    (set ``keep_state=True`` to keep it for post-mortems).
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        name: str = "videogen-dev",
        keep_state: bool | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="videogen-cp-")) if state_dir is None else state_dir
        self.keep_state = (not self._owns_state_dir) if keep_state is None else keep_state
        self.binaries = binaries or find_binaries()
        self.name = name
        self.startup_timeout = startup_timeout
        self.admin_token = secrets.token_hex(24)
        self.etcd_port = 0
        self.api_port = 0
        self.processes: dict[str, ManagedProcess] = {}
        self.pki: ClusterPki | None = None
        self.startup_seconds: float | None = None

    # -- public surface ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_cert_path(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def env(self) -> dict[str, str]:
        """KUBECONFIG and PATH (project binaries first) for subprocesses such as kubectl or helm."""
        return {"KUBECONFIG": str(self.kubeconfig_path), "PATH": self.binaries.path_env()}

    def api_client(self) -> ApiClient:
        """A fresh Python client for the admin kubeconfig (does not touch the global default)."""
        return new_client(self.kubeconfig_path)

    def kubectl(
        self,
        *args: str,
        check: bool = False,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the project's kubectl (never the machine's) against this cluster."""
        env = {**os.environ, **self.env()}
        return subprocess.run(
            [str(self.binaries.kubectl), *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info(
            "control plane ready at %s in %.1fs (state %s, kubectl %s)",
            self.api_url,
            self.startup_seconds,
            self.state_dir,
            self.binaries.kubectl,
        )
        return self

    def stop(self) -> None:
        """Stops components in reverse dependency order; no process is left behind."""
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.processes.get(name)
            if proc is not None:
                proc.stop(grace=10.0)
        if self._owns_state_dir and not self.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A fresh cluster every time: stale etcd data would carry objects from an earlier run.
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki = generate_pki(self.state_dir / "pki")
        token_file = self.state_dir / "tokens.csv"
        token_file.write_text(f"{self.admin_token},admin,admin,system:masters\n")
        token_file.chmod(0o600)

        self._start_etcd()
        self._start_apiserver(pki, token_file)
        write_kubeconfig(
            self.kubeconfig_path,
            server=self.api_url,
            ca_cert=pki.ca_cert,
            token=self.admin_token,
            name=self.name,
        )
        kcm_port, scheduler_port = free_port(), free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig_path}",
                f"--authentication-kubeconfig={self.kubeconfig_path}",
                f"--authorization-kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-name={self.name}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.state_dir / 'kube-controller-manager'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={self.kubeconfig_path}",
                f"--authentication-kubeconfig={self.kubeconfig_path}",
                f"--authorization-kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                f"--cert-dir={self.state_dir / 'kube-scheduler'}",
            ],
        )
        for name, port in (("kube-controller-manager", kcm_port), ("kube-scheduler", scheduler_port)):
            self._wait_http_ok(name, f"https://127.0.0.1:{port}/healthz", insecure=True)
        self._wait_default_service_account()

    def _start_etcd(self) -> None:
        self.etcd_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Test data is disposable; fsync dominates etcd latency on small VMs.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_http_ok("etcd", f"{client_url}/health", body_contains='"health":"true"')

    def _start_apiserver(self, pki: ClusterPki, token_file: Path) -> None:
        self.api_port = free_port()
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.state_dir / 'kube-apiserver'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={token_file}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--service-account-issuer={self.api_url}",
                f"--service-account-key-file={pki.service_account_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                # No kubelets or kube-proxy: nothing would serve the kubernetes Service's endpoints.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )
        self._wait_http_ok(
            "kube-apiserver",
            f"{self.api_url}/readyz",
            ca_cert=pki.ca_cert,
            token=self.admin_token,
            body_contains="ok",
        )

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> ManagedProcess:
        log.debug("starting %s: %s", name, " ".join(argv))
        proc = ManagedProcess(name, argv, self.log_path(name), env=env, cwd=self.state_dir)
        self.processes[name] = proc
        return proc

    def _failure(self, name: str) -> str | None:
        """Why startup must give up: a component exited (with the tail of its log)."""
        for proc_name, proc in self.processes.items():
            rc = proc.poll()
            if rc is not None:
                return (
                    f"{proc_name} exited with status {rc} while waiting for {name}; "
                    f"last lines of {proc.log_path}:\n{proc.tail()}"
                )
        return None

    def _wait_http_ok(
        self,
        name: str,
        url: str,
        *,
        ca_cert: Path | None = None,
        insecure: bool = False,
        token: str | None = None,
        body_contains: str | None = None,
    ) -> None:
        last: list[tuple[int, str]] = []

        def ok() -> bool:
            status, body = http_get(url, ca_cert=ca_cert, insecure=insecure, token=token or self.admin_token)
            last[:] = [(status, body)]
            return status == 200 and (body_contains is None or body_contains in body)

        try:
            wait_until(ok, timeout=self.startup_timeout, what=f"{name} at {url}", failed=lambda: self._failure(name))
        except TimeoutError as e:
            proc = self.processes[name]
            raise StartupError(
                f"{e}; last answer {last[0] if last else None}; last lines of {proc.log_path}:\n{proc.tail()}"
            ) from None

    def _wait_default_service_account(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.api_client() as api:
            core = client.CoreV1Api(api)

            def exists() -> bool:
                try:
                    core.read_namespaced_service_account("default", "default")
                    # Pods mount this ConfigMap (the cluster CA) through their service account volume.
                    core.read_namespaced_config_map("kube-root-ca.crt", "default")
                except ApiException as e:
                    if e.status == 404:
                        return False
                    raise
                return True

            with contextlib.suppress(TimeoutError):
                wait_until(
                    exists,
                    timeout=self.startup_timeout,
                    what="the default ServiceAccount",
                    interval=0.2,
                    failed=lambda: self._failure("the default ServiceAccount"),
                )
                return
        proc = self.processes["kube-controller-manager"]
        raise StartupError(
            "timed out waiting for the default ServiceAccount (created by kube-controller-manager); "
            f"last lines of {proc.log_path}:\n{proc.tail()}"
        )
