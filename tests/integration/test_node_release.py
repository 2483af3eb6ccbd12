"""A test that fails mid-run cannot leave the local GPU node occupied for the next one: the
`namespace` fixture's teardown stops the namespace's Jobs and pods and waits for their processes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.procs import pid_alive
from videogen_devcluster.pytest_fixtures import release_namespace
from videogen_devcluster.testing import python_pod

pytestmark = pytest.mark.cluster


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_left_over_job_is_stopped_and_its_gpus_freed(
    cluster: DevCluster, core_v1: Any, batch_v1: Any, namespace: str
) -> None:
    node = cluster.gpu_node
    assert node is not None
    gpus = node.gpus
    # What a failed test leaves: a Job whose pod holds every GPU of the node and would run for an hour.
    pod = python_pod("hog", "import time; time.sleep(3600)", gpus=gpus)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "left-over"},
        "spec": {"backoffLimit": 3, "template": {"spec": pod["spec"]}},
    }
    batch_v1.create_namespaced_job(namespace, job)
    name = wait_for(lambda: next((p.metadata.name for p in core_v1.list_namespaced_pod(namespace).items), None))
    pid = wait_for(lambda: node.container_pid(namespace, name, "main"))

    release_namespace(core_v1, node, namespace)

    assert not pid_alive(pid)
    assert core_v1.list_namespaced_pod(namespace).items == []
    assert batch_v1.list_namespaced_job(namespace).items == []
    # The GPUs are free: a pod asking for all of them starts at once.
    core_v1.create_namespaced_pod(namespace, python_pod("next", "print('ok')", gpus=gpus))
    wait_for(lambda: core_v1.read_namespaced_pod("next", namespace).status.phase == "Succeeded")
