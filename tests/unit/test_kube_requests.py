"""Kube's direct requests (the burst path bypasses the generated API methods): paths, bodies,
auth, and how answers map to meaning. The transport is faked at the client's call_api, below
which nothing of ours runs; the client's own serialisation of the request is real."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from videogen_operator.kube import ConflictError, Kube, api_message


class Answer:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict", 422: "Unprocessable"}[status]
        self.data = json.dumps(body).encode()
        self.headers: dict[str, str] = {}

    def read(self) -> bytes:
        return self.data


class Transport:
    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []

    def __call__(self, method: str, url: str, headers: dict[str, str], body: Any, post: Any, **kw: Any) -> Answer:
        assert kw["_request_timeout"], "every request carries a timeout"
        self.sent.append((method, url, headers, body))
        return self.answers.pop(0)


def kube(*answers: Answer) -> tuple[Kube, Transport]:
    config = client.Configuration(host="https://api.example:6443", api_key={"authorization": "Bearer t0ken"})
    api_client = client.ApiClient(config)
    transport = Transport(*answers)
    api_client.call_api = transport  # type: ignore[method-assign]
    return Kube(api_client), transport


def test_a_job_is_posted_as_given_with_auth_and_the_created_object_comes_back() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "team-a"}, "spec": {}}
    k, t = kube(Answer(201, {**job, "metadata": {**job["metadata"], "uid": "u1"}}))
    created = k.create(job)
    assert created is not None and created["metadata"]["uid"] == "u1"
    ((method, url, headers, body),) = t.sent
    assert (method, url) == ("POST", "https://api.example:6443/apis/batch/v1/namespaces/team-a/jobs")
    assert headers["authorization"] == "Bearer t0ken" and headers["Content-Type"] == "application/json"
    assert body is job


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Secret", "/api/v1/namespaces/ns/secrets"),
        ("ServiceAccount", "/api/v1/namespaces/ns/serviceaccounts"),
        ("Role", "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles"),
        ("RoleBinding", "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings"),
        ("Event", "/api/v1/namespaces/ns/events"),
        ("PersistentVolume", "/api/v1/persistentvolumes"),
    ],
)
def test_each_kind_goes_to_its_collection(kind: str, path: str) -> None:
    k, t = kube(Answer(201, {}))
    k.create({"kind": kind, "metadata": {"name": "x", "namespace": "ns"}})
    assert t.sent[0][1] == "https://api.example:6443" + path


def test_already_there_is_none_and_a_refusal_keeps_the_api_servers_words() -> None:
    k, _ = kube(Answer(409, {"message": "exists"}))
    assert k.create({"kind": "Secret", "metadata": {"name": "x", "namespace": "ns"}}) is None
    k, _ = kube(Answer(422, {"message": 'Job.batch "x" is invalid: spec.template: forbidden'}))
    with pytest.raises(ApiException) as raised:
        k.create({"kind": "Job", "metadata": {"name": "x", "namespace": "ns"}})
    assert raised.value.status == 422
    assert api_message(raised.value) == 'Job.batch "x" is invalid: spec.template: forbidden'


def test_a_status_write_is_a_conditional_merge_patch_of_the_subresource() -> None:
    k, t = kube(Answer(200, {"metadata": {"resourceVersion": "8"}, "status": {"phase": "Queued"}}))
    written = k.patch_vgj_status("ns", "a", {"phase": "Queued"}, "7")
    assert written == {"metadata": {"resourceVersion": "8"}, "status": {"phase": "Queued"}}
    ((method, url, headers, body),) = t.sent
    assert (method, url) == (
        "PATCH",
        "https://api.example:6443/apis/videogen.dev/v1alpha1/namespaces/ns/videogenjobs/a/status",
    )
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert body == {"status": {"phase": "Queued"}, "metadata": {"resourceVersion": "7"}}


def test_a_stale_write_is_a_conflict_and_a_gone_object_is_none() -> None:
    k, _ = kube(Answer(409, {"message": "the object has been modified"}), Answer(404, {"message": "not found"}))
    with pytest.raises(ConflictError):
        k.patch_vgj_status("ns", "a", {"phase": "Running"}, "7")
    assert k.set_vgj_finalizers("ns", "a", [], "7") is None


def test_a_grant_secret_is_deleted_by_name_and_gone_already_is_fine() -> None:
    k, t = kube(Answer(200, {}), Answer(404, {"message": "not found"}))
    k.delete_secret("ns", "a-1234-grant")
    k.delete_secret("ns", "a-1234-grant")
    assert [(m, u) for m, u, _, _ in t.sent] == [
        ("DELETE", "https://api.example:6443/api/v1/namespaces/ns/secrets/a-1234-grant")
    ] * 2


def test_the_start_up_listing_comes_page_by_page() -> None:
    k, t = kube(
        Answer(200, {"items": [{"n": 1}, {"n": 2}], "metadata": {"continue": "tok+1"}}),
        Answer(200, {"items": [{"n": 3}], "metadata": {}}),
    )
    pages = k.list_vgjs(None, page=2)
    assert next(pages) == [{"n": 1}, {"n": 2}] and len(t.sent) == 1, "one page in memory at a time"
    assert list(pages) == [[{"n": 3}]]
    assert [u for _, u, _, _ in t.sent] == [
        "https://api.example:6443/apis/videogen.dev/v1alpha1/videogenjobs?limit=2",
        "https://api.example:6443/apis/videogen.dev/v1alpha1/videogenjobs?limit=2&continue=tok%2B1",
    ]


def test_every_thread_that_calls_the_api_server_at_once_has_a_pooled_connection() -> None:
    # A request beyond the pool opens a connection that is discarded afterwards: under a burst each
    # costs a TLS handshake on both sides. The S3 pool covers the starters and the reconciles.
    from videogen_operator import dispatch, handlers, kube, reconcile
    from videogen_operator.results import ObjectStore
    from videogen_operator.settings import OperatorSettings

    at_once = (
        handlers.RECONCILE_THREADS
        + dispatch.URGENT_THREADS
        + reconcile.ADMIT_PARALLELISM
        + reconcile.QUEUE_WRITERS
        + kube.EVENT_LANES
    )
    assert at_once <= kube.CONNECTION_POOL_SIZE

    store = ObjectStore(OperatorSettings(s3_bucket="videos", s3_endpoint="http://127.0.0.1:1"))
    s3_at_once = reconcile.ADMIT_PARALLELISM + handlers.RECONCILE_THREADS + dispatch.URGENT_THREADS
    assert store._s3.meta.config.max_pool_connections >= s3_at_once
