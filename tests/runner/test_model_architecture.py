"""The model loader describes what it fetched, for the operator's admission of gpus > 1: the tiny Wan
pipeline's transformer has diffusers' context-parallel plan, a tiny CogVideoX's has none, and a UNet
pipeline (I2VGen-XL) has no transformer to split. Each answer is the one the runner gives for the
same model once loaded (parallel.require_context_parallel), so refusing at admission refuses exactly
what the runner would have refused after holding the GPUs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runner_support import TinyModels, loader_spec, run_loader

from videogen_api import catalog
from videogen_runner import parallel
from videogen_runner.errors import InvalidInputError
from videogen_runner.model_loader import fetch
from videogen_runner.tiny_models import save_tiny_pipeline


@pytest.fixture
def cache_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "model-cache"
    root.mkdir()
    yield root
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)


def diffusers_version() -> str:
    import diffusers

    return str(diffusers.__version__)


def load_pipeline(model: Path) -> Any:
    import diffusers

    return diffusers.DiffusionPipeline.from_pretrained(str(model))


def test_the_tiny_wan_model_reports_a_context_parallel_plan(
    tiny_models: TinyModels, cache_root: Path, tmp_path: Path
) -> None:
    # A directory on the cache volume, fetched by the console script as the loader Job runs it.
    model = Path(shutil.copytree(tiny_models.wan_t2v, cache_root / "models" / "wan"))
    spec = loader_spec("wan-tiny", str(model), cache_root).model_dump_json(by_alias=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOGEN_", "AWS_", "KUBECONFIG", "HF_"))}
    env = {**base, "VIDEOGEN_TERMINATION_LOG": str(tmp_path / "termination-log"), catalog.ENV_LOADER_SPEC: spec}

    code, message, _, logs = run_loader("fetch", env=env)

    assert code == 0, logs
    result = catalog.LoaderResult.model_validate(message)
    heads = json.loads((model / "transformer" / "config.json").read_text())["num_attention_heads"]
    assert result.architecture == catalog.ModelArchitecture(
        pipeline="WanPipeline",
        transformer="WanTransformer3DModel",
        context_parallel=True,
        attention_heads=heads,
        diffusers_version=diffusers_version(),
    )
    assert message["architecture"]["contextParallel"] is True, "camelCase in the termination message"
    pipe = load_pipeline(model)
    assert parallel.require_context_parallel(pipe, 2, "wan-tiny") is pipe.transformer, "the runner splits it too"


@pytest.mark.parametrize(
    ("family", "pipeline", "transformer"),
    [
        ("cogvideox-t2v", "CogVideoXPipeline", "CogVideoXTransformer3DModel"),
        ("i2vgen-xl", "I2VGenXLPipeline", None),
    ],
)
def test_a_family_diffusers_cannot_split_reports_one_gpu(
    cache_root: Path, family: str, pipeline: str, transformer: str | None
) -> None:
    model = save_tiny_pipeline(family, cache_root / "models" / family)

    result = fetch(loader_spec(family, str(model), cache_root), {})

    assert result.architecture is not None
    assert (result.architecture.pipeline, result.architecture.transformer) == (pipeline, transformer)
    assert result.architecture.context_parallel is False
    assert result.architecture.diffusers_version == diffusers_version()
    with pytest.raises(InvalidInputError, match=r"^spec\.resources\.gpus: 2 GPUs need a model diffusers can split"):
        parallel.require_context_parallel(load_pipeline(model), 2, family)


def test_a_transformer_class_this_diffusers_lacks_is_left_to_the_runner(
    tiny_models: TinyModels, cache_root: Path
) -> None:
    # A model saved by a newer diffusers: the loader cannot tell, and says so by leaving it unset.
    model = Path(shutil.copytree(tiny_models.wan_t2v, cache_root / "models" / "wan-next"))
    index = json.loads((model / "model_index.json").read_text())
    index["transformer"] = ["diffusers", "WanTransformerFromTheFuture"]
    (model / "model_index.json").write_text(json.dumps(index))

    result = fetch(loader_spec("wan-next", str(model), cache_root), {})

    assert result.architecture is not None
    assert result.architecture.transformer == "WanTransformerFromTheFuture"
    assert result.architecture.context_parallel is None
