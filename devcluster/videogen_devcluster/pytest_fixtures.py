"""pytest fixtures for the dev cluster; ``tests/conftest.py`` imports them (``from ... import *``).

One ``DevCluster`` per test session, started piece by piece on first use: tests marked ``cluster`` get the
control plane and the local GPU node, tests marked ``s3`` get the S3 server, and tests that ask for a
fixture without the mark are given it (so ``-m "not cluster"`` deselects them). Everything is torn
down at the end of the session, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .binaries import REPO_ROOT
from .controlplane import ControlPlane
from .devcluster import DevCluster
from .gpunode import LocalGpuNode
from .kubeapi import new_client
from .procs import pid_alive
from .s3 import S3Server
from .testing import unique_name

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api

CLUSTER_FIXTURES = frozenset(
    {
        "cluster",
        "devcluster",
        "control_plane",
        "gpu_node",
        "k8s_api",
        "kubectl",
        "namespace",
        "core_v1",
        "batch_v1",
        "videogen_crds",
    }
)
S3_FIXTURES = frozenset({"s3", "devcluster"})

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & CLUSTER_FIXTURES and not item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.cluster)
        if names & S3_FIXTURES and not item.get_closest_marker("s3"):
            item.add_marker(pytest.mark.s3)


# The session's cluster, for the report hook (hooks cannot request fixtures).
_session_clusters: list[DevCluster] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    funcargs = getattr(item, "funcargs", {})
    if report.when == "call" and report.failed and "namespace" in funcargs and _session_clusters:
        node = _session_clusters[0].gpu_node
        if node is not None:
            # What the pods printed is usually the explanation of the failure.
            for path in pod_log_paths(node, str(funcargs["namespace"])):
                content = path.read_text(errors="replace")[-20000:]
                report.sections.append((f"pod log {path.relative_to(node.logs_dir)}", content))
    return report


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    # Output capture would swallow the line; startup facts belong on the terminal.
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def _devcluster_session(pytestconfig: pytest.Config) -> Iterator[DevCluster]:
    """Created (not started) once; pieces start on demand; all started pieces stop at the end."""
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    # Uncaptured, so that a first build of the binaries (tens of minutes) shows its progress.
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        dc = DevCluster(with_s3=False, with_gpu_node=False)
    _session_clusters.append(dc)
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "PATH")}
    try:
        yield dc
    finally:
        if dc.gpu_node is not None:
            dc.gpu_node.stop()
        if dc.s3 is not None:
            dc.s3.stop()
        if dc.control_plane.processes:
            dc.control_plane.stop()
        shutil.rmtree(dc.state_dir, ignore_errors=True)
        _session_clusters.remove(dc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def control_plane(_devcluster_session: DevCluster, pytestconfig: pytest.Config) -> ControlPlane:
    dc = _devcluster_session
    cp = dc.control_plane
    if not cp.processes:
        cp.start()
        from kubernetes import config

        # Code under test that uses the library's default client, or shells out, finds this cluster.
        config.load_kube_config(config_file=str(cp.kubeconfig_path))  # type: ignore[no-untyped-call]
        os.environ["KUBECONFIG"] = str(cp.kubeconfig_path)
        os.environ["PATH"] = dc.binaries.path_env()
        _say(
            pytestconfig,
            f"\ndevcluster: control plane {cp.api_url} ready in {cp.startup_seconds:.1f}s; "
            f"kubectl is {shutil.which('kubectl')}; state in {dc.state_dir}",
        )
    return cp


@pytest.fixture(scope="session")
def gpu_node(_devcluster_session: DevCluster, control_plane: ControlPlane, pytestconfig: pytest.Config) -> LocalGpuNode:
    dc = _devcluster_session
    if dc.gpu_node is None:
        node = LocalGpuNode(control_plane.kubeconfig_path, state_dir=dc.state_dir / "node")
        node.start()
        dc.gpu_node = node
        mode = "private mount namespaces" if node.private_mounts else "NO mount namespaces"
        _say(pytestconfig, f"devcluster: GPU node {node.name} ready ({mode}); pod logs in {node.logs_dir}")
    return dc.gpu_node


@pytest.fixture(scope="session")
def s3(_devcluster_session: DevCluster, pytestconfig: pytest.Config) -> S3Server:
    dc = _devcluster_session
    if dc.s3 is None:
        server = S3Server(dc.state_dir / "s3", binaries=dc.binaries)
        server.start()
        dc.s3 = server
        _say(pytestconfig, f"devcluster: S3 {server.endpoint_url} ready in {server.startup_seconds:.1f}s")
    return dc.s3


@pytest.fixture(scope="session")
def cluster(_devcluster_session: DevCluster, control_plane: ControlPlane, gpu_node: LocalGpuNode) -> DevCluster:
    """The session's DevCluster with the control plane and the local GPU node running."""
    return _devcluster_session


@pytest.fixture(scope="session")
def devcluster(cluster: DevCluster, s3: S3Server) -> DevCluster:
    """The session's DevCluster with everything running (control plane, GPU node, S3)."""
    return cluster


@pytest.fixture(autouse=True)
def _devcluster_for_marked_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("cluster"):
        request.getfixturevalue("cluster")
    if request.node.get_closest_marker("s3"):
        request.getfixturevalue("s3")
    if request.node.get_closest_marker("mounts"):
        node = request.getfixturevalue("gpu_node")
        if not node.private_mounts:
            pytest.skip(
                "needs root (or CAP_SYS_ADMIN): the local GPU node cannot give pods private mount namespaces, "
                "so volumes (model cache, config, service-account token) are not at their mount paths"
            )


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> Iterator[ApiClient]:
    """A Python ApiClient for the admin kubeconfig."""
    api = new_client(control_plane.kubeconfig_path)
    with api:
        yield api


@pytest.fixture(scope="session")
def core_v1(k8s_api: ApiClient) -> CoreV1Api:
    from kubernetes import client

    return client.CoreV1Api(k8s_api)


@pytest.fixture(scope="session")
def batch_v1(k8s_api: ApiClient) -> BatchV1Api:
    from kubernetes import client

    return client.BatchV1Api(k8s_api)


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """``kubectl(*args, check=True, input=None)`` with the project's kubectl against the session cluster."""

    def run(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = control_plane.kubectl(*args, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: DevCluster, core_v1: CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test; on failure the logs of its pods are attached to the report."""
    from kubernetes import client

    core = core_v1
    name = unique_name(request.node.name.lower().replace("_", "-")[:40].strip("-[]"))
    name = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in name).strip("-")[:60]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    release_namespace(core, cluster.gpu_node, name)
    # Not waited for: the namespace controller finishes in the background.
    core.delete_namespace(name, propagation_policy="Background")


def release_namespace(core: CoreV1Api, node: LocalGpuNode | None, namespace: str, timeout: float = 60) -> None:
    """Stop everything a test left running in `namespace`, and wait until it is gone: a test that
    failed mid-run must not leave pods holding the node's GPUs (and CPUs) for the next test.
    Jobs go first, so that their controller does not replace the pods being killed."""
    from kubernetes import client

    client.BatchV1Api(core.api_client).delete_collection_namespaced_job(namespace, propagation_policy="Background")
    names = [str(p.metadata.name) for p in core.list_namespaced_pod(namespace).items if p.metadata]
    if not names:
        return
    pids = [pid for name in names for pid in (node.pids(namespace, name) if node else {}).values()]
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not core.list_namespaced_pod(namespace).items and not any(pid_alive(pid) for pid in pids):
            return
        time.sleep(0.2)
    raise RuntimeError(f"pods of namespace {namespace} still hold the node after {timeout:.0f}s")


def pod_log_paths(node: LocalGpuNode, namespace: str) -> list[Path]:
    return sorted((node.logs_dir / namespace).glob("*/*.log"))


@pytest.fixture(scope="session")
def videogen_crds(control_plane: ControlPlane) -> None:
    """The repository's CRDs (``crds/*.yaml``) installed and Established in the session cluster."""
    crd_dir = REPO_ROOT / "crds"
    result = control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_dir))
    if result.returncode != 0:
        raise RuntimeError(f"installing CRDs from {crd_dir} failed:\n{result.stderr}")
    waited = control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    if waited.returncode != 0:
        raise RuntimeError(f"CRDs did not become Established:\n{waited.stderr}")
