"""The runner with a catalog model: a name in the spec, a read-only directory from the operator, and a
spec hash that covers the model's revision and digest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from runner_support import TinyModels, download, loader_spec, publish_model, tiny_spec, tree_state

from videogen_api import catalog
from videogen_api import v1alpha1 as api
from videogen_runner.catalog_model import CatalogModel, open_catalog_model
from videogen_runner.errors import ModelNotFoundError
from videogen_runner.model_loader import fetch
from videogen_runner.models import open_model
from videogen_runner.probe import probe
from videogen_runner.s3 import RetryPolicy, make_client
from videogen_runner.spec_input import load_run_input, validate_spec

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from videogen_devcluster import S3Server

NAME = "wan2-1-t2v-tiny"
REVISION = "sha256:" + "1" * 64
DIGEST = "sha256:" + "2" * 64


def catalog_env(model_dir: Path, revision: str = REVISION, digest: str = DIGEST) -> dict[str, str]:
    return {
        catalog.ENV_MODEL_DIR: str(model_dir),
        catalog.ENV_MODEL_REVISION: revision,
        catalog.ENV_MODEL_DIGEST: digest,
    }


def read_only_view(path: Path) -> list[str] | None:
    """A command prefix that runs a process with `path` mounted read-only (a private mount namespace, as a
    pod's readOnly volume), or None where mount namespaces are not available here."""
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(path)]
    try:
        probe_run = subprocess.run(
            [*prefix, "sh", "-c", 'touch "$0/.write-probe" 2>/dev/null && exit 1 || exit 0', str(path)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    (path / ".write-probe").unlink(missing_ok=True)
    return prefix if probe_run.returncode == 0 else None


@pytest.fixture
def cache_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "models"
    root.mkdir()
    yield root
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)


class TestSpecInput:
    def spec(self) -> dict[str, object]:
        return tiny_spec(NAME, output={"bucket": "videos"})

    def test_the_runners_spec_validation_accepts_a_catalog_name(self) -> None:
        assert validate_spec(self.spec()).model == NAME

    def test_without_the_operators_environment_the_model_is_not_found(self) -> None:
        with pytest.raises(ModelNotFoundError) as failure:
            load_run_input(None, {api.ENV_SPEC: json.dumps(self.spec()), catalog.ENV_MODEL_DIR: "/models/x"})
        assert f"model {NAME} is a catalog name" in failure.value.message
        assert f"{catalog.ENV_MODEL_REVISION}, {catalog.ENV_MODEL_DIGEST} are not set" in failure.value.message
        assert failure.value.exit_code == api.ExitCode.MODEL_NOT_FOUND

    def test_the_spec_hash_covers_the_models_revision_and_digest(self, tmp_path: Path) -> None:
        env = {api.ENV_SPEC: json.dumps(self.spec()), **catalog_env(tmp_path)}
        spec = validate_spec(self.spec())

        run_input = load_run_input(None, env)
        upgraded = load_run_input(None, {**env, catalog.ENV_MODEL_DIGEST: "sha256:" + "3" * 64})

        assert run_input.spec_hash == api.spec_hash(spec, api.ModelIdentity(REVISION, DIGEST))
        assert run_input.spec_hash not in (api.spec_hash(spec), upgraded.spec_hash)
        assert run_input.catalog == CatalogModel(NAME, tmp_path, api.ModelIdentity(REVISION, DIGEST))

    def test_a_uri_keeps_its_old_hash(self, tiny_models: TinyModels) -> None:
        raw = tiny_spec(str(tiny_models.wan_t2v), output={"bucket": "videos"})
        run_input = load_run_input(None, {api.ENV_SPEC: json.dumps(raw), **catalog_env(Path("/unused"))})
        assert run_input.spec_hash == api.spec_hash(validate_spec(raw)) and run_input.catalog is None


class TestOpeningTheDirectory:
    def test_a_directory_holding_another_revision_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / catalog.MODEL_MANIFEST_NAME).write_text(json.dumps({"digest": "sha256:" + "9" * 64}))
        with pytest.raises(ModelNotFoundError, match="but the job was admitted for"):
            open_catalog_model(CatalogModel(NAME, tmp_path, api.ModelIdentity(REVISION, DIGEST)))

    def test_a_missing_directory_is_model_not_found(self, tmp_path: Path) -> None:
        opened = open_model(NAME, env=catalog_env(tmp_path / "absent"), s3_client=None, policy=RetryPolicy())
        with pytest.raises(ModelNotFoundError, match="is not a directory"), opened:
            pass


@pytest.mark.s3
class TestNothingWrittenToAReadOnlyCache:
    def test_an_unlisted_s3_model_syncs_into_the_sync_dir(
        self, s3: S3Server, bucket: str, cache_root: Path, tmp_path: Path
    ) -> None:
        client = make_client(s3.env())
        client.put_object(Bucket=bucket, Key="m/model_index.json", Body=b"{}")
        env = {api.ENV_MODEL_CACHE: str(cache_root), catalog.ENV_MODEL_SYNC_DIR: str(tmp_path / "sync")}

        with open_model(f"s3://{bucket}/m", env=env, s3_client=client, policy=RetryPolicy(attempts=1)) as path:
            assert path.is_relative_to(tmp_path / "sync")
            assert (path / "model_index.json").read_bytes() == b"{}"
        assert list(cache_root.iterdir()) == [], "not even a lock file on the cache volume"

    def test_compile_caches_fall_back_when_the_volume_is_read_only(self, cache_root: Path) -> None:
        view = read_only_view(cache_root)
        if view is None:
            pytest.skip("no mount namespaces here to mount the cache read-only")
        code = (
            "import json, os; from videogen_runner.acceleration import use_compile_caches; "
            f"print(json.dumps([use_compile_caches({{'VIDEOGEN_MODEL_CACHE': {str(cache_root)!r}}}), "
            "os.environ.get('TORCHINDUCTOR_CACHE_DIR')]))"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}

        out = subprocess.run([*view, sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)

        assert json.loads(out.stdout) == [{}, None], "the compiler keeps its own default (under /tmp)"
        assert list(cache_root.iterdir()) == []


@pytest.mark.s3
class TestEndToEnd:
    def test_a_loaded_catalog_model_runs_from_a_read_only_cache(
        self,
        s3: S3Server,
        s3_env: dict[str, str],
        s3_client: S3Client,
        bucket: str,
        tiny_models: TinyModels,
        cache_root: Path,
        tmp_path: Path,
    ) -> None:
        publish_model(s3_client, tiny_models.wan_t2v, f"s3://{bucket}/catalog-source/wan")
        loaded = fetch(loader_spec(NAME, f"s3://{bucket}/catalog-source/wan", cache_root), {}, s3_client=s3_client)
        spec = tiny_spec(NAME, output={"bucket": bucket})
        env = {
            **s3_env,
            # As the operator sets it up: the cache volume (HF_HOME on it), read-only, and the model's identity.
            api.ENV_MODEL_CACHE: str(cache_root),
            "HF_HOME": str(cache_root / "hf"),
            **catalog_env(cache_root / loaded.path, loaded.revision, loaded.digest),
            api.ENV_OUTPUT_KEY: "clips/catalog.mp4",
            api.ENV_SPEC: json.dumps(spec),
        }
        before = tree_state(cache_root)
        view = read_only_view(cache_root) or []  # without mount namespaces: the files' own 0444/0555

        proc = subprocess.run(
            [*view, str(Path(sys.executable).with_name("videogen-runner"))],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

        assert proc.returncode == 0, proc.stderr[-4000:]
        result = api.RunnerResult.model_validate_json(proc.stdout.strip().splitlines()[-1])
        identity = api.ModelIdentity(loaded.revision, loaded.digest)
        assert result.spec_hash == api.spec_hash(validate_spec(spec), identity) != api.spec_hash(validate_spec(spec))
        path, metadata = download(s3_client, bucket, "clips/catalog.mp4", tmp_path / "catalog.mp4")
        assert metadata[api.S3_METADATA_SPEC_HASH] == result.spec_hash
        info = probe(path)
        assert (info.codec, info.frames, info.width, info.height) == ("h264", 9, 64, 64)
        assert tree_state(cache_root) == before, "the runner wrote nothing on the model-cache volume"
