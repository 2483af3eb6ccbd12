"""Speed-ups of the denoiser: regional compile, attention kernel, step cache, fp8 weight storage.

Two halves, like memory.py / placement.py: `resolve_acceleration` is a pure decision over the spec,
the preset, the family and the machine; `apply_before_placement` (fp8 storage: fewer bytes to move
and to plan for) and `apply_after_placement` (attention, step cache, compile) carry it out with
diffusers' own APIs. Every decision, applied or not, becomes one line of RunnerResult.acceleration,
so the status says what ran and why something asked for did not. Whether a step cache can run at all
is read from the model (its block lists, diffusers' block registry, the pipeline's cache contexts):
one that cannot, requested or the preset's, is skipped and said so rather than crashing in diffusers.

Defaults per preset: `fast` may trade quality (a first-block step cache for the families it suits);
`standard` and `quality` never do (compile and the attention kernel change numerics only at rounding
level; step caches and fp8 storage are never chosen for them).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen_api import v1alpha1 as api

from .presets import Family

log = logging.getLogger(__name__)

# The attention backends of diffusers' dispatcher that need nothing downloaded at run time
# (the *_hub variants fetch kernels from the Hub and are never offered).
ATTENTION_BACKENDS: dict[api.AttentionBackend, str] = {
    api.AttentionBackend.NATIVE: "native",
    api.AttentionBackend.CUDNN: "_native_cudnn",
    api.AttentionBackend.EFFICIENT: "_native_efficient",
    api.AttentionBackend.MATH: "_native_math",
    api.AttentionBackend.FLASH: "flash",
    api.AttentionBackend.FLEX: "flex",
    api.AttentionBackend.SAGE: "sage",
    api.AttentionBackend.XFORMERS: "xformers",
}
# Kernels that exist only on CUDA.
_CUDA_ONLY_ATTENTION = frozenset(
    {
        api.AttentionBackend.CUDNN,
        api.AttentionBackend.EFFICIENT,
        api.AttentionBackend.FLASH,
        api.AttentionBackend.SAGE,
        api.AttentionBackend.XFORMERS,
    }
)

# Step-cache defaults. first-block: the relative change of the first block's residual below which
# the remaining blocks are skipped (ParaAttention suggests 0.05-0.1 for video DiTs; 0.08 skips
# roughly every other late step of Wan at 30 steps). taylorseer: diffusers' own defaults.
DEFAULT_FIRST_BLOCK_THRESHOLD = 0.08
DEFAULT_MAG_THRESHOLD = 0.06
DEFAULT_TAYLORSEER_INTERVAL = 5
TAYLORSEER_WARMUP_STEPS = 3

# Families whose preset fast gets a first-block cache (diffusers registers their blocks; the threshold
# suits them). Whether the loaded model can run it is read from the model when applying.
_FAST_STEP_CACHE_FAMILIES = frozenset({Family.WAN, Family.LTX, Family.COGVIDEOX})

# Memory modes whose hooks a compiled block can live with: offload moving whole components is fine,
# layer-wise offload would recompile or break graphs at every hook.
_COMPILE_FRIENDLY_MODES = frozenset({api.MemoryMode.NONE, api.MemoryMode.MODEL_OFFLOAD})

# TaylorSeer predicts the outputs of the attention modules of each block. diffusers' default
# patterns ("^blocks.*attn", matched whole) miss Wan's attn1/attn2, so the runner names them itself.
TAYLORSEER_TARGETS = r"(blocks|transformer_blocks|single_transformer_blocks|temporal_transformer_blocks)\.\d+\.attn\d*"

ENV_INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"
ENV_TRITON_CACHE = "TRITON_CACHE_DIR"


@dataclass(frozen=True)
class StepCache:
    type: api.StepCacheType
    threshold: float | None = None
    interval: int | None = None
    mag_ratios: tuple[float, ...] | None = None

    def describe(self) -> str:
        if self.type is api.StepCacheType.TAYLORSEER:
            return f"taylorseer interval {self.interval}"
        if self.type is api.StepCacheType.MAG:
            return f"mag threshold {self.threshold} ({len(self.mag_ratios or ())} ratios)"
        return f"{self.type.value} threshold {self.threshold}"


@dataclass(frozen=True)
class AccelerationPlan:
    """What to apply; `reasons` says where each choice came from (spec, preset, machine)."""

    compile: bool
    attention: api.AttentionBackend
    step_cache: StepCache | None
    fp8_storage: bool
    reasons: dict[str, str]


def _default_step_cache(family: Family, preset: api.Preset) -> StepCache | None:
    if preset is api.Preset.FAST and family in _FAST_STEP_CACHE_FAMILIES:
        return StepCache(api.StepCacheType.FIRST_BLOCK, threshold=DEFAULT_FIRST_BLOCK_THRESHOLD)
    return None


def _step_cache_from_spec(spec: api.StepCacheSpec) -> StepCache | None:
    if spec.type is api.StepCacheType.NONE:
        return None
    if spec.type is api.StepCacheType.TAYLORSEER:
        return StepCache(spec.type, interval=spec.interval or DEFAULT_TAYLORSEER_INTERVAL)
    if spec.type is api.StepCacheType.MAG:
        return StepCache(
            spec.type,
            threshold=spec.threshold or DEFAULT_MAG_THRESHOLD,
            mag_ratios=tuple(spec.mag_ratios or ()),
        )
    return StepCache(spec.type, threshold=spec.threshold or DEFAULT_FIRST_BLOCK_THRESHOLD)


def resolve_acceleration(
    spec: api.AccelerationSpec | None,
    *,
    family: Family,
    preset: api.Preset,
    cuda: bool,
    memory_mode: api.MemoryMode,
) -> AccelerationPlan:
    """Decide from the spec, the preset and the machine. Pure; the model itself is checked when applying."""
    spec = spec or api.AccelerationSpec()
    reasons: dict[str, str] = {}

    if spec.compile is api.CompileMode.ON:
        compile_ = True
        reasons["compile"] = "requested"
    elif spec.compile is api.CompileMode.OFF:
        compile_ = False
        reasons["compile"] = "off (requested)"
    elif not cuda:
        compile_ = False
        reasons["compile"] = "off (auto: no GPU; compiling for the CPU costs more than it saves)"
    elif memory_mode not in _COMPILE_FRIENDLY_MODES:
        compile_ = False
        reasons["compile"] = f"off (auto: {memory_mode.value} moves layers at every step)"
    else:
        compile_ = True
        reasons["compile"] = "auto"

    attention = spec.attention
    reasons["attention"] = "requested" if attention is not api.AttentionBackend.AUTO else "auto"

    if spec.step_cache is not None:
        step_cache = _step_cache_from_spec(spec.step_cache)
        reasons["stepCache"] = "requested"
    else:
        step_cache = _default_step_cache(family, preset)
        reasons["stepCache"] = f"preset {preset.value}"

    fp8 = spec.weight_storage is api.WeightStorage.FP8
    reasons["weightStorage"] = "requested" if spec.weight_storage is not api.WeightStorage.AUTO else "auto"
    return AccelerationPlan(
        compile=compile_, attention=attention, step_cache=step_cache, fp8_storage=fp8, reasons=reasons
    )


# --------------------------------------------------------------------------- compile caches


def compile_cache_dirs(env: Mapping[str, str]) -> dict[str, str]:
    """Inductor and Triton caches on the model-cache volume, so a node pays each compile once.
    Explicit settings in the environment win."""
    root = env.get(api.ENV_MODEL_CACHE)
    if not root:
        return {}
    base = Path(root) / "compile-cache"
    wanted = {ENV_INDUCTOR_CACHE: str(base / "inductor"), ENV_TRITON_CACHE: str(base / "triton")}
    return {k: env.get(k) or v for k, v in wanted.items()}


def use_compile_caches(env: Mapping[str, str]) -> dict[str, str]:
    """Point this process's compile caches at the volume (before anything compiles); the ones used.

    Where the volume is mounted read-only (a tenant namespace reading the model catalog), a cache stays
    in the compiler's own default under the pod's writable /tmp: compiled once per pod, not per node."""
    used: dict[str, str] = {}
    for key, value in compile_cache_dirs(env).items():
        problem = _not_writable(Path(value))
        if problem:
            log.info("compile cache %s is not writable (%s); %s stays at its default", value, problem, key)
            continue
        os.environ[key] = value
        used[key] = value
    return used


def _not_writable(directory: Path) -> str | None:
    """Why files cannot be created in `directory` (None when they can). mkdir alone proves nothing:
    it succeeds for an existing directory on a read-only mount."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


# --------------------------------------------------------------------------- applying


def _transformer(pipe: Any) -> Any:
    return getattr(pipe, "transformer", None)


@dataclass(frozen=True)
class HookedBlocks:
    """The blocks diffusers' first-block and mag caches hook, found the way diffusers finds them: every
    block of each child ModuleList named like a block list, in order. The first block is the head (it
    decides whether to skip), the last the tail (it keeps the residual, and for mag counts the steps)."""

    lists: tuple[tuple[str, int], ...]
    unregistered: tuple[str, ...]  # block classes without diffusers' TransformerBlockRegistry metadata

    @property
    def count(self) -> int:
        return sum(n for _, n in self.lists)

    def describe(self) -> str:
        blocks = "block" if self.count == 1 else "blocks"
        return f"{self.count} transformer {blocks} ({', '.join(f'{name}: {n}' for name, n in self.lists)})"


def hooked_blocks(transformer: Any) -> HookedBlocks:
    """What diffusers' block-level step caches would hook in this transformer, read from the model itself."""
    import importlib

    import torch

    common: Any = importlib.import_module("diffusers.hooks._common")
    helpers: Any = importlib.import_module("diffusers.hooks._helpers")
    registry = helpers.TransformerBlockRegistry
    registry._register()
    lists: list[tuple[str, int]] = []
    unregistered: set[str] = set()
    for name, child in transformer.named_children():
        if name not in common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS or not isinstance(child, torch.nn.ModuleList):
            continue
        lists.append((name, len(child)))
        unregistered.update(type(block).__name__ for block in child if type(block) not in registry._registry)
    return HookedBlocks(lists=tuple(lists), unregistered=tuple(sorted(unregistered)))


def runs_denoiser_in_cache_context(pipeline_class: type) -> bool:
    """Whether the pipeline wraps its denoiser calls in `transformer.cache_context(...)`, read from the
    code that defines its __call__ (the pipeline's own module). First-block and TaylorSeer keep their
    state per context and raise at the first step without one; code that cannot be read counts as yes
    (diffusers decides, as before)."""
    import inspect

    owner = next((cls for cls in pipeline_class.__mro__ if "__call__" in vars(cls)), pipeline_class)
    try:
        source = inspect.getsource(inspect.getmodule(owner) or owner)
    except (OSError, TypeError):
        return True
    return ".cache_context(" in source


def taylorseer_targets(transformer: Any) -> list[str]:
    import re

    return [name for name, _ in transformer.named_modules() if re.fullmatch(TAYLORSEER_TARGETS, name)]


def apply_before_placement(pipe: Any, spec: api.AccelerationSpec | None) -> list[str]:
    """fp8 weight storage of the denoiser (layerwise casting: stored in float8_e4m3fn, computed in
    the loaded dtype); done before placement so fewer bytes move and the memory plan sees them."""
    storage = spec.weight_storage if spec is not None else api.WeightStorage.AUTO
    if storage is not api.WeightStorage.FP8:
        return [f"weightStorage: native ({'requested' if storage is api.WeightStorage.NATIVE else 'auto'})"]
    transformer = _transformer(pipe)
    if transformer is None or not hasattr(transformer, "enable_layerwise_casting"):
        return ["weightStorage: fp8 not applied: the pipeline has no diffusers transformer"]
    import torch

    compute = transformer.dtype
    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute)
    skipped = getattr(transformer, "_skip_layerwise_casting_patterns", None) or []
    kept = f"; {', '.join(skipped)} kept in {str(compute).removeprefix('torch.')}" if skipped else ""
    return [f"weightStorage: fp8 (float8_e4m3fn storage, {str(compute).removeprefix('torch.')} compute{kept})"]


def _apply_attention(transformer: Any, plan: AccelerationPlan, cuda: bool) -> str:
    backend = plan.attention
    if backend is api.AttentionBackend.AUTO:
        return "attention: auto (PyTorch SDPA picks the kernel: cuDNN or flash on recent GPUs)"
    if not hasattr(transformer, "set_attention_backend"):
        return f"attention: {backend.value} not applied: {type(transformer).__name__} has no attention dispatcher"
    if backend in _CUDA_ONLY_ATTENTION and not cuda:
        return f"attention: {backend.value} not applied: needs a GPU; native SDPA used"
    try:
        transformer.set_attention_backend(ATTENTION_BACKENDS[backend])
    except (ValueError, RuntimeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"attention: {backend.value} not applied: {first[:160]}; native SDPA used"
    return f"attention: {backend.value} ({plan.reasons['attention']})"


def _step_cache_config(cache: StepCache, steps: int) -> Any:
    import importlib

    import torch

    hooks: Any = importlib.import_module("diffusers.hooks")
    if cache.type is api.StepCacheType.FIRST_BLOCK:
        return hooks.FirstBlockCacheConfig(threshold=float(cache.threshold or DEFAULT_FIRST_BLOCK_THRESHOLD))
    if cache.type is api.StepCacheType.TAYLORSEER:
        return hooks.TaylorSeerCacheConfig(
            cache_interval=int(cache.interval or DEFAULT_TAYLORSEER_INTERVAL),
            # At least the first step computes: with none before it diffusers would have nothing to
            # predict from (interval 1 aside) and raise at step 0.
            disable_cache_before_step=max(1, min(TAYLORSEER_WARMUP_STEPS, steps - 1)),
            taylor_factors_dtype=torch.float32,
            cache_identifiers=[TAYLORSEER_TARGETS],
        )
    return hooks.MagCacheConfig(
        threshold=float(cache.threshold or DEFAULT_MAG_THRESHOLD),
        num_inference_steps=steps,
        mag_ratios=list(cache.mag_ratios or ()),
    )


def step_cache_blocker(pipe: Any, transformer: Any, cache: StepCache, parallel: bool) -> str | None:
    """Why `cache` cannot run on this model (None when it can), from the model's own structure: what
    each of diffusers' caches needs before it hooks anything or at its first step."""
    name = type(transformer).__name__
    if not hasattr(transformer, "enable_cache"):
        return f"{name} does not support diffusers' caches"
    if cache.type in (api.StepCacheType.FIRST_BLOCK, api.StepCacheType.MAG):
        blocks = hooked_blocks(transformer)
        if not blocks.count:
            return f"{name} has no transformer block list that diffusers' caches hook"
        if blocks.unregistered:
            return f"diffusers does not register the blocks of {name} ({', '.join(blocks.unregistered)})"
        if blocks.count < 2 and cache.type is api.StepCacheType.FIRST_BLOCK:
            # diffusers pops the head and then the tail block: with one block there is no tail
            # (IndexError), and nothing would be left to skip anyway.
            return (
                f"{name} has {blocks.describe()}; first-block needs 2 or more: the first decides, the rest are skipped"
            )
        if blocks.count < 2:
            # With one block diffusers puts head and tail on it, but a skipped step returns from the head
            # before the tail counts it: every later step would take the wrong magRatio.
            return f"{name} has {blocks.describe()}; mag needs 2 or more: the last block counts the steps, a skipped step never reaches it"
        if parallel:
            # Each rank would judge the residual of its own shard and skip differently: the
            # collectives inside the blocks would then wait forever.
            return "its skip decision is per rank under context parallelism"
    if cache.type is api.StepCacheType.TAYLORSEER and not taylorseer_targets(transformer):
        return f"{name} has no per-block attention modules"
    if cache.type is not api.StepCacheType.MAG and not runs_denoiser_in_cache_context(type(pipe)):
        # MagCache opens a context of its own when the pipeline has none; the other two raise.
        return f"{type(pipe).__name__} does not run its denoiser in a cache context, where {cache.type.value} keeps its state"
    return None


def _apply_step_cache(
    pipe: Any, transformer: Any, plan: AccelerationPlan, steps: int, parallel: bool
) -> tuple[str, bool]:
    """The status line, and whether a cache now runs."""
    cache = plan.step_cache
    source = plan.reasons["stepCache"]
    if cache is None:
        return f"stepCache: none ({source})", False
    # Requested or the preset's, a cache the model cannot run is skipped and said so, like the other
    # speed-ups: the video is the same one the spec asks for, only slower.
    why = step_cache_blocker(pipe, transformer, cache, parallel)
    if why is not None:
        return f"stepCache: {cache.type.value} not applied: {why} ({source})", False
    transformer.enable_cache(_step_cache_config(cache, steps))
    return f"stepCache: {cache.describe()} ({source})", True


def _apply_compile(transformer: Any, plan: AccelerationPlan, env: Mapping[str, str], *, step_cached: bool) -> str:
    if not plan.compile:
        return f"compile: {plan.reasons['compile']}"
    name = type(transformer).__name__
    repeated = list(getattr(transformer, "_repeated_blocks", None) or [])
    if not repeated:
        return f"compile: not applied: {name} declares no repeated blocks for regional compile"
    count = sum(1 for m in transformer.modules() if type(m).__name__ in repeated)
    if not count:
        return f"compile: not applied: none of {', '.join(repeated)} found in {name}"
    dirs = use_compile_caches(env)
    # Data-dependent skips of a step cache break graphs; without one the block is one graph.
    fullgraph = not step_cached
    transformer.compile_repeated_blocks(fullgraph=fullgraph)
    where = f", cache {Path(dirs[ENV_INDUCTOR_CACHE]).parent}" if ENV_INDUCTOR_CACHE in dirs else ""
    return f"compile: regional, {count} x {'/'.join(repeated)}{' fullgraph' if fullgraph else ''}{where} ({plan.reasons['compile']})"


def apply_after_placement(
    pipe: Any,
    plan: AccelerationPlan,
    *,
    cuda: bool,
    steps: int,
    env: Mapping[str, str],
    parallel: bool = False,
) -> list[str]:
    """Attention kernel, step cache, then compile (compile last: it traces the hooked blocks)."""
    transformer = _transformer(pipe)
    if transformer is None:
        what = "the pipeline has no transformer"
        notes = [f"attention: {plan.attention.value} not applied: {what}"] if plan.attention.value != "auto" else []
        if plan.step_cache is not None:
            notes.append(f"stepCache: {plan.step_cache.type.value} not applied: {what} ({plan.reasons['stepCache']})")
        if plan.compile:
            notes.append(f"compile: not applied: {what}")
        return notes
    step_cache, step_cached = _apply_step_cache(pipe, transformer, plan, steps, parallel)
    notes = [_apply_attention(transformer, plan, cuda), step_cache]
    notes.append(_apply_compile(transformer, plan, env, step_cached=step_cached))
    for note in notes:
        log.info("acceleration: %s", note)
    return notes


def reset_step_cache(pipe: Any) -> None:
    """Forget cached residuals before the pipeline runs again (a retry after running out of memory)."""
    transformer = _transformer(pipe)
    reset = getattr(transformer, "_reset_stateful_cache", None)
    if callable(reset) and getattr(transformer, "is_cache_enabled", False):
        reset()


def with_plan_bytes(loaded: Any) -> Any:
    """The LoadedModel with its byte counts measured again (fp8 storage halves the denoiser's)."""
    import torch

    from .models import module_bytes

    sizes = {
        name: module_bytes(component)
        for name, component in loaded.pipe.components.items()
        if isinstance(component, torch.nn.Module)
    }
    return dataclasses.replace(
        loaded,
        model_bytes=sum(sizes.values()),
        largest_component_bytes=max(sizes.values(), default=0),
        component_bytes=sizes,
    )
