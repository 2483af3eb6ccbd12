"""Filling a spec from presets and bending it to a model's shape rules, as pure functions.

Users ask for numbers (frames, width, height); models accept only some of them
(Wan 2.1: 4k+1 frames, multiples of 16; LTX: 8k+1 frames, multiples of 32). Pipelines
silently floor bad values, which makes a 32-frame request produce 29 frames without a
word. Here every change is made on purpose and reported. The rules and presets come
from the model's profile (profiles.py), never from its class name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from videogen_api import v1alpha1 as api


class Family(StrEnum):
    """Family ids of the built-in profile table (model_profiles.yaml); a label, never a shape rule."""

    WAN = "wan"
    LTX = "ltx"
    COGVIDEOX = "cogvideox"
    HUNYUANVIDEO = "hunyuanvideo"
    MOCHI = "mochi"
    SKYREELS_V2 = "skyreels-v2"
    EASYANIMATE = "easyanimate"
    I2VGEN_XL = "i2vgen-xl"
    SVD = "svd"
    LTX2 = "ltx2"
    GENERIC = "generic"

    @classmethod
    def of(cls, value: str) -> Family:
        """The family of a profile entry; a family added by a platform file counts as generic here."""
        try:
            return cls(value)
        except ValueError:
            return cls.GENERIC


@dataclass(frozen=True)
class ShapeRules:
    """What a model accepts: frames = k*frame_step + 1 (any count when frame_step is 1), sides
    multiples of size_multiple, or exactly fixed_size when the model has only one."""

    frame_step: int
    size_multiple: int
    label: str = "this model"
    fixed_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class PresetValues:
    width: int
    height: int
    num_frames: int
    fps: int
    steps: int
    guidance_scale: float


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
    presets: Mapping[api.Preset, PresetValues],
    *,
    seed_source: Callable[[], int],
    image_size: tuple[int, int] | None = None,
) -> ResolvedParams:
    """Fill unset numbers from the preset and bend the rest to the family's rules, saying so."""
    preset = presets[spec.preset]
    adjustments: list[str] = []
    filled: list[str] = []

    def fill(name: str, given: Any, default: Any) -> Any:
        if given is None:
            filled.append(f"{name}={default} (preset {spec.preset.value})")
            return default
        return given

    if rules.fixed_size is not None:
        width, height = rules.fixed_size
        for name, given, value in (("width", spec.width, width), ("height", spec.height, height)):
            if given is None:
                filled.append(f"{name}={value} ({rules.label} has one size)")
            elif given != value:
                adjustments.append(f"{name} {given} -> {value} ({rules.label} only generates {width}x{height})")
    elif spec.width is None and spec.height is None and image_size is not None:
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
    new_width = width if rules.fixed_size else round_size(width, rules.size_multiple)
    if new_width != width:
        adjustments.append(f"width {width} -> {new_width} ({rules.label} needs a multiple of {rules.size_multiple})")
    new_height = height if rules.fixed_size else round_size(height, rules.size_multiple)
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
