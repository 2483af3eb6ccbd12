"""The local S3 endpoint behaves like S3 where the runner depends on it: bytes in, same bytes out,
presigned URLs, and signatures that are actually checked."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from videogen_api import v1alpha1 as api
from videogen_devcluster import S3Server
from videogen_devcluster.testing import unique_name
from videogen_operator.results import ObjectStore
from videogen_operator.settings import OperatorSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.s3


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.create_bucket(unique_name("videos"))


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def client_with(s3: S3Server, secret: str) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


class TestObjects:
    def test_put_and_get_are_byte_identical(self, s3: S3Server, bucket: str) -> None:
        # Binary content of a video's size class: every byte value, and not a multiple of any buffer.
        payload = bytes(range(256)) * 4096 + os.urandom(12345)
        client = s3.client()

        client.put_object(Bucket=bucket, Key="out/clip.mp4", Body=payload, ContentType="video/mp4")
        got = client.get_object(Bucket=bucket, Key="out/clip.mp4")

        assert got["Body"].read() == payload
        assert got["ContentType"] == "video/mp4"
        assert got["ETag"].strip('"') == hashlib.md5(payload).hexdigest()
        assert (s3.data_dir / bucket / "out" / "clip.mp4").read_bytes() == payload, "posix backend: plain files"

    def test_listing_and_missing_keys(self, s3: S3Server, bucket: str) -> None:
        client = s3.client()
        for key in ("a/1.png", "a/2.png", "b/3.png"):
            client.put_object(Bucket=bucket, Key=key, Body=b"x")

        listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
        assert [o["Key"] for o in listed["Contents"]] == ["a/1.png", "a/2.png"]
        with pytest.raises(ClientError) as missing:
            client.get_object(Bucket=bucket, Key="a/none.png")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"


class TestSignatures:
    def test_presigned_get_serves_the_object(self, s3: S3Server, bucket: str) -> None:
        payload = os.urandom(300_000)
        client = s3.client()
        client.put_object(Bucket=bucket, Key="clip.mp4", Body=payload)

        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "clip.mp4"}, ExpiresIn=300)

        assert url.startswith(f"{s3.endpoint_url}/{bucket}/clip.mp4?"), "path-style URL on the local endpoint"
        assert fetch(url) == (200, payload)

    def test_tampered_presigned_signature_is_refused(self, s3: S3Server, bucket: str) -> None:
        client = s3.client()
        client.put_object(Bucket=bucket, Key="clip.mp4", Body=b"secret video")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "clip.mp4"}, ExpiresIn=300)
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        signature = query["X-Amz-Signature"]
        query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        tampered = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

        status, answer = fetch(tampered)

        assert status == 403
        assert b"SignatureDoesNotMatch" in answer

    def test_presigned_url_for_another_key_is_refused(self, s3: S3Server, bucket: str) -> None:
        client = s3.client()
        client.put_object(Bucket=bucket, Key="mine.mp4", Body=b"mine")
        client.put_object(Bucket=bucket, Key="other.mp4", Body=b"other")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "mine.mp4"}, ExpiresIn=300)

        status, _ = fetch(url.replace("/mine.mp4?", "/other.mp4?"))

        assert status == 403

    def test_expired_presigned_url_is_refused(self, s3: S3Server, bucket: str) -> None:
        client = s3.client()
        client.put_object(Bucket=bucket, Key="clip.mp4", Body=b"soon gone")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "clip.mp4"}, ExpiresIn=1)

        time.sleep(2.1)  # the expiry is whole seconds after the signing time; nothing to poll for

        assert fetch(url)[0] == 403

    def test_wrong_secret_is_refused(self, s3: S3Server, bucket: str) -> None:
        impostor = client_with(s3, "not-the-secret")

        with pytest.raises(ClientError) as refused:
            impostor.list_objects_v2(Bucket=bucket)

        assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    def test_anonymous_request_is_refused(self, s3: S3Server, bucket: str) -> None:
        s3.client().put_object(Bucket=bucket, Key="clip.mp4", Body=b"private")

        assert fetch(f"{s3.endpoint_url}/{bucket}/clip.mp4")[0] == 403


class TestOperatorSignedUrls:
    """The grant URLs the operator signs itself (presign.py, once a shape matched botocore's) are
    accepted, and checked, by a real S3 server."""

    def test_put_get_and_abort_through_urls_signed_by_the_operator(
        self, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        store = ObjectStore(
            OperatorSettings(
                s3_bucket=bucket, s3_endpoint=s3.endpoint_url, s3_region="us-east-1", s3_addressing_style="path"
            )
        )
        metadata = {api.S3_METADATA_JOB_UID: "0f6c2a4e-1b7d-4c55-9a1e-3d2b8e7f6a10"}
        headers = {
            "Content-Type": "video/mp4",
            "If-None-Match": "*",
            f"x-amz-meta-{api.S3_METADATA_JOB_UID}": metadata[api.S3_METADATA_JOB_UID],
        }

        def put_url(key: str) -> str:
            return store.presign_op(
                "put_object", 300, Bucket=bucket, Key=key, ContentType="video/mp4", Metadata=metadata, IfNoneMatch="*"
            )

        put_url("warm/first.mp4")  # the first of each shape is botocore's, checked against presign.py
        store.presign_op("get_object", 300, Bucket=bucket, Key="warm/first.mp4")
        assert {
            ("PUT", (), ("content-type", "if-none-match", f"x-amz-meta-{api.S3_METADATA_JOB_UID}")),
            ("GET", (), ()),
        } <= store._presigner.verified

        payload = os.urandom(200_000)
        url = put_url("team-a/clip-0f6c2a4e.mp4")
        assert send("PUT", url, payload, headers)[0] == 200
        assert send("PUT", url, b"other bytes", headers)[0] == 412, "If-None-Match is signed in and honoured"
        got = store.presign_op("get_object", 300, Bucket=bucket, Key="team-a/clip-0f6c2a4e.mp4")
        assert fetch(got) == (200, payload)
        head = s3.client().head_object(Bucket=bucket, Key="team-a/clip-0f6c2a4e.mp4")
        assert head["Metadata"][api.S3_METADATA_JOB_UID] == metadata[api.S3_METADATA_JOB_UID]
        tampered = got.replace("X-Amz-Expires=300", "X-Amz-Expires=301")
        assert fetch(tampered)[0] == 403
        wrong_header = {**headers, "Content-Type": "text/html"}
        assert send("PUT", put_url("team-a/other.mp4"), payload, wrong_header)[0] == 403

        upload_id = store.create_multipart(bucket, "team-a/big.mp4", "video/mp4", metadata)
        store.presign_op("abort_multipart_upload", 300, Bucket=bucket, Key="team-a/big.mp4", UploadId="x")  # checked
        abort = store.presign_op("abort_multipart_upload", 300, Bucket=bucket, Key="team-a/big.mp4", UploadId=upload_id)
        assert ("DELETE", ("uploadId",), ()) in store._presigner.verified
        assert send("DELETE", abort, b"", {})[0] == 204
        assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def send(method: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


class TestEnvironment:
    def test_aws_variables_point_boto3_at_the_local_endpoint(
        self, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for key, value in s3.env().items():
            monkeypatch.setenv(key, value)
        s3.client().put_object(Bucket=bucket, Key="k", Body=b"v")

        # Configured only through the environment, as the runner's pods will be.
        plain = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))

        assert plain.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
