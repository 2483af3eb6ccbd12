"""The runner pods the operator builds pass the real API server's PodSecurity admission at level
`restricted`: one GPU, and more than one GPU with its memory-backed /dev/shm, with the catalog's
read-only cache claim. Checked with server-side dry-run in a namespace that enforces `restricted`
(the pod is admitted, nothing is scheduled); a hostPath pod is refused there, so the check is live."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from videogen_api import v1alpha1 as api
from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.testing import unique_name
from videogen_operator import manifests
from videogen_operator.catalog import ResolvedModel
from videogen_operator.manifests import CacheMount, JobRef
from videogen_operator.settings import OperatorSettings

pytestmark = [pytest.mark.cluster]


@pytest.fixture
def restricted_namespace(cluster: DevCluster) -> Iterator[str]:
    name = unique_name("restricted")
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }
    created = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(namespace))
    assert created.returncode == 0, created.stderr
    # The runner's ServiceAccount, as the operator makes it (pods naming a missing one are refused).
    account = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifests.build_runner_service_account(name)))
    assert account.returncode == 0, account.stderr
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def runner_pod(namespace: str, gpus: int, *, hostpath: bool = False) -> dict[str, Any]:
    """The pod of the runner Job the operator would make for a catalog model with `gpus` GPUs."""
    ref = JobRef(namespace=namespace, name="pod-security", uid="0f1e2d3c-aaaa-bbbb-cccc-1234567890ab")
    spec = api.VideoGenJobSpec.model_validate(
        {"model": "wan-tiny", "task": "text-to-video", "prompt": "a cat", "seed": 1, "resources": {"gpus": gpus}}
    )
    settings = OperatorSettings(
        s3_bucket="videos",
        model_cache={"type": "hostPath", "host_path": "/srv/models"}
        if hostpath
        else {"type": "pvc", "claim_name": "videogen-models"},
    )
    identity = api.ModelIdentity(revision="r1", digest="sha256:" + "1" * 64)
    mount = CacheMount(
        model=ResolvedModel("wan-tiny", identity, "catalog/wan-tiny/1111111111111111"),
        claim=None if hostpath else settings.model_cache.namespace_claim_name,
    )
    job = manifests.build_job(ref, spec, settings, "abc123", mount=mount)
    template = copy.deepcopy(job["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": f"runner-{gpus}-gpus", "namespace": namespace},
        "spec": template["spec"],
    }


def dry_run(cluster: DevCluster, pod: dict[str, Any]) -> tuple[int, str]:
    result = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod))
    return result.returncode, result.stderr


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_runner_pods_are_admitted_under_pod_security_restricted(
    cluster: DevCluster, restricted_namespace: str, gpus: int
) -> None:
    pod = runner_pod(restricted_namespace, gpus)
    shm = [v for v in pod["spec"]["volumes"] if v["name"] == manifests.SHM_VOLUME]
    assert bool(shm) == (gpus > 1)

    code, stderr = dry_run(cluster, pod)

    assert code == 0, stderr


def test_the_namespace_really_enforces_restricted(cluster: DevCluster, restricted_namespace: str) -> None:
    # The same pod with the node's hostPath cache (the dev/single-node mode) is refused here.
    code, stderr = dry_run(cluster, runner_pod(restricted_namespace, 2, hostpath=True))
    assert code != 0
    assert 'violates PodSecurity "restricted:latest"' in stderr and "hostPath" in stderr, stderr
