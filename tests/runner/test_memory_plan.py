"""The memory mode decision: a pure function of free VRAM, model size and output size."""

from __future__ import annotations

import pytest

from videogen_api import v1alpha1 as api
from videogen_runner.memory import GIB, MemoryPlan, OutputSize, choose_memory_plan

Mode = api.MemoryMode
WAN_480P = OutputSize(832, 480, 81)
SMALL = OutputSize(512, 320, 33)
WAN_720P = OutputSize(1280, 720, 81)


def auto(free_gib: float, model_gib: float, output: OutputSize, largest_gib: float | None = None) -> MemoryPlan:
    return choose_memory_plan(
        Mode.AUTO,
        cuda=True,
        free_bytes=int(free_gib * GIB),
        model_bytes=int(model_gib * GIB),
        largest_component_bytes=int(largest_gib * GIB) if largest_gib is not None else None,
        output=output,
    )


class TestOnCpu:
    def test_cpu_is_reported_as_none_cpu(self) -> None:
        plan = choose_memory_plan(Mode.AUTO, cuda=False, free_bytes=None, model_bytes=GIB, output=SMALL)
        assert plan.describe() == "none (cpu)"
        assert not plan.vae_tiling

    def test_an_offload_mode_on_cpu_is_ignored_and_says_so(self) -> None:
        plan = choose_memory_plan(Mode.SEQUENTIAL_OFFLOAD, cuda=False, free_bytes=None, model_bytes=GIB, output=SMALL)
        assert (plan.mode, plan.describe()) == (Mode.NONE, "none (cpu)")
        assert "sequential-offload ignored" in plan.reason


class TestAutoOnCuda:
    def test_everything_on_the_gpu_when_it_fits(self) -> None:
        # Wan 1.3B in bf16 with its UMT5-XXL text encoder (~14 GiB) on an 80 GiB card.
        plan = auto(free_gib=78, model_gib=14, largest_gib=11, output=WAN_480P)
        assert (plan.mode, plan.vae_tiling) == (Mode.NONE, False)
        assert plan.describe().startswith("none (auto: 78.0 GiB free")

    def test_model_offload_when_only_the_largest_component_fits(self) -> None:
        # Wan 14B: ~28 GiB transformer + ~11 GiB UMT5 on a 40 GiB card.
        plan = auto(free_gib=38, model_gib=40, largest_gib=28, output=WAN_480P)
        assert plan.mode is Mode.MODEL_OFFLOAD

    def test_group_offload_when_not_even_the_largest_component_fits(self) -> None:
        plan = auto(free_gib=14, model_gib=40, largest_gib=28, output=WAN_480P)
        assert plan.mode is Mode.GROUP_OFFLOAD

    def test_sequential_offload_as_the_last_resort(self) -> None:
        plan = auto(free_gib=4, model_gib=40, largest_gib=28, output=SMALL)
        assert plan.mode is Mode.SEQUENTIAL_OFFLOAD
        assert plan.vae_tiling

    def test_nothing_fits_still_picks_the_smallest_footprint(self) -> None:
        plan = auto(free_gib=0.5, model_gib=40, largest_gib=28, output=WAN_720P)
        assert (plan.mode, plan.vae_tiling) == (Mode.SEQUENTIAL_OFFLOAD, True)
        assert "nothing fits" in plan.reason

    def test_large_frames_are_decoded_in_tiles(self) -> None:
        plan = auto(free_gib=78, model_gib=6, output=WAN_720P)
        assert (plan.mode, plan.vae_tiling) == (Mode.NONE, True)

    def test_tiling_before_offloading_when_only_the_decode_is_too_big(self) -> None:
        # Weights and denoising fit; the untiled decode of 480p frames (~4 GiB) does not.
        plan = auto(free_gib=13, model_gib=6, output=WAN_480P)
        assert (plan.mode, plan.vae_tiling) == (Mode.NONE, True)

    def test_unknown_free_memory_plays_safe(self) -> None:
        plan = choose_memory_plan(Mode.AUTO, cuda=True, free_bytes=None, model_bytes=GIB, output=SMALL)
        assert (plan.mode, plan.vae_tiling) == (Mode.MODEL_OFFLOAD, True)

    @pytest.mark.parametrize("output", [SMALL, WAN_480P, WAN_720P])
    def test_less_memory_never_means_less_offloading(self, output: OutputSize) -> None:
        order = [Mode.NONE, Mode.MODEL_OFFLOAD, Mode.GROUP_OFFLOAD, Mode.SEQUENTIAL_OFFLOAD]
        ranks = [order.index(auto(free, 40, output, largest_gib=28).mode) for free in range(80, 0, -2)]
        assert ranks == sorted(ranks)

    def test_longer_videos_need_more_memory(self) -> None:
        short = auto(free_gib=15, model_gib=6, largest_gib=3, output=OutputSize(832, 480, 33))
        long = auto(free_gib=15, model_gib=6, largest_gib=3, output=OutputSize(832, 480, 257))
        assert (short.mode, long.mode) == (Mode.NONE, Mode.MODEL_OFFLOAD)


class TestExplicitModes:
    @pytest.mark.parametrize("mode", [Mode.NONE, Mode.MODEL_OFFLOAD, Mode.GROUP_OFFLOAD, Mode.SEQUENTIAL_OFFLOAD])
    def test_an_explicit_mode_is_honoured_even_when_another_would_fit(self, mode: api.MemoryMode) -> None:
        plan = choose_memory_plan(mode, cuda=True, free_bytes=80 * GIB, model_bytes=GIB, output=SMALL)
        assert plan.mode is mode
        assert plan.describe().startswith(mode.value)
        assert "requested" in plan.reason

    def test_tiling_is_still_decided_for_explicit_modes(self) -> None:
        plan = choose_memory_plan(Mode.NONE, cuda=True, free_bytes=80 * GIB, model_bytes=GIB, output=WAN_720P)
        assert plan.vae_tiling
        assert plan.describe() == "none + vae-tiling (requested; large frames)"
