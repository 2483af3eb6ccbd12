"""Cold start: loading is split into import / read / place, the imports overlap input fetching, and
weights go straight to the GPU when the plan estimated from the checkpoint's headers keeps them there."""

from __future__ import annotations

from pathlib import Path

import pytest
from runner_support import RunCli, TinyModels, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_runner import coldstart
from videogen_runner.memory import GIB, OutputSize
from videogen_runner.models import component_dtypes, inspect_model, load_pipeline
from videogen_runner.presets import Family

OUT = OutputSize(832, 480, 81)


def test_checkpoint_headers_give_the_loaded_sizes(tiny_models: TinyModels) -> None:
    path = tiny_models.wan_t2v
    loaded = load_pipeline(inspect_model(str(path), path, api.Task.TEXT_TO_VIDEO), cuda=False)
    estimated = coldstart.checkpoint_bytes(path, coldstart._dtype_bytes(component_dtypes(Family.WAN, cuda=False)))
    for name in ("transformer", "vae", "text_encoder"):
        # What the checkpoint holds is what the state dict holds; buffers built at construction
        # (Wan's rotary tables, as long as the real models' in the tiny ones too) come on top.
        # (tied weights, such as T5's shared embedding, are one tensor under two names)
        tensors = {t.data_ptr(): t for t in getattr(loaded.pipe, name).state_dict().values()}
        stored = sum(t.numel() * t.element_size() for t in tensors.values())
        assert estimated[name] == pytest.approx(stored, rel=0.01), name
        assert estimated[name] <= loaded.component_bytes[name], name


def test_checkpoint_sizes_follow_the_load_dtype(tiny_models: TinyModels) -> None:
    import torch

    fp32 = coldstart.checkpoint_bytes(tiny_models.wan_t2v, {"default": 4})
    mixed = coldstart.checkpoint_bytes(tiny_models.wan_t2v, {"default": 2, "vae": 4})
    assert mixed["transformer"] * 2 == fp32["transformer"]
    assert mixed["vae"] == fp32["vae"]
    assert coldstart._dtype_bytes({"default": torch.bfloat16, "vae": torch.float32}) == {"default": 2, "vae": 4}


@pytest.mark.parametrize(
    ("cuda", "parallel", "memory", "free", "expected"),
    [
        (True, False, api.MemoryMode.AUTO, 80 * GIB, "cuda"),
        (True, False, api.MemoryMode.NONE, 80 * GIB, "cuda"),
        (True, False, api.MemoryMode.AUTO, 1 * GIB, None),
        (True, False, api.MemoryMode.MODEL_OFFLOAD, 80 * GIB, None),
        (True, True, api.MemoryMode.AUTO, 80 * GIB, None),
        (False, False, api.MemoryMode.AUTO, None, None),
    ],
)
def test_weights_go_straight_to_the_gpu_only_when_the_plan_keeps_them_there(
    tiny_models: TinyModels, cuda: bool, parallel: bool, memory: api.MemoryMode, free: int | None, expected: str | None
) -> None:
    import torch

    got = coldstart.device_map_for(
        tiny_models.wan_t2v,
        {"default": torch.bfloat16, "vae": torch.float32},
        cuda=cuda,
        parallel=parallel,
        memory=memory,
        output=OUT,
        free_bytes=free,
    )
    assert got == expected


def test_an_empty_directory_has_no_estimate(tmp_path: Path) -> None:
    assert coldstart.checkpoint_bytes(tmp_path, {"default": 2}) == {}


@pytest.mark.s3
def test_loading_is_split_into_import_read_and_place(
    tiny_models: TinyModels, run_cli: RunCli, s3_env: dict[str, str], bucket: str
) -> None:
    outcome = run_cli(tiny_spec(str(tiny_models.wan_t2v), output={"bucket": bucket}), s3_env)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    timings = api.RunnerResult.model_validate(outcome.last_line).timings
    parts = (timings.loading_import, timings.loading_read, timings.loading_place)
    assert all(p is not None and p >= 0 for p in parts), timings
    assert timings.loading is not None
    assert sum(p or 0.0 for p in parts) <= timings.loading + 0.01
    assert timings.loading_read and timings.loading_read > 0, "from_pretrained takes time"


def test_weights_read_onto_the_gpu_still_count_as_free_for_the_plan() -> None:
    from types import SimpleNamespace

    loaded = SimpleNamespace(model_bytes=14 * GIB)
    assert coldstart.free_for_plan(60 * GIB, loaded, "cuda") == 74 * GIB
    assert coldstart.free_for_plan(60 * GIB, loaded, None) == 60 * GIB
    assert coldstart.free_for_plan(None, loaded, "cuda") is None
