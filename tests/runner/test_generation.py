"""Generation: every denoising step is reported, and Wan's streamed decode gives exactly the
frames the pipeline's own decode gives, without ever holding the whole video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from runner_support import PROMPT, TinyModels

from videogen_api import v1alpha1 as api
from videogen_runner.generate import GenerationRequest, generate
from videogen_runner.memory import MemoryPlan
from videogen_runner.models import LoadedModel, inspect_model, load_pipeline
from videogen_runner.presets import GenerationParams

CPU = MemoryPlan(api.MemoryMode.NONE, on_cuda=False, vae_tiling=False, reason="cpu")
PARAMS = GenerationParams(width=64, height=64, num_frames=9, fps=8, steps=3, guidance_scale=5.0, seed=11)


def load(path: Path, task: api.Task) -> LoadedModel:
    return load_pipeline(inspect_model(str(path), path, task), cuda=False)


def reference_frames(loaded: LoadedModel, request: GenerationRequest) -> np.ndarray[Any, Any]:
    import torch

    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "height": PARAMS.height,
        "width": PARAMS.width,
        "num_frames": PARAMS.num_frames,
        "num_inference_steps": PARAMS.steps,
        "guidance_scale": PARAMS.guidance_scale,
        "generator": torch.Generator("cpu").manual_seed(PARAMS.seed),
        "output_type": "np",
    }
    if request.image is not None:
        kwargs["image"] = request.image
    frames: np.ndarray[Any, Any] = loaded.pipe(**kwargs).frames[0]
    return frames


@pytest.mark.parametrize("task", [api.Task.TEXT_TO_VIDEO, api.Task.IMAGE_TO_VIDEO])
def test_streamed_wan_decode_matches_the_pipelines_decode(tiny_models: TinyModels, task: api.Task) -> None:
    path = tiny_models.wan_t2v if task is api.Task.TEXT_TO_VIDEO else tiny_models.wan_i2v
    loaded = load(path, task)
    image = Image.new("RGB", (64, 64), (180, 60, 20)) if task is api.Task.IMAGE_TO_VIDEO else None
    request = GenerationRequest(prompt=PROMPT, negative_prompt=None, params=PARAMS, image=image)
    steps: list[tuple[int, int]] = []

    frames = generate(loaded, request, CPU, lambda step, total: steps.append((step, total)), env={})
    streamed = list(frames.iterator)

    assert frames.streamed
    assert steps == [(1, 3), (2, 3), (3, 3)], "one progress report per denoising step"
    assert len(streamed) == frames.expected == 9
    expected = reference_frames(loaded, request)
    np.testing.assert_allclose(np.stack(streamed), expected, atol=1e-5)


def test_other_families_are_fed_from_the_pipelines_own_decode(tmp_path: Path) -> None:
    from videogen_runner import tiny_models

    path = tiny_models.save_tiny_pipeline("ltx", tmp_path / "ltx")
    loaded = load(path, api.Task.TEXT_TO_VIDEO)
    steps: list[int] = []

    frames = generate(
        loaded,
        GenerationRequest(prompt=PROMPT, negative_prompt="blurry", params=PARAMS),
        CPU,
        lambda step, _total: steps.append(step),
        env={},
    )

    assert not frames.streamed
    assert loaded.info.family.value == "ltx"
    assert steps == [1, 2, 3]
    assert [f.shape for f in frames.iterator] == [(64, 64, 3)] * 9


class TestStepWatch:
    def test_pipelines_without_a_step_callback_are_counted_at_the_scheduler(self) -> None:
        from videogen_runner.generate import StepWatch

        class Scheduler:
            def step(self, x: int) -> int:
                return x + 1

        class Pipe:
            scheduler = Scheduler()

        reports: list[tuple[int, int]] = []
        denoised: list[bool] = []
        watch = StepWatch(
            total=3, on_step=lambda s, t: reports.append((s, t)), on_denoised=lambda: denoised.append(True)
        )
        pipe = Pipe()
        with watch.counting_scheduler_steps(pipe):
            assert [pipe.scheduler.step(i) for i in range(3)] == [1, 2, 3], "the scheduler's results pass through"

        assert reports == [(1, 3), (2, 3), (3, 3)]
        assert denoised == [True], "after the last step the stage moves on to decoding"
        assert "step" not in vars(pipe.scheduler), "the scheduler is left as it was"

    @pytest.mark.parametrize(
        ("message", "field"),
        [
            ("`height` and `width` have to be divisible by 32 but are 64 and 80.", "spec.width/spec.height"),
            ("shape '[1, 1, 52, -1]' is invalid for input of size 9984", "spec.width/spec.height/spec.numFrames"),
            ("`negative_prompt` has to be of type str", "spec.negativePrompt"),
            ("something else entirely", "spec"),
        ],
    )
    def test_the_field_a_pipeline_error_concerns(self, message: str, field: str) -> None:
        from videogen_runner.generate import field_of_pipeline_error

        assert field_of_pipeline_error(message) == field
