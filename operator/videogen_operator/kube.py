"""The operator's few API calls, with Kubernetes' error codes turned into meaning.

Everything is read and written as plain dicts in wire format (camelCase), the
same shape the pure builders and observers use. 409 on create means the object
is already there (idempotent children); 404 on read means it is gone.

Every call carries a timeout (a stalled connection must never hold a job, the
admission pass or the sweep for good). Reads of VideoGenJobs, Jobs and Pods
normally come from the watch-fed views (views.py); the GETs here are for the
rare cases that must not trust a cache (is a Job really gone?).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import socket
import zlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_operator.phases import iso, now_utc

log = logging.getLogger(__name__)
T = TypeVar("T")
REPORTING_COMPONENT = "videogen-operator"
# (connect, read) seconds for every request: long enough for a loaded API server,
# short enough that one stalled connection costs one retry, not the operator.
REQUEST_TIMEOUT = (5.0, 30.0)
MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"
EVENT_LANES = 4


class ConflictError(Exception):
    """409 on a conditional write: someone wrote the object after we read it."""


def is_transient(err: BaseException) -> bool:
    """Worth retrying with backoff: throttling, server errors, timeouts and broken connections."""
    if isinstance(err, ApiException):
        return err.status in (0, 408, 429) or (err.status or 0) >= 500
    return isinstance(err, (urllib3.exceptions.HTTPError, TimeoutError, ConnectionError, OSError))


def api_message(err: ApiException) -> str:
    """The API server's own explanation (its Status.message), else the HTTP reason."""
    try:
        data = json.loads(err.body or "")
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    except (TypeError, ValueError):
        pass
    return f"{err.status} {err.reason}"


def describe_error(err: BaseException) -> str:
    """An error as a status message or an Event says it: for an API error the status code and the
    API server's own explanation (the client's str() is mostly HTTP headers, which pushed the
    explanation past any length limit), else the exception's text."""
    if isinstance(err, ApiException):
        code = f"{err.status} {err.reason}"
        message = api_message(err)
        return message if message == code else f"{code}: {message}"
    return str(err) or type(err).__name__


def is_refusal(err: BaseException) -> bool:
    """The API server said no to this object (invalid, forbidden, quota, webhook): retrying will not help."""
    return (
        isinstance(err, ApiException)
        and err.status is not None
        and 400 <= err.status < 500
        and (err.status not in (404, 408, 409, 429))
    )


# Reconciles (32 routine + 8 urgent threads), starters (64), queue-status writers (8) and event
# posts (EVENT_LANES) run at once: one pooled connection each. A smaller pool discards and reopens
# connections under load, and each new one costs a TLS handshake on the operator's CPU and the API
# server's.
CONNECTION_POOL_SIZE = 120


def load_client_config() -> None:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    client.Configuration.set_default(configuration)


def may_watch(group: str, resource: str, namespaces: list[str] | None) -> bool:
    """Whether this identity may list and watch `resource` cluster-wide (`namespaces` None) or in each
    namespace. SelfSubjectAccessReviews answer from RBAC alone, whether or not the resource is served."""
    authz: Any = client.AuthorizationV1Api()
    targets: list[str | None] = list(namespaces) if namespaces else [None]
    for namespace in targets:
        for verb in ("list", "watch"):
            attributes = {"group": group, "resource": resource, "verb": verb}
            if namespace:
                attributes["namespace"] = namespace
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            }
            answer = authz.create_self_subject_access_review(review, _request_timeout=REQUEST_TIMEOUT)
            if not answer.status.allowed:
                return False
    return True


def _unless_missing(call: Callable[[], T]) -> T | None:
    """The call's result, or None when the API answers 404 (the object is gone)."""
    try:
        return call()
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _json(response: Any) -> dict[str, Any]:
    data = json.loads(response.data)
    assert isinstance(data, dict)
    return data


# Where each kind the operator creates lives (namespaced unless the path has no {ns}).
_COLLECTIONS = {
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "PersistentVolume": "/api/v1/persistentvolumes",
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
    "Event": "/api/v1/namespaces/{ns}/events",
}


def _collection_of(obj: dict[str, Any]) -> str:
    """The API path of the collection `obj` is created in."""
    return _COLLECTIONS[obj["kind"]].format(ns=quote(obj["metadata"].get("namespace", ""), safe=""))


def _vgj_path(namespace: str, name: str) -> str:
    return f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{quote(namespace, safe='')}/{api.PLURAL}/{quote(name, safe='')}"


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api_client = api_client or client.ApiClient()
        # Typed as Any on purpose: every call here passes wire-format dicts,
        # which the client accepts but its generated model signatures do not admit.
        self.core: Any = client.CoreV1Api(self.api_client)
        self.batch: Any = client.BatchV1Api(self.api_client)
        self.custom: Any = client.CustomObjectsApi(self.api_client)
        self.rbac: Any = client.RbacAuthorizationV1Api(self.api_client)
        self.scheduling: Any = client.SchedulingV1Api(self.api_client)
        self.apps: Any = client.AppsV1Api(self.api_client)
        self._priorities: dict[str, int] = {}
        self._instance = socket.gethostname()
        # Events are posted off the reconcile's path: a courtesy must not add its latency
        # to every transition (nor stall one when the API server is slow). One single-thread
        # lane per job (by hash), so one job's Events keep their order.
        self._event_lanes = [
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"events-{i}")
            for i in range(EVENT_LANES)
        ]

    def _request(self, method: str, path: str, body: Any = None, *, content_type: str = JSON) -> dict[str, Any]:
        """One request on the burst path, straight through the client's connection pool and auth.

        The generated API methods validate every argument with pydantic and build typed models
        of the body (a Job's whole pod template) only to serialise them again: for the objects
        made for every job, that was more of the operator's CPU than the request itself."""
        method, url, headers, _, _ = self.api_client.param_serialize(
            method,
            path,
            header_params={"Accept": JSON, "Content-Type": content_type},
            auth_settings=["BearerToken"],
        )
        response: Any = self.api_client.call_api(method, url, headers, body, None, _request_timeout=REQUEST_TIMEOUT)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return _json(response)

    # ------------------------------------------------------------------ VideoGenJobs

    def get_vgj(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = _unless_missing(
            lambda: self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        )
        return dict(obj) if obj is not None else None

    def list_vgjs(self, namespaces: list[str] | None, page: int = 500) -> Iterator[list[dict[str, Any]]]:
        """Every VideoGenJob (cluster-wide with None, else in each namespace), one page at a time (the
        caller keeps what it needs of each, so thousands of whole objects are never held at once):
        the operator's start-up listing (views.py says why it is not kopf's)."""
        bases = (
            [f"/apis/{api.GROUP}/{api.VERSION}/{api.PLURAL}"]
            if namespaces is None
            else [f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{quote(ns, safe='')}/{api.PLURAL}" for ns in namespaces]
        )
        for base in bases:
            token = ""
            while True:
                query = urlencode({"limit": page, **({"continue": token} if token else {})})
                found = self._request("GET", f"{base}?{query}")
                yield list(found.get("items") or [])
                token = str((found.get("metadata") or {}).get("continue") or "")
                if not token:
                    break

    def patch_vgj_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource; the object as written, or None when it is gone.

        With `resource_version` the write is conditional (the API server compares it and
        answers 409 when the object changed since): a stale writer never overwrites a newer
        phase. Raises Conflict then."""
        return self._patch_vgj(namespace, name, {"status": status}, resource_version, status_subresource=True)

    def set_vgj_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any] | None:
        """Replace metadata.finalizers, conditional on the resourceVersion they were computed from."""
        return self._patch_vgj(namespace, name, {"metadata": {"finalizers": finalizers}}, resource_version)

    def _patch_vgj(
        self,
        namespace: str,
        name: str,
        body: dict[str, Any],
        resource_version: str | None,
        *,
        status_subresource: bool = False,
    ) -> dict[str, Any] | None:
        """A merge patch of a VideoGenJob; None when it is gone, ConflictError when it changed since."""
        if resource_version:
            body = {**body, "metadata": {**body.get("metadata", {}), "resourceVersion": resource_version}}
        path = _vgj_path(namespace, name) + ("/status" if status_subresource else "")
        try:
            return _unless_missing(lambda: self._request("PATCH", path, body, content_type=MERGE_PATCH))
        except ApiException as err:
            if err.status == 409:
                raise ConflictError(f"{namespace}/{name} changed since resourceVersion {resource_version}") from err
            raise

    # ------------------------------------------------------------------ Jobs and pods

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _unless_missing(
            lambda: _json(
                self.batch.read_namespaced_job(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                )
            )
        )

    def set_job_suspended(self, namespace: str, name: str, suspend: bool) -> None:
        self.batch.patch_namespaced_job(
            name, namespace, {"spec": {"suspend": suspend}}, _request_timeout=REQUEST_TIMEOUT
        )

    def delete_job(self, namespace: str, name: str) -> None:
        _unless_missing(
            lambda: self.batch.delete_namespaced_job(
                name,
                namespace,
                body=client.V1DeleteOptions(propagation_policy="Background"),
                _request_timeout=REQUEST_TIMEOUT,
            )
        )

    # ------------------------------------------------------------------ children

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create `obj`; the created object, or None if it already existed (409)."""
        try:
            return self._request("POST", _collection_of(obj), obj)
        except ApiException as err:
            if err.status == 409:
                return None
            raise

    def create_if_missing(self, obj: dict[str, Any]) -> bool:
        """Create `obj`; True if created, False if it already existed (409)."""
        return self.create(obj) is not None

    # ------------------------------------------------------------------ the model catalog

    def get_model(self, name: str) -> dict[str, Any] | None:
        obj = _unless_missing(
            lambda: self.custom.get_cluster_custom_object(
                api.GROUP, api.VERSION, cat.MODEL_PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        )
        return dict(obj) if obj is not None else None

    def patch_model_status(
        self, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any] | None:
        """Merge-patch a VideoGenModel's status (conditional on `resource_version` when given)."""
        return self._patch_model(name, {"status": status}, resource_version, status_subresource=True)

    def set_model_finalizers(self, name: str, finalizers: list[str], resource_version: str) -> dict[str, Any] | None:
        """Replace metadata.finalizers, conditional on the resourceVersion they were computed from."""
        return self._patch_model(name, {"metadata": {"finalizers": finalizers}}, resource_version)

    def _patch_model(
        self, name: str, body: dict[str, Any], resource_version: str | None, *, status_subresource: bool = False
    ) -> dict[str, Any] | None:
        """A merge patch of a VideoGenModel; None when it is gone, ConflictError when it changed since."""
        if resource_version:
            body = {**body, "metadata": {**body.get("metadata", {}), "resourceVersion": resource_version}}
        patch = (
            self.custom.patch_cluster_custom_object_status
            if status_subresource
            else self.custom.patch_cluster_custom_object
        )
        try:
            patched = _unless_missing(
                lambda: patch(
                    api.GROUP,
                    api.VERSION,
                    cat.MODEL_PLURAL,
                    name,
                    body,
                    _content_type=MERGE_PATCH,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as err:
            if err.status == 409:
                raise ConflictError(f"VideoGenModel {name} changed since resourceVersion {resource_version}") from err
            raise
        return dict(patched) if patched is not None else None

    def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        found = _json(
            self.core.list_namespaced_pod(
                namespace, label_selector=label_selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        )
        return list(found.get("items") or [])

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        found = _json(
            self.batch.list_namespaced_job(
                namespace, label_selector=label_selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        )
        return list(found.get("items") or [])

    def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _unless_missing(
            lambda: _json(
                self.core.read_namespaced_persistent_volume_claim(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                )
            )
        )

    def get_pv(self, name: str) -> dict[str, Any] | None:
        return _unless_missing(
            lambda: _json(
                self.core.read_persistent_volume(name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
            )
        )

    def delete_pv(self, name: str) -> None:
        _unless_missing(lambda: self.core.delete_persistent_volume(name, _request_timeout=REQUEST_TIMEOUT))

    def get_daemonset(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _unless_missing(
            lambda: _json(
                self.apps.read_namespaced_daemon_set(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                )
            )
        )

    def patch_daemonset(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch a DaemonSet (lists such as a container's env are replaced whole); None when it is gone."""
        return _unless_missing(
            lambda: _json(
                self.apps.patch_namespaced_daemon_set(
                    name,
                    namespace,
                    body,
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        )

    def delete_daemonset(self, namespace: str, name: str) -> None:
        _unless_missing(
            lambda: self.apps.delete_namespaced_daemon_set(
                name,
                namespace,
                body=client.V1DeleteOptions(propagation_policy="Background"),
                _request_timeout=REQUEST_TIMEOUT,
            )
        )

    def post_model_event(self, model: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """An Event on a (cluster-scoped) VideoGenModel, in the default namespace as kubectl expects."""
        meta = model["metadata"]
        now = iso(now_utc())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": "default"},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": cat.MODEL_KIND,
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": REPORTING_COMPONENT},
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event("default", event, _request_timeout=REQUEST_TIMEOUT)
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            why = err.reason if isinstance(err, ApiException) else str(err)
            log.warning("could not post event %s on VideoGenModel %s: %s", reason, meta["name"], why)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _unless_missing(
            lambda: _json(
                self.core.read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                )
            )
        )

    def _priority_value(self, class_name: str) -> int | None:
        """A PriorityClass's value, or None when it does not exist (absence is not cached:
        the class may be created later)."""
        if class_name not in self._priorities:
            found = _unless_missing(
                lambda: self.scheduling.read_priority_class(class_name, _request_timeout=REQUEST_TIMEOUT)
            )
            if found is None:
                return None
            self._priorities[class_name] = int(found.value or 0)
        return self._priorities[class_name]

    def priority_of(self, class_name: str | None) -> int:
        return (self._priority_value(class_name) or 0) if class_name else 0

    def priority_class_exists(self, class_name: str) -> bool:
        return self._priority_value(class_name) is not None

    # ------------------------------------------------------------------ Kueue and peering

    def local_queue_exists(self, namespace: str, name: str) -> bool:
        """Whether Kueue has this LocalQueue (404 also when Kueue is not installed at all).

        v1beta2 first (served from Kueue v0.15, the only version from v0.18), then v1beta1 for
        older Kueue: a second GET only where the first found nothing."""
        get = self.custom.get_namespaced_custom_object
        for version in ("v1beta2", "v1beta1"):
            call = functools.partial(
                get, "kueue.x-k8s.io", version, namespace, "localqueues", name, _request_timeout=REQUEST_TIMEOUT
            )
            if _unless_missing(call) is not None:
                return True
        return False

    def get_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """kopf's peering object (ClusterKopfPeering, or KopfPeering in `namespace`)."""
        if namespace is None:
            call: Callable[[], Any] = lambda: self.custom.get_cluster_custom_object(  # noqa: E731
                "kopf.dev", "v1", "clusterkopfpeerings", name, _request_timeout=REQUEST_TIMEOUT
            )
        else:
            call = lambda: self.custom.get_namespaced_custom_object(  # noqa: E731
                "kopf.dev", "v1", namespace, "kopfpeerings", name, _request_timeout=REQUEST_TIMEOUT
            )
        found = _unless_missing(call)
        return dict(found) if found is not None else None

    # ------------------------------------------------------------------ events

    def post_event(self, vgj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the VideoGenJob, shown by `kubectl describe vgj` (posted in the background,
        in order per job)."""
        meta = vgj["metadata"]
        lane = self._event_lanes[zlib.crc32(f"{meta['namespace']}/{meta['name']}".encode()) % EVENT_LANES]
        lane.submit(self._post_event, vgj, event_type, reason, message)

    def _post_event(self, vgj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        meta = vgj["metadata"]
        now = iso(now_utc())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": REPORTING_COMPONENT},
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.create(event)
        except (ApiException, urllib3.exceptions.HTTPError) as err:
            # An Event is a courtesy; losing one must never fail a reconcile.
            why = err.reason if isinstance(err, ApiException) else str(err)
            log.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], why)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Write `obj` whole over the object of its name (no resourceVersion: unconditional), or create it."""
        path = f"{_collection_of(obj)}/{quote(obj['metadata']['name'], safe='')}"
        try:
            return self._request("PUT", path, obj)
        except ApiException as err:
            if err.status != 404:
                raise
        created = self.create(obj)
        # None: made by someone else in between; ours goes over it.
        return created if created is not None else self._request("PUT", path, obj)

    def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret the operator made (a job's grant); gone already is fine."""
        path = f"{_COLLECTIONS['Secret'].format(ns=quote(namespace, safe=''))}/{quote(name, safe='')}"
        _unless_missing(lambda: self._request("DELETE", path))
