"""Tenancy policy: a namespace writes below its own prefix, in the buckets it is given,
and reads s3:// images and models only where the policy allows."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from videogen_api import v1alpha1 as api
from videogen_operator import credentials, policy, results
from videogen_operator.manifests import JobRef
from videogen_operator.settings import OperatorSettings, load_settings
from videogen_operator.validation import SpecError, validate_spec

REF = JobRef(namespace="team-a", name="clip", uid="0f1e2d3c-aaaa-bbbb-cccc-1234567890ab")


def spec(**overrides: Any) -> api.VideoGenJobSpec:
    raw: dict[str, Any] = {"model": "hf://org/tiny", "task": "text-to-video", "prompt": "a cat", "seed": 1}
    raw.update(overrides)
    return api.VideoGenJobSpec.model_validate(raw)


def settings(**values: Any) -> OperatorSettings:
    return OperatorSettings(s3_bucket="videos", **values)


def check(s: api.VideoGenJobSpec, st: OperatorSettings | None = None) -> None:
    validate_spec(REF, s, st or settings(), "abc", lambda _: True)


class TestOutputConfinement:
    def test_default_key_is_below_the_namespace_prefix(self) -> None:
        where = policy.output_location("team-a", "clip", spec(), settings(), "abc")
        assert (where.bucket, where.key) == ("videos", "videogen/team-a/clip-abc.mp4")
        assert where.poster_key == "videogen/team-a/clip-abc.mp4.poster.jpg"

    def test_spec_key_is_relative_to_the_prefix(self) -> None:
        where = policy.output_location("team-a", "clip", spec(output={"key": "videogen/team-b/x.mp4"}), settings(), "")
        assert where.key == "videogen/team-a/videogen/team-b/x.mp4"

    def test_prefix_template_comes_from_settings(self) -> None:
        st = settings(output_prefix_template="tenants/{namespace}/out")
        assert policy.output_location("team-a", "c", spec(output={"key": "k.mp4"}), st, "").key == (
            "tenants/team-a/out/k.mp4"
        )

    @pytest.mark.parametrize("key", ["../team-b/x.mp4", "a/../../b.mp4", "a//b.mp4", "./a.mp4", "a/.", "a/"])
    def test_dot_and_empty_segments_are_refused_by_the_contract(self, key: str) -> None:
        with pytest.raises(ValidationError, match="segments"):
            spec(output={"key": key})

    @pytest.mark.parametrize("key", ["../team-b/x.mp4", "a//b.mp4", "a\x01b.mp4", "/abs.mp4"])
    def test_and_again_by_the_operator(self, key: str) -> None:
        # A spec stored before the CRD had its rules (model_construct skips the contract's validators).
        unchecked = spec().model_copy(update={"output": api.OutputSpec.model_construct(key=key)})
        with pytest.raises(SpecError) as err:
            check(unchecked)
        assert err.value.reason == api.Reason.POLICY_VIOLATION
        assert "spec.output.key" in str(err.value)

    def test_control_characters_are_refused_by_the_contract(self) -> None:
        with pytest.raises(ValidationError):
            spec(output={"key": "a\x07b.mp4"})

    def test_only_the_configured_bucket_by_default(self) -> None:
        with pytest.raises(SpecError) as err:
            check(spec(output={"bucket": "other-team"}))
        assert err.value.reason == api.Reason.POLICY_VIOLATION
        assert "spec.output.bucket" in str(err.value) and "other-team" in str(err.value)
        check(spec(output={"bucket": "videos"}))

    def test_buckets_from_policy_per_namespace(self) -> None:
        st = settings(allowed_buckets=["shared"], namespace_buckets={"team-a": ["a-private"]})
        check(spec(output={"bucket": "shared"}), st)
        check(spec(output={"bucket": "a-private"}), st)
        with pytest.raises(SpecError):
            validate_spec(JobRef("team-b", "c", "u"), spec(output={"bucket": "a-private"}), st, "abc", lambda _: True)


class TestInputs:
    def test_s3_image_must_be_the_namespaces_own(self) -> None:
        i2v = {"task": "image-to-video"}
        check(spec(image="s3://videos/videogen/team-a/in.png", **i2v))
        for image, field in [
            ("s3://videos/videogen/team-b/in.png", "prefix"),
            ("s3://other/videogen/team-a/in.png", "not allowed"),
            ("s3://videos/inputs/in.png", "prefix"),
        ]:
            with pytest.raises(SpecError, match=field) as err:
                check(spec(image=image, **i2v))
            assert err.value.reason == api.Reason.POLICY_VIOLATION and "spec.image" in str(err.value)

    def test_dot_segments_in_an_s3_image_are_refused_by_the_contract(self) -> None:
        with pytest.raises(ValidationError, match="segments"):
            spec(task="image-to-video", image="s3://videos/videogen/team-a/../team-b/in.png")

    def test_s3_models_are_refused_unless_allowed(self) -> None:
        with pytest.raises(SpecError, match=r"spec\.model: s3:// models are not allowed"):
            check(spec(model="s3://models/wan"))
        st = settings(allowed_model_prefixes=["s3://models/shared", "s3://models/{namespace}/"])
        check(spec(model="s3://models/shared/wan"), st)
        check(spec(model="s3://models/team-a/mine"), st)
        for model in ("s3://models/team-b/theirs", "s3://models/sharedX/wan", "s3://other/shared/wan"):
            with pytest.raises(SpecError, match="outside the allowed model prefixes"):
                check(spec(model=model), st)

    def test_blank_prompt_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="blank"):
            spec(prompt=" \t\n\u00a0")


class TestSettings:
    def test_a_prefix_template_that_would_cover_the_cache_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"videogen/\.cache"):
            load_settings({"VIDEOGEN_OUTPUT_PREFIX_TEMPLATE": "{namespace}/"})

    def test_workload_identity_needs_a_runner_service_account(self) -> None:
        with pytest.raises(ValueError, match="runner_service_account"):
            load_settings({"VIDEOGEN_RUNNER_CREDENTIALS": "workload-identity"})

    def test_cache_pointers_are_scoped_to_the_namespace_by_default(self) -> None:
        assert policy.cache_pointer_key(settings(), "team-a", "d") == "videogen/.cache/team-a/d.json"
        assert (
            policy.cache_pointer_key(settings(cache_scope="cluster"), "team-a", "d")
            == "videogen/.cache/_cluster/d.json"
        )


class FakeStore:
    """Presigns like boto3 would (the operation and params are visible in the URL) and records calls."""

    def __init__(self) -> None:
        self.multipart: list[tuple[str, str]] = []
        self.seconds: set[int] = set()

    def presign_op(self, operation: str, seconds: int, **params: Any) -> str:
        self.seconds.add(seconds)
        query = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("Bucket", "Key", "Metadata"))
        return f"https://s3.test/{params['Bucket']}/{params['Key']}?op={operation}&{query}"

    def presign_parts(self, bucket: str, key: str, upload_id: str, count: int, seconds: int) -> list[str]:
        return [
            self.presign_op("upload_part", seconds, Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n)
            for n in range(1, count + 1)
        ]

    def create_multipart(self, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        self.multipart.append((bucket, key))
        return "upload-1"

    def list_model(self, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
        return {"model_index.json": {"key": f"{prefix}/model_index.json", "size": 10, "etag": '"e"'}}


class TestGrant:
    NOW = datetime(2026, 1, 1, tzinfo=UTC)

    def build(self, s: api.VideoGenJobSpec, st: OperatorSettings | None = None) -> tuple[dict[str, Any], FakeStore]:
        store = FakeStore()
        grant = credentials.build_grant(store, "team-a", "clip", REF.uid, s, st or settings(), "abc", self.NOW)
        return grant, store

    def test_small_video_gets_conditional_puts_for_its_own_keys_only(self) -> None:
        grant, store = self.build(spec(width=64, height=64, num_frames=9))
        assert grant["video"]["key"] == "videogen/team-a/clip-abc.mp4"
        put = grant["video"]["put"]
        assert "op=put_object" in put["url"] and "IfNoneMatch=*" in put["url"]
        assert put["headers"]["If-None-Match"] == "*"
        assert put["headers"][f"x-amz-meta-{api.S3_METADATA_JOB_UID}"] == REF.uid
        assert grant["poster"]["key"] == "videogen/team-a/clip-abc.mp4.poster.jpg"
        assert "multipart" not in grant and "image" not in grant and "model" not in grant
        assert store.multipart == []
        # startup 600 + timeout 3600 + cancel grace 3600 + margin 300
        assert store.seconds == {8100}
        assert grant["expiresAt"] == "2026-01-01T02:15:00+00:00"

    def test_large_video_gets_bounded_multipart_urls(self) -> None:
        grant, store = self.build(spec())
        parts = grant["multipart"]["parts"]
        assert store.multipart == [("videos", "videogen/team-a/clip-abc.mp4")]
        assert 1 <= len(parts) <= credentials.MAX_PART_URLS
        assert len(parts) * grant["multipart"]["partBytes"] >= credentials.raw_size_bound(spec())
        assert [parse_qs(urlsplit(u).query)["PartNumber"] for u in parts[:2]] == [["1"], ["2"]]
        assert len(json.dumps(grant)) < 100_000  # fits one environment variable

    def test_inputs_get_read_urls(self) -> None:
        st = settings(allowed_model_prefixes=["s3://models/"])
        grant, _ = self.build(
            spec(task="image-to-video", image="s3://videos/videogen/team-a/in.png", model="s3://models/wan"), st
        )
        assert grant["image"]["get"].startswith("https://s3.test/videos/videogen/team-a/in.png?op=get_object")
        assert grant["model"]["files"]["model_index.json"]["get"].startswith("https://s3.test/models/wan/")

    def test_lifetime_is_bounded_by_sigv4(self) -> None:
        s = spec(timeout_seconds=api.MAX_TIMEOUT_SECONDS, startup_timeout_seconds=api.MAX_TIMEOUT_SECONDS)
        assert credentials.grant_lifetime(s, settings()) == api.MAX_PRESIGN_SECONDS

    def test_a_kueue_jobs_first_grant_also_covers_the_wait_for_admission(self) -> None:
        plain, queued = spec(), spec(queue_name="gpu-queue")
        run = credentials.run_lifetime(plain, settings())
        assert run == 8100 and credentials.grant_lifetime(plain, settings()) == run
        assert credentials.grant_lifetime(queued, settings()) == run + 21600
        assert credentials.grant_lifetime(queued, settings(kueue_grant_wait_seconds=600)) == run + 600
        grant, store = self.build(queued)
        assert store.seconds == {run + 21600}
        assert grant["expiresAt"] == (self.NOW + timedelta(seconds=run + 21600)).isoformat()
        with pytest.raises(ValueError, match="kueue_grant_wait_seconds"):
            settings(kueue_grant_wait_seconds=60)


class TestStoreChecksum:
    """Only a full-object SHA-256 the store computed counts; a multipart composite or metadata does not."""

    def test_full_object_checksum_is_used(self) -> None:
        digest = hashlib.sha256(b"video").digest()
        head = {"ChecksumSHA256": base64.b64encode(digest).decode(), "ChecksumType": "FULL_OBJECT"}
        assert results._store_sha256(head) == digest.hex()

    def test_composite_and_metadata_are_not(self) -> None:
        digest = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
        assert results._store_sha256({"ChecksumSHA256": f"{digest}-3", "ChecksumType": "COMPOSITE"}) is None
        assert results._store_sha256({"ChecksumSHA256": digest, "ChecksumType": "COMPOSITE"}) is None
        assert results._store_sha256({"Metadata": {api.S3_METADATA_SHA256: "ab" * 32}}) is None
