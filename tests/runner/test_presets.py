"""Presets fill what the user left unset; family rules bend the rest, and every change is reported."""

from __future__ import annotations

from typing import Any

import pytest

from videogen_api import v1alpha1 as api
from videogen_runner.presets import (
    DEFAULT_RULES,
    PRESETS,
    Family,
    family_for_class,
    resolve_params,
    round_frames,
    round_size,
    rules_from_configs,
)

WAN = DEFAULT_RULES[Family.WAN]
LTX = DEFAULT_RULES[Family.LTX]
GENERIC = DEFAULT_RULES[Family.GENERIC]


def spec(**fields: Any) -> api.VideoGenJobSpec:
    return api.VideoGenJobSpec.model_validate({"model": "/models/x", "task": "text-to-video", "prompt": "p", **fields})


def no_seed() -> int:
    raise AssertionError("the seed was given; none should be drawn")


class TestFamilies:
    @pytest.mark.parametrize(
        ("class_name", "family"),
        [
            ("WanPipeline", Family.WAN),
            ("WanImageToVideoPipeline", Family.WAN),
            ("LTXPipeline", Family.LTX),
            ("LTXImageToVideoPipeline", Family.LTX),
            ("CogVideoXPipeline", Family.COGVIDEOX),
            ("HunyuanVideoPipeline", Family.GENERIC),
        ],
    )
    def test_family_from_the_pipeline_class(self, class_name: str, family: Family) -> None:
        assert family_for_class(class_name) is family

    def test_rules_follow_the_models_own_config(self) -> None:
        # Wan 2.2 TI2V: a 16x VAE with 2x2 patches needs multiples of 32.
        rules = rules_from_configs(
            Family.WAN, {"scale_factor_spatial": 16, "scale_factor_temporal": 4}, {"patch_size": [1, 2, 2]}
        )
        assert (rules.frame_step, rules.size_multiple) == (4, 32)

    def test_rules_fall_back_to_the_family_defaults(self) -> None:
        assert rules_from_configs(Family.WAN, {}, {}) == WAN


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
        resolved = resolve_params(spec(numFrames=32, width=840, height=480, seed=1), WAN, seed_source=no_seed)

        assert (resolved.params.num_frames, resolved.params.width, resolved.params.height) == (33, 832, 480)
        assert resolved.adjustments == [
            "numFrames 32 -> 33 (Wan needs 4k+1 frames)",
            "width 840 -> 832 (Wan needs a multiple of 16)",
        ]

    def test_ltx_frames_and_sizes(self) -> None:
        resolved = resolve_params(spec(numFrames=100, width=720, height=480, seed=1), LTX, seed_source=no_seed)

        assert (resolved.params.num_frames, resolved.params.width, resolved.params.height) == (97, 704, 480)
        assert resolved.adjustments == [
            "numFrames 100 -> 97 (LTX needs 8k+1 frames)",
            "width 720 -> 704 (LTX needs a multiple of 32)",
        ]

    def test_values_that_fit_are_left_alone(self) -> None:
        resolved = resolve_params(spec(numFrames=33, width=832, height=480, seed=1), WAN, seed_source=no_seed)
        assert resolved.adjustments == []

    def test_generic_models_take_any_frame_count(self) -> None:
        resolved = resolve_params(spec(numFrames=14, seed=1), GENERIC, seed_source=no_seed)
        assert resolved.params.num_frames == 14
        assert resolved.adjustments == []


class TestPresets:
    @pytest.mark.parametrize("family", list(Family))
    @pytest.mark.parametrize("preset", list(api.Preset))
    def test_every_preset_fits_its_family_unchanged(self, family: Family, preset: api.Preset) -> None:
        resolved = resolve_params(spec(preset=preset.value, seed=1), DEFAULT_RULES[family], seed_source=no_seed)

        values = PRESETS[family][preset]
        assert resolved.adjustments == []
        assert (resolved.params.width, resolved.params.height) == (values.width, values.height)
        assert resolved.params.num_frames == values.num_frames
        assert (resolved.params.steps, resolved.params.guidance_scale) == (values.steps, values.guidance_scale)
        assert len(resolved.filled) == 6, "each filled value is logged"

    def test_presets_fill_only_what_is_unset(self) -> None:
        resolved = resolve_params(spec(preset="fast", steps=3, seed=1), WAN, seed_source=no_seed)
        assert resolved.params.steps == 3
        assert resolved.params.num_frames == PRESETS[Family.WAN][api.Preset.FAST].num_frames

    def test_quality_costs_more_than_fast(self) -> None:
        for family in Family:
            fast, quality = PRESETS[family][api.Preset.FAST], PRESETS[family][api.Preset.QUALITY]
            assert quality.steps >= fast.steps
            assert quality.width * quality.height * quality.num_frames >= fast.width * fast.height * fast.num_frames

    def test_image_to_video_keeps_the_images_aspect_ratio(self) -> None:
        resolved = resolve_params(spec(seed=1), WAN, seed_source=no_seed, image_size=(1080, 1920))

        p = resolved.params
        assert p.width < p.height, "a portrait image gives a portrait video"
        assert p.width % 16 == 0 and p.height % 16 == 0
        assert abs(p.width / p.height - 1080 / 1920) < 0.05
        assert resolved.adjustments == []

    def test_a_missing_seed_is_drawn_and_reported(self) -> None:
        resolved = resolve_params(spec(), WAN, seed_source=lambda: 1234)
        assert resolved.params.seed == 1234
        assert any("seed=1234" in note for note in resolved.filled)
