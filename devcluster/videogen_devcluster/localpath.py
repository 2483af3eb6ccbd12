"""Dynamic provisioning of PersistentVolumes as local directories, for PVCs used on the local node.

Registers the default StorageClass ``local-path`` (WaitForFirstConsumer). When the scheduler picks this
node for a pod with an unbound claim of that class, it annotates the claim with the node; this provisioner
then creates a hostPath PersistentVolume for it, pinned to the node, and the controller manager binds
them. Released volumes are deleted with their directory (reclaim policy Delete).
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .kubeapi import JSON, body, raw

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

STORAGE_CLASS = "local-path"
PROVISIONER = "videogen.dev/local-path"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
POLL_SECONDS = 0.5


class LocalPathProvisioner:
    def __init__(self, api: ApiClient, node_name: str, root: Path) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.node_name = node_name
        self.root = root
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{node_name} local-path", daemon=True)

    def start(self) -> None:
        self._ensure_storage_class()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _ensure_storage_class(self) -> None:
        from kubernetes.client.exceptions import ApiException

        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            # Binding waits for the scheduler's choice of node, which names the node to provision on.
            "volumeBindingMode": "WaitForFirstConsumer",
        }
        try:
            self.storage.create_storage_class(body(storage_class))
        except ApiException as e:
            if e.status != 409:
                raise

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._provision_pending()
                self._delete_released()
            except Exception as e:
                if not self._stop.is_set():
                    log.warning("local-path provisioner: %s", e)

    def _provision_pending(self) -> None:
        claims: list[JSON] = raw(self.core.list_persistent_volume_claim_for_all_namespaces)["items"]
        for claim in claims:
            meta, spec = claim["metadata"], claim["spec"]
            wanted = (
                spec.get("storageClassName") == STORAGE_CLASS
                and not spec.get("volumeName")
                and (meta.get("annotations") or {}).get(SELECTED_NODE) == self.node_name
                and not meta.get("deletionTimestamp")
            )
            if wanted:
                self._create_volume(claim)

    def _create_volume(self, claim: JSON) -> None:
        from kubernetes.client.exceptions import ApiException

        meta, spec = claim["metadata"], claim["spec"]
        name = f"pvc-{meta['uid']}"
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [self.node_name]}
                                ]
                            }
                        ]
                    }
                },
            },
        }
        try:
            self.core.create_persistent_volume(body(volume))
        except ApiException as e:
            if e.status != 409:
                raise
            return
        log.info("provisioned %s for claim %s/%s at %s", name, meta["namespace"], meta["name"], path)

    def _delete_released(self) -> None:
        from kubernetes.client.exceptions import ApiException

        volumes: list[JSON] = raw(self.core.list_persistent_volume)["items"]
        for volume in volumes:
            meta = volume["metadata"]
            ours = (meta.get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
            path = Path(volume["spec"].get("hostPath", {}).get("path", "/nonexistent"))
            mine = path.parent == self.root
            if ours and mine and volume.get("status", {}).get("phase") in ("Released", "Failed"):
                shutil.rmtree(path, ignore_errors=True)
                try:
                    self.core.delete_persistent_volume(meta["name"])
                except ApiException as e:
                    if e.status != 404:
                        raise
                log.info("deleted released volume %s", meta["name"])
