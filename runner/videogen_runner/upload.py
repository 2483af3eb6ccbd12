"""Uploading the video and its poster: multipart, verified, retried and idempotent."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from videogen_api import v1alpha1 as api

from .errors import InvalidInputError, UploadError, one_line
from .s3 import RetryPolicy, error_code, is_transient, with_retries

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
_HASH_CHUNK = 1024 * 1024

CONTENT_TYPES = {
    api.OutputFormat.MP4: "video/mp4",
    api.OutputFormat.WEBM: "video/webm",
    api.OutputFormat.GIF: "image/gif",
}


@dataclass(frozen=True)
class Uploaded:
    bucket: str
    key: str
    size_bytes: int
    sha256: str
    skipped: bool  # the same content was already there (a retried pod)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _existing_sha256(client: S3Client, bucket: str, key: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # 403 is what S3 answers for a missing key without ListBucket permission.
        if status in (403, 404) or error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get(api.S3_METADATA_SHA256)


def _describe(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}", 300)


def upload_file(
    client: S3Client,
    path: Path,
    bucket: str,
    key: str,
    *,
    content_type: str,
    metadata: Mapping[str, str],
    policy: RetryPolicy,
) -> Uploaded:
    """Upload `path` to s3://bucket/key unless that object already holds the same bytes.

    The sha256 goes into the object's metadata so the operator, a retried pod
    or a user can check the object without downloading it twice.
    """
    from boto3.s3.transfer import TransferConfig

    from .grant import PresignedClient

    digest = sha256_file(path)
    size = path.stat().st_size
    uri = f"s3://{bucket}/{key}"
    if isinstance(client, PresignedClient):
        granted = client

        def put_granted() -> bool:
            # PUT with If-None-Match: an existing object is kept, and accepted only if it holds our bytes.
            return granted.put_file(path, bucket, key, digest)

        return _finish_upload(uri, bucket, key, size, digest, put_granted, policy)
    transfer = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4
    )
    extra = {
        "ContentType": content_type,
        "Metadata": {**metadata, api.S3_METADATA_SHA256: digest},
    }

    def attempt() -> bool:
        if _existing_sha256(client, bucket, key) == digest:
            return True
        client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=transfer)
        return False

    return _finish_upload(uri, bucket, key, size, digest, attempt, policy)


def _finish_upload(
    uri: str, bucket: str, key: str, size: int, digest: str, attempt: Callable[[], bool], policy: RetryPolicy
) -> Uploaded:
    try:
        skipped = with_retries(f"upload of {uri}", attempt, policy)
    except InvalidInputError:
        raise  # the key holds another job's object: no retry can help
    except Exception as exc:
        hint = " after retries" if is_transient(exc) else ""
        raise UploadError(f"upload of {uri} failed{hint}: {_describe(exc)}") from exc
    if skipped:
        log.info("%s already holds this video (sha256 %s); upload skipped", uri, digest[:12])
    else:
        log.info("uploaded %s (%d bytes, sha256 %s)", uri, size, digest[:12])
    return Uploaded(bucket=bucket, key=key, size_bytes=size, sha256=digest, skipped=skipped)


def check_reachable(client: S3Client, bucket: str, key: str, policy: RetryPolicy) -> None:
    """Fail before the GPU work if the output store cannot be reached at all.

    Any HTTP answer counts as reachable (a 403 on HEAD is normal for a missing
    key without list permission); only network failures after the retry budget fail.
    """
    from botocore.exceptions import ClientError

    def probe() -> None:
        try:
            client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_transient(exc):
                raise

    try:
        with_retries(f"reaching s3://{bucket}", probe, policy)
    except Exception as exc:
        raise UploadError(f"S3 endpoint for s3://{bucket} unreachable after retries: {_describe(exc)}") from exc


def presign(client: S3Client, bucket: str, key: str, seconds: int) -> tuple[str | None, datetime | None]:
    """A GET URL for the result; none under a grant (the operator presigns once it verified the object)."""
    from .grant import PresignedClient

    if isinstance(client, PresignedClient):
        return None, None
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds)
    return url, datetime.now(UTC) + timedelta(seconds=seconds)
