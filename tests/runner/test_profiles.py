"""Profiles: family defaults as data, merged in a documented order, chosen by config values; task routes;
fields a pipeline would drop. Pure (no weights loaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from videogen_api import v1alpha1 as api
from videogen_runner.errors import InvalidInputError, ModelLoadError
from videogen_runner.profiles import (
    ENV_MODEL_PROFILES,
    Geometry,
    Profile,
    dropped_fields,
    family_data,
    ignored_fields,
    select_pipeline,
)


def model_dir(tmp_path: Path, index: dict[str, Any] | None = None, **components: dict[str, Any]) -> Path:
    path = tmp_path / "model"
    path.mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps(index or {}))
    for name, config in components.items():
        (path / name).mkdir()
        (path / name / "config.json").write_text(json.dumps(config))
    return path


def spec(**fields: Any) -> api.VideoGenJobSpec:
    return api.VideoGenJobSpec.model_validate({"model": "/m", "task": "text-to-video", "prompt": "p", **fields})


class TestData:
    def test_a_variant_is_chosen_by_the_models_config(self, tmp_path: Path) -> None:
        wan22 = family_data("WanPipeline", model_dir(tmp_path, {"expand_timesteps": True}), {})

        assert wan22.label == "Wan 2.2 TI2V"
        standard = wan22.presets[api.Preset.STANDARD]
        assert (standard.width, standard.height, standard.frames, standard.fps) == (1280, 704, 121, 24)

    def test_without_the_variants_config_the_family_defaults_hold(self, tmp_path: Path) -> None:
        wan21 = family_data("WanPipeline", model_dir(tmp_path), {})
        assert (wan21.label, wan21.presets[api.Preset.STANDARD].frames) == ("Wan", 81)

    def test_platform_file_then_model_file_are_merged_over_the_builtins(self, tmp_path: Path) -> None:
        platform = tmp_path / "platform.yaml"
        platform.write_text(
            "LTXPipeline:\n  presets:\n    fast: {steps: 8}\n  unsupportedFields: {negativePrompt: not used}\n"
            "FooVideoPipeline:\n  label: Foo\n"
        )
        model = model_dir(tmp_path)
        (model / "videogen-profile.yaml").write_text("presets:\n  fast: {steps: 4}\n")
        env = {ENV_MODEL_PROFILES: str(platform)}

        ltx = family_data("LTXPipeline", model, env)
        assert ltx.presets[api.Preset.FAST].steps == 4, "the model's own file wins"
        assert ltx.presets[api.Preset.FAST].frames == 97, "merged, not replaced"
        assert ltx.unsupported_fields == {"negativePrompt": "not used"}
        foo = family_data("FooVideoPipeline", model_dir(tmp_path / "x"), env)
        assert (foo.label, foo.family) == ("Foo", "generic"), "a new class starts from the generic entry"

    def test_a_bad_platform_file_names_the_file_and_key(self, tmp_path: Path) -> None:
        platform = tmp_path / "platform.yaml"
        platform.write_text("WanPipeline:\n  presets:\n    fast: {width: 10}\n")
        with pytest.raises(ModelLoadError, match=r"WanPipeline: presets\.fast\.width"):
            family_data("WanPipeline", model_dir(tmp_path), {ENV_MODEL_PROFILES: str(platform)})
        platform.write_text("WanPipeline: [")
        with pytest.raises(ModelLoadError, match=r"platform\.yaml: not valid YAML"):
            family_data("WanPipeline", model_dir(tmp_path / "y"), {ENV_MODEL_PROFILES: str(platform)})

    def test_hunyuanvideo_i2v_33ch_asks_its_pipeline_for_the_frames_it_cuts(self, tmp_path: Path) -> None:
        model = model_dir(tmp_path, transformer={"image_condition_type": "latent_concat"})
        data = family_data("HunyuanVideoImageToVideoPipeline", model, {})
        profile = Profile("HunyuanVideoImageToVideoPipeline", data, Geometry(4, 16), frozenset(), None, True)
        assert data.label == "HunyuanVideo I2V 33ch"
        assert profile.pipeline_frames(9) == 13, "num_frames=13 decodes 13 frames, of which the pipeline keeps 9"
        token_replace = family_data("HunyuanVideoImageToVideoPipeline", model_dir(tmp_path / "16ch"), {})
        assert token_replace.dropped_leading_frames == 0

    def test_flow_shift_follows_the_resolution(self, tmp_path: Path) -> None:
        data = family_data("WanPipeline", model_dir(tmp_path), {})
        profile = Profile("WanPipeline", data, Geometry(4, 16), frozenset(), None, True)
        assert (profile.flow_shift(832, 480), profile.flow_shift(1280, 720)) == (3.0, 5.0)


class TestTaskRoutes:
    def test_wan_22_ti2v_serves_image_to_video_from_its_text_to_video_directory(self, tmp_path: Path) -> None:
        path = model_dir(tmp_path, {"expand_timesteps": True})
        assert select_pipeline("WanPipeline", api.Task.IMAGE_TO_VIDEO, path, {}, "/m") == "WanImageToVideoPipeline"
        assert select_pipeline("WanPipeline", api.Task.TEXT_TO_VIDEO, path, {}, "/m") == "WanPipeline"

    def test_wan_21_text_to_video_does_not(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInputError, match=r"^spec\.task: image-to-video needs an image-to-video pipeline"):
            select_pipeline("WanPipeline", api.Task.IMAGE_TO_VIDEO, model_dir(tmp_path), {}, "/m")

    def test_ltx_image_to_video_and_condition_pipelines(self, tmp_path: Path) -> None:
        path = model_dir(tmp_path)
        assert select_pipeline("LTXPipeline", api.Task.IMAGE_TO_VIDEO, path, {}, "/m") == "LTXImageToVideoPipeline"
        for task in api.Task:
            assert select_pipeline("LTXConditionPipeline", task, path, {}, "/m") == "LTXConditionPipeline"

    def test_an_image_to_video_model_refuses_text_to_video(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidInputError, match="an image-to-video pipeline; set task and image"):
            select_pipeline("CogVideoXImageToVideoPipeline", api.Task.TEXT_TO_VIDEO, model_dir(tmp_path), {}, "/m")


class TestDroppedFields:
    def test_a_pipeline_without_a_prompt_argument_refuses_the_prompt(self, tmp_path: Path) -> None:
        # A class the table does not know, image only: a prompt would silently do nothing.
        params = frozenset({"image", "height", "width", "num_frames", "num_inference_steps", "fps"})
        data = family_data("SomeImageOnlyVideoPipeline", model_dir(tmp_path), {})
        dropped = dropped_fields("SomeImageOnlyVideoPipeline", params, data, spec(guidanceScale=3.0))
        assert [f for f, _ in dropped] == ["prompt", "guidanceScale"]

    def test_svd_ignores_the_required_prompt_and_takes_guidance_as_its_maximum(self, tmp_path: Path) -> None:
        params = frozenset({"image", "height", "width", "num_frames", "num_inference_steps", "max_guidance_scale"})
        data = family_data("StableVideoDiffusionPipeline", model_dir(tmp_path), {})
        given = spec(task="image-to-video", image="s3://bucket/i.png", guidanceScale=3.0)

        assert dropped_fields("StableVideoDiffusionPipeline", params, data, given) == []
        assert ignored_fields(data, given) == [
            "prompt ignored (Stable Video Diffusion is conditioned on the image alone)"
        ]
        assert data.renamed_arguments == {"guidance_scale": "max_guidance_scale"}
        refused = dropped_fields("StableVideoDiffusionPipeline", params, data, spec(negativePrompt="x"))
        assert [f for f, _ in refused] == ["negativePrompt"], "optional fields it cannot use are still refused"

    def test_nothing_is_dropped_for_a_spec_the_pipeline_takes_whole(self, tmp_path: Path) -> None:
        params = frozenset({"prompt", "negative_prompt", "guidance_scale", "num_frames", "height", "width"})
        data = family_data("WanPipeline", model_dir(tmp_path), {})
        assert dropped_fields("WanPipeline", params, data, spec(negativePrompt="x", numFrames=9)) == []
