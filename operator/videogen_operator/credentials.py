"""What a runner pod may do in object storage: one per-job grant of presigned URLs.

No platform key ever leaves the operator's namespace. Each job gets a Secret,
owned by its VideoGenJob and deleted when the job ends, holding presigned URLs
for exactly its own objects: PUT of the video and the poster (with
`If-None-Match: *` and the job's uid signed in, so a job never overwrites an
object another job wrote and every object names its writer), multipart part
URLs plus complete/abort when the video could be large, GET of its own video
(to recognise a retried pod's earlier upload), of an s3:// input image and of
each file of an allowed s3:// model. Every URL expires when the job's startup
and run deadlines (plus a margin) have passed.

The grant is JSON in the Secret's `grant.json`; the runner reads it from the
`VIDEOGEN_GRANT` environment variable (see runner/videogen_runner/grant.py).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any, Protocol

from videogen_api import grant as grant_format
from videogen_api import v1alpha1 as api
from videogen_operator import policy
from videogen_operator.settings import OperatorSettings

# 2: the multipart part URLs may come as a template and signatures (videogen_api.grant).
GRANT_VERSION = 2
CONTENT_TYPES = {
    api.OutputFormat.MP4: "video/mp4",
    api.OutputFormat.WEBM: "video/webm",
    api.OutputFormat.GIF: "image/gif",
}
# Bytes one raw RGB frame pixel takes; the encoded video is smaller, so this bounds it from above.
_RAW_BYTES_PER_PIXEL = 3
# A grant travels in one environment variable (Linux caps one at 128 KiB), so part URLs are bounded.
MAX_PART_URLS = 64
_DEFAULT_SIDE = api.MAX_DIMENSION


class Presigner(Protocol):
    def presign_op(self, operation: str, seconds: int, **params: Any) -> str: ...

    def presign_parts(self, bucket: str, key: str, upload_id: str, count: int, seconds: int) -> list[str]: ...

    def create_multipart(self, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> str: ...

    def list_model(self, bucket: str, prefix: str) -> dict[str, dict[str, Any]]: ...


def run_lifetime(spec: api.VideoGenJobSpec, settings: OperatorSettings) -> int:
    """Seconds a run needs its URLs for, from its pod's start: the job's own deadlines (startup, run,
    and the longest it may stay suspended before it is cancelled, since a resumed pod reuses the
    grant) and a margin, never more than SigV4 allows."""
    seconds = (
        spec.startup_timeout_seconds
        + spec.timeout_seconds
        + settings.cancel_grace_seconds
        + settings.presign_margin_seconds
    )
    return min(seconds, api.MAX_PRESIGN_SECONDS)


def grant_lifetime(spec: api.VideoGenJobSpec, settings: OperatorSettings) -> int:
    """Seconds the URLs of a grant issued now live. The run's, and for a Kueue job (spec.queueName)
    also the wait for Kueue's admission, which has no bound of ours: the Job is made suspended at
    once and its pod may start hours later. A longer wait renews the grant (Reconciler)."""
    extra = settings.kueue_grant_wait_seconds if spec.queue_name else 0
    return min(run_lifetime(spec, settings) + extra, api.MAX_PRESIGN_SECONDS)


def raw_size_bound(spec: api.VideoGenJobSpec) -> int:
    """An upper bound of the video's size: its frames uncompressed (unset numbers at their maximum)."""
    width = spec.width or _DEFAULT_SIDE
    height = spec.height or _DEFAULT_SIDE
    frames = spec.num_frames or api.MAX_FRAMES
    return width * height * frames * _RAW_BYTES_PER_PIXEL


def build_grant(
    store: Presigner,
    namespace: str,
    name: str,
    uid: str,
    spec: api.VideoGenJobSpec,
    settings: OperatorSettings,
    digest: str,
    now: datetime,
) -> dict[str, Any]:
    """The grant for one job. Calls the store (presigning is local; a multipart upload and a model
    listing are requests), so build it once per Secret."""
    seconds = grant_lifetime(spec, settings)
    where = policy.output_location(namespace, name, spec, settings, digest)
    content_type = CONTENT_TYPES[spec.output.format]
    metadata = {api.S3_METADATA_JOB_UID: uid, api.S3_METADATA_SPEC_HASH: digest}

    def put(key: str, ctype: str) -> dict[str, Any]:
        params = {"Bucket": where.bucket, "Key": key, "ContentType": ctype, "Metadata": metadata, "IfNoneMatch": "*"}
        headers = {
            "Content-Type": ctype,
            "If-None-Match": "*",
            **{f"x-amz-meta-{k}": v for k, v in metadata.items()},
        }
        return {"url": store.presign_op("put_object", seconds, **params), "headers": headers}

    def get(bucket: str, key: str) -> str:
        return store.presign_op("get_object", seconds, Bucket=bucket, Key=key)

    grant: dict[str, Any] = {
        "version": GRANT_VERSION,
        "expiresAt": (now + timedelta(seconds=seconds)).isoformat(),
        "video": {
            "bucket": where.bucket,
            "key": where.key,
            "put": put(where.key, content_type),
            "get": get(where.bucket, where.key),
        },
        "poster": {
            "bucket": where.bucket,
            "key": where.poster_key,
            "put": put(where.poster_key, "image/jpeg"),
            "get": get(where.bucket, where.poster_key),
        },
    }
    bound = raw_size_bound(spec)
    if bound > settings.multipart_threshold_bytes:
        part = max(settings.multipart_part_bytes, math.ceil(bound / MAX_PART_URLS))
        count = min(MAX_PART_URLS, math.ceil(bound / part))
        upload_id = store.create_multipart(where.bucket, where.key, content_type, metadata)
        common = {"Bucket": where.bucket, "Key": where.key, "UploadId": upload_id}
        grant["multipart"] = {
            "uploadId": upload_id,
            "partBytes": part,
            **grant_format.compact(store.presign_parts(where.bucket, where.key, upload_id, count, seconds)),
            "complete": {
                "url": store.presign_op("complete_multipart_upload", seconds, IfNoneMatch="*", **common),
                "headers": {"If-None-Match": "*", "Content-Type": "application/xml"},
            },
            "abort": store.presign_op("abort_multipart_upload", seconds, **common),
        }
    image = policy.image_location(namespace, spec, settings)
    if image is not None:
        grant["image"] = {"bucket": image[0], "key": image[1], "get": get(*image)}
    model = policy.model_location(namespace, spec, settings)
    if model is not None:
        bucket, prefix = model
        files = store.list_model(bucket, prefix)
        grant["model"] = {
            "bucket": bucket,
            "prefix": prefix,
            "files": {
                rel: {"key": f["key"], "size": f["size"], "etag": f["etag"], "get": get(bucket, f["key"])}
                for rel, f in sorted(files.items())
            },
        }
    return grant


def build_grant_secret(
    secret_name: str, namespace: str, metadata: dict[str, Any], grant: dict[str, Any]
) -> dict[str, Any]:
    """The per-job Secret (metadata: the job's labels, annotations and owner reference)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**metadata, "name": secret_name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {api.GRANT_SECRET_KEY: json.dumps(grant, separators=(",", ":"))},
    }


def uses_multipart(spec: api.VideoGenJobSpec, settings: OperatorSettings) -> bool:
    return raw_size_bound(spec) > settings.multipart_threshold_bytes
