"""Object storage through the job's grant: presigned URLs only, no keys.

The operator puts a JSON grant in a per-job Secret (`VIDEOGEN_GRANT`): PUT URLs
for this job's video and poster (with `If-None-Match: *` and the job's uid
signed in), multipart part URLs when the video could be large, and GET URLs
for its own video, an s3:// input image and the files of an allowed s3://
model. `PresignedClient` answers the few S3 calls the rest of the runner makes
(get_object, head_object, the list_objects_v2 paginator) from those URLs, so
input and model code work unchanged against any S3-compatible store; anything
outside the grant is AccessDenied without a request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import urllib3
from botocore.exceptions import ClientError

from videogen_api import grant as grant_format
from videogen_api import v1alpha1 as api

from .errors import InvalidInputError, UploadError, one_line

log = logging.getLogger(__name__)

SINGLE_PUT_LIMIT = 5 * 1024**3  # S3's largest single PUT
_CHUNK = 1024 * 1024


def _client_error(status: int, code: str, message: str, operation: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


_CODES = {403: "AccessDenied", 404: "NoSuchKey", 412: "PreconditionFailed"}


class _Body:
    """The part of botocore's StreamingBody the runner uses."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def read(self, amt: int | None = None) -> bytes:
        return self._response.read(amt)

    def iter_chunks(self, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        yield from self._response.stream(chunk_size)

    def close(self) -> None:
        self._response.release_conn()


@dataclass(frozen=True)
class Put:
    url: str
    headers: dict[str, str]


class PresignedClient:
    """Presigned URLs posing as the S3 client calls the runner makes."""

    def __init__(self, grant: Mapping[str, Any], *, timeout: float = 60.0) -> None:
        self.grant = grant
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10.0, read=timeout), retries=False)
        self._gets: dict[tuple[str, str], str] = {}
        self._puts: dict[tuple[str, str], Put] = {}
        for name in ("video", "poster"):
            target = grant.get(name) or {}
            where = (str(target.get("bucket")), str(target.get("key")))
            self._gets[where] = str(target.get("get"))
            put = target.get("put") or {}
            self._puts[where] = Put(
                str(put.get("url")), {str(k): str(v) for k, v in (put.get("headers") or {}).items()}
            )
        image = grant.get("image")
        if image:
            self._gets[(str(image["bucket"]), str(image["key"]))] = str(image["get"])
        model = grant.get("model") or {}
        self._model_bucket = str(model.get("bucket", ""))
        self._model_files: dict[str, dict[str, Any]] = dict(model.get("files") or {})
        for entry in self._model_files.values():
            self._gets[(self._model_bucket, str(entry["key"]))] = str(entry["get"])

    @classmethod
    def from_json(cls, text: str) -> PresignedClient:
        try:
            grant = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"{api.ENV_GRANT}: not valid JSON ({one_line(str(exc), 100)})") from exc
        if not isinstance(grant, dict) or "video" not in grant:
            raise InvalidInputError(f"{api.ENV_GRANT}: not a grant (no video entry)")
        expires = grant.get("expiresAt")
        if expires and datetime.fromisoformat(str(expires)) <= datetime.now(UTC):
            # Checked before any GPU work: the URLs would be refused at upload time.
            raise UploadError(
                f"the job's presigned URLs expired at {expires} (it waited longer than its deadlines); "
                "create the VideoGenJob again"
            )
        return cls(grant)

    # ------------------------------------------------------------------ reads

    def _get(self, bucket: str, key: str, operation: str, headers: dict[str, str] | None = None) -> Any:
        url = self._gets.get((bucket, key))
        if url is None:
            raise _client_error(403, "AccessDenied", f"s3://{bucket}/{key} is not in this job's grant", operation)
        response = self._http.request("GET", url, headers=headers or {}, preload_content=False)
        if response.status >= 300:
            text = response.read(2048).decode(errors="replace")
            response.release_conn()
            code = _CODES.get(response.status, "ServerError" if response.status >= 500 else "HttpError")
            if code == "HttpError" and response.status == 416:
                code = "NoSuchKey"  # a range on an empty object
            raise _client_error(response.status, code, one_line(text, 200), operation)
        return response

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        response = self._get(Bucket, Key, "GetObject")
        return {
            "ContentLength": int(response.headers.get("Content-Length", 0)),
            "ETag": response.headers.get("ETag", ""),
            "Metadata": _metadata(response.headers),
            "Body": _Body(response),
        }

    def head_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        # A GET URL is signed for GET only: read one byte instead of HEAD.
        response = self._get(Bucket, Key, "HeadObject", {"Range": "bytes=0-0"})
        response.release_conn()
        total = str(response.headers.get("Content-Range", "")).rpartition("/")[2]
        length = int(total) if total.isdigit() else int(response.headers.get("Content-Length", 0))
        return {
            "ContentLength": length,
            "ETag": response.headers.get("ETag", ""),
            "Metadata": _metadata(response.headers),
        }

    def get_paginator(self, operation: str) -> _ModelListing:
        if operation != "list_objects_v2":
            raise NotImplementedError(operation)
        return _ModelListing(self._model_bucket, self._model_files)

    def generate_presigned_url(self, *_: Any, **__: Any) -> str:
        raise NotImplementedError("a presigned client cannot presign; the operator does")

    # ------------------------------------------------------------------ writes

    def put_file(self, path: Path, bucket: str, key: str, sha256: str) -> bool:
        """Upload `path` to its granted key without overwriting; True when the same bytes were
        already there (a retried pod). Raises InvalidInputError when another object holds the key."""
        put = self._puts.get((bucket, key))
        if put is None:
            raise UploadError(f"s3://{bucket}/{key} is not in this job's grant")
        size = path.stat().st_size
        multipart = self.grant.get("multipart")
        if multipart and key == self.grant["video"]["key"] and size > int(multipart["partBytes"]):
            if math.ceil(size / int(multipart["partBytes"])) <= len(grant_format.part_urls(multipart)):
                return self._multipart(path, bucket, key, sha256, multipart)
            if size > SINGLE_PUT_LIMIT:
                raise UploadError(f"s3://{bucket}/{key}: {size} bytes is more than this job's grant can upload")
        with path.open("rb") as fh:
            response = self._http.request(
                "PUT", put.url, body=fh, headers={**put.headers, "Content-Length": str(size)}, preload_content=True
            )
        return self._finish(response, bucket, key, sha256, "PutObject")

    def _multipart(self, path: Path, bucket: str, key: str, sha256: str, multipart: Mapping[str, Any]) -> bool:
        part_bytes = int(multipart["partBytes"])
        etags: list[str] = []
        with path.open("rb") as fh:
            for number, url in enumerate(grant_format.part_urls(multipart), start=1):
                chunk = fh.read(part_bytes)
                if not chunk:
                    break
                response = self._http.request("PUT", str(url), body=chunk, headers={"Content-Length": str(len(chunk))})
                if response.status >= 300:
                    self._raise(response, "UploadPart")
                etags.append(str(response.headers.get("ETag", "")))
                log.debug("uploaded part %d of s3://%s/%s", number, bucket, key)
        body = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
            for n, etag in enumerate(etags, start=1)
        )
        xml = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()
        complete = multipart["complete"]
        response = self._http.request(
            "POST",
            str(complete["url"]),
            body=xml,
            headers={**complete.get("headers", {}), "Content-Length": str(len(xml))},
        )
        if response.status == 200 and b"<Error>" in response.data:
            # S3 may answer 200 and put the error in the body of CompleteMultipartUpload.
            raise _client_error(500, "InternalError", one_line(response.data.decode(errors="replace"), 200), "Complete")
        return self._finish(response, bucket, key, sha256, "CompleteMultipartUpload")

    def _finish(self, response: urllib3.BaseHTTPResponse, bucket: str, key: str, sha256: str, operation: str) -> bool:
        if response.status < 300:
            return False
        if response.status == 412:
            # The key is taken: fine if it holds our bytes (an earlier attempt of this job), else refuse.
            if self.object_sha256(bucket, key) == sha256:
                return True
            raise InvalidInputError(
                f"spec.output.key: s3://{bucket}/{key} already holds a different object; a job never "
                "overwrites another job's output (choose another key)"
            )
        self._raise(response, operation)
        raise AssertionError("unreachable")

    def _raise(self, response: urllib3.BaseHTTPResponse, operation: str) -> None:
        text = response.data.decode(errors="replace") if response.data else ""
        code = _CODES.get(response.status, "ServerError" if response.status >= 500 else "HttpError")
        if response.status == 409:
            code = "ConditionalRequestConflict"  # a concurrent conditional write: try again
        raise _client_error(response.status, code, one_line(text, 300), operation)

    def object_sha256(self, bucket: str, key: str) -> str | None:
        try:
            response = self._get(bucket, key, "GetObject")
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        digest = hashlib.sha256()
        try:
            for chunk in response.stream(_CHUNK):
                digest.update(chunk)
        finally:
            response.release_conn()
        return digest.hexdigest()


class _ModelListing:
    def __init__(self, bucket: str, files: Mapping[str, Mapping[str, Any]]) -> None:
        self.bucket = bucket
        self.files = files

    def paginate(self, *, Bucket: str, Prefix: str = "", **_: Any) -> Iterator[dict[str, Any]]:  # noqa: N803
        if Bucket != self.bucket:
            raise _client_error(403, "AccessDenied", f"s3://{Bucket}/{Prefix} is not in this job's grant", "List")
        contents = [
            {"Key": str(f["key"]), "Size": int(f["size"]), "ETag": str(f.get("etag", ""))}
            for f in self.files.values()
            if str(f["key"]).startswith(Prefix)
        ]
        yield {"Contents": contents}


def _metadata(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower().removeprefix("x-amz-meta-"): v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")}
