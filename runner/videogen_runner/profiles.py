"""Per-model profiles: what a loaded pipeline accepts and what it was trained for.

Two halves, kept apart on purpose:

- **Facts read from the model.** Frame step and size multiple come from the pipeline's own
  VAE compression factors (the numbers it uses itself, derived from the VAE config) times the
  denoiser's patch size; the fps-conditioning argument, the step callback and the arguments the
  task needs come from the pipeline's call signature. Nothing here guesses from a class name.
- **Family defaults as data** (``model_profiles.yaml`` next to this file): task routes, presets
  (native size, length, frame rate, steps, guidance), documented flow shift per resolution,
  float32 components, spec fields the pipeline would drop. A platform team extends or overrides
  them without code through ``VIDEOGEN_MODEL_PROFILES`` (a YAML/JSON file of the same schema) or
  a ``videogen-profile.yaml``/``.json`` inside a model's directory.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from videogen_api import v1alpha1 as api

from .errors import InvalidInputError, ModelLoadError, one_line
from .presets import PresetValues, ShapeRules

ENV_MODEL_PROFILES = "VIDEOGEN_MODEL_PROFILES"
MODEL_PROFILE_FILES = ("videogen-profile.yaml", "videogen-profile.json")
BUILTIN_PROFILES = Path(__file__).with_name("model_profiles.yaml")
GENERIC_CLASS = "*"

# Call arguments through which pipelines condition on the frame rate, in the order they are tried.
FPS_ARGUMENTS = ("frame_rate", "fps", "target_fps")
# Pipeline attributes holding the VAE's temporal / spatial compression (names differ per family).
_TEMPORAL_ATTRS = ("vae_scale_factor_temporal", "vae_temporal_compression_ratio", "vae_temporal_scale_factor")
_SPATIAL_ATTRS = (
    "vae_scale_factor_spatial",
    "vae_spatial_compression_ratio",
    "vae_spatial_scale_factor",
    "vae_scale_factor",
)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PresetData(_Data):
    width: int = Field(ge=api.MIN_DIMENSION, le=api.MAX_DIMENSION)
    height: int = Field(ge=api.MIN_DIMENSION, le=api.MAX_DIMENSION)
    frames: int = Field(ge=1, le=api.MAX_FRAMES)
    fps: int = Field(ge=1, le=240)
    steps: int = Field(ge=1, le=1000)
    guidance_scale: float = Field(alias="guidanceScale", ge=0)


class FlowShiftRule(_Data):
    max_pixels: int | None = Field(default=None, alias="maxPixels")
    shift: float = Field(gt=0)


class TaskRoute(_Data):
    pipeline: str
    when: dict[str, Any] = Field(default_factory=dict)


class FamilyData(_Data):
    family: str
    label: str
    reference: str = ""
    tasks: dict[api.Task, TaskRoute]
    presets: dict[api.Preset, PresetData]
    image_input: Literal["image", "first-frame-video"] = Field(default="image", alias="imageInput")
    flow_shift: list[FlowShiftRule] = Field(default_factory=list, alias="flowShift")
    float32_components: list[str] = Field(default_factory=list, alias="float32Components")
    vae_tiling_from_pixels: int | None = Field(default=None, alias="vaeTilingFromPixels")
    check_inputs_multiple: int = Field(default=api.DIMENSION_MULTIPLE, alias="checkInputsMultiple", ge=1)
    unsupported_fields: dict[str, str] = Field(default_factory=dict, alias="unsupportedFields")
    # Spec fields the contract requires but the pipeline has no use for (SVD's prompt): reported in
    # status.adjustments instead of refused, since no spec could leave them out.
    ignored_fields: dict[str, str] = Field(default_factory=dict, alias="ignoredFields")
    # Call arguments this pipeline names differently: runner name -> the pipeline's (SVD's guidance
    # ramps from min_guidance_scale to max_guidance_scale over the frames; the spec sets the latter).
    renamed_arguments: dict[str, str] = Field(default_factory=dict, alias="renamedArguments")
    call_defaults: dict[str, Any] = Field(default_factory=dict, alias="callDefaults")
    # Frames the pipeline cuts from the start of the decoded video (HunyuanVideo-I2V-33ch drops the
    # image's 4): the runner asks it for that many more, so the video has the frames resolved.
    dropped_leading_frames: int = Field(default=0, alias="droppedLeadingFrames", ge=0, le=api.MAX_FRAMES)
    # The H.264 CRF the model's conditioning image goes through first, as in its training (LTX-2: 33).
    image_crf: int | None = Field(default=None, alias="imageCrf", ge=1, le=51)


# The fallback for a diffusers video pipeline the table does not know: its shape rules still come
# from its configs; these are only starting numbers.
_GENERIC: dict[str, Any] = {
    "family": "generic",
    "label": "this model",
    "tasks": {},
    "presets": {
        "fast": {"width": 512, "height": 320, "frames": 16, "fps": 8, "steps": 20, "guidanceScale": 7.5},
        "standard": {"width": 512, "height": 512, "frames": 16, "fps": 8, "steps": 25, "guidanceScale": 7.5},
        "quality": {"width": 768, "height": 768, "frames": 24, "fps": 8, "steps": 50, "guidanceScale": 7.5},
    },
}


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of mappings; lists and scalars in `over` replace those in `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_file(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelLoadError(f"model profiles {path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise ModelLoadError(
            f"model profiles {path}: not valid {path.suffix[1:].upper()}: {one_line(str(exc), 300)}"
        ) from exc


@cache
def _builtin() -> dict[str, Any]:
    data = _load_file(BUILTIN_PROFILES)
    assert isinstance(data, dict)
    return data


def profile_table(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The built-in family defaults with the platform's file (VIDEOGEN_MODEL_PROFILES) merged over them."""
    table: dict[str, dict[str, Any]] = {k: dict(v) for k, v in _builtin().items()}
    extra_path = env.get(ENV_MODEL_PROFILES)
    if extra_path:
        extra = _load_file(Path(extra_path))
        if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
            raise ModelLoadError(f"model profiles {extra_path}: must map pipeline class names to entries")
        for class_name, entry in extra.items():
            table[class_name] = merge(table.get(class_name, _GENERIC), entry)
    return table


def model_profile_override(model_dir: Path) -> dict[str, Any]:
    """The optional profile shipped inside a model directory (one entry, no class key)."""
    for name in MODEL_PROFILE_FILES:
        path = model_dir / name
        if path.is_file():
            data = _load_file(path)
            if not isinstance(data, dict):
                raise ModelLoadError(f"model profile {path}: must be a mapping")
            return data
    return {}


def _config_value(model_dir: Path, dotted: str) -> Any:
    component, _, key = dotted.partition(".")
    path = model_dir / ("model_index.json" if component == "model_index" else f"{component}/config.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def _matches(model_dir: Path, when: Mapping[str, Any]) -> bool:
    return all(_config_value(model_dir, key) == value for key, value in when.items())


def family_data(class_name: str, model_dir: Path, env: Mapping[str, str]) -> FamilyData:
    """The data entry for a pipeline class: table entry, first matching variant, then the model's own file."""
    table = profile_table(env)
    entry = dict(table.get(class_name, _GENERIC))
    variants = entry.pop("variants", None) or []
    for raw in variants:
        variant = dict(raw)
        when = variant.pop("when", {})
        if _matches(model_dir, when):
            entry = merge(entry, variant)
            break
    entry = merge(entry, model_profile_override(model_dir))
    entry.pop("variants", None)
    try:
        return FamilyData.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelLoadError(f"model profile for {class_name}: {where}: {first['msg']}") from exc


class InvalidProfileError(ValueError):
    """A model's own profile is not a valid profile entry; `key` is the dotted path of the first problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def validate_profile_entry(entry: object) -> FamilyData:
    """A model's own profile (its videogen-profile.json, or a VideoGenModel's spec.profile): one entry
    of the profile table without the class key, checked as family_data will use it, merged over
    family defaults. Every key must be known and every value valid; the first problem names its key
    (e.g. presets.fast.steps)."""
    if not isinstance(entry, Mapping):
        raise InvalidProfileError("", f"must be a mapping of profile keys, not {type(entry).__name__}")
    if "variants" in entry:
        # family_data drops them from a model's own file: only the table's entries choose variants.
        raise InvalidProfileError("variants", "a model's own profile has no variants (it describes one model)")
    try:
        return FamilyData.model_validate(merge(_GENERIC, entry))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise InvalidProfileError(key, str(first["msg"])) from exc


def preset_values(data: FamilyData) -> dict[api.Preset, PresetValues]:
    missing = [p.value for p in api.Preset if p not in data.presets]
    if missing:
        raise ModelLoadError(f"model profile {data.label}: presets {', '.join(missing)} missing")
    return {
        preset: PresetValues(p.width, p.height, p.frames, p.fps, p.steps, p.guidance_scale)
        for preset, p in data.presets.items()
    }


def geometry_from_configs(model_dir: Path) -> Geometry:
    """The shape rules as far as the configs on disk tell them, before anything is loaded.

    An estimate for early checks and logs; after loading, `geometry_of(pipe)` (the pipeline's own
    numbers) is what counts, and the tests check that both agree for every family."""

    def config(component: str) -> dict[str, Any]:
        try:
            data = json.loads((model_dir / component / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    vae = config("vae")
    denoiser = config("transformer") or config("unet")
    temporal = vae.get("scale_factor_temporal") or vae.get("temporal_compression_ratio")
    if temporal is None and isinstance(vae.get("temperal_downsample"), list):
        temporal = 2 ** sum(bool(x) for x in vae["temperal_downsample"])
    if temporal is None and isinstance(vae.get("spatio_temporal_scaling"), list):
        temporal = int(vae.get("patch_size_t") or 1) * 2 ** sum(bool(x) for x in vae["spatio_temporal_scaling"])
    if temporal is None and isinstance(vae.get("temporal_expansions"), list):
        temporal = math.prod(int(x) for x in vae["temporal_expansions"])
    spatial = vae.get("scale_factor_spatial") or vae.get("spatial_compression_ratio")
    if spatial is None and isinstance(vae.get("spatial_expansions"), list):
        spatial = math.prod(int(x) for x in vae["spatial_expansions"])
    if spatial is None and isinstance(vae.get("temperal_downsample"), list):
        spatial = 2 ** len(vae["temperal_downsample"])
    if spatial is None and isinstance(vae.get("spatio_temporal_scaling"), list):
        spatial = int(vae.get("patch_size") or 1) * 2 ** sum(bool(x) for x in vae["spatio_temporal_scaling"])
    if spatial is None and isinstance(vae.get("block_out_channels"), list):
        spatial = 2 ** (len(vae["block_out_channels"]) - 1)
    if temporal is None or spatial is None:
        # No config key says it: ask the VAE class itself, built on the meta device (no memory, no weights).
        meta_t, meta_s = _vae_ratios_on_meta(vae)
        temporal = temporal if temporal is not None else meta_t
        spatial = spatial if spatial is not None else meta_s
    patch = denoiser.get("patch_size")
    patch_t = denoiser.get("patch_size_t")
    if isinstance(patch, list) and len(patch) == 3:
        patch_t, patch = patch[0], max(patch[1], patch[2])
    t = int(temporal or 1)
    s = int(spatial or 8)
    step = t * int(patch_t or 1) if t > 1 else 1
    multiple = max(s * int(patch or 1), api.DIMENSION_MULTIPLE)
    multiple = multiple * api.DIMENSION_MULTIPLE // math.gcd(multiple, api.DIMENSION_MULTIPLE)
    return Geometry(frame_step=step, size_multiple=multiple, source="configs on disk")


def _vae_ratios_on_meta(config: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """temporal/spatial_compression_ratio of a diffusers VAE class instantiated from its config on the
    meta device; (None, None) when the class is unknown or has no such attributes."""
    import diffusers

    cls: Any = getattr(diffusers, str(config.get("_class_name")), None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin)):
        return None, None
    try:
        from accelerate import init_empty_weights

        from_config: Any = cls.from_config  # untyped in diffusers
        with init_empty_weights():
            vae = from_config(dict(config))
    except Exception:
        return None, None
    t = getattr(vae, "temporal_compression_ratio", None)
    s = getattr(vae, "spatial_compression_ratio", None)
    return (t if isinstance(t, int) else None), (s if isinstance(s, int) else None)


def _image_parameter(pipeline_cls: type) -> inspect.Parameter | None:
    return inspect.signature(pipeline_cls.__call__).parameters.get("image")


def select_pipeline(index_class: str, task: api.Task, model_dir: Path, env: Mapping[str, str], uri: str) -> str:
    """The pipeline class to load for (model, task); refuses a task the model cannot serve (spec.task)."""
    import diffusers

    entry = table_entry = profile_table(env).get(index_class)
    if entry is not None:
        tasks = entry.get("tasks")
        route = tasks.get(task.value) if isinstance(tasks, dict) else None
        if route is None:
            if task is api.Task.IMAGE_TO_VIDEO:
                raise InvalidInputError(
                    f"spec.task: image-to-video needs an image-to-video pipeline, but {uri} is {index_class}"
                )
            raise InvalidInputError(
                f"spec.task: {uri} is {index_class}, an image-to-video pipeline; set task and image"
            )
        when = route.get("when") or {}
        if not _matches(model_dir, when):
            need = ", ".join(f"{k}={v!r}" for k, v in when.items())
            raise InvalidInputError(
                f"spec.task: {task.value} needs an {task.value} pipeline, but {uri} is {index_class} "
                f"(it serves {task.value} through {route['pipeline']} only when {need}, as Wan 2.2 TI2V does)"
            )
        chosen = str(route["pipeline"])
    else:
        chosen = index_class
    pipeline_cls = getattr(diffusers, chosen, None)
    if not (isinstance(pipeline_cls, type) and issubclass(pipeline_cls, diffusers.DiffusionPipeline)):
        raise ModelLoadError(f"model {uri}: {chosen} is not a pipeline class of diffusers {diffusers.__version__}")
    if table_entry is None:
        # Unknown class: the signature decides. A required `image` means image-to-video only.
        image = _image_parameter(pipeline_cls)
        if task is api.Task.IMAGE_TO_VIDEO and image is None:
            raise InvalidInputError(
                f"spec.task: image-to-video needs an image-to-video pipeline, but {uri} is {chosen}"
            )
        if task is api.Task.TEXT_TO_VIDEO and image is not None and image.default is inspect.Parameter.empty:
            raise InvalidInputError(f"spec.task: {uri} is {chosen}, an image-to-video pipeline; set task and image")
    return chosen


@dataclass(frozen=True)
class Geometry:
    """Shape rules: frames = k*frame_step + 1 (any count when frame_step is 1), sides multiples of size_multiple."""

    frame_step: int
    size_multiple: int
    # Where the numbers came from, for logs and the README table.
    source: str = ""
    # A size the model cannot leave (learned positional embeddings), as (width, height).
    fixed_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Profile:
    pipeline_class: str
    data: FamilyData
    geometry: Geometry
    call_parameters: frozenset[str]
    fps_argument: str | None
    step_callback: bool
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.data.label

    def preset(self, preset: api.Preset) -> PresetData:
        return self.data.presets[preset]

    @property
    def size_multiple(self) -> int:
        """The configs' VAE x patch factor and the multiple the pipeline's own checks demand, together."""
        a, b = self.geometry.size_multiple, self.data.check_inputs_multiple
        return a * b // math.gcd(a, b)

    @property
    def rules(self) -> ShapeRules:
        g = self.geometry
        return ShapeRules(g.frame_step, self.size_multiple, self.data.label, g.fixed_size)

    @property
    def presets(self) -> dict[api.Preset, PresetValues]:
        return preset_values(self.data)

    def pipeline_frames(self, num_frames: int) -> int:
        """The num_frames to ask the pipeline for so that the video it returns has `num_frames`."""
        return num_frames + self.data.dropped_leading_frames

    def describe(self) -> str:
        g = self.geometry
        frames = f"{g.frame_step}k+1 frames" if g.frame_step > 1 else "any frame count"
        size = (
            f"{g.fixed_size[0]}x{g.fixed_size[1]} only" if g.fixed_size else f"sides multiple of {self.size_multiple}"
        )
        fps = f"fps via {self.fps_argument}" if self.fps_argument else "no fps conditioning"
        callback = "step callback" if self.step_callback else "steps counted at the scheduler"
        return f"{self.pipeline_class}: {frames}, {size} ({g.source}); {fps}; {callback}"

    def flow_shift(self, width: int, height: int) -> float | None:
        for rule in self.data.flow_shift:
            if rule.max_pixels is None or width * height <= rule.max_pixels:
                return rule.shift
        return None


def _int_attr(obj: Any, names: tuple[str, ...]) -> tuple[int, str] | None:
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, name
    return None


def _denoiser(pipe: Any) -> Any:
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def _patch_sizes(pipe: Any) -> tuple[int, int, str]:
    """(temporal, spatial) patch size of the denoiser, and where they were read."""
    spatial_attr = _int_attr(pipe, ("transformer_spatial_patch_size", "patch_size"))
    temporal_attr = _int_attr(pipe, ("transformer_temporal_patch_size",))
    denoiser = _denoiser(pipe)
    config = getattr(denoiser, "config", {}) or {}
    patch = config.get("patch_size") if hasattr(config, "get") else None
    patch_t = config.get("patch_size_t") if hasattr(config, "get") else None
    temporal, spatial = 1, 1
    source = "denoiser has no patches"
    if isinstance(patch, list | tuple) and len(patch) == 3:
        temporal, spatial = int(patch[0]), max(int(patch[1]), int(patch[2]))
        source = f"transformer patch_size {tuple(patch)}"
    elif isinstance(patch, int):
        spatial = patch
        source = f"transformer patch_size {patch}"
    if isinstance(patch_t, int) and patch_t > 0:
        temporal = patch_t
        source += f", patch_size_t {patch_t}"
    if spatial_attr is not None and spatial_attr[0] != spatial:
        spatial = spatial_attr[0]
        source = f"pipeline {spatial_attr[1]} {spatial}"
    if temporal_attr is not None:
        temporal = temporal_attr[0]
    return temporal, spatial, source


def geometry_of(pipe: Any) -> Geometry:
    """Frame step and size multiple from the pipeline's own compression factors and the denoiser's patches."""
    temporal = _int_attr(pipe, _TEMPORAL_ATTRS)
    spatial = _int_attr(pipe, _SPATIAL_ATTRS)
    patch_t, patch_s, patch_source = _patch_sizes(pipe)
    t_factor = temporal[0] if temporal else 1
    s_factor = spatial[0] if spatial else 8
    frame_step = t_factor * patch_t if t_factor > 1 else 1
    size_multiple = max(s_factor * patch_s, api.DIMENSION_MULTIPLE)
    size_multiple = size_multiple * api.DIMENSION_MULTIPLE // math.gcd(size_multiple, api.DIMENSION_MULTIPLE)
    source = (
        f"VAE {temporal[1] if temporal else 'no temporal compression'}={t_factor}, "
        f"{spatial[1] if spatial else 'default spatial'}={s_factor}; {patch_source}"
    )
    fixed = None
    denoiser = _denoiser(pipe)
    config = getattr(denoiser, "config", None)
    if config is not None and config.get("use_learned_positional_embeddings") and config.get("sample_width"):
        # CogVideoX-5b-I2V: learned positional embeddings exist for one latent size only.
        fixed = (int(config["sample_width"]) * s_factor, int(config["sample_height"]) * s_factor)
    return Geometry(frame_step=frame_step, size_multiple=size_multiple, source=source, fixed_size=fixed)


def resolve_profile(pipe: Any, model_dir: Path, env: Mapping[str, str]) -> Profile:
    """The profile of a loaded pipeline: geometry and call facts from the pipeline, the rest from the data."""
    class_name = type(pipe).__name__
    params = frozenset(inspect.signature(type(pipe).__call__).parameters)
    fps_argument = next((name for name in FPS_ARGUMENTS if name in params), None)
    return Profile(
        pipeline_class=class_name,
        data=family_data(class_name, model_dir, env),
        geometry=geometry_of(pipe),
        call_parameters=params,
        fps_argument=fps_argument,
        step_callback="callback_on_step_end" in params,
    )


# Spec fields and the pipeline argument each one becomes; a field set in the spec whose argument the
# pipeline lacks would be dropped without a word, so such a spec is refused instead.
FIELD_ARGUMENTS: Mapping[str, str] = {
    "prompt": "prompt",
    "negativePrompt": "negative_prompt",
    "guidanceScale": "guidance_scale",
    "numFrames": "num_frames",
    "width": "width",
    "height": "height",
    "steps": "num_inference_steps",
}


def dropped_fields(
    pipeline_class: str, call_parameters: frozenset[str], data: FamilyData, spec: api.VideoGenJobSpec
) -> list[tuple[str, str]]:
    """(spec field, why) for every field the user set that this pipeline would not use."""
    given = spec.model_dump(by_alias=True, exclude_none=True)
    dropped: list[tuple[str, str]] = []
    for spec_field, ours in FIELD_ARGUMENTS.items():
        argument = data.renamed_arguments.get(ours, ours)
        if spec_field in given and spec_field not in data.ignored_fields and argument not in call_parameters:
            dropped.append((spec_field, f"{pipeline_class} has no {argument} argument"))
    for spec_field, why in data.unsupported_fields.items():
        if spec_field in given:
            dropped.append((spec_field, why))
    if spec.image and data.image_input == "image" and "image" not in call_parameters:
        dropped.append(("image", f"{pipeline_class} takes no image"))
    return dropped


def ignored_fields(data: FamilyData, spec: api.VideoGenJobSpec) -> list[str]:
    """status.adjustments lines for the fields the spec sets that this pipeline does not use (and that
    are not refused because the contract requires them)."""
    given = spec.model_dump(by_alias=True, exclude_none=True)
    return [f"{name} ignored ({why})" for name, why in data.ignored_fields.items() if name in given]


def refuse_dropped_fields(
    pipeline_class: str, call_parameters: frozenset[str], data: FamilyData, spec: api.VideoGenJobSpec
) -> None:
    dropped = dropped_fields(pipeline_class, call_parameters, data, spec)
    if dropped:
        spec_field, why = dropped[0]
        raise InvalidInputError(f"spec.{spec_field}: {why}; remove it or use another model")


def apply_flow_shift(pipe: Any, profile: Profile, width: int, height: int) -> float | None:
    """Set the documented flow shift for this resolution on the scheduler (when the profile has one)."""
    import logging

    shift = profile.flow_shift(width, height)
    scheduler = getattr(pipe, "scheduler", None)
    if shift is None or scheduler is None:
        return None
    config = scheduler.config
    key = next((k for k in ("flow_shift", "shift") if k in config), None)
    if key is None:
        return None
    if float(config[key]) != shift:
        logging.getLogger(__name__).info(
            "flow shift %s -> %s for %dx%d (%s)", config[key], shift, width, height, profile.label
        )
        pipe.scheduler = type(scheduler).from_config(config, **{key: shift})
    return shift
