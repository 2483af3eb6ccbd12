"""The operator's API wrapper against the real API server: 404 means gone, 409 means done; and
a Kueue job's grant renewed over its Secret, against the real API server and S3 (versitygw)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from videogen_api import v1alpha1 as api
from videogen_operator import credentials, manifests, policy
from videogen_operator.kube import Kube
from videogen_operator.manifests import JobRef
from videogen_operator.outputs import Outputs
from videogen_operator.results import ObjectStore
from videogen_operator.settings import OperatorSettings

pytestmark = pytest.mark.cluster


@pytest.fixture
def kube(k8s_api: client.ApiClient) -> Kube:
    return Kube(k8s_api)


def test_missing_objects_read_as_none(kube: Kube, namespace: str) -> None:
    assert kube.get_job(namespace, "nope") is None
    assert kube.get_secret(namespace, "nope") is None
    kube.delete_job(namespace, "nope")  # deleting what is gone is not an error


def test_creating_twice_is_idempotent(kube: Kube, namespace: str) -> None:
    sa: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "twice", "namespace": namespace},
    }
    assert kube.create_if_missing(sa) is True
    assert kube.create_if_missing(sa) is False


def test_priority_classes_are_looked_up_and_absence_is_not_remembered(
    kube: Kube, k8s_api: client.ApiClient, request: pytest.FixtureRequest
) -> None:
    name = f"vgj-test-{request.node.name[-8:].lower().strip('_-')}-prio"
    scheduling = client.SchedulingV1Api(k8s_api)
    assert kube.priority_class_exists(name) is False
    assert kube.priority_of(name) == 0
    scheduling.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name=name), value=1000))
    try:
        assert kube.priority_class_exists(name) is True
        assert kube.priority_of(name) == 1000
        assert kube.priority_of(None) == 0
    finally:
        scheduling.delete_priority_class(name)


def test_a_renewed_grant_goes_over_the_secret_and_leaves_one_multipart_upload(
    devcluster: Any, videogen_crds: None, kube: Kube, core_v1: client.CoreV1Api, namespace: str, monkeypatch: Any
) -> None:
    for key, value in devcluster.s3.env().items():
        monkeypatch.setenv(key, value)
    bucket = "grants"
    settings = OperatorSettings(s3_bucket=bucket, s3_endpoint=devcluster.s3.endpoint_url)
    store = ObjectStore(settings)
    if bucket not in [b["Name"] for b in store._s3.list_buckets().get("Buckets", [])]:
        store._s3.create_bucket(Bucket=bucket)
    raw = {"model": "hf://org/tiny", "task": "text-to-video", "prompt": "a cat", "seed": 1, "queueName": "gpu"}
    body = client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": "held"}, "spec": raw},
    )
    ref = JobRef(namespace, "held", body["metadata"]["uid"])  # the grant Secret's owner must exist
    spec = api.VideoGenJobSpec.model_validate(raw)
    outputs = Outputs(kube, settings, store)
    issued = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    outputs.ensure_grant(ref, spec, "abc", issued)  # the first grant, as a start makes it
    where = policy.output_location(namespace, "held", spec, settings, "abc")

    def read() -> dict[str, Any]:
        secret = core_v1.read_namespaced_secret(manifests.grant_secret_name(ref), namespace)
        return dict(json.loads(base64.b64decode(secret.data[api.GRANT_SECRET_KEY])))

    def uploads() -> list[str]:
        listing = store._s3.list_multipart_uploads(Bucket=bucket, Prefix=where.key)
        return [u["UploadId"] for u in listing.get("Uploads", []) if u["Key"] == where.key]

    first = read()
    assert uploads() == [first["multipart"]["uploadId"]]
    later = issued + timedelta(hours=6)
    expires = outputs.renew_grant(ref, spec, "abc", later)
    assert expires == later + timedelta(seconds=credentials.grant_lifetime(spec, settings))
    renewed = read()
    assert renewed["expiresAt"] == expires.isoformat() != first["expiresAt"]
    assert uploads() == [renewed["multipart"]["uploadId"]] != [first["multipart"]["uploadId"]]
    # A Secret gone meanwhile is made again.
    core_v1.delete_namespaced_secret(manifests.grant_secret_name(ref), namespace)
    outputs.renew_grant(ref, spec, "abc", later)
    assert read()["multipart"]["uploadId"] in uploads()
