"""The model loader's progress on a real API server: merge-patched onto the VideoGenModel's status with
nothing more than get/patch of videogenmodels/status, and never onto a namesake with another uid."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from runner_support import TinyModels, loader_spec, publish_model

from videogen_api import catalog
from videogen_api import v1alpha1 as api
from videogen_devcluster.kubeconfig import write_kubeconfig
from videogen_devcluster.testing import unique_name

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api
    from mypy_boto3_s3 import S3Client

    from videogen_devcluster import ControlPlane, S3Server

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


@pytest.fixture
def loader_kubeconfig(
    control_plane: ControlPlane, k8s_api: ApiClient, core_v1: CoreV1Api, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """A ServiceAccount that may only get and patch videogenmodels/status, as the loader's."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(k8s_api)
    name = f"loader-{namespace}"[:63]
    core_v1.create_namespaced_service_account(namespace, {"metadata": {"name": "loader"}})
    rbac.create_cluster_role(
        {
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": [api.GROUP],
                    "resources": [f"{catalog.MODEL_PLURAL}/status"],
                    "verbs": ["get", "patch"],
                }
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "loader", "namespace": namespace}],
        }
    )
    token = core_v1.create_namespaced_service_account_token(
        "loader", namespace, {"spec": {"audiences": [], "expirationSeconds": 3600}}
    ).status.token
    try:
        yield write_kubeconfig(
            tmp_path / "loader-kubeconfig",
            server=control_plane.api_url,
            ca_cert=control_plane.ca_cert_path,
            token=token,
            name="loader",
        )
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


@pytest.fixture
def model(k8s_api: ApiClient, videogen_crds: None, bucket: str) -> Iterator[dict[str, Any]]:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api)
    name = unique_name("wan-tiny")
    body = {
        "apiVersion": api.API_VERSION,
        "kind": catalog.MODEL_KIND,
        "metadata": {"name": name},
        "spec": {"source": f"s3://{bucket}/models/wan"},
    }
    created: dict[str, Any] = custom.create_cluster_custom_object(api.GROUP, api.VERSION, catalog.MODEL_PLURAL, body)
    yield created
    custom.delete_cluster_custom_object(api.GROUP, api.VERSION, catalog.MODEL_PLURAL, name)


def run_loader(env: dict[str, str], spec: catalog.LoaderSpec) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("videogen-model-loader")
    full = {**env, catalog.ENV_LOADER_SPEC: spec.model_dump_json(by_alias=True)}
    return subprocess.run([str(exe), "fetch"], env=full, capture_output=True, text=True, timeout=120, check=False)


def status_of(k8s_api: ApiClient, name: str) -> dict[str, Any]:
    from kubernetes import client

    body = client.CustomObjectsApi(k8s_api).get_cluster_custom_object(
        api.GROUP, api.VERSION, catalog.MODEL_PLURAL, name
    )
    status: dict[str, Any] = body.get("status") or {}
    return status


@pytest.fixture
def env(s3: S3Server, loader_kubeconfig: Path, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOGEN_", "AWS_", "KUBECONFIG", "HF_"))}
    return {
        **base,
        **s3.env(),
        "KUBECONFIG": str(loader_kubeconfig),
        "VIDEOGEN_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }


def test_progress_lands_on_the_models_status(
    k8s_api: ApiClient,
    model: dict[str, Any],
    env: dict[str, str],
    s3_client: S3Client,
    bucket: str,
    tiny_models: TinyModels,
    tmp_path: Path,
) -> None:
    publish_model(s3_client, tiny_models.wan_t2v, f"s3://{bucket}/models/wan")
    name, uid = model["metadata"]["name"], model["metadata"]["uid"]
    spec = loader_spec(name, f"s3://{bucket}/models/wan", tmp_path / "cache").model_copy(update={"uid": uid})

    proc = run_loader(env, spec)

    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "progress write failed" not in proc.stderr, "get/patch of videogenmodels/status is enough"
    result = catalog.LoaderResult.model_validate_json(proc.stdout.strip().splitlines()[-1])
    progress = catalog.ModelProgress.model_validate(status_of(k8s_api, name)["progress"])
    assert (progress.files_done, progress.files_total, progress.percent) == (result.file_count, result.file_count, 100)
    assert progress.bytes_done == progress.bytes_total == result.size_bytes
    assert progress.summary and progress.summary.startswith(
        f"downloading {result.file_count}/{result.file_count} files"
    )
    assert progress.updated_at is not None


def test_a_namesake_with_another_uid_is_left_alone(
    k8s_api: ApiClient,
    model: dict[str, Any],
    env: dict[str, str],
    s3_client: S3Client,
    bucket: str,
    tiny_models: TinyModels,
    tmp_path: Path,
) -> None:
    publish_model(s3_client, tiny_models.wan_t2v, f"s3://{bucket}/models/wan")
    name = model["metadata"]["name"]
    # A loader of a model that was deleted and created again under the same name.
    spec = loader_spec(name, f"s3://{bucket}/models/wan", tmp_path / "cache")

    proc = run_loader(env, spec)

    assert proc.returncode == 0, "progress is a convenience; the fetch itself succeeds"
    assert "progress write failed" in proc.stderr and "not this loader's" in proc.stderr
    assert "progress" not in status_of(k8s_api, name)
