"""s3:// models synced into the node's cache: only what changed, never corrupted by concurrent runners."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from videogen_runner.errors import ModelNotFoundError
from videogen_runner.model_sync import MANIFEST_NAME, _safe_relative, cache_dir_for, sync_prefix
from videogen_runner.s3 import RetryPolicy, make_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from videogen_devcluster import S3Server

pytestmark = pytest.mark.s3
POLICY = RetryPolicy(attempts=2, backoff_seconds=0.05)

FILES = {
    "model_index.json": b'{"_class_name": "WanPipeline"}',
    "transformer/config.json": b"{}",
    "transformer/diffusion_pytorch_model.safetensors": os.urandom(300_000),
    "vae/diffusion_pytorch_model.safetensors": os.urandom(200_000),
}


def publish(client: S3Client, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/{rel}", Body=data, Metadata={"sha256": hashlib.sha256(data).hexdigest()}
        )


def local_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }


class TestIncrementalSync:
    def test_first_sync_fetches_everything_then_nothing(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        client = make_client(s3.env())
        publish(client, bucket, "models/tiny", FILES)

        first = sync_prefix(client, f"s3://{bucket}/models/tiny", tmp_path, POLICY, env={})
        second = sync_prefix(client, f"s3://{bucket}/models/tiny", tmp_path, POLICY, env={})

        assert sorted(first.downloaded) == sorted(FILES)
        assert (second.downloaded, second.unchanged) == ([], len(FILES))
        assert first.path == cache_dir_for(tmp_path, bucket, "models/tiny") == tmp_path / "s3" / bucket / "models/tiny"
        assert local_files(first.path) == FILES

    def test_only_changed_and_missing_files_are_fetched(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        client = make_client(s3.env())
        publish(client, bucket, "m", FILES)
        synced = sync_prefix(client, f"s3://{bucket}/m", tmp_path, POLICY, env={})

        changed = {"vae/diffusion_pytorch_model.safetensors": os.urandom(200_000)}
        publish(client, bucket, "m", changed)
        (synced.path / "transformer" / "config.json").unlink()
        client.delete_object(Bucket=bucket, Key="m/model_index.json")

        again = sync_prefix(client, f"s3://{bucket}/m", tmp_path, POLICY, env={})

        assert sorted(again.downloaded) == ["transformer/config.json", "vae/diffusion_pytorch_model.safetensors"]
        assert again.removed == ["model_index.json"], "files gone from S3 go from the cache too"
        expected = {**FILES, **changed}
        del expected["model_index.json"]
        assert local_files(synced.path) == expected

    def test_leftovers_of_a_killed_sync_are_cleaned_up(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        client = make_client(s3.env())
        publish(client, bucket, "m", FILES)
        dest = cache_dir_for(tmp_path, bucket, "m")
        (dest / "vae").mkdir(parents=True)
        (dest / "vae" / ".part-abc123").write_bytes(b"half a file")

        sync_prefix(client, f"s3://{bucket}/m", tmp_path, POLICY, env={})

        assert not list(dest.rglob(".part-*"))

    def test_an_empty_prefix_is_a_missing_model(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        with pytest.raises(ModelNotFoundError, match="no objects under that prefix"):
            sync_prefix(make_client(s3.env()), f"s3://{bucket}/nothing", tmp_path, POLICY, env={})

    def test_object_names_cannot_escape_the_model_directory(self) -> None:
        with pytest.raises(ModelNotFoundError, match="outside the model directory"):
            _safe_relative("../../etc/passwd")
        assert _safe_relative("vae/config.json").parts == ("vae", "config.json")


class TestConcurrentRunners:
    def test_two_runners_syncing_one_model_at_once(self, s3: S3Server, bucket: str, tmp_path: Path) -> None:
        client = make_client(s3.env())
        publish(client, bucket, "shared", FILES)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIDEOGEN_"))},
            **s3.env(),
            "VIDEOGEN_MODEL_CACHE": str(tmp_path),
            # Each holds the lock a while after listing, so the two surely overlap.
            "VIDEOGEN_TEST_SYNC_DELAY_SECONDS": "2",
        }
        cmd = [sys.executable, "-m", "videogen_runner.model_sync", f"s3://{bucket}/shared"]

        procs = [
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"
        ]
        outputs = [p.communicate(timeout=120) for p in procs]

        assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        downloads = sorted(len(r["downloaded"]) for r in results)
        assert downloads == [0, len(FILES)], "one fetched the model, the other found it complete"
        waiter = next(r for r in results if not r["downloaded"])
        assert waiter["lock_wait_seconds"] >= 1.0, "the second runner waited for the first instead of racing it"
        assert local_files(Path(results[0]["path"])) == FILES


class TestSyncThroughAGrant:
    """In a cluster the runner has no keys: the operator lists the allowed prefix and presigns each file."""

    def grant(self, s3: S3Server, bucket: str, model: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
        from datetime import UTC, datetime

        from videogen_api import v1alpha1 as api
        from videogen_operator import credentials
        from videogen_operator.results import ObjectStore
        from videogen_operator.settings import OperatorSettings

        with monkeypatch.context() as mp:
            for k, v in s3.env().items():
                mp.setenv(k, v)
            settings = OperatorSettings(
                s3_endpoint=s3.endpoint_url, s3_bucket=bucket, allowed_model_prefixes=[f"s3://{bucket}/models/"]
            )
            spec = api.VideoGenJobSpec.model_validate(
                {"model": model, "task": "text-to-video", "prompt": "a cat", "width": 64, "height": 64, "numFrames": 9}
            )
            return credentials.build_grant(
                ObjectStore(settings), "team-a", "clip", "uid", spec, settings, "abc", datetime.now(UTC)
            )

    def test_sync_reads_exactly_the_granted_files(
        self, s3: S3Server, s3_client: S3Client, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        publish(s3_client, bucket, "models/wan", FILES)
        publish(s3_client, bucket, "models/other", {"secret.bin": b"not yours"})
        grant = self.grant(s3, bucket, f"s3://{bucket}/models/wan", monkeypatch)
        client = make_client({"VIDEOGEN_GRANT": json.dumps(grant)})

        result = sync_prefix(client, f"s3://{bucket}/models/wan", tmp_path / "cache", POLICY, env={})
        assert local_files(result.path) == FILES
        again = sync_prefix(client, f"s3://{bucket}/models/wan", tmp_path / "cache", POLICY, env={})
        assert again.downloaded == [] and again.unchanged == len(FILES)

        with pytest.raises(ModelNotFoundError, match="no objects under that prefix"):
            sync_prefix(client, f"s3://{bucket}/models/other", tmp_path / "cache", POLICY, env={})
