"""The operator's view of object storage: presigning, verifying results, the
result cache and output cleanup. Only the operator holds the platform's keys.

Nothing here trusts a VideoGenJob's status. A result is the object at the
spec-resolved location, checked by the operator itself: it must carry the job's
uid in its metadata (signed into the presigned PUT, so no other job can write
it), and its size and SHA-256 come from the store (a full-object
`x-amz-checksum-sha256` the store verified on upload) or from hashing the
object here, never from user metadata.

A cache entry is a small pointer object, `videogen/.cache/<scope>/<specHash>.json`
(scope: the namespace, or `_cluster` when the cache is shared), written only
after that verification and only for jobs with an explicit seed. It lies
outside every namespace's prefix, so no runner can write one; before a pointer
is handed out the object is checked again (size, ETag, owner metadata).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from videogen_api import v1alpha1 as api
from videogen_operator import presign
from videogen_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
_HASH_CHUNK = 1024 * 1024


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _missing(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True)
class Verified:
    """An object the operator checked itself."""

    bucket: str
    key: str
    size_bytes: int
    sha256: str
    etag: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class VerificationError(Exception):
    """The object is not what the job claims; str() is the user-facing message."""


class ObjectStore:
    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self._session = boto3.session.Session()
        self._s3 = self._session.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name=settings.s3_region,
            config=Config(
                # SigV4: headers such as If-None-Match and x-amz-meta-* are signed into presigned URLs.
                signature_version="s3v4",
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                # As many as the threads that start (64) and verify or look up the cache (32 routine
                # and 8 urgent reconciles) at once: boto3's default of 10, or any pool below that sum,
                # opens a connection for each request past it and closes it after.
                max_pool_connections=112,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        # The client's own endpoint and region (resolved from settings or the environment).
        self._presigner = presign.CheckedPresigner(self._s3.meta.endpoint_url, self._s3.meta.region_name)

    # ------------------------------------------------------------------ presigning

    def presign(self, uri: str, seconds: int) -> str | None:
        """A GET URL for status.output.url (only ever for objects the operator verified)."""
        if seconds <= 0:
            return None
        bucket, key = split_uri(uri)
        return self.presign_op("get_object", seconds, Bucket=bucket, Key=key)

    def presign_op(self, operation: str, seconds: int, **params: Any) -> str:
        """A presigned URL; signed by presign.py where it reproduced botocore for its shape."""
        seconds = max(1, min(seconds, api.MAX_PRESIGN_SECONDS))
        return self._presigner.presign(
            operation,
            params,
            seconds,
            self._credentials(),
            lambda: str(self._s3.generate_presigned_url(operation, Params=params, ExpiresIn=seconds)),
        )

    def _credentials(self) -> tuple[str, str, str | None] | None:
        """The client's current credentials (refreshed by the session as they expire), if any."""
        credentials = self._session.get_credentials()
        if credentials is None:
            return None
        frozen = credentials.get_frozen_credentials()
        if not frozen.access_key or not frozen.secret_key:
            return None
        return (frozen.access_key, frozen.secret_key, frozen.token)

    def presign_parts(self, bucket: str, key: str, upload_id: str, count: int, seconds: int) -> list[str]:
        """upload_part URLs for parts 1..count (signed alike after the first: presign.py)."""
        seconds = max(1, min(seconds, api.MAX_PRESIGN_SECONDS))
        # presign.py checks its first URL against botocore's.
        credentials = self._credentials()
        secret = credentials[1] if credentials is not None else None

        def one(number: int) -> str:
            return self.presign_op(
                "upload_part", seconds, Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number
            )

        return presign.part_urls(count, one, secret)

    def create_multipart(self, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        created = self._s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type, Metadata=metadata)
        return str(created["UploadId"])

    def abort_multipart(self, bucket: str, key: str, upload_id: str | None = None, *, keep: str | None = None) -> int:
        """Abort the unfinished multipart uploads of exactly this key (only `upload_id` when given,
        all but `keep` when given); return how many."""
        aborted = 0
        try:
            listing = self._s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
            for upload in listing.get("Uploads", []):
                if upload.get("UploadId") == keep:
                    continue
                if upload.get("Key") == key and (upload_id is None or upload.get("UploadId") == upload_id):
                    self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=str(upload["UploadId"]))
                    aborted += 1
        except (ClientError, BotoCoreError) as err:
            log.warning("could not abort multipart uploads of s3://%s/%s: %s", bucket, key, err)
        return aborted

    def list_model(self, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
        """{relative path: {key, size, etag}} of every object under an s3:// model prefix."""
        base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        files: dict[str, dict[str, Any]] = {}
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(base) :]
                if rel and not rel.endswith("/"):
                    files[rel] = {"key": obj["Key"], "size": int(obj["Size"]), "etag": str(obj.get("ETag", ""))}
        return files

    # ------------------------------------------------------------------ verification

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
        except ClientError as err:
            if _missing(err):
                return None
            raise

    def owner_of(self, bucket: str, key: str) -> str | None:
        """The job uid signed into the object's metadata; None when missing or not written by a job."""
        try:
            head = self._head(bucket, key)
        except (ClientError, BotoCoreError) as err:
            log.warning("could not read s3://%s/%s: %s", bucket, key, err)
            return None
        return None if head is None else (head.get("Metadata") or {}).get(api.S3_METADATA_JOB_UID)

    def verify(self, bucket: str, key: str, job_uid: str | None) -> Verified:
        """Check the object at (bucket, key): present, written by `job_uid` (when given), and its
        SHA-256 known from the store's own checksum or from hashing it here."""
        uri = f"s3://{bucket}/{key}"
        # A store that cannot answer raises (ClientError/BotoCoreError): the reconcile is retried
        # on the next sweep instead of failing a job whose video may be fine.
        head = self._head(bucket, key)
        if head is None:
            raise VerificationError(f"{uri} does not exist")
        owner = (head.get("Metadata") or {}).get(api.S3_METADATA_JOB_UID)
        if job_uid is not None and owner != job_uid:
            raise VerificationError(f"{uri} was not written by this job")
        size = int(head.get("ContentLength", 0))
        etag = str(head.get("ETag", ""))
        sha256 = _store_sha256(head)
        if sha256 is None:
            sha256 = self._hash(bucket, key, size, etag, uri)
        return Verified(bucket, key, size, sha256, etag)

    def _hash(self, bucket: str, key: str, size: int, etag: str, uri: str) -> str:
        if size > self.settings.verify_max_bytes:
            raise VerificationError(
                f"{uri} is {size} bytes, more than the operator verifies by reading (verifyMaxBytes); "
                "use a store that reports x-amz-checksum-sha256"
            )
        try:
            # IfMatch: the bytes hashed are the bytes whose size and ETag were checked.
            body = self._s3.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"] if etag else None
            if body is None:
                body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            digest = hashlib.sha256()
            read = 0
            for chunk in body.iter_chunks(_HASH_CHUNK):
                digest.update(chunk)
                read += len(chunk)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise VerificationError(f"{uri} changed while it was verified") from err
            raise
        if read != size:
            raise VerificationError(f"{uri} changed while it was verified")
        return digest.hexdigest()

    def still_same(self, pointer: dict[str, Any]) -> bool:
        """The object a cache pointer names is still the one the operator verified (size, ETag, owner)."""
        try:
            bucket, key = split_uri(str(pointer.get("uri", "")))
            head = self._head(bucket, key)
        except (ValueError, ClientError, BotoCoreError) as err:
            log.warning("cache check of %s failed: %s", pointer.get("uri"), err)
            return False
        return (
            head is not None
            and int(head.get("ContentLength", -1)) == pointer.get("sizeBytes")
            and str(head.get("ETag", "")) == pointer.get("etag")
            and (head.get("Metadata") or {}).get(api.S3_METADATA_JOB_UID) == pointer.get("jobUid")
        )

    # ------------------------------------------------------------------ the result cache

    def lookup(self, bucket: str, pointer_key: str, within: str | None) -> dict[str, Any] | None:
        """A verified earlier result, or None. `within`: the object must lie under this prefix."""
        pointer = self._read_pointer(bucket, pointer_key)
        if pointer is None:
            return None
        uri = str(pointer.get("uri", ""))
        if within is not None and not uri.startswith(f"s3://{bucket}/{within}"):
            log.warning("ignoring cache pointer %s: %s is outside %s", pointer_key, uri, within)
            return None
        if not self.still_same(pointer):
            return None
        return {k: v for k, v in pointer.items() if k not in ("etag", "jobUid", "namespace")}

    def _read_pointer(self, bucket: str, pointer_key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._s3.get_object(Bucket=bucket, Key=pointer_key)["Body"].read())
        except ClientError as err:
            if not _missing(err):
                log.warning("cache lookup %s failed: %s", pointer_key, err)
            return None
        except (BotoCoreError, ValueError) as err:
            log.warning("cache lookup %s failed: %s", pointer_key, err)
            return None
        return data if isinstance(data, dict) else None

    def record(
        self, pointer_key: str, verified: Verified, output: dict[str, Any], job_uid: str, namespace: str
    ) -> None:
        pointer = {k: v for k, v in output.items() if k not in ("url", "urlExpiresAt")}
        pointer.update(
            uri=verified.uri,
            sizeBytes=verified.size_bytes,
            sha256=verified.sha256,
            etag=verified.etag,
            jobUid=job_uid,
            namespace=namespace,
        )
        try:
            self._s3.put_object(
                Bucket=verified.bucket,
                Key=pointer_key,
                Body=json.dumps(pointer).encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as err:
            log.warning("could not record cache entry %s: %s", pointer_key, err)

    # ------------------------------------------------------------------ cleanup

    def delete_owned(self, bucket: str, keys: list[str], job_uid: str, pointer_key: str | None) -> list[str]:
        """Delete those of `keys` this job wrote (owner metadata), and the cache pointer naming them."""
        deleted: list[str] = []
        for key in keys:
            if self.owner_of(bucket, key) != job_uid:
                continue
            self._s3.delete_object(Bucket=bucket, Key=key)
            deleted.append(f"s3://{bucket}/{key}")
        if pointer_key and deleted:
            pointer = self._read_pointer(bucket, pointer_key)
            if pointer and pointer.get("uri") in deleted:
                self._s3.delete_object(Bucket=bucket, Key=pointer_key)
        return deleted


def _store_sha256(head: dict[str, Any]) -> str | None:
    """The hex SHA-256 of the whole object when the store checked one on upload (not a
    composite multipart checksum, which is a hash of part hashes)."""
    value = head.get("ChecksumSHA256")
    if not value or "-" in str(value) or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    try:
        raw = base64.b64decode(str(value), validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None
