"""Presets fill what the user left unset; the model's rules bend the rest, and every change is reported."""

from __future__ import annotations

from typing import Any

import pytest

from videogen_api import v1alpha1 as api
from videogen_runner.presets import ShapeRules, resolve_params, round_frames, round_size
from videogen_runner.profiles import family_data, preset_values, profile_table

WAN = ShapeRules(frame_step=4, size_multiple=16, label="Wan")
LTX = ShapeRules(frame_step=8, size_multiple=32, label="LTX")
GENERIC = ShapeRules(frame_step=1, size_multiple=8)
COGVIDEOX_I2V = ShapeRules(frame_step=4, size_multiple=16, label="CogVideoX I2V", fixed_size=(720, 480))


def presets_of(class_name: str) -> dict[api.Preset, Any]:
    from pathlib import Path

    return preset_values(family_data(class_name, Path("/nonexistent"), {}))


WAN_PRESETS = presets_of("WanPipeline")
LTX_PRESETS = presets_of("LTXPipeline")
GENERIC_PRESETS = presets_of("NoSuchPipeline")


def spec(**fields: Any) -> api.VideoGenJobSpec:
    return api.VideoGenJobSpec.model_validate({"model": "/models/x", "task": "text-to-video", "prompt": "p", **fields})


def no_seed() -> int:
    raise AssertionError("the seed was given; none should be drawn")


class TestRounding:
    @pytest.mark.parametrize(
        ("frames", "step", "expected"),
        [(32, 4, 33), (33, 4, 33), (31, 4, 33), (30, 4, 29), (1, 4, 1), (2, 4, 1), (257, 4, 257), (100, 8, 97)],
    )
    def test_frames_go_to_the_nearest_allowed_count(self, frames: int, step: int, expected: int) -> None:
        assert round_frames(frames, step) == expected

    def test_frames_never_exceed_the_contract(self) -> None:
        assert round_frames(256, 8) == 257
        assert round_frames(257, 12) <= api.MAX_FRAMES

    @pytest.mark.parametrize(
        ("size", "multiple", "expected"),
        [(840, 16, 832), (832, 16, 832), (72, 16, 64), (88, 16, 80), (704, 32, 704), (720, 32, 704), (64, 32, 64)],
    )
    def test_sizes_go_to_the_nearest_multiple(self, size: int, multiple: int, expected: int) -> None:
        assert round_size(size, multiple) == expected

    def test_sizes_stay_within_the_contract(self) -> None:
        assert round_size(64, 48) >= api.MIN_DIMENSION
        assert round_size(2048, 96) <= api.MAX_DIMENSION


class TestAdjustmentsAreReported:
    def test_wan_frames_and_sizes(self) -> None:
        resolved = resolve_params(
            spec(numFrames=32, width=840, height=480, seed=1), WAN, WAN_PRESETS, seed_source=no_seed
        )

        assert (resolved.params.num_frames, resolved.params.width, resolved.params.height) == (33, 832, 480)
        assert resolved.adjustments == [
            "numFrames 32 -> 33 (Wan needs 4k+1 frames)",
            "width 840 -> 832 (Wan needs a multiple of 16)",
        ]

    def test_ltx_frames_and_sizes(self) -> None:
        resolved = resolve_params(
            spec(numFrames=100, width=720, height=480, seed=1), LTX, LTX_PRESETS, seed_source=no_seed
        )

        assert (resolved.params.num_frames, resolved.params.width, resolved.params.height) == (97, 704, 480)
        assert resolved.adjustments == [
            "numFrames 100 -> 97 (LTX needs 8k+1 frames)",
            "width 720 -> 704 (LTX needs a multiple of 32)",
        ]

    def test_values_that_fit_are_left_alone(self) -> None:
        resolved = resolve_params(
            spec(numFrames=33, width=832, height=480, seed=1), WAN, WAN_PRESETS, seed_source=no_seed
        )
        assert resolved.adjustments == []

    def test_generic_models_take_any_frame_count(self) -> None:
        resolved = resolve_params(spec(numFrames=14, seed=1), GENERIC, GENERIC_PRESETS, seed_source=no_seed)
        assert resolved.params.num_frames == 14
        assert resolved.adjustments == []

    def test_a_model_with_one_size_gets_it_and_says_so(self) -> None:
        presets = presets_of("CogVideoXImageToVideoPipeline")
        resolved = resolve_params(spec(width=640, height=480, seed=1), COGVIDEOX_I2V, presets, seed_source=no_seed)

        assert (resolved.params.width, resolved.params.height) == (720, 480)
        assert resolved.adjustments == ["width 640 -> 720 (CogVideoX I2V only generates 720x480)"]


class TestPresets:
    @pytest.mark.parametrize("class_name", sorted(profile_table({})))
    @pytest.mark.parametrize("preset", list(api.Preset))
    def test_every_builtin_preset_is_complete_and_ordered(self, class_name: str, preset: api.Preset) -> None:
        presets = presets_of(class_name)
        values = presets[preset]
        resolved = resolve_params(spec(preset=preset.value, seed=1), GENERIC, presets, seed_source=no_seed)

        assert (resolved.params.width, resolved.params.height) == (values.width, values.height)
        assert resolved.params.num_frames == values.num_frames
        assert (resolved.params.steps, resolved.params.guidance_scale) == (values.steps, values.guidance_scale)
        assert len(resolved.filled) == 6, "each filled value is logged"
        fast, quality = presets[api.Preset.FAST], presets[api.Preset.QUALITY]
        assert quality.steps >= fast.steps
        assert quality.width * quality.height * quality.num_frames >= fast.width * fast.height * fast.num_frames

    def test_presets_fill_only_what_is_unset(self) -> None:
        resolved = resolve_params(spec(preset="fast", steps=3, seed=1), WAN, WAN_PRESETS, seed_source=no_seed)
        assert resolved.params.steps == 3
        assert resolved.params.num_frames == WAN_PRESETS[api.Preset.FAST].num_frames

    def test_image_to_video_keeps_the_images_aspect_ratio(self) -> None:
        resolved = resolve_params(spec(seed=1), WAN, WAN_PRESETS, seed_source=no_seed, image_size=(1080, 1920))

        p = resolved.params
        assert p.width < p.height, "a portrait image gives a portrait video"
        assert p.width % 16 == 0 and p.height % 16 == 0
        assert abs(p.width / p.height - 1080 / 1920) < 0.05
        assert resolved.adjustments == []

    def test_a_missing_seed_is_drawn_and_reported(self) -> None:
        resolved = resolve_params(spec(), WAN, WAN_PRESETS, seed_source=lambda: 1234)
        assert resolved.params.seed == 1234
        assert any("seed=1234" in note for note in resolved.filled)
