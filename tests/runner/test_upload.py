"""Uploads: verified by sha256, idempotent across retried pods, multipart when large, retried when flaky."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from videogen_api import v1alpha1 as api
from videogen_runner import upload
from videogen_runner.errors import InvalidInputError, UploadError
from videogen_runner.s3 import RetryPolicy, make_client, with_retries
from videogen_runner.upload import check_reachable, presign, upload_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from videogen_devcluster import S3Server

FAST = RetryPolicy(attempts=2, backoff_seconds=0.05)


def video_file(tmp_path: Path, size: int = 50_000, name: str = "v.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def put(client: S3Client, path: Path, bucket: str, key: str = "v.mp4") -> upload.Uploaded:
    return upload_file(
        client,
        path,
        bucket,
        key,
        content_type="video/mp4",
        metadata={api.S3_METADATA_SPEC_HASH: "abc"},
        policy=FAST,
    )


@pytest.mark.s3
class TestUploads:
    def test_sha256_and_spec_hash_travel_as_metadata(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        client = make_client(s3.env())
        path = video_file(tmp_path)

        uploaded = put(client, path, bucket)

        head = client.head_object(Bucket=bucket, Key="v.mp4")
        assert uploaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert head["Metadata"] == {api.S3_METADATA_SHA256: uploaded.sha256, api.S3_METADATA_SPEC_HASH: "abc"}
        assert head["ContentType"] == "video/mp4"
        assert (uploaded.size_bytes, uploaded.skipped) == (50_000, False)

    def test_a_retried_pod_does_not_upload_the_same_video_twice(
        self, s3: S3Server, bucket: str, tmp_path: Path
    ) -> None:
        client = make_client(s3.env())
        path = video_file(tmp_path)
        put(client, path, bucket)
        first = client.head_object(Bucket=bucket, Key="v.mp4")["LastModified"]
        time.sleep(1.1)

        again = put(client, path, bucket)

        assert again.skipped
        assert client.head_object(Bucket=bucket, Key="v.mp4")["LastModified"] == first

    def test_different_content_replaces_the_object(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        client = make_client(s3.env())
        put(client, video_file(tmp_path, name="a.mp4"), bucket)
        second = put(client, video_file(tmp_path, name="b.mp4"), bucket)
        assert not second.skipped
        assert client.head_object(Bucket=bucket, Key="v.mp4")["Metadata"][api.S3_METADATA_SHA256] == second.sha256

    def test_large_videos_go_up_in_parts(
        self, s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(upload, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
        monkeypatch.setattr(upload, "MULTIPART_CHUNK", 5 * 1024 * 1024)
        client = make_client(s3.env())
        path = video_file(tmp_path, size=12 * 1024 * 1024)

        uploaded = put(client, path, bucket, "big.mp4")

        etag = client.head_object(Bucket=bucket, Key="big.mp4")["ETag"].strip('"')
        assert etag.endswith("-3"), f"a multipart ETag names its part count: {etag}"
        body = client.get_object(Bucket=bucket, Key="big.mp4")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == uploaded.sha256

    def test_the_presigned_url_serves_the_video(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        client = make_client(s3.env())
        path = video_file(tmp_path)
        put(client, path, bucket)

        url, expires = presign(client, bucket, "v.mp4", 600)

        assert "X-Amz-Signature=" in url, "SigV4"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == path.read_bytes()
        assert 590 < (expires.timestamp() - time.time()) <= 600

    def test_a_refusal_is_not_retried(self, s3: S3Server, tmp_path: Path) -> None:
        client = make_client(s3.env())
        with pytest.raises(UploadError, match="NoSuchBucket"):
            put(client, video_file(tmp_path), "no-such-bucket-here")


class TestUnreachableStore:
    def test_gives_up_after_the_retry_budget(self, closed_port: int, tmp_path: Path) -> None:
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "VIDEOGEN_S3_MAX_ATTEMPTS": "2",
        }
        client = make_client(env)
        started = time.monotonic()

        with pytest.raises(UploadError, match="failed after retries") as err:
            put(client, video_file(tmp_path), "videos")

        assert "Could not connect" in err.value.message
        assert time.monotonic() - started < 20

    def test_reachability_is_checked_before_any_work(self, closed_port: int) -> None:
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}", "AWS_ACCESS_KEY_ID": "x"}
        env["AWS_SECRET_ACCESS_KEY"] = "y"
        with pytest.raises(UploadError, match="unreachable after retries"):
            check_reachable(make_client(env), "videos", "v.mp4", FAST)


class TestRetryPolicy:
    def test_transient_failures_are_retried_with_growing_pauses(self) -> None:
        calls: list[int] = []
        pauses: list[float] = []

        def flaky() -> str:
            calls.append(1)
            if len(calls) < 3:
                raise EndpointConnectionError(endpoint_url="http://s3")
            return "ok"

        policy = RetryPolicy(attempts=4, backoff_seconds=1.0)
        assert with_retries("upload", flaky, policy, sleep=pauses.append) == "ok"
        assert len(calls) == 3
        assert 0.5 <= pauses[0] <= 1.0 and 1.0 <= pauses[1] <= 2.0

    def test_the_budget_is_bounded(self) -> None:
        pauses: list[float] = []

        def down() -> None:
            raise EndpointConnectionError(endpoint_url="http://s3")

        with pytest.raises(EndpointConnectionError):
            with_retries("upload", down, RetryPolicy(attempts=3), sleep=pauses.append)
        assert len(pauses) == 2

    def test_refusals_fail_at_once(self) -> None:
        pauses: list[float] = []
        denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "Put")

        def refuse() -> None:
            raise denied

        with pytest.raises(ClientError):
            with_retries("upload", refuse, RetryPolicy(attempts=5), sleep=pauses.append)
        assert pauses == []

    def test_throttling_is_transient(self) -> None:
        pauses: list[float] = []
        slow = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Put")
        outcomes = iter([slow, None])

        def throttled() -> str:
            exc = next(outcomes)
            if exc:
                raise exc
            return "ok"

        assert with_retries("upload", throttled, RetryPolicy(attempts=2), sleep=pauses.append) == "ok"


# --------------------------------------------------------------------------- uploads through a grant


def grant_for(
    s3: S3Server,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    uid: str = "uid-1",
    name: str = "clip",
    multipart: bool = False,
) -> dict[str, Any]:
    """The grant the operator would put in the job's Secret, signed with the platform's keys."""
    from datetime import UTC, datetime

    from videogen_operator import credentials
    from videogen_operator.results import ObjectStore
    from videogen_operator.settings import OperatorSettings

    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    settings = OperatorSettings(
        s3_endpoint=s3.endpoint_url,
        s3_bucket=bucket,
        multipart_threshold_bytes=5 * 1024 * 1024,
        multipart_part_bytes=5 * 1024 * 1024,
    )
    spec = api.VideoGenJobSpec.model_validate(
        {
            "model": "hf://org/tiny",
            "task": "text-to-video",
            "prompt": "a cat",
            "width": 64 if not multipart else 1024,
            "height": 64 if not multipart else 1024,
            "numFrames": 9,
        }
    )
    grant = credentials.build_grant(
        ObjectStore(settings), "team-a", name, uid, spec, settings, "abc", datetime.now(UTC)
    )
    for k in s3.env():
        monkeypatch.delenv(k)
    return grant


def granted(grant: dict[str, Any]) -> S3Client:
    return make_client({"VIDEOGEN_GRANT": json.dumps(grant)})


@pytest.mark.s3
class TestGrantedUploads:
    def test_upload_carries_the_signed_job_uid_and_never_overwrites(
        self, s3: S3Server, s3_client: S3Client, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        grant = grant_for(s3, bucket, monkeypatch)
        key = grant["video"]["key"]
        assert key == "videogen/team-a/clip-abc.mp4"
        client = granted(grant)
        path = video_file(tmp_path)

        first = put(client, path, bucket, key)
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert head["Metadata"][api.S3_METADATA_JOB_UID] == "uid-1"
        assert first.skipped is False

        # A retried pod with the same bytes: the conditional PUT is refused, the content matches.
        again = put(client, path, bucket, key)
        assert again.skipped is True and again.sha256 == first.sha256

        # Different bytes (another job's grant for the same key): refused, the object is untouched.
        other = granted(grant_for(s3, bucket, monkeypatch, uid="uid-2"))
        with pytest.raises(InvalidInputError, match="already holds a different object"):
            put(other, video_file(tmp_path, name="w.mp4"), bucket, key)
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == first.sha256

    def test_keys_outside_the_grant_are_refused_without_a_request(
        self, s3: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        client = granted(grant_for(s3, bucket, monkeypatch))
        with pytest.raises(UploadError, match="not in this job's grant"):
            put(client, video_file(tmp_path), bucket, "videogen/team-b/theirs.mp4")
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket=bucket, Key="videogen/team-b/theirs.mp4")
        assert err.value.response["Error"]["Code"] == "AccessDenied"

    def test_large_video_goes_up_in_parts(
        self, s3: S3Server, s3_client: S3Client, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        grant = grant_for(s3, bucket, monkeypatch, multipart=True)
        assert grant["multipart"]["partBytes"] == 5 * 1024 * 1024
        # The part URLs travel as a template and signatures (videogen_api.grant), expanded here.
        assert "parts" not in grant["multipart"] and len(grant["multipart"]["partSignatures"]) >= 3
        key = grant["video"]["key"]
        path = video_file(tmp_path, size=11 * 1024 * 1024)
        uploaded = put(granted(grant), path, bucket, key)
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert str(head["ETag"]).strip('"').endswith("-3"), head["ETag"]
        assert head["Metadata"][api.S3_METADATA_JOB_UID] == "uid-1"
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == uploaded.sha256

    def test_reachability_check_works_through_the_grant(
        self, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        grant = grant_for(s3, bucket, monkeypatch)
        check_reachable(granted(grant), bucket, grant["video"]["key"], FAST)


def test_an_expired_grant_fails_before_any_work() -> None:
    grant = {"video": {"bucket": "b", "key": "k"}, "expiresAt": "2020-01-01T00:00:00+00:00"}
    with pytest.raises(UploadError, match="expired at 2020-01-01"):
        make_client({"VIDEOGEN_GRANT": json.dumps(grant)})
