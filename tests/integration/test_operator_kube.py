"""The operator's API wrapper against the real API server: 404 means gone, 409 means done."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from videogen_operator.kube import Kube

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
