"""Tenancy policy: where a namespace's jobs may write and read.

Every location the operator acts on (the objects a job writes, the input image
and model it reads, what it deletes) is derived here from the spec and the
operator's settings, never from status. A namespace writes only below its own
prefix (`videogen/<namespace>/` by default) in the buckets the policy gives it;
`spec.output.key` is relative to that prefix.
"""

from __future__ import annotations

import re
from typing import Final

from videogen_api import v1alpha1 as api
from videogen_operator.settings import OperatorSettings

MAX_KEY_BYTES: Final = 1024  # S3's limit on an object key
_BAD_SEGMENT = re.compile(api.BAD_KEY_SEGMENT_PATTERN)
_CONTROL = re.compile(api.CONTROL_CHARACTERS_PATTERN)


class PolicyViolationError(ValueError):
    """The spec names something this namespace may not touch; str() names the field."""

    reason: Final = api.Reason.POLICY_VIOLATION


# Where one job's objects live (the contract's type, shared with the runner).
Location = api.ObjectLocation


def namespace_prefix(settings: OperatorSettings, namespace: str) -> str:
    """The prefix every object of this namespace lives under, ending in '/'."""
    prefix = settings.output_prefix_template.replace("{namespace}", namespace)
    return prefix if prefix.endswith("/") else prefix + "/"


def buckets_for(settings: OperatorSettings, namespace: str) -> list[str]:
    """Buckets a namespace may name: the default bucket, then the policy's extras."""
    out: list[str] = [settings.s3_bucket] if settings.s3_bucket else []
    for bucket in [*settings.allowed_buckets, *settings.namespace_buckets.get(namespace, [])]:
        if bucket not in out:
            out.append(bucket)
    return out


def check_relative_key(key: str, field: str) -> None:
    """No control characters, no leading '/', no empty, '.' or '..' segments."""
    if _CONTROL.search(key):
        raise PolicyViolationError(f"{field}: control characters are not allowed in an object key")
    if key.startswith("/") or _BAD_SEGMENT.search(key):
        raise PolicyViolationError(f"{field}: {key!r} must be a relative key without empty, '.' or '..' segments")


def _check_bucket(settings: OperatorSettings, namespace: str, bucket: str, field: str) -> None:
    allowed = buckets_for(settings, namespace)
    if bucket not in allowed:
        raise PolicyViolationError(
            f"{field}: bucket {bucket!r} is not allowed for namespace {namespace!r} (allowed: {', '.join(allowed)})"
        )


def output_location(
    namespace: str, name: str, spec: api.VideoGenJobSpec, settings: OperatorSettings, digest: str
) -> Location:
    """The video's bucket and full key: the namespace's prefix + spec.output.key (or the default name)."""
    bucket = spec.output.bucket or settings.s3_bucket
    if not bucket:
        # A configuration problem, not the tenant's: plain ValueError (ValidationFailed).
        raise ValueError("spec.output.bucket: not set and the operator has no default bucket (s3Bucket)")
    if spec.output.bucket:
        _check_bucket(settings, namespace, bucket, "spec.output.bucket")
    relative = spec.output.key or f"{name}-{digest}.{spec.output.format.value}"
    check_relative_key(relative, "spec.output.key")
    key = namespace_prefix(settings, namespace) + relative
    if len(api.poster_key(key).encode()) > MAX_KEY_BYTES:
        raise PolicyViolationError(f"spec.output.key: with the namespace prefix the key is longer than {MAX_KEY_BYTES}")
    return Location(bucket, key)


def image_location(namespace: str, spec: api.VideoGenJobSpec, settings: OperatorSettings) -> tuple[str, str] | None:
    """(bucket, key) of an s3:// input image, which must be the namespace's own object; None for https."""
    if not spec.image or not spec.image.startswith("s3://"):
        return None
    bucket, _, key = spec.image.removeprefix("s3://").partition("/")
    _check_bucket(settings, namespace, bucket, "spec.image")
    check_relative_key(key, "spec.image")
    prefix = namespace_prefix(settings, namespace)
    if not key.startswith(prefix):
        raise PolicyViolationError(
            f"spec.image: an s3:// image must be under this namespace's prefix s3://{bucket}/{prefix}"
        )
    return bucket, key


def model_location(namespace: str, spec: api.VideoGenJobSpec, settings: OperatorSettings) -> tuple[str, str] | None:
    """(bucket, prefix) of an s3:// model, which the policy must allow; None for other sources."""
    if not spec.model.startswith("s3://"):
        return None
    bucket, _, prefix = spec.model.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if prefix:
        check_relative_key(prefix, "spec.model")
    wanted = f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
    for pattern in settings.allowed_model_prefixes:
        allowed = pattern.replace("{namespace}", namespace)
        if wanted.startswith(allowed if allowed.endswith("/") else allowed + "/"):
            return bucket, prefix
    if not settings.allowed_model_prefixes:
        raise PolicyViolationError(
            "spec.model: s3:// models are not allowed on this cluster (use hf:// or a cache path)"
        )
    raise PolicyViolationError(
        f"spec.model: {spec.model} is outside the allowed model prefixes ({', '.join(settings.allowed_model_prefixes)})"
    )


def check_spec(namespace: str, name: str, spec: api.VideoGenJobSpec, settings: OperatorSettings, digest: str) -> None:
    """Everything the policy says about one spec; raises PolicyViolationError (or ValueError) naming the field."""
    output_location(namespace, name, spec, settings, digest)
    image_location(namespace, spec, settings)
    model_location(namespace, spec, settings)


def cache_pointer_key(settings: OperatorSettings, namespace: str, digest: str) -> str:
    """Where the operator records a verified result. Outside every namespace's prefix (namespaces cannot
    start with '.'), so no runner's presigned URL can reach it."""
    scope = namespace if settings.cache_scope == "namespace" else "_cluster"
    return f"videogen/.cache/{scope}/{digest}.json"
