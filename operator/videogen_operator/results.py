"""The operator's view of object storage: the result cache and output cleanup.

A cache entry is a small pointer object, `videogen/.cache/<specHash>.json`, in
the output bucket, holding the status.output of the job that made the video;
it is written only for jobs with an explicit seed, where the same spec hash
really means the same video.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from videogen_api import v1alpha1 as api
from videogen_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
CACHE_PREFIX = "videogen/.cache/"


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class ObjectStore:
    def __init__(self, settings: OperatorSettings) -> None:
        self._s3 = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name=settings.s3_region,
            config=Config(
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )

    def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._s3.head_object(Bucket=bucket, Key=key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def output_still_valid(self, output: dict[str, Any]) -> bool:
        """The object exists and its content hash matches what status says."""
        try:
            bucket, key = split_uri(str(output.get("uri", "")))
            head = self._head(bucket, key)
        except (ValueError, ClientError, BotoCoreError) as err:
            log.warning("cache check of %s failed: %s", output.get("uri"), err)
            return False
        if head is None:
            return False
        stored = (head.get("Metadata") or {}).get(api.S3_METADATA_SHA256)
        return stored is None or stored == output.get("sha256")

    def lookup(self, bucket: str, digest: str) -> dict[str, Any] | None:
        try:
            body = self._s3.get_object(Bucket=bucket, Key=f"{CACHE_PREFIX}{digest}.json")["Body"].read()
            output = json.loads(body)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                log.warning("cache lookup for %s failed: %s", digest, err)
            return None
        except (BotoCoreError, ValueError) as err:
            log.warning("cache lookup for %s failed: %s", digest, err)
            return None
        return output if isinstance(output, dict) and self.output_still_valid(output) else None

    def record(self, bucket: str, digest: str, output: dict[str, Any]) -> None:
        pointer = {k: v for k, v in output.items() if k not in ("url", "urlExpiresAt")}
        try:
            self._s3.put_object(
                Bucket=bucket,
                Key=f"{CACHE_PREFIX}{digest}.json",
                Body=json.dumps(pointer).encode(),
                ContentType="application/json",
                Metadata={api.S3_METADATA_SPEC_HASH: digest},
            )
        except (ClientError, BotoCoreError) as err:
            log.warning("could not record cache entry %s: %s", digest, err)

    def presign(self, uri: str, seconds: int) -> str | None:
        if seconds <= 0:
            return None
        bucket, key = split_uri(uri)
        url = self._s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds)
        return str(url)

    def delete_output(self, output: dict[str, Any], digest: str | None) -> list[str]:
        """Delete the video, its poster and the cache pointer to it; return what was deleted."""
        deleted: list[str] = []
        for uri in (output.get("uri"), output.get("posterUri")):
            if not uri:
                continue
            bucket, key = split_uri(str(uri))
            self._s3.delete_object(Bucket=bucket, Key=key)
            deleted.append(str(uri))
        if digest and output.get("uri"):
            bucket, _ = split_uri(str(output["uri"]))
            pointer = self.lookup_raw(bucket, digest)
            if pointer and pointer.get("uri") == output.get("uri"):
                self._s3.delete_object(Bucket=bucket, Key=f"{CACHE_PREFIX}{digest}.json")
        return deleted

    def lookup_raw(self, bucket: str, digest: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._s3.get_object(Bucket=bucket, Key=f"{CACHE_PREFIX}{digest}.json")["Body"].read())
        except (ClientError, BotoCoreError, ValueError):
            return None
        return data if isinstance(data, dict) else None
