"""Presets and the shape rules of each model family, as pure functions.

Users ask for numbers (frames, width, height); model families accept only some
of them (Wan: 4k+1 frames, multiples of 16; LTX: 8k+1 frames, multiples of 32).
Pipelines silently floor bad values, which makes a 32-frame request produce 29
frames without a word. Here every change is made on purpose and reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from videogen_api import v1alpha1 as api


class Family(StrEnum):
    WAN = "wan"
    LTX = "ltx"
    COGVIDEOX = "cogvideox"
    GENERIC = "generic"


_LABELS = {Family.WAN: "Wan", Family.LTX: "LTX", Family.COGVIDEOX: "CogVideoX", Family.GENERIC: "this model"}


def family_for_class(class_name: str) -> Family:
    """The family of a diffusers pipeline class name from model_index.json."""
    if class_name.startswith("Wan"):
        return Family.WAN
    if class_name.startswith("LTX"):
        return Family.LTX
    if class_name.startswith("CogVideoX"):
        return Family.COGVIDEOX
    return Family.GENERIC


@dataclass(frozen=True)
class ShapeRules:
    """What a family accepts: frames = k*frame_step + 1, sides multiples of size_multiple."""

    family: Family
    frame_step: int
    size_multiple: int

    @property
    def label(self) -> str:
        return _LABELS[self.family]


DEFAULT_RULES = {
    Family.WAN: ShapeRules(Family.WAN, frame_step=4, size_multiple=16),
    Family.LTX: ShapeRules(Family.LTX, frame_step=8, size_multiple=32),
    Family.COGVIDEOX: ShapeRules(Family.COGVIDEOX, frame_step=4, size_multiple=16),
    Family.GENERIC: ShapeRules(Family.GENERIC, frame_step=1, size_multiple=api.DIMENSION_MULTIPLE),
}


def rules_from_configs(family: Family, vae: Mapping[str, Any], transformer: Mapping[str, Any]) -> ShapeRules:
    """Rules derived from the model's own configs when they say so (e.g. Wan 2.2's
    16x VAE needs multiples of 32), falling back to the family's defaults."""
    base = DEFAULT_RULES[family]
    if family is not Family.WAN:
        return base
    temporal = vae.get("scale_factor_temporal")
    spatial = vae.get("scale_factor_spatial")
    patch = transformer.get("patch_size")
    frame_step = int(temporal) if isinstance(temporal, int) and temporal > 0 else base.frame_step
    size_multiple = base.size_multiple
    if isinstance(spatial, int) and isinstance(patch, list | tuple) and len(patch) == 3:
        size_multiple = int(spatial) * max(int(patch[1]), int(patch[2]))
    return ShapeRules(family, frame_step=frame_step, size_multiple=max(size_multiple, api.DIMENSION_MULTIPLE))


@dataclass(frozen=True)
class PresetValues:
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance_scale: float


# Values each family was trained or tuned for; "fast" trades steps and length, not resolution.
PRESETS: dict[Family, dict[api.Preset, PresetValues]] = {
    Family.WAN: {
        api.Preset.FAST: PresetValues(832, 480, 33, 16, 20, 5.0),
        api.Preset.STANDARD: PresetValues(832, 480, 81, 16, 30, 5.0),
        api.Preset.QUALITY: PresetValues(1280, 720, 81, 16, 50, 5.0),
    },
    Family.LTX: {
        api.Preset.FAST: PresetValues(704, 480, 97, 24, 20, 3.0),
        api.Preset.STANDARD: PresetValues(768, 512, 121, 24, 40, 3.0),
        api.Preset.QUALITY: PresetValues(1216, 704, 161, 24, 50, 3.0),
    },
    Family.COGVIDEOX: {
        api.Preset.FAST: PresetValues(720, 480, 49, 8, 25, 6.0),
        api.Preset.STANDARD: PresetValues(720, 480, 49, 8, 50, 6.0),
        api.Preset.QUALITY: PresetValues(720, 480, 49, 8, 50, 6.0),
    },
    Family.GENERIC: {
        api.Preset.FAST: PresetValues(512, 320, 16, 8, 20, 7.5),
        api.Preset.STANDARD: PresetValues(512, 512, 16, 8, 25, 7.5),
        api.Preset.QUALITY: PresetValues(768, 768, 24, 8, 50, 7.5),
    },
}


@dataclass(frozen=True)
class GenerationParams:
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance_scale: float
    seed: int

    @property
    def duration_seconds(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class ResolvedParams:
    params: GenerationParams
    # Changes to values the user asked for; these go to RunnerResult.adjustments.
    adjustments: list[str] = field(default_factory=list)
    # Values taken from the preset because the user left them unset (logged only).
    filled: list[str] = field(default_factory=list)


def round_frames(n: int, step: int) -> int:
    """The nearest k*step+1 (ties up), kept within the contract's limits."""
    if step <= 1:
        return n
    k = math.floor((n - 1) / step + 0.5)
    k = max(k, 0)
    while k * step + 1 > api.MAX_FRAMES:
        k -= 1
    return k * step + 1


def round_size(value: int, multiple: int) -> int:
    """The nearest multiple (ties down, as diffusers floors), kept within the contract's limits."""
    if value % multiple == 0:
        rounded = value
    else:
        down = value // multiple * multiple
        up = down + multiple
        rounded = down if value - down <= up - value else up
    low = math.ceil(api.MIN_DIMENSION / multiple) * multiple
    high = api.MAX_DIMENSION // multiple * multiple
    return min(max(rounded, low), high)


def size_for_aspect(area: int, aspect: float, multiple: int) -> tuple[int, int]:
    """(width, height) of about `area` pixels with the given width/height ratio."""
    height = math.sqrt(area / aspect)
    width = height * aspect
    return round_size(round(width), multiple), round_size(round(height), multiple)


def resolve_params(
    spec: api.VideoGenJobSpec,
    rules: ShapeRules,
    *,
    seed_source: Callable[[], int],
    image_size: tuple[int, int] | None = None,
) -> ResolvedParams:
    """Fill unset numbers from the preset and bend the rest to the family's rules, saying so."""
    preset = PRESETS[rules.family][spec.preset]
    adjustments: list[str] = []
    filled: list[str] = []

    def fill(name: str, given: Any, default: Any) -> Any:
        if given is None:
            filled.append(f"{name}={default} (preset {spec.preset.value})")
            return default
        return given

    if spec.width is None and spec.height is None and image_size is not None:
        # Image-to-video: keep the image's aspect ratio at the preset's pixel count
        # rather than squashing the first frame.
        img_w, img_h = image_size
        width, height = size_for_aspect(preset.width * preset.height, img_w / img_h, rules.size_multiple)
        filled.append(f"width={width}, height={height} (preset {spec.preset.value} area, input image aspect ratio)")
    else:
        width = fill("width", spec.width, preset.width)
        height = fill("height", spec.height, preset.height)
    num_frames = fill("numFrames", spec.num_frames, preset.num_frames)
    fps = fill("fps", spec.fps, preset.fps)
    steps = fill("steps", spec.steps, preset.steps)
    guidance = fill("guidanceScale", spec.guidance_scale, preset.guidance_scale)

    new_frames = round_frames(num_frames, rules.frame_step)
    if new_frames != num_frames:
        adjustments.append(f"numFrames {num_frames} -> {new_frames} ({rules.label} needs {rules.frame_step}k+1 frames)")
    new_width = round_size(width, rules.size_multiple)
    if new_width != width:
        adjustments.append(f"width {width} -> {new_width} ({rules.label} needs a multiple of {rules.size_multiple})")
    new_height = round_size(height, rules.size_multiple)
    if new_height != height:
        adjustments.append(f"height {height} -> {new_height} ({rules.label} needs a multiple of {rules.size_multiple})")

    seed = spec.seed if spec.seed is not None else seed_source()
    if spec.seed is None:
        filled.append(f"seed={seed} (random; set spec.seed to reproduce)")

    params = GenerationParams(
        width=new_width,
        height=new_height,
        num_frames=new_frames,
        fps=int(fps),
        steps=int(steps),
        guidance_scale=float(guidance),
        seed=seed,
    )
    return ResolvedParams(params=params, adjustments=adjustments, filled=filled)
