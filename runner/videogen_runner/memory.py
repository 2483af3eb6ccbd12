"""How the pipeline uses GPU memory: a pure decision over (free VRAM, model size, output size).

Offloading trades speed for memory (model offload ~+6% time, group offload with
streams ~+4%, sequential offload ~+60%), so `auto` picks the fastest mode whose
estimated peak fits into the free memory, with VAE tiling when the decode would
not fit (or the frames are large enough that tiling is cheap insurance).
The estimates are deliberately coarse and on the safe side; they are
constants here so the decision stays explainable in one log line.
"""

from __future__ import annotations

from dataclasses import dataclass

from videogen_api import v1alpha1 as api

GIB = 1 << 30

# Fixed CUDA context, allocator slack and prompt embeddings.
BASE_OVERHEAD_BYTES = 1 * GIB
# Denoiser activations per output voxel (frame x height x width); ~2.5 GiB at Wan's 81x480x832.
ACTIVATION_BYTES_PER_VOXEL = 80
# Untiled video-VAE decode peak per pixel of one frame (decoders work on a few frames at a time).
DECODE_BYTES_PER_PIXEL = 10_000
# Tiled decode is bounded by the tile size rather than the frame size.
TILED_DECODE_BYTES = int(1.5 * GIB)
# From 720p up tiling costs little and prevents the decode from being the OOM point.
LARGE_FRAME_PIXELS = 1280 * 720
# Keep this share of free memory unused: fragmentation and estimate error.
SAFETY_FACTOR = 1.1
# Share of the largest component that stays on the GPU at once.
GROUP_OFFLOAD_RESIDENT_SHARE = 0.15
SEQUENTIAL_RESIDENT_SHARE = 0.05

_CPU_DESCRIPTION = "none (cpu)"


@dataclass(frozen=True)
class OutputSize:
    width: int
    height: int
    num_frames: int

    @property
    def frame_pixels(self) -> int:
        return self.width * self.height

    @property
    def voxels(self) -> int:
        return self.frame_pixels * self.num_frames


@dataclass(frozen=True)
class MemoryPlan:
    mode: api.MemoryMode
    on_cuda: bool
    vae_tiling: bool
    reason: str

    def describe(self) -> str:
        """The string reported as RunnerResult.memory_mode."""
        if not self.on_cuda:
            return _CPU_DESCRIPTION
        tiling = " + vae-tiling" if self.vae_tiling else ""
        return f"{self.mode.value}{tiling} ({self.reason})"


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def working_bytes(size: OutputSize, tiled: bool) -> int:
    decode = TILED_DECODE_BYTES if tiled else size.frame_pixels * DECODE_BYTES_PER_PIXEL
    return BASE_OVERHEAD_BYTES + size.voxels * ACTIVATION_BYTES_PER_VOXEL + decode


def resident_bytes(mode: api.MemoryMode, model_bytes: int, largest_component_bytes: int) -> int:
    """Weights on the GPU at the worst moment under each mode."""
    if mode is api.MemoryMode.NONE:
        return model_bytes
    if mode is api.MemoryMode.MODEL_OFFLOAD:
        return largest_component_bytes
    if mode is api.MemoryMode.GROUP_OFFLOAD:
        return int(largest_component_bytes * GROUP_OFFLOAD_RESIDENT_SHARE)
    return int(largest_component_bytes * SEQUENTIAL_RESIDENT_SHARE)


_AUTO_ORDER = (
    api.MemoryMode.NONE,
    api.MemoryMode.MODEL_OFFLOAD,
    api.MemoryMode.GROUP_OFFLOAD,
    api.MemoryMode.SEQUENTIAL_OFFLOAD,
)


def choose_memory_plan(
    requested: api.MemoryMode,
    *,
    cuda: bool,
    free_bytes: int | None,
    model_bytes: int,
    output: OutputSize,
    largest_component_bytes: int | None = None,
    large_frame_pixels: int | None = None,
) -> MemoryPlan:
    """Pick the memory mode and VAE tiling. Pure: all inputs are numbers."""
    if not cuda:
        reason = "cpu" if requested in (api.MemoryMode.AUTO, api.MemoryMode.NONE) else f"cpu; {requested.value} ignored"
        return MemoryPlan(api.MemoryMode.NONE, on_cuda=False, vae_tiling=False, reason=reason)

    largest = largest_component_bytes if largest_component_bytes is not None else model_bytes
    # The profile's threshold (vaeTilingFromPixels) when it has one.
    large = output.frame_pixels >= (large_frame_pixels or LARGE_FRAME_PIXELS)
    free = free_bytes if free_bytes is not None else 0

    def fits(mode: api.MemoryMode, tiled: bool) -> bool:
        need = resident_bytes(mode, model_bytes, largest) + working_bytes(output, tiled)
        return free >= need * SAFETY_FACTOR

    if requested is not api.MemoryMode.AUTO:
        tiled = large or not fits(requested, tiled=False)
        why = "large frames" if large else ("decode would not fit" if tiled else "fits")
        return MemoryPlan(requested, on_cuda=True, vae_tiling=tiled, reason=f"requested; {why}")

    if free_bytes is None:
        return MemoryPlan(
            api.MemoryMode.MODEL_OFFLOAD,
            on_cuda=True,
            vae_tiling=True,
            reason="auto: free memory unknown, playing safe",
        )

    budget = f"{_gib(free)} free, model {_gib(model_bytes)}, largest component {_gib(largest)}"
    for mode in _AUTO_ORDER:
        for tiled in (False, True) if not large else (True,):
            if fits(mode, tiled):
                need = resident_bytes(mode, model_bytes, largest) + working_bytes(output, tiled)
                return MemoryPlan(
                    mode,
                    on_cuda=True,
                    vae_tiling=tiled,
                    reason=f"auto: {budget}; needs ~{_gib(need)}",
                )
    return MemoryPlan(
        api.MemoryMode.SEQUENTIAL_OFFLOAD,
        on_cuda=True,
        vae_tiling=True,
        reason=f"auto: {budget}; nothing fits the estimate, trying the smallest footprint",
    )


def fallback_after_oom(plan: MemoryPlan, *, in_decode: bool) -> MemoryPlan | None:
    """The next plan after running out of memory under `plan`, or None when nothing smaller is left.

    A decode that ran out untiled is retried tiled (cheap: the latents are kept); anything else moves
    to the next memory mode (none -> model offload -> group offload -> sequential offload), tiling
    kept. On the CPU there is no smaller mode. Explicit modes fall back too: a slower video beats none.
    """
    if in_decode and not plan.vae_tiling:
        return MemoryPlan(
            plan.mode,
            on_cuda=plan.on_cuda,
            vae_tiling=True,
            reason=f"{plan.reason}; the untiled decode ran out of memory, retried tiled",
        )
    if not plan.on_cuda or plan.mode not in _AUTO_ORDER:
        return None
    index = _AUTO_ORDER.index(plan.mode)
    if index + 1 >= len(_AUTO_ORDER):
        return None
    stage = "decode" if in_decode else "denoising"
    return MemoryPlan(
        _AUTO_ORDER[index + 1],
        on_cuda=True,
        vae_tiling=plan.vae_tiling,
        reason=f"{plan.mode.value} ran out of memory in {stage}, fell back ({plan.reason})",
    )
