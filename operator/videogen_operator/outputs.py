"""A job's objects, from the operator's side: its grant, accepting its result,
the result cache, and cleanup. The reconciler calls in here; every location is
derived from the spec through `policy`, never from status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from videogen_api import v1alpha1 as api
from videogen_operator import credentials, manifests, policy
from videogen_operator.kube import Kube
from videogen_operator.manifests import JobRef
from videogen_operator.results import ObjectStore, VerificationError
from videogen_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

# What the runner reports about the video that the operator cannot (and need not) check itself.
_DESCRIPTIVE = ("format", "width", "height", "frames", "fps", "durationSeconds")


class Outputs:
    def __init__(self, kube: Kube, settings: OperatorSettings, store: ObjectStore | None) -> None:
        self.kube = kube
        self.settings = settings
        self.store = store

    # ------------------------------------------------------------------ the grant

    def ensure_grant(self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str, now: datetime) -> None:
        """Create the job's Secret of presigned URLs if it is missing (presigned mode only)."""
        if self.settings.runner_credentials != "presigned":
            return
        if self.store is None:
            log.error("%s/%s: no object store configured; the runner gets no grant", ref.namespace, ref.name)
            return
        grant = credentials.build_grant(self.store, ref.namespace, ref.name, ref.uid, spec, self.settings, digest, now)
        secret = credentials.build_grant_secret(
            manifests.grant_secret_name(ref), ref.namespace, manifests.child_metadata(ref, digest), grant
        )
        if not self.kube.create_if_missing(secret) and "multipart" in grant:
            # An earlier pass made the Secret (and its upload): drop the upload this pass opened.
            where = policy.output_location(ref.namespace, ref.name, spec, self.settings, digest)
            self.store.abort_multipart(where.bucket, where.key, grant["multipart"]["uploadId"])

    def renew_grant(self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str, now: datetime) -> datetime | None:
        """Write a grant issued `now` over the job's Secret (a Job Kueue still holds, no pod yet);
        when its URLs expire, or None where the operator gives no grants.

        The old Secret is never read (it sits in the tenant's namespace): everything comes from the
        spec, as for the first grant. A multipart upload of its own is opened, and then any other
        unfinished upload of the job's key aborted (no pod is running to be using one)."""
        if self.settings.runner_credentials != "presigned" or self.store is None:
            return None
        grant = credentials.build_grant(self.store, ref.namespace, ref.name, ref.uid, spec, self.settings, digest, now)
        secret = credentials.build_grant_secret(
            manifests.grant_secret_name(ref), ref.namespace, manifests.child_metadata(ref, digest), grant
        )
        self.kube.replace(secret)
        if "multipart" in grant:
            where = policy.output_location(ref.namespace, ref.name, spec, self.settings, digest)
            self.store.abort_multipart(where.bucket, where.key, keep=grant["multipart"]["uploadId"])
        return datetime.fromisoformat(grant["expiresAt"])

    def release(self, ref: JobRef, spec: api.VideoGenJobSpec | None, digest: str) -> None:
        """The job ended: its grant goes, and an unfinished multipart upload is aborted."""
        if self.settings.runner_credentials == "presigned":
            self.kube.delete_secret(ref.namespace, manifests.grant_secret_name(ref))
        if self.store is not None and spec is not None and credentials.uses_multipart(spec, self.settings):
            try:
                where = policy.output_location(ref.namespace, ref.name, spec, self.settings, digest)
            except ValueError:
                return
            self.store.abort_multipart(where.bucket, where.key)

    # ------------------------------------------------------------------ results

    def accept(self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str, reported: dict[str, Any]) -> dict[str, Any]:
        """status.output from the object the operator checked at the spec's location; raises
        VerificationError when it is missing, not this job's, or unreadable."""
        where = policy.output_location(ref.namespace, ref.name, spec, self.settings, digest)
        output: dict[str, Any] = {k: reported[k] for k in _DESCRIPTIVE if reported.get(k) is not None}
        if self.store is None:
            # Nothing to check against: keep only what is derived from the spec.
            return {**output, "uri": where.uri}
        verified = self.store.verify(where.bucket, where.key, ref.uid)
        output.update(uri=verified.uri, sizeBytes=verified.size_bytes, sha256=verified.sha256)
        if reported.get("posterUri") and self.store.owner_of(where.bucket, where.poster_key) == ref.uid:
            output["posterUri"] = where.poster_uri
        if self.settings.cache_enabled and spec.cache and spec.seed is not None:
            pointer = policy.cache_pointer_key(self.settings, ref.namespace, digest)
            self.store.record(pointer, verified, output, ref.uid, ref.namespace)
        return output

    def cache_hit(self, ref: JobRef, spec: api.VideoGenJobSpec, digest: str) -> dict[str, Any] | None:
        """A verified earlier result for the same spec hash, within the cache's scope."""
        if not (self.settings.cache_enabled and spec.cache and spec.seed is not None) or self.store is None:
            return None
        where = policy.output_location(ref.namespace, ref.name, spec, self.settings, digest)
        within = (
            policy.namespace_prefix(self.settings, ref.namespace) if self.settings.cache_scope == "namespace" else None
        )
        pointer = policy.cache_pointer_key(self.settings, ref.namespace, digest)
        try:
            return self.store.lookup(where.bucket, pointer, within)
        except (ClientError, BotoCoreError) as err:
            log.warning("cache lookup for %s/%s failed: %s", ref.namespace, ref.name, err)
            return None

    # ------------------------------------------------------------------ deletion

    def cleanup(
        self,
        body: dict[str, Any],
        ref: JobRef,
        spec: api.VideoGenJobSpec,
        others: Iterable[dict[str, Any]],
        digest: str | None = None,
    ) -> list[str]:
        """deletePolicy: Delete — the objects at the spec's location that this job wrote, unless
        another job (`others`: the operator's view of VideoGenJobs) still shows them (status may
        keep an object, never delete one)."""
        if self.store is None:
            return []
        digest = digest or api.spec_hash(spec)
        try:
            where = policy.output_location(ref.namespace, ref.name, spec, self.settings, digest)
        except ValueError:
            return []  # a spec outside the policy never wrote anything
        for other in others:
            if other["metadata"].get("uid") == ref.uid or other["metadata"].get("deletionTimestamp"):
                continue
            if ((other.get("status") or {}).get("output") or {}).get("uri") == where.uri:
                log.info(
                    "keeping %s: VideoGenJob %s/%s still refers to it",
                    where.uri,
                    other["metadata"]["namespace"],
                    other["metadata"]["name"],
                )
                return []
        pointer = policy.cache_pointer_key(self.settings, ref.namespace, digest)
        return self.store.delete_owned(where.bucket, [where.key, where.poster_key], ref.uid, pointer)


__all__ = ["Outputs", "VerificationError"]
