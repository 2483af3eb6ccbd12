"""Every way a model can be named loads through DiffusionPipeline.from_pretrained and generates,
and no code shipped with a model ever runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from runner_support import TINY_WAN_REPO, RunInProcess, TinyModels, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_runner import tiny_models as tiny
from videogen_runner.cache import hub_cache_dir, model_cache_root
from videogen_runner.errors import InvalidInputError, ModelLoadError, ModelNotFoundError
from videogen_runner.model_sync import cache_dir_for
from videogen_runner.models import component_dtypes, inspect_model, parse_hf_uri, resolve_hf
from videogen_runner.presets import Family

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def succeeded(outcome: tuple[int, dict[str, Any]]) -> api.RunnerResult:
    code, message = outcome
    assert code == 0, message
    return api.RunnerResult.model_validate(message)


@pytest.mark.s3
class TestSources:
    def test_hf_uri_from_a_prepopulated_offline_cache(
        self, run_inprocess: RunInProcess, s3_env: dict[str, str], tiny_models: TinyModels, bucket: str
    ) -> None:
        env = {**s3_env, "HF_HOME": str(tiny_models.hf_home), "HF_HUB_OFFLINE": "1"}
        result = succeeded(run_inprocess(tiny_spec(tiny_models.hf_uri, output={"bucket": bucket}), env))
        assert result.output.frames == 9

    def test_hf_uri_pinned_to_a_commit(
        self, run_inprocess: RunInProcess, s3_env: dict[str, str], tiny_models: TinyModels, bucket: str
    ) -> None:
        commit = tiny.tree_commit(tiny_models.wan_t2v)
        env = {**s3_env, "HF_HOME": str(tiny_models.hf_home)}
        spec = tiny_spec(f"hf://{TINY_WAN_REPO}@{commit}", output={"bucket": bucket})
        assert succeeded(run_inprocess(spec, env)).output.frames == 9

    def test_s3_uri_is_synced_into_the_cache_then_loaded(
        self,
        run_inprocess: RunInProcess,
        s3_env: dict[str, str],
        tiny_models: TinyModels,
        bucket: str,
        s3_client: S3Client,
    ) -> None:
        tiny.upload_to_s3(tiny_models.wan_t2v, f"s3://{bucket}/models/wan-tiny", s3_client)

        result = succeeded(
            run_inprocess(tiny_spec(f"s3://{bucket}/models/wan-tiny", output={"bucket": bucket}), s3_env)
        )

        assert result.output.frames == 9
        cached = Path(s3_env["VIDEOGEN_MODEL_CACHE"]) / "s3" / bucket / "models" / "wan-tiny"
        assert (cached / "model_index.json").is_file()
        assert (cached / ".videogen-manifest.json").is_file()

    def test_the_same_seed_gives_the_same_video_from_every_source(
        self, run_inprocess: RunInProcess, s3_env: dict[str, str], tiny_models: TinyModels, bucket: str
    ) -> None:
        env = {**s3_env, "HF_HOME": str(tiny_models.hf_home)}
        local = succeeded(run_inprocess(tiny_spec(str(tiny_models.wan_t2v), output={"bucket": bucket}), env))
        cached = succeeded(run_inprocess(tiny_spec(tiny_models.hf_uri, output={"bucket": bucket}), env))
        assert local.output.sha256 == cached.output.sha256


class TestResolvingHfUris:
    def test_revision_defaults_to_main(self) -> None:
        assert parse_hf_uri("hf://org/name") == ("org/name", "main")
        assert parse_hf_uri("hf://org/name@v1.0") == ("org/name", "v1.0")

    def test_a_model_missing_from_the_cache_is_not_downloaded(self, tmp_path: Path) -> None:
        with pytest.raises(ModelNotFoundError, match="is not in the model cache") as err:
            resolve_hf("hf://org/absent", {"HF_HOME": str(tmp_path)})
        assert "hf download org/absent" in err.value.message

    def test_the_cache_layout_is_huggingface_hubs_own(self, tiny_models: TinyModels) -> None:
        snapshot = resolve_hf(tiny_models.hf_uri, {"HF_HOME": str(tiny_models.hf_home)})
        assert snapshot.parent.name == "snapshots"
        assert (snapshot / "transformer" / "diffusion_pytorch_model.safetensors").is_symlink()


class TestNoModelCodeRuns:
    def copy_with_index(self, source: Path, tmp_path: Path, **changes: Any) -> Path:
        target = tmp_path / "model"
        shutil.copytree(source, target)
        index = json.loads((target / "model_index.json").read_text())
        index.update(changes)
        (target / "model_index.json").write_text(json.dumps(index))
        return target

    def test_a_custom_pipeline_class_is_refused(self, tiny_models: TinyModels, tmp_path: Path) -> None:
        path = self.copy_with_index(tiny_models.wan_t2v, tmp_path, _class_name=["pipeline", "EvilPipeline"])
        with pytest.raises(ModelLoadError, match="custom pipeline"):
            inspect_model("/m", path, api.Task.TEXT_TO_VIDEO)

    def test_components_from_other_libraries_are_refused(self, tiny_models: TinyModels, tmp_path: Path) -> None:
        path = self.copy_with_index(tiny_models.wan_t2v, tmp_path, scheduler=["evil_module", "Scheduler"])
        with pytest.raises(ModelLoadError, match="comes from 'evil_module'"):
            inspect_model("/m", path, api.Task.TEXT_TO_VIDEO)

    def test_only_diffusers_own_pipeline_packages_count_as_diffusers(self) -> None:
        from videogen_runner.models import is_trusted_library

        # LTX-2's model_index.json names `ltx2` (diffusers.pipelines.ltx2) for its connectors and vocoder.
        assert is_trusted_library("ltx2") and is_trusted_library("diffusers") and is_trusted_library("transformers")
        for name in ("evil_module", "os", "../ltx2", "ltx2.evil", "Ltx2", ""):
            assert not is_trusted_library(name), name

    def test_unknown_pipeline_classes_are_refused(self, tiny_models: TinyModels, tmp_path: Path) -> None:
        path = self.copy_with_index(tiny_models.wan_t2v, tmp_path, _class_name="NoSuchPipeline")
        with pytest.raises(ModelLoadError, match="not a pipeline class of diffusers"):
            inspect_model("/m", path, api.Task.TEXT_TO_VIDEO)


class TestModelFitsTheTask:
    def test_text_to_video_model_for_an_image_to_video_job(self, tiny_models: TinyModels) -> None:
        with pytest.raises(InvalidInputError, match=r"spec\.task: image-to-video needs an image-to-video pipeline"):
            inspect_model("/m", tiny_models.wan_t2v, api.Task.IMAGE_TO_VIDEO)

    def test_image_to_video_model_for_a_text_to_video_job(self, tiny_models: TinyModels) -> None:
        with pytest.raises(InvalidInputError, match="an image-to-video pipeline"):
            inspect_model("/m", tiny_models.wan_i2v, api.Task.TEXT_TO_VIDEO)

    def test_what_the_model_tells_about_itself(self, tiny_models: TinyModels) -> None:
        info = inspect_model("/m", tiny_models.wan_i2v, api.Task.IMAGE_TO_VIDEO)
        assert (info.class_name, info.family.value, info.accepts_image) == ("WanImageToVideoPipeline", "wan", True)
        assert (info.rules.frame_step, info.rules.size_multiple) == (4, 16)
        assert "callback_on_step_end" in info.call_parameters


class TestCacheLayout:
    def test_the_operators_layout(self) -> None:
        # What the operator passes: the volume root and HF_HOME below it.
        env = {api.ENV_MODEL_CACHE: "/models", "HF_HOME": "/models/hf"}
        assert (model_cache_root(env), hub_cache_dir(env)) == (Path("/models"), Path("/models/hf/hub"))
        assert cache_dir_for(model_cache_root(env), "weights", "wan/1.3b") == Path("/models/s3/weights/wan/1.3b")

    def test_the_volume_root_alone_is_the_hf_home(self) -> None:
        env = {api.ENV_MODEL_CACHE: "/models"}
        assert hub_cache_dir(env) == Path("/models/hub")

    def test_hf_hub_cache_wins(self) -> None:
        assert hub_cache_dir({"HF_HUB_CACHE": "/x", "HF_HOME": "/y"}) == Path("/x")


class TestPrecision:
    def test_bf16_on_cuda_with_the_wan_vae_kept_in_fp32(self) -> None:
        import torch

        dtypes = component_dtypes(Family.WAN, cuda=True)
        assert dtypes == {"default": torch.bfloat16, "vae": torch.float32, "image_encoder": torch.float32}
        assert component_dtypes(Family.LTX, cuda=True) is torch.bfloat16

    def test_fp32_on_cpu(self) -> None:
        import torch

        assert component_dtypes(Family.WAN, cuda=False) is torch.float32
