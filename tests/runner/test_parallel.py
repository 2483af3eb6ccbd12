"""gpus > 1 is real or refused: the runner's own entry point runs two ranks under torchrun (gloo on
the CPU), splits the tiny Wan denoiser with diffusers' context parallelism, and rank 0 alone
uploads one video that equals the single-process one; a model diffusers cannot split is refused."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from runner_support import RunCli, TinyModels, download, tiny_spec

from videogen_api import v1alpha1 as api
from videogen_runner import parallel
from videogen_runner.errors import InvalidInputError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def decoded(path: Path) -> np.ndarray[Any, Any]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    width, height = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(height, width, 3) for f in reader]
    return np.stack(frames)


@pytest.mark.parametrize(
    ("heads", "gpus", "expected"), [(12, 2, (2, 1)), (12, 8, (4, 2)), (40, 8, (8, 1)), (2, 2, (2, 1))]
)
def test_ulysses_takes_the_gpus_that_divide_the_heads_and_ring_the_rest(
    heads: int, gpus: int, expected: tuple[int, int]
) -> None:
    assert parallel.degrees(heads, gpus) == expected


def test_a_model_without_a_context_parallel_plan_is_refused() -> None:
    from types import SimpleNamespace

    from videogen_runner import tiny_models

    transformer = tiny_models.build_cogvideox_t2v().transformer
    with pytest.raises(InvalidInputError) as err:
        parallel.require_context_parallel(SimpleNamespace(transformer=transformer), 4, "/models/cog")
    assert err.value.message.startswith("spec.resources.gpus: 4 GPUs need a model diffusers can split")
    assert "CogVideoXTransformer3DModel" in err.value.message and "Set gpus: 1" in err.value.message


@pytest.mark.s3
def test_two_ranks_under_torchrun_give_one_video_equal_to_one_process(
    tiny_models: TinyModels,
    run_cli: RunCli,
    s3_env: dict[str, str],
    bucket: str,
    s3_client: S3Client,
    tmp_path: Path,
) -> None:
    model = str(tiny_models.wan_t2v)
    single = run_cli(tiny_spec(model, output={"bucket": bucket, "key": "one.mp4"}), s3_env)
    assert single.returncode == 0, single.stderr[-3000:]

    spec = tiny_spec(model, output={"bucket": bucket, "key": "two.mp4"}, resources={"gpus": 2})
    outcome = run_cli(spec, s3_env, timeout=600)
    assert outcome.returncode == 0, outcome.stderr[-5000:]
    result = api.RunnerResult.model_validate(outcome.last_line)
    assert outcome.termination == outcome.last_line, "rank 0 wrote the result, once"
    assert [line for line in outcome.stdout.splitlines() if line.startswith("{")] == [outcome.stdout.splitlines()[-1]]
    assert "parallel: context parallel over 2 CPU ranks (ulysses 2, ring 1)" in result.acceleration
    assert "rank 1 of 2 (gloo)" in outcome.stderr and "rank 0 of 2 (gloo)" in outcome.stderr

    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert keys == {"one.mp4", "one.mp4.poster.jpg", "two.mp4", "two.mp4.poster.jpg"}, "one upload per job"
    one, _ = download(s3_client, bucket, "one.mp4", tmp_path / "one.mp4")
    two, _ = download(s3_client, bucket, "two.mp4", tmp_path / "two.mp4")
    frames_one, frames_two = decoded(one), decoded(two)
    assert frames_two.shape == (9, 64, 64, 3)
    # Same seed, same noise, the attention split across ranks: the same video up to rounding.
    assert np.abs(frames_one.astype(int) - frames_two.astype(int)).max() <= 2


@pytest.mark.s3
def test_the_launcher_exits_with_rank_0s_failure(
    tmp_path: Path, run_cli: RunCli, s3_env: dict[str, str], bucket: str
) -> None:
    spec = tiny_spec(str(tmp_path / "missing-model"), output={"bucket": bucket}, resources={"gpus": 2})
    outcome = run_cli(spec, s3_env, timeout=300)
    assert outcome.returncode == api.ExitCode.MODEL_NOT_FOUND, outcome.stderr[-3000:]
    assert outcome.termination["reason"] == "ModelNotFound"
    assert outcome.last_line == outcome.termination
