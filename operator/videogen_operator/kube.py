"""The operator's few API calls, with Kubernetes' error codes turned into meaning.

Everything is read and written as plain dicts in wire format (camelCase), the
same shape the pure builders and observers use. 409 on create means the object
is already there (idempotent children); 404 on read means it is gone.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from videogen_api import v1alpha1 as api
from videogen_operator.phases import iso, now_utc

log = logging.getLogger(__name__)
T = TypeVar("T")
REPORTING_COMPONENT = "videogen-operator"


def load_client_config() -> None:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


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
        self._priorities: dict[str, int] = {}
        self._instance = socket.gethostname()

    # ------------------------------------------------------------------ VideoGenJobs

    def get_vgj(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = _unless_missing(
            lambda: self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        )
        return dict(obj) if obj is not None else None

    def list_vgjs(self, namespaces: Iterable[str] = ()) -> list[dict[str, Any]]:
        selected = list(namespaces)
        if not selected:
            items = self.custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL)["items"]
            return [dict(i) for i in items]
        out: list[dict[str, Any]] = []
        for ns in selected:
            out.extend(self.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.PLURAL)["items"])
        return out

    def patch_vgj_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch the status subresource; False when the object is gone."""
        patched = _unless_missing(
            lambda: self.custom.patch_namespaced_custom_object_status(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"status": status}
            )
        )
        return patched is not None

    # ------------------------------------------------------------------ Jobs and pods

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _unless_missing(lambda: _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False)))

    def list_runner_jobs(self) -> list[dict[str, Any]]:
        selector = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
        data = _json(self.batch.list_job_for_all_namespaces(label_selector=selector, _preload_content=False))
        return list(data.get("items") or [])

    def list_job_pods(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        selector = f"{api.LABEL_JOB_UID}={uid}"
        data = _json(self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))
        return list(data.get("items") or [])

    def set_job_suspended(self, namespace: str, name: str, suspend: bool) -> None:
        self.batch.patch_namespaced_job(name, namespace, {"spec": {"suspend": suspend}})

    def delete_job(self, namespace: str, name: str) -> None:
        _unless_missing(
            lambda: self.batch.delete_namespaced_job(
                name, namespace, body=client.V1DeleteOptions(propagation_policy="Background")
            )
        )

    # ------------------------------------------------------------------ children

    def create_if_missing(self, obj: dict[str, Any]) -> bool:
        """Create `obj`; True if created, False if it already existed (409)."""
        kind = obj["kind"]
        ns = obj["metadata"]["namespace"]
        creators: dict[str, Callable[[], Any]] = {
            "Job": lambda: self.batch.create_namespaced_job(ns, obj),
            "ServiceAccount": lambda: self.core.create_namespaced_service_account(ns, obj),
            "Secret": lambda: self.core.create_namespaced_secret(ns, obj),
            "Role": lambda: self.rbac.create_namespaced_role(ns, obj),
            "RoleBinding": lambda: self.rbac.create_namespaced_role_binding(ns, obj),
        }
        try:
            creators[kind]()
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _unless_missing(lambda: _json(self.core.read_namespaced_secret(name, namespace, _preload_content=False)))

    def _priority_value(self, class_name: str) -> int | None:
        """A PriorityClass's value, or None when it does not exist (absence is not cached:
        the class may be created later)."""
        if class_name not in self._priorities:
            found = _unless_missing(lambda: self.scheduling.read_priority_class(class_name))
            if found is None:
                return None
            self._priorities[class_name] = int(found.value or 0)
        return self._priorities[class_name]

    def priority_of(self, class_name: str | None) -> int:
        return (self._priority_value(class_name) or 0) if class_name else 0

    def priority_class_exists(self, class_name: str) -> bool:
        return self._priority_value(class_name) is not None

    # ------------------------------------------------------------------ events

    def post_event(self, vgj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the VideoGenJob, shown by `kubectl describe vgj`."""
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
            self.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as err:
            # An Event is a courtesy; losing one must never fail a reconcile.
            log.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], err.reason)

    def delete_secret(self, namespace: str, name: str) -> None:
        """Delete a Secret the operator made (a job's grant); gone already is fine."""
        _unless_missing(lambda: self.core.delete_namespaced_secret(name, namespace))
