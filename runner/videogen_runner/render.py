"""From a validated spec to an encoded video file: load the model, fit the inputs to it, pick the
memory mode, denoise, decode and encode. Uploading and reporting stay with the caller (cli.py),
so benchmarks run exactly this path.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen_api import v1alpha1 as api

from .encode import EncodedVideo
from .memory import MemoryPlan, OutputSize
from .presets import GenerationParams
from .s3 import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("videogen_runner")

StageHook = Callable[..., None]
StepHook = Callable[[int, int], None]


@dataclass
class StageClock:
    """Seconds per stage, for RunnerResult.timings."""

    started: float = field(default_factory=time.monotonic)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timings(self) -> api.Timings:
        def get(name: str) -> float | None:
            return round(self.seconds[name], 3) if name in self.seconds else None

        return api.Timings(
            loading=get("loading"),
            loading_import=get("loading_import"),
            loading_read=get("loading_read"),
            loading_place=get("loading_place"),
            generating=get("generating"),
            encoding=get("encoding"),
            uploading=get("uploading"),
            total=round(time.monotonic() - self.started, 3),
        )


class _TimedIterator:
    """Counts the time spent producing frames, so a streamed decode is billed to generating, not encoding."""

    def __init__(self, inner: Iterator[Any]) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __iter__(self) -> _TimedIterator:
        return self

    def __next__(self) -> Any:
        start = time.monotonic()
        try:
            return next(self.inner)
        finally:
            self.seconds += time.monotonic() - start


@dataclass(frozen=True)
class Rendered:
    encoded: EncodedVideo
    params: GenerationParams
    adjustments: list[str]
    plan: MemoryPlan
    model_bytes: int
    acceleration: list[str] = field(default_factory=list)


def _no_stage(stage: api.Stage, step: int | None = None, total: int | None = None) -> None:
    del stage, step, total


def render_video(
    spec: api.VideoGenJobSpec,
    env: Mapping[str, str],
    *,
    video_path: Path,
    s3: S3Client | None = None,
    policy: RetryPolicy | None = None,
    on_stage: StageHook = _no_stage,
    on_step: StepHook | None = None,
    clock: StageClock | None = None,
) -> Rendered:
    from . import coldstart, parallel
    from .acceleration import apply_after_placement, apply_before_placement, resolve_acceleration, with_plan_bytes
    from .encode import AUDIO_CODECS, encode_frames, mux_audio
    from .generate import GenerationRequest
    from .images import fetch_input_image, fit_to_frame
    from .memory import choose_memory_plan
    from .models import component_dtypes, hf_offline_env, inspect_model, load_pipeline, open_model
    from .oom import generate_with_fallback
    from .placement import apply_memory_plan, cuda_available, cuda_free_bytes
    from .presets import resolve_params
    from .profiles import apply_flow_shift, ignored_fields, refuse_dropped_fields

    clock = clock or StageClock()
    policy = policy or RetryPolicy.from_env(env)

    started = time.monotonic()
    on_stage(api.Stage.LOADING)
    coldstart.start_imports()
    image = fetch_input_image(spec.image, s3, policy) if spec.image else None
    hf_offline_env()
    clock.add("loading_import", coldstart.wait_for_imports())
    ctx = parallel.init(env)
    read_started = time.monotonic()
    with open_model(spec.model, env=env, s3_client=s3, policy=policy) as model_dir:
        info = inspect_model(spec.model, model_dir, spec.task, env)
        if info.data is not None:
            # Before loading: a field the pipeline would drop fails in seconds, not after the load.
            refuse_dropped_fields(info.pipeline_class, info.call_parameters, info.data, spec)
        cuda = cuda_available()
        device_map = coldstart.device_map_for(
            model_dir,
            component_dtypes(info.data if info.data is not None else info.family, cuda),
            cuda=cuda,
            parallel=ctx is not None,
            memory=spec.memory,
            output=_expected_output(spec, info),
            free_bytes=cuda_free_bytes() if cuda else None,
        )
        loaded = load_pipeline(info, cuda=cuda, env=env, device_map=device_map)
    clock.add("loading_read", time.monotonic() - read_started)
    place_started = time.monotonic()
    profile = loaded.profile
    log.info("profile %s: %s", profile.label, profile.describe())
    resolved = resolve_params(
        spec,
        profile.rules,
        profile.presets,
        seed_source=parallel.shared_seed(ctx, lambda: secrets.randbelow(api.MAX_SEED + 1)),
        image_size=image.size if image else None,
    )
    for note in resolved.filled:
        log.info("filled %s", note)
    adjustments = [*resolved.adjustments, *ignored_fields(profile.data, spec)]
    for note in adjustments:
        log.warning("adjusted %s", note)
    params = resolved.params
    apply_flow_shift(loaded.pipe, profile, params.width, params.height)
    if ctx is not None:
        parallel.require_context_parallel(loaded.pipe, ctx.world_size, spec.model)
    acceleration = apply_before_placement(loaded.pipe, spec.acceleration)
    if spec.acceleration is not None and spec.acceleration.weight_storage is api.WeightStorage.FP8:
        loaded = with_plan_bytes(loaded)
    plan = choose_memory_plan(
        spec.memory,
        cuda=cuda,
        free_bytes=coldstart.free_for_plan(cuda_free_bytes() if cuda else None, loaded, device_map),
        model_bytes=loaded.model_bytes,
        largest_component_bytes=loaded.largest_component_bytes,
        # The decode holds the frames the pipeline makes, including those it drops afterwards.
        output=OutputSize(params.width, params.height, profile.pipeline_frames(params.num_frames)),
        large_frame_pixels=profile.data.vae_tiling_from_pixels,
    )
    apply_memory_plan(loaded.pipe, plan)
    accel = resolve_acceleration(
        spec.acceleration, family=info.family, preset=spec.preset, cuda=cuda, memory_mode=plan.mode
    )
    if ctx is not None:
        acceleration.append(parallel.enable_context_parallel(ctx, loaded.pipe, spec.model))
    acceleration += apply_after_placement(
        loaded.pipe, accel, cuda=cuda, steps=params.steps, env=env, parallel=ctx is not None
    )
    clock.add("loading_place", time.monotonic() - place_started)
    clock.add("loading", time.monotonic() - started)

    started = time.monotonic()
    on_stage(api.Stage.GENERATING, 0, params.steps)
    conditioning = image.image if image else None
    if conditioning is not None and profile.data.image_crf is not None:
        from .image_crf import h264_round_trip

        # Before cropping and resizing, where the pipeline itself would do it (it is told not to).
        conditioning = h264_round_trip(conditioning, profile.data.image_crf)
        log.info("input image re-compressed as H.264 at CRF %d (%s)", profile.data.image_crf, profile.label)
    request = GenerationRequest(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        params=params,
        image=fit_to_frame(conditioning, params.width, params.height) if conditioning is not None else None,
    )
    frames, attempts = generate_with_fallback(
        loaded,
        request,
        plan,
        on_step or (lambda _step, _total: None),
        env,
        on_denoised=lambda: on_stage(api.Stage.ENCODING),
    )
    clock.add("generating", time.monotonic() - started)

    started = time.monotonic()
    on_stage(api.Stage.ENCODING)
    timed = _TimedIterator(frames.iterator)
    encoded = encode_frames(timed, video_path, spec.output.format, params.fps, poster_index=frames.expected // 2)
    if frames.audio is not None and spec.output.format in AUDIO_CODECS:
        encoded = mux_audio(encoded, frames.audio)
    elif frames.audio is not None:
        note = f"audio dropped ({profile.label} generates sound; {spec.output.format.value} has no audio track)"
        log.warning("adjusted %s", note)
        adjustments.append(note)
    clock.add("generating", timed.seconds)
    clock.add("encoding", time.monotonic() - started - timed.seconds)
    if encoded.frames != params.num_frames:
        # Never expected (the rules above are the pipeline's own), but the result must tell the truth.
        note = f"numFrames {params.num_frames} -> {encoded.frames} ({profile.label} produced {encoded.frames} frames)"
        log.warning("adjusted %s", note)
        adjustments.append(note)
    for name, asked, got in (("width", params.width, encoded.width), ("height", params.height, encoded.height)):
        if asked != got:
            note = f"{name} {asked} -> {got} (the encoded video has {got})"
            log.warning("adjusted %s", note)
            adjustments.append(note)
    return Rendered(
        encoded=encoded,
        params=params,
        adjustments=adjustments,
        plan=attempts.plan,
        model_bytes=loaded.model_bytes,
        acceleration=acceleration,
    )


def _expected_output(spec: api.VideoGenJobSpec, info: Any) -> OutputSize | None:
    """The output size the spec will most likely get, from the configs on disk (before loading):
    only to decide whether the weights may be read straight onto the GPU. The memory plan is
    chosen again from the exact size once the loaded pipeline's profile is known."""
    from .profiles import preset_values

    if info.data is None:
        return None
    preset = preset_values(info.data)[spec.preset]
    return OutputSize(spec.width or preset.width, spec.height or preset.height, spec.num_frames or preset.num_frames)
