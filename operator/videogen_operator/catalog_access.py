"""How a job namespace reaches the model cache: a read-only PersistentVolume and claim per namespace.

A PersistentVolumeClaim lives in one namespace, so the operator's own cache claim cannot be mounted by
runners elsewhere. With `modelCache.type: pvc` the operator reads the volume its claim is bound to and
makes, per job namespace, a second PersistentVolume onto the same storage (read-only, Retain,
pre-bound) and the claim that binds to it. Runners mount that claim read-only: no credentials, no
hostPath, and PodSecurity `restricted` holds. Made once per namespace (create-if-missing, 409 is fine)
and re-checked now and then, because a tenant may delete the claim in their namespace.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from videogen_api import v1alpha1 as api
from videogen_operator.catalog import (
    CacheBindingError,
    build_namespace_claim,
    build_namespace_volume,
    namespace_volume_name,
    volume_matches,
)
from videogen_operator.kube import Kube, api_message, is_refusal
from videogen_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
# A namespace's claim is trusted to still exist for this long before it is looked at again.
RECHECK_SECONDS = 60.0


class CatalogAccess:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self._checked: dict[str, float] = {}
        self._guard = threading.Lock()

    def namespace_claim(self, namespace: str, *, required: bool) -> str | None:
        """The read-only cache claim runners in `namespace` mount, or None when runners get no shared
        cache (hostPath/emptyDir types; or pvc while the operator's claim is not bound yet and the job
        does not need the catalog). Raises CacheBindingError when a catalog job cannot get one."""
        cache = self.settings.model_cache
        if cache.type != "pvc" or not cache.claim_name:
            return None
        with self._guard:
            fresh = time.monotonic() - self._checked.get(namespace, -RECHECK_SECONDS) < RECHECK_SECONDS
        if fresh:
            return cache.namespace_claim_name
        source_pv = self._source_volume()
        if source_pv is None:
            if required:
                raise CacheBindingError(
                    f"the model cache claim {self.settings.operator_namespace}/{cache.claim_name} is not bound "
                    "to a volume (is the claim missing, or its storage class unable to provision?)"
                )
            return None
        self._ensure(namespace, source_pv)
        with self._guard:
            self._checked[namespace] = time.monotonic()
        return cache.namespace_claim_name

    def _source_volume(self) -> dict[str, Any] | None:
        cache = self.settings.model_cache
        assert cache.claim_name
        claim = self.kube.get_pvc(self.settings.operator_namespace, cache.claim_name)
        volume_name = ((claim or {}).get("spec") or {}).get("volumeName")
        if not volume_name:
            return None
        return self.kube.get_pv(str(volume_name))

    def _ensure(self, namespace: str, source_pv: dict[str, Any]) -> None:
        settings = self.settings
        name = namespace_volume_name(namespace)
        volume = build_namespace_volume(namespace, source_pv, settings)
        existing = self.kube.get_pv(name)
        if existing is not None:
            phase = (existing.get("status") or {}).get("phase")
            if not volume_matches(existing, namespace, settings):
                raise CacheBindingError(f"PersistentVolume {name} exists and is not the operator's")
            source = ((existing.get("metadata") or {}).get("annotations") or {}).get(f"{api.GROUP}/source-volume")
            if phase in ("Released", "Failed") or source != source_pv["metadata"]["name"]:
                # The namespace's claim was deleted (a Retained volume never binds again), or the cache
                # moved to another volume: make the pair anew. The storage itself is untouched (Retain).
                log.info("re-creating %s (phase %s, source %s)", name, phase, source)
                self.kube.delete_pv(name)
                existing = None
        self._create(volume)
        claim = build_namespace_claim(namespace, source_pv, settings)
        created = self._create(claim)
        if not created:
            found = self.kube.get_pvc(namespace, settings.model_cache.namespace_claim_name) or {}
            bound_to = (found.get("spec") or {}).get("volumeName")
            if bound_to and bound_to != name:
                raise CacheBindingError(
                    f"the claim {namespace}/{settings.model_cache.namespace_claim_name} exists and is bound to "
                    f"{bound_to}, not to the model cache; delete it so the operator can provision the cache claim"
                )

    def _create(self, obj: dict[str, Any]) -> bool:
        """Create-if-missing: True if created, False if it existed."""
        try:
            return self.kube.create(obj) is not None
        except ApiException as err:
            if is_refusal(err):
                raise CacheBindingError(
                    f"the API server refused {obj['kind']} {obj['metadata']['name']}: {api_message(err)}"
                ) from err
            raise
