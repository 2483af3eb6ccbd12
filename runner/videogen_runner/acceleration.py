"""Speed-ups of the denoiser: regional compile, attention kernel, step cache, fp8 weight storage.

Two halves, like memory.py / placement.py: `resolve_acceleration` is a pure decision over the spec,
the preset, the family and the machine; `apply_before_placement` (fp8 storage: fewer bytes to move
and to plan for) and `apply_after_placement` (attention, step cache, compile) carry it out with
diffusers' own APIs. Every decision, applied or not, becomes one line of RunnerResult.acceleration,
so the status says what ran and why something asked for did not.

Defaults per preset: `fast` may trade quality (a first-block step cache where diffusers registers
the family's blocks); `standard` and `quality` never do (compile and the attention kernel change
numerics only at rounding level; step caches and fp8 storage are never chosen for them).
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

# Families whose blocks diffusers' step caches know (TransformerBlockRegistry); checked again at run time.
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


def registered_block_lists(transformer: Any) -> list[str]:
    """Names of the transformer's block lists whose block class diffusers' step caches know."""
    import importlib

    import torch

    common: Any = importlib.import_module("diffusers.hooks._common")
    helpers: Any = importlib.import_module("diffusers.hooks._helpers")
    registry = helpers.TransformerBlockRegistry
    registry._register()
    found = []
    for name, child in transformer.named_children():
        if name not in common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS or not isinstance(child, torch.nn.ModuleList):
            continue
        if len(child) and all(type(block) in registry._registry for block in child):
            found.append(name)
    return found


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
            disable_cache_before_step=min(TAYLORSEER_WARMUP_STEPS, max(steps - 1, 0)),
            taylor_factors_dtype=torch.float32,
            cache_identifiers=[TAYLORSEER_TARGETS],
        )
    return hooks.MagCacheConfig(
        threshold=float(cache.threshold or DEFAULT_MAG_THRESHOLD),
        num_inference_steps=steps,
        mag_ratios=list(cache.mag_ratios or ()),
    )


def _apply_step_cache(transformer: Any, plan: AccelerationPlan, steps: int, parallel: bool) -> str:
    cache = plan.step_cache
    source = plan.reasons["stepCache"]
    if cache is None:
        return f"stepCache: none ({source})"
    name = type(transformer).__name__
    if not hasattr(transformer, "enable_cache"):
        return f"stepCache: {cache.type.value} not applied: {name} does not support diffusers' caches"
    if cache.type in (api.StepCacheType.FIRST_BLOCK, api.StepCacheType.MAG):
        if not registered_block_lists(transformer):
            return f"stepCache: {cache.type.value} not applied: diffusers does not register the blocks of {name}"
        if parallel:
            # Each rank would judge the residual of its own shard and skip differently: the
            # collectives inside the blocks would then wait forever.
            return f"stepCache: {cache.type.value} not applied: its skip decision is per rank under context parallelism"
    if cache.type is api.StepCacheType.TAYLORSEER and not taylorseer_targets(transformer):
        return f"stepCache: taylorseer not applied: {name} has no per-block attention modules"
    transformer.enable_cache(_step_cache_config(cache, steps))
    return f"stepCache: {cache.describe()} ({source})"


def _apply_compile(transformer: Any, plan: AccelerationPlan, env: Mapping[str, str]) -> str:
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
    fullgraph = plan.step_cache is None
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
            notes.append(f"stepCache: {plan.step_cache.type.value} not applied: {what}")
        if plan.compile:
            notes.append(f"compile: not applied: {what}")
        return notes
    notes = [_apply_attention(transformer, plan, cuda)]
    notes.append(_apply_step_cache(transformer, plan, steps, parallel))
    notes.append(_apply_compile(transformer, plan, env))
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
