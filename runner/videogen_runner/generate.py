"""Running the pipeline: denoising with a per-step report, then frames one by one.

Steps are reported through `callback_on_step_end`, or counted at the scheduler's `step()` for
pipelines without it (I2VGen-XL); after the last step the stage moves on to decoding/encoding.
Whatever the pipeline raises before its first step has finished is the spec's fault and becomes
InvalidInput (non-retryable) with the library's message and the field it concerns.

For Wan (the main family) the latents are decoded by the runner itself, one
latent frame (4 video frames) at a time, with the same causal cache the VAE
uses internally: frames go to the encoder as they are decoded and the whole
video never exists as one float array. Other families, tiled decodes and the
layer-wise offload modes use the pipeline's own decode (`output_type="np"`)
and are fed to the encoder frame by frame from that array.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from videogen_api import v1alpha1 as api

from .encode import Audio
from .errors import InvalidInputError, ModelLoadError, RunnerError, is_cuda_oom, one_line
from .memory import MemoryPlan
from .models import LoadedModel
from .presets import Family, GenerationParams

log = logging.getLogger(__name__)

# Test-only: sleep this long after each denoising step so a test can watch progress move.
ENV_TEST_STEP_DELAY = "VIDEOGEN_TEST_STEP_DELAY_SECONDS"


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    negative_prompt: str | None
    params: GenerationParams
    image: Image.Image | None = None


@dataclass
class Frames:
    """The generated video as a one-pass iterator of HxWx3 frames (float 0..1)."""

    iterator: Iterator[np.ndarray[Any, Any]]
    expected: int
    streamed: bool
    # The latents of a streamed decode, kept so a decode that runs out of memory can be retried tiled.
    latents: Any = None
    # The soundtrack of pipelines that generate one (LTX-2), to be muxed with the frames.
    audio: Audio | None = None


def audio_sample_rate(pipe: Any) -> int | None:
    """The sample rate of the waveform a pipeline returns, from its configs: the vocoder's output rate
    (LTX-2's audio VAE works at 16 kHz, its vocoder writes 24 kHz), else the pipeline's own."""
    config = getattr(getattr(pipe, "vocoder", None), "config", None)
    rate = config.get("output_sampling_rate") if config is not None else None
    rate = rate or getattr(pipe, "audio_sampling_rate", None)
    return int(rate) if isinstance(rate, int | float) and rate > 0 else None


def audio_of(pipe: Any, output: Any) -> Audio | None:
    """The first video's audio track from a pipeline output with an `audio` field, as samples x channels."""
    waveform = getattr(output, "audio", None)
    if waveform is None:
        return None
    rate = audio_sample_rate(pipe)
    if rate is None:
        log.warning("%s returned audio but its configs give no sample rate: the audio is dropped", type(pipe).__name__)
        return None
    first = waveform[0]
    array = first.float().cpu().numpy() if hasattr(first, "cpu") else np.asarray(first, dtype=np.float32)
    array = array.reshape(1, -1) if array.ndim == 1 else array  # (channels, samples)
    return Audio(samples=np.ascontiguousarray(array.T, dtype=np.float32), rate=rate)


def _can_stream_wan_decode(loaded: LoadedModel, plan: MemoryPlan) -> bool:
    vae = getattr(loaded.pipe, "vae", None)
    if loaded.info.family is not Family.WAN or vae is None:
        return False
    needed = ("clear_cache", "decoder", "post_quant_conv")
    if not all(hasattr(vae, name) for name in needed) or getattr(vae, "use_tiling", False):
        return False
    # The streamed decode drives the decoder's causal cache directly; only do it where
    # the decoder has the interface this code was written against.
    decoder_params = inspect.signature(vae.decoder.forward).parameters
    if not {"feat_cache", "feat_idx", "first_chunk"} <= set(decoder_params):
        return False
    # Group and sequential offload attach hooks inside the VAE that expect its own decode().
    return (not plan.on_cuda) or plan.mode in (api.MemoryMode.NONE, api.MemoryMode.MODEL_OFFLOAD)


def stream_wan_decode(vae: Any, latents: Any) -> Iterator[np.ndarray[Any, Any]]:
    """AutoencoderKLWan._decode, yielding frames per latent frame instead of concatenating them all."""
    import torch

    hook = getattr(vae, "_hf_hook", None)
    if hook is not None and hasattr(hook, "pre_forward"):
        # What decode()'s apply_forward_hook does: bring an offloaded VAE onto the GPU.
        hook.pre_forward(vae)
    device = next(vae.parameters()).device
    latents = latents.to(device, dtype=vae.dtype)
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    latents = latents / inv_std + mean
    patch_size = vae.config.get("patch_size")
    with torch.inference_mode():
        vae.clear_cache()
        try:
            x = vae.post_quant_conv(latents)
            for i in range(x.shape[2]):
                vae._conv_idx = [0]
                out = vae.decoder(
                    x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=(i == 0)
                )
                if patch_size is not None:
                    from diffusers.models.autoencoders import autoencoder_kl_wan

                    unpatchify: Any = autoencoder_kl_wan.unpatchify
                    out = unpatchify(out, patch_size=patch_size)
                # [-1, 1] -> [0, 1], (B, C, T, H, W) -> T x (H, W, C), as VideoProcessor.postprocess_video does.
                chunk = (out.clamp(-1.0, 1.0)[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float().cpu().numpy()
                del out
                yield from chunk
        finally:
            vae.clear_cache()


def _first_frame_video(pipe: Any, image: Image.Image, params: GenerationParams) -> tuple[Any, Any]:
    """Image-to-video on an inpainting pipeline: the image is frame 0 and every later frame is masked
    (generated). Uses the pipeline module's own helper when it has one (EasyAnimate's
    get_image_to_video_latent), so the tensors are exactly what the model's authors feed it."""
    import sys

    import torch

    helper = getattr(sys.modules.get(type(pipe).__module__), "get_image_to_video_latent", None)
    if helper is not None:
        video, mask = helper(image, None, params.num_frames, (params.height, params.width))
        return video, mask
    frame = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    video = frame[None, :, None].repeat(1, 1, params.num_frames, 1, 1)
    mask = torch.full((1, 1, params.num_frames, params.height, params.width), 255.0)
    mask[:, :, 0] = 0
    return video, mask


def pipeline_kwargs(loaded: LoadedModel, request: GenerationRequest, output_type: str) -> dict[str, Any]:
    import torch

    p = request.params
    profile = loaded.profile
    accepted = profile.call_parameters
    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "height": p.height,
        "width": p.width,
        # More than the video's frames where the pipeline drops leading ones (HunyuanVideo-I2V-33ch).
        "num_frames": profile.pipeline_frames(p.num_frames),
        "num_inference_steps": p.steps,
        "guidance_scale": p.guidance_scale,
        # A CPU generator gives the same noise on any GPU: a seed reproduces across nodes.
        "generator": torch.Generator(device="cpu").manual_seed(p.seed),
        "output_type": output_type,
    }
    # Arguments the pipeline needs that the spec does not carry (e.g. EasyAnimate fails on a None
    # negative prompt under CFG); the spec's own values below win.
    kwargs.update({k: v for k, v in profile.data.call_defaults.items() if k not in kwargs})
    if request.negative_prompt:
        kwargs["negative_prompt"] = request.negative_prompt
    if request.image is not None:
        if profile.data.image_input == "first-frame-video":
            kwargs["video"], kwargs["mask_video"] = _first_frame_video(loaded.pipe, request.image, p)
        else:
            kwargs["image"] = request.image
    if request.image is not None and profile.data.image_crf is not None:
        from .image_crf import IMAGE_CRF_ARGUMENT

        # The runner re-compressed the image already (image_crf.py); the pipeline must not do it again.
        kwargs[IMAGE_CRF_ARGUMENT] = 0
    if profile.fps_argument is not None:
        # LTX (frame_rate), I2VGen-XL (target_fps), SVD (fps) condition on the frame rate.
        kwargs[profile.fps_argument] = p.fps
    for ours, theirs in profile.data.renamed_arguments.items():
        if ours in kwargs:
            kwargs[theirs] = kwargs.pop(ours)
    # Fields the pipeline would drop were refused up front (profiles.refuse_dropped_fields), or are
    # listed in status.adjustments where the contract requires them (profiles.ignored_fields).
    return {k: v for k, v in kwargs.items() if k in accepted}


# Spec fields a pipeline error before the first denoising step most likely concerns, by the words in it.
_FIELD_WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("negative_prompt",), "spec.negativePrompt"),
    (("height", "width", "resolution", "divisible"), "spec.width/spec.height"),
    (("num_frames", "frames"), "spec.numFrames"),
    (("image", "video"), "spec.image"),
    (("guidance",), "spec.guidanceScale"),
    (("num_inference_steps", "timesteps", "steps"), "spec.steps"),
    (("prompt", "token", "sequence length"), "spec.prompt"),
    (
        ("shape", "size of tensor", "must match", "expected", "out of range", "index"),
        "spec.width/spec.height/spec.numFrames",
    ),
)


def field_of_pipeline_error(message: str) -> str:
    lowered = message.lower()
    for words, field_name in _FIELD_WORDS:
        if any(word in lowered for word in words):
            return field_name
    return "spec"


@dataclass
class StepWatch:
    """Counts finished denoising steps, from the step callback or, for pipelines without one
    (I2VGen-XL), from the scheduler's step(); tells failures before the first step from later ones."""

    total: int
    on_step: Callable[[int, int], None]
    on_denoised: Callable[[], None]
    step_delay: float = 0.0
    done: int = 0

    def finished(self, step_index: int | None = None) -> None:
        self.done = min(step_index + 1, self.total) if step_index is not None else min(self.done + 1, self.total)
        self.on_step(self.done, self.total)
        if self.step_delay > 0:
            time.sleep(self.step_delay)
        if self.done >= self.total:
            # The pipeline decodes next (inside the same call): say so rather than sit at "30/30".
            self.on_denoised()

    def callback(self, _pipe: Any, step_index: int, _timestep: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
        self.finished(step_index)
        return {}

    @contextmanager
    def counting_scheduler_steps(self, pipe: Any) -> Iterator[None]:
        scheduler = getattr(pipe, "scheduler", None)
        original = getattr(scheduler, "step", None)
        if scheduler is None or original is None:
            yield
            return

        def step(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            self.finished()
            return out

        scheduler.step = step
        try:
            yield
        finally:
            del scheduler.step


def _no_denoised() -> None:
    return None


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """torch's global generators (CPU and every CUDA device) seeded with the spec's seed for the call,
    and restored after it.

    The call's own `generator` drives the noise, but some pipelines also draw from the global
    generators (I2VGen-XL samples its image latents with `latent_dist.sample()` and no generator):
    without this, the same spec and seed would give another video on every run."""
    import torch

    cuda: Any = torch.cuda  # is_initialized is untyped
    devices = list(range(cuda.device_count())) if cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def generate(
    loaded: LoadedModel,
    request: GenerationRequest,
    plan: MemoryPlan,
    on_step: Callable[[int, int], None],
    env: Mapping[str, str] | None = None,
    on_denoised: Callable[[], None] = _no_denoised,
) -> Frames:
    """Denoise, reporting every step; return the frames as an iterator.

    An error the pipeline raises before its first denoising step has finished (its input checks,
    latent shapes, positional embeddings too short for the size) is the spec's fault and would fail
    the same way again: it becomes InvalidInput with the library's message and the field concerned."""
    env = os.environ if env is None else env
    pipe = loaded.pipe
    profile = loaded.profile
    stream = _can_stream_wan_decode(loaded, plan)
    kwargs = pipeline_kwargs(loaded, request, "latent" if stream else "np")
    watch = StepWatch(
        total=request.params.steps,
        on_step=on_step,
        on_denoised=on_denoised,
        step_delay=float(env.get(ENV_TEST_STEP_DELAY, "0") or 0),
    )
    counting: Any = nullcontext()
    if profile.step_callback:
        kwargs["callback_on_step_end"] = watch.callback
    else:
        log.info("%s has no callback_on_step_end: counting the scheduler's steps instead", profile.pipeline_class)
        counting = watch.counting_scheduler_steps(pipe)

    import torch

    try:
        with torch.inference_mode(), counting, seeded_global_rng(request.params.seed):
            output = pipe(**kwargs)
    except Exception as exc:
        if watch.done > 0 or isinstance(exc, RunnerError) or is_cuda_oom(exc):
            raise
        message = one_line(f"{type(exc).__name__}: {exc}", 600)
        if isinstance(exc, ImportError):
            # The runner's environment lacks what the pipeline imports: no spec would run, none is at fault.
            raise ModelLoadError(
                f"model {loaded.info.uri}: {profile.pipeline_class} needs a Python package the runner does not "
                f"ship: {message}"
            ) from exc
        field_name = field_of_pipeline_error(str(exc))
        raise InvalidInputError(
            f"{field_name}: {profile.pipeline_class} refused the inputs before the first denoising step "
            f"({request.params.width}x{request.params.height}, {request.params.num_frames} frames): {message}"
        ) from exc
    video = output.frames
    if stream:
        log.info("decoding latents %s in a stream (one latent frame at a time)", tuple(video.shape))
        return Frames(
            iterator=stream_wan_decode(pipe.vae, video),
            expected=request.params.num_frames,
            streamed=True,
            latents=video,
        )
    array = video[0] if isinstance(video, np.ndarray) and video.ndim == 5 else np.asarray(video[0])
    return Frames(iterator=iter(array), expected=int(array.shape[0]), streamed=False, audio=audio_of(pipe, output))
