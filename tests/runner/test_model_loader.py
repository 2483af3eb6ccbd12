"""The model loader against the real local S3 server and a real (offline) Hugging Face cache, with the
tiny Wan pipeline: fetched once, verified, read-only, content-addressed; refused with the file named."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from runner_support import TINY_WAN_REPO, TinyModels, loader_spec, publish_model, run_loader, tree_state

from videogen_api import catalog
from videogen_runner.loader_errors import LoaderError
from videogen_runner.model_loader import fetch
from videogen_runner.s3 import make_client
from videogen_runner.tiny_models import tree_commit

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from videogen_devcluster import S3Server

PROFILE: dict[str, Any] = {"flowShift": [{"shift": 3.0}], "callDefaults": {"max_sequence_length": 64}}
TRANSFORMER = "transformer/diffusion_pytorch_model.safetensors"
VAE = "vae/diffusion_pytorch_model.safetensors"


def model_files(root: Path) -> dict[str, bytes]:
    """The files of a model directory (what a runner loads), the loader's manifest left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != catalog.MODEL_MANIFEST_NAME
    }


def get_object_keys(client: S3Client) -> list[str]:
    """Every GetObject the client sends from now on (listings are not object reads)."""
    keys: list[str] = []

    def record(params: Mapping[str, Any], **_: Any) -> None:
        keys.append(str(params["Key"]))

    client.meta.events.register("before-parameter-build.s3.GetObject", record)
    return keys


@pytest.fixture
def cache_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "model-cache"
    root.mkdir()
    yield root
    # Models are read-only: make them deletable again for pytest's tmp_path cleanup.
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)


@pytest.fixture
def client(s3: S3Server) -> S3Client:
    return make_client(s3.env())


@pytest.fixture
def wan_model(tiny_models: TinyModels, tmp_path: Path) -> Path:
    """A private copy of the tiny Wan text-to-video pipeline, free to be damaged by a test."""
    return Path(shutil.copytree(tiny_models.wan_t2v, tmp_path / "wan-t2v"))


pytestmark = pytest.mark.s3


class TestFetchFromS3:
    def test_a_tiny_wan_model_becomes_a_verified_read_only_revision(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        publish_model(client, wan_model, f"s3://{bucket}/models/wan")
        spec = loader_spec("wan-tiny", f"s3://{bucket}/models/wan", cache_root, profile=PROFILE)

        result = fetch(spec, {}, s3_client=client)

        model = cache_root / result.path
        assert result.path == catalog.model_dir("wan-tiny", result.digest)
        assert result.revision == result.digest, "an s3:// model's revision is its manifest digest"
        expected = {
            **model_files(wan_model),
            catalog.PROFILE_FILE_NAME: (model / catalog.PROFILE_FILE_NAME).read_bytes(),
        }
        assert model_files(model) == expected
        assert json.loads(expected[catalog.PROFILE_FILE_NAME]) == PROFILE, "spec.profile replaces the shipped one"
        assert (result.file_count, result.size_bytes) == (len(expected), sum(len(b) for b in expected.values()))
        assert result.downloaded == len(expected), "every file came from S3 (the profile file included)"

        manifest = json.loads((model / catalog.MODEL_MANIFEST_NAME).read_text())
        entries = [
            {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for rel, data in sorted(expected.items())
        ]
        assert manifest["files"] == entries
        assert result.digest == manifest["digest"] == catalog.manifest_digest(entries)

        modes = {p.relative_to(model).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in model.rglob("*")}
        assert {mode for rel, mode in modes.items() if (model / rel).is_file()} == {0o444}
        assert {mode for rel, mode in modes.items() if (model / rel).is_dir()} == {0o555}
        assert stat.S_IMODE(model.stat().st_mode) == 0o555
        leftovers = [p.name for p in model.parent.iterdir() if p.name.startswith((".staging", ".part"))]
        assert leftovers == [], "the staging directory became the revision"

    def test_a_second_fetch_reuses_the_revision_without_reading_an_object(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        uri = f"s3://{bucket}/models/wan"
        publish_model(client, wan_model, uri)
        first = fetch(loader_spec("wan-tiny", uri, cache_root), {}, s3_client=client)
        before = tree_state(cache_root)
        reads = get_object_keys(client)

        again = fetch(loader_spec("wan-tiny", uri, cache_root, generation=2), {}, s3_client=client)

        assert reads == [], "no object was read: the listing matched the manifest"
        assert again.downloaded == 0
        assert again == first.model_copy(update={"downloaded": 0})
        assert tree_state(cache_root) == before, "not a file of the cache was touched"

    def test_a_changed_object_makes_a_new_revision_beside_the_old_one(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        uri = f"s3://{bucket}/models/wan"
        publish_model(client, wan_model, uri)
        old = fetch(loader_spec("wan-tiny", uri, cache_root), {}, s3_client=client)
        scheduler = json.loads((wan_model / "scheduler/scheduler_config.json").read_text())
        scheduler["shift"] = 5.0
        client.put_object(Bucket=bucket, Key="models/wan/scheduler/scheduler_config.json", Body=json.dumps(scheduler))
        reads = get_object_keys(client)

        new = fetch(loader_spec("wan-tiny", uri, cache_root, generation=2), {}, s3_client=client)

        assert new.digest != old.digest and new.path != old.path
        assert reads == ["models/wan/scheduler/scheduler_config.json"], "only the changed file moved"
        assert new.downloaded == 1
        assert (cache_root / old.path / "model_index.json").is_file(), "jobs reading the old revision keep it"
        assert model_files(cache_root / new.path)["scheduler/scheduler_config.json"] == json.dumps(scheduler).encode()

    def test_an_interrupted_fetch_resumes_where_it_stopped(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        from botocore.exceptions import EndpointConnectionError

        publish_model(client, wan_model, f"s3://{bucket}/m")

        def connection_lost(params: Mapping[str, Any], **_: Any) -> None:
            if params["Key"] == f"m/{TRANSFORMER}":
                raise EndpointConnectionError(endpoint_url="http://s3.invalid")

        client.meta.events.register("before-parameter-build.s3.GetObject", connection_lost)
        spec = loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root)
        with pytest.raises(LoaderError) as failure:
            fetch(spec, {"VIDEOGEN_S3_TRANSFER_ATTEMPTS": "1"}, s3_client=client)
        assert failure.value.exit_code == 20, "transient: the Job runs another pod"
        client.meta.events.unregister("before-parameter-build.s3.GetObject", connection_lost)
        reads = get_object_keys(client)

        result = fetch(spec, {}, s3_client=client)

        assert reads == [f"m/{rel}" for rel in sorted(model_files(wan_model)) if rel >= TRANSFORMER]
        assert result.downloaded == len(reads)
        assert model_files(cache_root / result.path) == model_files(wan_model)

    def test_pickles_code_and_hidden_files_are_skipped_and_listed(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        extra = {
            "transformer/diffusion_pytorch_model.bin": b"pickle",
            "pipeline.py": b"import os",
            ".gitattributes": b"*.safetensors filter=lfs",
            "README.md": b"# tiny",
        }
        publish_model(client, wan_model, f"s3://{bucket}/m", extra)

        result = fetch(loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root), {}, s3_client=client)

        assert sorted(result.skipped_files) == sorted(extra)
        assert model_files(cache_root / result.path) == model_files(wan_model)

    def test_a_component_with_only_pickle_weights_fails_naming_the_file(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        (wan_model / TRANSFORMER).unlink()
        publish_model(client, wan_model, f"s3://{bucket}/m", {"transformer/diffusion_pytorch_model.bin": b"pickle"})
        reads = get_object_keys(client)

        with pytest.raises(LoaderError) as failure:
            fetch(loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root), {}, s3_client=client)

        assert failure.value.reason is catalog.ModelReason.VERIFICATION_FAILED
        assert failure.value.file == "transformer/diffusion_pytorch_model.bin"
        assert "component transformer has only pickle weights" in failure.value.message
        assert reads == ["m/model_index.json"], "refused before any weights were downloaded"

    def test_a_wrong_pinned_sha256_fails_naming_the_file(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        publish_model(client, wan_model, f"s3://{bucket}/m")
        right = hashlib.sha256((wan_model / TRANSFORMER).read_bytes()).hexdigest()
        files = [{"path": TRANSFORMER, "sha256": right}, {"path": VAE, "sha256": "0" * 64}]

        with pytest.raises(LoaderError) as failure:
            fetch(loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root, files=files), {}, s3_client=client)

        assert (failure.value.reason, failure.value.file) == (catalog.ModelReason.VERIFICATION_FAILED, VAE)
        assert f"{VAE}: sha256 is" in failure.value.message
        assert not list((cache_root / "catalog/wan-tiny").glob("[0-9a-f]*")), "no revision was published"
        assert not list((cache_root / "catalog/wan-tiny").glob(".staging-*")), "nor any partial download kept"

    def test_a_pinned_file_missing_from_the_source_fails_before_any_download(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        (wan_model / VAE).unlink()
        publish_model(client, wan_model, f"s3://{bucket}/m")
        reads = get_object_keys(client)

        with pytest.raises(LoaderError) as failure:
            fetch(
                loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root, files=[{"path": VAE, "sha256": "a" * 64}]),
                {},
                s3_client=client,
            )

        assert (failure.value.reason, failure.value.file) == (catalog.ModelReason.VERIFICATION_FAILED, VAE)
        assert "the source has no such file" in failure.value.message
        assert reads == []

    def test_a_truncated_safetensors_file_fails_naming_it(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        data = (wan_model / VAE).read_bytes()
        (wan_model / VAE).write_bytes(data[: len(data) - 1000])
        publish_model(client, wan_model, f"s3://{bucket}/m")

        with pytest.raises(LoaderError) as failure:
            fetch(loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root), {}, s3_client=client)

        assert (failure.value.reason, failure.value.file) == (catalog.ModelReason.VERIFICATION_FAILED, VAE)
        assert "truncated" in failure.value.message

    def test_an_invalid_profile_fails_naming_the_key_before_any_download(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        publish_model(client, wan_model, f"s3://{bucket}/m")
        reads = get_object_keys(client)
        profile = {"presets": {"fast": {"steps": 0}}}

        with pytest.raises(LoaderError) as failure:
            fetch(loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root, profile=profile), {}, s3_client=client)

        assert failure.value.reason is catalog.ModelReason.INVALID_PROFILE
        assert "spec.profile: presets.fast.steps" in failure.value.message
        assert reads == []

    def test_a_missing_prefix_is_source_not_found(self, client: S3Client, bucket: str, cache_root: Path) -> None:
        with pytest.raises(LoaderError) as failure:
            fetch(loader_spec("wan-tiny", f"s3://{bucket}/nothing", cache_root), {}, s3_client=client)
        assert failure.value.reason is catalog.ModelReason.SOURCE_NOT_FOUND
        assert "no objects under that prefix" in failure.value.message


class TestFetchFromTheHub:
    """hf:// with HF_HUB_OFFLINE set: from the HF cache of the environment, as an air-gapped cluster does."""

    def env(self, tiny_models: TinyModels) -> dict[str, str]:
        return {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tiny_models.hf_home)}

    def test_offline_from_a_prepopulated_cache(self, tiny_models: TinyModels, cache_root: Path) -> None:
        hub_before = tree_state(tiny_models.hf_home)
        spec = loader_spec("wan-hub", f"hf://{TINY_WAN_REPO}", cache_root)

        result = fetch(spec, self.env(tiny_models))

        assert result.revision == tree_commit(tiny_models.wan_t2v), "revision = the snapshot's commit"
        assert model_files(cache_root / result.path) == model_files(tiny_models.wan_t2v)
        assert result.path == catalog.model_dir("wan-hub", result.digest)
        assert tree_state(tiny_models.hf_home) == hub_before, "the HF cache is copied from, never changed"

        again = fetch(
            loader_spec("wan-hub", f"hf://{TINY_WAN_REPO}@main", cache_root, generation=2), self.env(tiny_models)
        )
        assert again == result.model_copy(update={"downloaded": 0})

    def test_a_repository_not_in_the_cache_is_source_not_found(self, tiny_models: TinyModels, cache_root: Path) -> None:
        with pytest.raises(LoaderError) as failure:
            fetch(loader_spec("x", "hf://tiny-random/absent", cache_root), self.env(tiny_models))
        assert failure.value.reason is catalog.ModelReason.SOURCE_NOT_FOUND
        assert "not in the HF cache and HF_HUB_OFFLINE is set" in failure.value.message


class TestPathSource:
    def test_a_directory_on_the_volume_is_verified_in_place(
        self, client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        in_place = Path(shutil.copytree(wan_model, cache_root / "models" / "wan"))
        publish_model(client, wan_model, f"s3://{bucket}/m")

        result = fetch(loader_spec("wan-local", str(in_place), cache_root), {})

        assert result.path == "models/wan" and result.downloaded == 0
        assert not (cache_root / catalog.CATALOG_DIR).exists(), "nothing copied into the catalog"
        assert model_files(in_place) == model_files(wan_model), "the admin's files are left as they are"
        fetched = fetch(loader_spec("wan-s3", f"s3://{bucket}/m", cache_root), {}, s3_client=client)
        assert result.digest == fetched.digest, "the same files have the same digest, wherever they come from"

    def test_a_path_off_the_volume_is_refused(self, wan_model: Path, cache_root: Path) -> None:
        with pytest.raises(LoaderError) as failure:
            fetch(loader_spec("wan-local", str(wan_model), cache_root), {})
        assert failure.value.reason is catalog.ModelReason.SOURCE_NOT_FOUND
        assert "is not on the model-cache volume" in failure.value.message


class TestCommandLine:
    @pytest.fixture
    def env(self, s3: S3Server, tmp_path: Path) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOGEN_", "AWS_", "KUBECONFIG", "HF_"))}
        return {**base, **s3.env(), "VIDEOGEN_TERMINATION_LOG": str(tmp_path / "termination-log")}

    def test_fetch_then_remove(
        self, env: dict[str, str], client: S3Client, bucket: str, wan_model: Path, cache_root: Path
    ) -> None:
        publish_model(client, wan_model, f"s3://{bucket}/m")
        spec = loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root).model_dump_json(by_alias=True)

        code, message, stdout, logs = run_loader("fetch", env={**env, catalog.ENV_LOADER_SPEC: spec})

        assert code == 0, logs
        assert message == stdout, "the same JSON goes to the termination message and stdout"
        result = catalog.LoaderResult.model_validate(message)
        assert (cache_root / result.path / "model_index.json").is_file()
        assert "downloading 11/11 files" in logs, "progress goes to the logs without a cluster identity"

        code, message, _, logs = run_loader("remove", "--name", "wan-tiny", "--cache-root", str(cache_root), env=env)

        assert code == 0, logs
        assert message["removed"] == "catalog/wan-tiny"
        assert message["sizeBytes"] > result.size_bytes, "the model's files and its manifest"
        assert not (cache_root / "catalog" / "wan-tiny").exists(), "read-only files and all"

    @pytest.mark.parametrize(
        ("damage", "exit_code", "reason", "file"),
        [
            ("no-prefix", 11, "SourceNotFound", None),
            ("pickle-only", 12, "VerificationFailed", "transformer/diffusion_pytorch_model.bin"),
            ("bad-profile", 12, "InvalidProfile", "videogen-profile.json"),
        ],
    )
    def test_failures_give_their_exit_code_and_name_the_file(
        self,
        env: dict[str, str],
        client: S3Client,
        bucket: str,
        wan_model: Path,
        cache_root: Path,
        damage: str,
        exit_code: int,
        reason: str,
        file: str | None,
    ) -> None:
        fields: dict[str, Any] = {}
        if damage == "pickle-only":
            (wan_model / TRANSFORMER).unlink()
            (wan_model / "transformer/diffusion_pytorch_model.bin").write_bytes(b"pickle")
        if damage == "bad-profile":
            fields["profile"] = {"presets": {"fast": {"steps": 0}}}
        if damage != "no-prefix":
            publish_model(client, wan_model, f"s3://{bucket}/m")
        spec = loader_spec("wan-tiny", f"s3://{bucket}/m", cache_root, **fields).model_dump_json(by_alias=True)

        code, message, _, logs = run_loader("fetch", env={**env, catalog.ENV_LOADER_SPEC: spec})

        assert code == exit_code, logs
        failure = catalog.LoaderFailure.model_validate(message)
        assert (failure.reason.value, failure.file) == (reason, file)

    def test_an_unusable_loader_spec_is_a_usage_error(self, env: dict[str, str]) -> None:
        code, message, _, _ = run_loader("fetch", env={**env, catalog.ENV_LOADER_SPEC: '{"name": "../etc"}'})
        assert code == 2
        assert message["reason"] == "LoaderFailed" and "VIDEOGEN_LOADER_SPEC" in message["message"]


def test_prewarm_reads_every_file_of_the_model(tmp_path: Path) -> None:
    from videogen_runner.model_loader import prewarm

    (tmp_path / "vae").mkdir()
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "vae" / "w.safetensors").write_bytes(b"x" * (9 * 1024 * 1024))
    summary = prewarm(tmp_path)
    assert (summary["files"], summary["bytes"]) == (2, 2 + 9 * 1024 * 1024)
