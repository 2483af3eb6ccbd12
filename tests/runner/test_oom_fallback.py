"""Out of memory is a fallback chain before it is a failure: decode -> tiled decode, denoising ->
the next memory mode, and only then CudaOutOfMemory.

A CPU cannot run out of CUDA memory, so the tests give the tiny Wan model a device that is too
small the way a GPU would be: a forward hook on the real module that would allocate (the VAE
decoder, the transformer) raises torch.OutOfMemoryError while the allocation would not fit. The
seam lives here, in the tests; the runner's code path is the production one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runner_support import PROMPT, TinyModels

from videogen_api import v1alpha1 as api
from videogen_runner.errors import CudaOutOfMemoryError, classify
from videogen_runner.generate import GenerationRequest, generate
from videogen_runner.memory import MemoryPlan, fallback_after_oom
from videogen_runner.models import LoadedModel, inspect_model, load_pipeline
from videogen_runner.oom import generate_with_fallback
from videogen_runner.presets import GenerationParams

CPU = MemoryPlan(api.MemoryMode.NONE, on_cuda=False, vae_tiling=False, reason="cpu")
PARAMS = GenerationParams(width=64, height=64, num_frames=9, fps=8, steps=2, guidance_scale=5.0, seed=5)
REQUEST = GenerationRequest(prompt=PROMPT, negative_prompt=None, params=PARAMS)


def gpu_plan(mode: api.MemoryMode, tiling: bool = False) -> MemoryPlan:
    return MemoryPlan(mode, on_cuda=True, vae_tiling=tiling, reason="test")


def oom() -> Exception:
    import torch

    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (test device is too small)")


def load(path: Path) -> LoadedModel:
    return load_pipeline(inspect_model(str(path), path, api.Task.TEXT_TO_VIDEO), cuda=False)


def decode_fits_only_tiled(loaded: LoadedModel, after_calls: int = 0) -> list[int]:
    """The VAE decoder runs out of memory untiled (after `after_calls` successful latent frames)."""
    vae = loaded.pipe.vae
    calls = [0]

    def hook(_module: Any, _args: Any, _kwargs: Any) -> None:
        calls[0] += 1
        if not vae.use_tiling and calls[0] > after_calls:
            raise oom()

    vae.decoder.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def denoising_runs_out(loaded: LoadedModel, times: int | None) -> list[int]:
    """The transformer runs out of memory on its first `times` calls (None: always)."""
    calls = [0]

    def hook(_module: Any, _args: Any, _kwargs: Any) -> None:
        calls[0] += 1
        if times is None or calls[0] <= times:
            raise oom()

    loaded.pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


class TestDecision:
    def test_denoising_walks_down_the_memory_modes(self) -> None:
        plan: MemoryPlan | None = gpu_plan(api.MemoryMode.NONE)
        seen = []
        while plan is not None:
            seen.append(plan.mode)
            plan = fallback_after_oom(plan, in_decode=False)
        assert seen == [
            api.MemoryMode.NONE,
            api.MemoryMode.MODEL_OFFLOAD,
            api.MemoryMode.GROUP_OFFLOAD,
            api.MemoryMode.SEQUENTIAL_OFFLOAD,
        ]

    def test_decode_first_tries_tiling_then_the_next_mode(self) -> None:
        tiled = fallback_after_oom(gpu_plan(api.MemoryMode.NONE), in_decode=True)
        assert tiled is not None and (tiled.mode, tiled.vae_tiling) == (api.MemoryMode.NONE, True)
        assert "retried tiled" in tiled.reason
        after = fallback_after_oom(tiled, in_decode=True)
        assert after is not None and (after.mode, after.vae_tiling) == (api.MemoryMode.MODEL_OFFLOAD, True)

    def test_the_cpu_has_no_smaller_mode(self) -> None:
        assert fallback_after_oom(CPU, in_decode=False) is None
        tiled = fallback_after_oom(CPU, in_decode=True)
        assert tiled is not None and tiled.vae_tiling


class TestChain:
    def test_streamed_decode_out_of_memory_continues_tiled_without_losing_a_frame(
        self, tiny_models: TinyModels
    ) -> None:
        reference = list(generate(load(tiny_models.wan_t2v), REQUEST, CPU, lambda _s, _t: None, env={}).iterator)

        loaded = load(tiny_models.wan_t2v)
        # Two latent frames (1 + 4 video frames) decode streamed, the third runs out of memory.
        decode_fits_only_tiled(loaded, after_calls=2)
        frames, attempts = generate_with_fallback(loaded, REQUEST, CPU, lambda _s, _t: None, env={})
        out = list(frames.iterator)

        assert len(out) == len(reference) == 9
        np.testing.assert_allclose(np.stack(out), np.stack(reference), atol=1e-5)
        assert attempts.plan.vae_tiling and loaded.pipe.vae.use_tiling
        assert attempts.notes == ["none ran out of memory in decode"]

    def test_pipeline_decode_out_of_memory_is_retried_tiled_in_process(self, tiny_models: TinyModels) -> None:
        loaded = load(tiny_models.wan_t2v)
        # Group offload uses the pipeline's own decode (no streaming).
        plan = gpu_plan(api.MemoryMode.GROUP_OFFLOAD)
        decode_fits_only_tiled(loaded)
        placed: list[MemoryPlan] = []
        steps: list[tuple[int, int]] = []
        frames, attempts = generate_with_fallback(
            loaded, REQUEST, plan, lambda s, t: steps.append((s, t)), env={}, place=lambda _p, p: placed.append(p)
        )
        assert len(list(frames.iterator)) == 9
        assert placed == [], "same memory mode: only tiling changed"
        assert (attempts.plan.mode, attempts.plan.vae_tiling) == (api.MemoryMode.GROUP_OFFLOAD, True)
        assert steps == [(1, 2), (2, 2), (1, 2), (2, 2)], "denoised again after the decode ran out"

    def test_denoising_out_of_memory_moves_to_the_next_memory_mode(self, tiny_models: TinyModels) -> None:
        loaded = load(tiny_models.wan_t2v)
        calls = denoising_runs_out(loaded, times=1)
        placed: list[MemoryPlan] = []
        frames, attempts = generate_with_fallback(
            loaded,
            REQUEST,
            gpu_plan(api.MemoryMode.NONE),
            lambda _s, _t: None,
            env={},
            place=lambda _pipe, p: placed.append(p),
        )
        assert len(list(frames.iterator)) == 9
        assert [p.mode for p in placed] == [api.MemoryMode.MODEL_OFFLOAD]
        assert attempts.plan.mode is api.MemoryMode.MODEL_OFFLOAD
        assert attempts.plan.describe().startswith("model-offload (none ran out of memory in denoising, fell back")
        assert calls[0] == 1 + 2 * PARAMS.steps

    def test_only_when_nothing_smaller_is_left_it_is_cuda_out_of_memory(self, tiny_models: TinyModels) -> None:
        loaded = load(tiny_models.wan_t2v)
        denoising_runs_out(loaded, times=None)
        placed: list[MemoryPlan] = []
        with pytest.raises(CudaOutOfMemoryError) as err:
            generate_with_fallback(
                loaded,
                REQUEST,
                gpu_plan(api.MemoryMode.GROUP_OFFLOAD),
                lambda _s, _t: None,
                env={},
                place=lambda _pipe, p: placed.append(p),
            )
        assert [p.mode for p in placed] == [api.MemoryMode.SEQUENTIAL_OFFLOAD]
        code, message = classify(err.value)
        assert code == api.ExitCode.CUDA_OUT_OF_MEMORY
        assert "group-offload ran out of memory in denoising" in message
        assert "sequential-offload (" in message and "ran out in denoising" in message

    def test_on_the_cpu_denoising_out_of_memory_fails_at_once(self, tiny_models: TinyModels) -> None:
        loaded = load(tiny_models.wan_t2v)
        calls = denoising_runs_out(loaded, times=None)
        with pytest.raises(CudaOutOfMemoryError):
            generate_with_fallback(loaded, REQUEST, CPU, lambda _s, _t: None, env={})
        assert calls[0] == 1
