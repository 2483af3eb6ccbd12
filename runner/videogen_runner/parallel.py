"""`spec.resources.gpus > 1`: one pipeline across the pod's GPUs with context parallelism, or a refusal.

The pod's process (the launcher) re-runs the runner under torchrun, one process per GPU. Every rank
loads the model and runs the same pipeline with the same seed; diffusers' context-parallel hooks
(the model's `_cp_plan`) split the denoiser's sequence across the ranks and Ulysses all-to-all
(ring attention where the heads do not divide) joins the attention. Rank 0 alone reports progress,
encodes, uploads and writes the result; the launcher exits with rank 0's code.

Families whose transformer has no `_cp_plan` in diffusers (e.g. CogVideoX) are refused with
InvalidInput. For catalog models the operator refuses them before any pod: the model loader records
`has_context_parallel_plan` of the transformer class in the VideoGenModel's status
(status.architecture.contextParallel). Unlisted URIs are only known here, after loading.
Without CUDA the ranks use gloo on the CPU (how `make test` checks this path).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import InvalidInputError

log = logging.getLogger(__name__)

# Set by the launcher for the ranks: where rank 0 leaves its exit code.
ENV_EXIT_CODE_FILE = "VIDEOGEN_RANK0_EXIT_CODE_FILE"


@dataclass(frozen=True)
class ParallelContext:
    rank: int
    world_size: int
    local_rank: int
    cuda: bool

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size} ({'nccl' if self.cuda else 'gloo'})"


def world_size(env: Mapping[str, str]) -> int:
    try:
        return int(env.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def is_rank(env: Mapping[str, str]) -> bool:
    """True inside a torchrun rank (the launcher itself has no WORLD_SIZE)."""
    return world_size(env) > 1


def is_secondary_rank(env: Mapping[str, str]) -> bool:
    return is_rank(env) and env.get("RANK", "0") != "0"


# --------------------------------------------------------------------------- launcher


def launch(argv: Sequence[str], env: Mapping[str, str], gpus: int, termination_log: Path) -> int:
    """Run this program under torchrun with one process per GPU; return rank 0's exit code
    (rank 0 writes the result; when it died without one, the launcher writes the failure)."""
    from videogen_api import v1alpha1 as api

    from .result import emit

    with tempfile.TemporaryDirectory(prefix="videogen-ranks-") as scratch:
        exit_file = Path(scratch) / "rank0-exit-code"
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={gpus}",
            "-m",
            "videogen_runner",
            *argv,
        ]
        log.info("gpus: %d: running %d ranks under torchrun (context parallel)", gpus, gpus)
        proc = subprocess.Popen(cmd, env={**env, ENV_EXIT_CODE_FILE: str(exit_file)})

        def forward(signum: int, _frame: FrameType | None) -> None:
            # Pod deletion: torchrun passes the signal on to every rank; rank 0 reports it.
            proc.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
        try:
            return int(exit_file.read_text().strip())
        except (OSError, ValueError):
            message = f"rank 0 of {gpus} ended without a result (torchrun exited {code})"
            log.error("%s", message)
            code = int(api.ExitCode.INTERNAL_ERROR)
            emit(api.RunnerFailure(reason=api.Reason.INTERNAL_ERROR, message=message, exit_code=code), termination_log)
            return code


def requested_gpus(spec_file: str | None, env: Mapping[str, str]) -> int:
    """spec.resources.gpus, or 1 when the spec does not load (run() then reports why, once)."""
    from .spec_input import load_run_input

    try:
        return int(load_run_input(spec_file, env).spec.resources.gpus)
    except Exception:
        return 1


def record_exit_code(env: Mapping[str, str], code: int) -> None:
    path = env.get(ENV_EXIT_CODE_FILE)
    if path and not is_secondary_rank(env):
        Path(path).write_text(str(code))


# --------------------------------------------------------------------------- inside a rank


def init(env: Mapping[str, str]) -> ParallelContext | None:
    """Join the process group of this torchrun job (None when not under torchrun)."""
    if not is_rank(env):
        return None
    import torch
    import torch.distributed as dist

    cuda = bool(torch.cuda.is_available())
    local_rank = int(env.get("LOCAL_RANK", "0") or 0)
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_destroy)
    ctx = ParallelContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, cuda=cuda)
    log.info("parallel: %s", ctx.describe())
    return ctx


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shared_seed(ctx: ParallelContext | None, draw: Callable[[], int]) -> Callable[[], int]:
    """A seed source that gives every rank rank 0's draw (the ranks must denoise the same noise)."""
    if ctx is None:
        return draw

    def source() -> int:
        import torch.distributed as dist

        box = [draw() if ctx.primary else 0]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])

    return source


def degrees(heads: int, gpus: int) -> tuple[int, int]:
    """(ulysses, ring): Ulysses over the largest share of GPUs that divides the attention heads, ring for the rest."""
    ulysses = math.gcd(heads, gpus) if heads > 0 else 1
    return ulysses, gpus // ulysses


def has_context_parallel_plan(transformer: object) -> bool:
    """Whether diffusers can split this transformer across GPUs: a loaded model or its class (the
    model loader asks the class named in model_index.json, so the operator refuses gpus > 1 at
    admission with the same answer the runner would give after loading)."""
    return bool(getattr(transformer, "_cp_plan", None)) and hasattr(transformer, "enable_parallelism")


def require_context_parallel(pipe: Any, gpus: int, model: str) -> Any:
    """The transformer to split, or InvalidInput for a model diffusers cannot split."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None or not has_context_parallel_plan(transformer):
        what = type(transformer).__name__ if transformer is not None else type(pipe).__name__
        raise InvalidInputError(
            f"spec.resources.gpus: {gpus} GPUs need a model diffusers can split across GPUs "
            f"(a context-parallel plan: Wan, LTX); {model} uses {what}, which runs on one GPU only. Set gpus: 1"
        )
    return transformer


def enable_context_parallel(ctx: ParallelContext, pipe: Any, model: str) -> str:
    """diffusers' enable_parallelism with a ContextParallelConfig over all ranks; returns a note."""
    import importlib

    transformer = require_context_parallel(pipe, ctx.world_size, model)
    diffusers: Any = importlib.import_module("diffusers")
    heads = int(getattr(transformer.config, "num_attention_heads", 0) or 0)
    ulysses, ring = degrees(heads, ctx.world_size)
    config = diffusers.ContextParallelConfig(ulysses_degree=ulysses, ring_degree=ring)
    if not ctx.cuda:
        _resolve_on_cpu(transformer)
    transformer.enable_parallelism(config=config)
    note = f"parallel: context parallel over {ctx.world_size} {'GPUs' if ctx.cuda else 'CPU ranks'} (ulysses {ulysses}, ring {ring})"
    log.info("%s", note)
    return note


def _resolve_on_cpu(transformer: Any) -> None:
    """diffusers 0.42 places each rank on `rank % torch.accelerator.device_count()`, which is a
    division by zero without an accelerator. On the CPU (tests, gloo) the same resolution is done
    with the CPU as the device; everything else in enable_parallelism runs unchanged."""
    import importlib

    import torch
    import torch.distributed as dist

    parallel: Any = importlib.import_module("diffusers.models._modeling_parallel")

    def resolve(config: Any) -> Any:
        if isinstance(config, parallel.ContextParallelConfig):
            config = parallel.ParallelConfig(context_parallel_config=config)
        cp = config.context_parallel_config
        mesh = torch.distributed.device_mesh.init_device_mesh(
            "cpu", mesh_shape=cp.mesh_shape, mesh_dim_names=cp.mesh_dim_names
        )
        config.setup(dist.get_rank(), dist.get_world_size(), torch.device("cpu"), mesh=mesh)
        transformer._parallel_config = config
        return config

    transformer._resolve_parallel_config = resolve


def secondary_env(env: Mapping[str, str]) -> dict[str, str]:
    """What a non-zero rank runs with: no job identity (no progress writes)."""
    from videogen_api import v1alpha1 as api

    hidden = (api.ENV_JOB_NAMESPACE, api.ENV_JOB_NAME, api.ENV_JOB_UID)
    return {k: v for k, v in env.items() if k not in hidden}


def run_secondary(spec_file: str | None, env: Mapping[str, str]) -> int:
    """A non-zero rank: the same render as rank 0 (the collectives need every rank), nothing reported."""
    from .errors import failure_for
    from .render import render_video
    from .s3 import RetryPolicy, make_client
    from .spec_input import load_run_input

    env = secondary_env(env)
    try:
        run_input = load_run_input(spec_file, env)
        policy = RetryPolicy.from_env(env)
        with tempfile.TemporaryDirectory(prefix="videogen-rank-") as work:
            video_path = Path(work) / f"video.{run_input.spec.output.format.value}"
            render_video(run_input.spec, env, video_path=video_path, s3=make_client(env), policy=policy)
    except BaseException as exc:
        failure = failure_for(exc)
        log.error("rank %s failed (%s): %s", os.environ.get("RANK"), failure.reason.value, failure.message)
        return failure.exit_code
    return 0
