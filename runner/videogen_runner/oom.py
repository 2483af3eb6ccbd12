"""Running out of GPU memory is a fallback chain before it is a failure.

A VAE decode that runs out of memory untiled is retried tiled in the same process: for Wan's
streamed decode from the kept latents (frames already encoded are not decoded again), for the
pipeline's own decode by running the pipeline again with tiling. Denoising that runs out of memory
moves to the next memory mode (memory.fallback_after_oom decides) and runs again. Only when no
smaller plan is left does the run exit CudaOutOfMemory, naming every plan it tried.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CudaOutOfMemoryError, one_line
from .generate import Frames, GenerationRequest, generate
from .memory import MemoryPlan, fallback_after_oom
from .models import LoadedModel

log = logging.getLogger(__name__)

Place = Callable[[Any, MemoryPlan], None]


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def release_memory() -> None:
    """Drop what the failed attempt left allocated (its frames are gone once the exception is)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def clear_placement(pipe: Any) -> None:
    """Undo a memory mode: accelerate's offload hooks and diffusers' group-offload hooks, weights back on the CPU."""
    import torch

    pipe.remove_all_hooks()
    for component in pipe.components.values():
        registry = getattr(component, "_diffusers_hook", None)
        if not isinstance(component, torch.nn.Module) or registry is None:
            continue
        for name in ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading"):
            registry.remove_hook(name, recurse=True)
    pipe.to("cpu")


def replace_placement(pipe: Any, plan: MemoryPlan) -> None:
    from .placement import apply_memory_plan

    clear_placement(pipe)
    release_memory()
    apply_memory_plan(pipe, plan)


def tiled_wan_decode(vae: Any, latents: Any, skip: int) -> Iterator[np.ndarray[Any, Any]]:
    """WanPipeline's own decode with tiling on, frames from index `skip` on (the earlier ones were
    already encoded from the streamed decode)."""
    import torch

    vae.enable_tiling()
    with torch.inference_mode():
        device = next(vae.parameters()).device
        z = latents.to(device, dtype=vae.dtype)
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(z.device, z.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(z.device, z.dtype)
        video = vae.decode(z / inv_std + mean, return_dict=False)[0]
        frames = (video.clamp(-1.0, 1.0)[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float().cpu().numpy()
    del video
    yield from frames[skip:]


@dataclass
class Attempts:
    """The plans tried, for the logs, the result's memory mode and the final error."""

    plan: MemoryPlan
    notes: list[str] = field(default_factory=list)

    def fall_back(self, exc: BaseException, *, in_decode: bool) -> MemoryPlan:
        where = "decode" if in_decode else "denoising"
        nxt = fallback_after_oom(self.plan, in_decode=in_decode)
        if nxt is None:
            tried = "; ".join([*self.notes, f"{self.plan.describe()} ran out in {where}"])
            raise CudaOutOfMemoryError(
                one_line(
                    f"CUDA out of memory with every memory plan ({tried}): {exc}. Try a smaller "
                    "width/height/numFrames, acceleration.weightStorage: fp8, or a GPU with more memory"
                )
            ) from exc
        note = f"{self.plan.mode.value}{' + vae-tiling' if self.plan.vae_tiling else ''} ran out of memory in {where}"
        self.notes.append(note)
        log.warning("%s; retrying with %s", note, nxt.describe())
        self.plan = nxt
        return nxt


def _with_decode_fallback(frames: Frames, loaded: LoadedModel, attempts: Attempts) -> Iterator[np.ndarray[Any, Any]]:
    """Wan's streamed decode, continued by a tiled decode of the same latents if it runs out of memory."""
    yielded = 0
    try:
        for frame in frames.iterator:
            yield frame
            yielded += 1
        return
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        attempts.fall_back(exc, in_decode=True)
    release_memory()
    if not attempts.plan.vae_tiling:
        # The decode ran out even though it was tiled: no smaller decode exists in this process.
        raise CudaOutOfMemoryError("CUDA out of memory in the tiled VAE decode")
    yield from tiled_wan_decode(loaded.pipe.vae, frames.latents, yielded)


def generate_with_fallback(
    loaded: LoadedModel,
    request: GenerationRequest,
    plan: MemoryPlan,
    on_step: Callable[[int, int], None],
    env: Mapping[str, str] | None = None,
    *,
    on_denoised: Callable[[], None] | None = None,
    place: Place = replace_placement,
) -> tuple[Frames, Attempts]:
    """generate(), falling back to smaller memory plans on OOM. `attempts.plan` is the plan that ran
    (it may change again while the frames are iterated, if the streamed decode falls back to tiling)."""
    from .acceleration import reset_step_cache

    attempts = Attempts(plan)
    total = request.params.steps
    done = [0]

    def step(n: int, of: int) -> None:
        done[0] = n
        on_step(n, of)

    while True:
        done[0] = 0
        try:
            frames = generate(loaded, request, attempts.plan, step, env, on_denoised or (lambda: None))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            # The pipeline decodes after the last step's callback: an OOM then is the decode's.
            previous = attempts.plan
            nxt = attempts.fall_back(exc, in_decode=done[0] >= total)
            del exc
            release_memory()
            if nxt.mode is previous.mode:
                loaded.pipe.vae.enable_tiling()
            else:
                place(loaded.pipe, nxt)
            reset_step_cache(loaded.pipe)
            continue
        if frames.streamed and frames.latents is not None:
            frames = Frames(
                iterator=_with_decode_fallback(frames, loaded, attempts),
                expected=frames.expected,
                streamed=True,
                latents=frames.latents,
            )
        return frames, attempts
