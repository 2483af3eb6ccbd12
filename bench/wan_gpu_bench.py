"""Wan2.1-T2V-1.3B at real size, random weights: the runner's path vs a plain diffusers call.

Each phase runs in its own process (clean peak-VRAM numbers, no warm caches shared, imports timed):

    python bench/wan_gpu_bench.py build  --model DIR [--scale full|tiny]
    python bench/wan_gpu_bench.py peak   --model DIR                       -> bf16 matmul TFLOP/s
    python bench/wan_gpu_bench.py plain  --model DIR --frames N [--t0 T] [--video OUT]
    python bench/wan_gpu_bench.py runner --model DIR --frames N --variant V [--t0 T] [--video OUT]

Variants of the runner (spec.acceleration): eager (compile off, no step cache), compiled (regional
compile), first-block / taylorseer (step cache, eager), fast (preset fast's defaults: compile and a
first-block cache), standard (preset standard's defaults). `--t0` is the driver's clock just before
it started the process, so `process_seconds` covers interpreter start and imports too.
`--scale tiny` runs the same code with a tiny config on CPU, to check the harness without a GPU.
bench/test_gpu_wan.py drives it and writes bench/results/.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

PROMPT = "a red fox runs on the beach at sunset, cinematic camera shot"
SEED = 0
GUIDANCE = 5.0
TEXT_TOKENS = 512  # WanPipeline's max_sequence_length: the cross-attention length M


@dataclass(frozen=True)
class Scale:
    width: int
    height: int
    frames: int
    steps: int
    transformer: dict[str, Any]
    text_encoder: dict[str, Any]
    vae: dict[str, Any]


# The published Wan2.1-T2V-1.3B-Diffusers configs (transformer, UMT5-XXL encoder, Wan 2.1 VAE).
FULL = Scale(
    width=832,
    height=480,
    frames=33,
    steps=30,
    transformer={
        "patch_size": (1, 2, 2),
        "num_attention_heads": 12,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 8960,
        "num_layers": 30,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": 1024,
    },
    text_encoder={
        "vocab_size": 256384,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
    },
    vae={
        "base_dim": 96,
        "z_dim": 16,
        "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "temperal_downsample": [False, True, True],
    },
)
TINY = Scale(
    width=64,
    height=64,
    frames=9,
    steps=2,
    transformer={**FULL.transformer, "num_attention_heads": 2, "attention_head_dim": 12, "text_dim": 32}
    | {"ffn_dim": 32, "num_layers": 2, "rope_max_seq_len": 32},
    text_encoder={**FULL.text_encoder, "vocab_size": 512, "d_model": 32, "d_kv": 8, "d_ff": 64}
    | {"num_layers": 2, "num_heads": 4},
    vae={
        "base_dim": 3,
        "z_dim": 16,
        "dim_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "temperal_downsample": [False, True, True],
    },
)
SCALES = {"full": FULL, "tiny": TINY}


def lib(name: str) -> Any:
    return importlib.import_module(name)


def dit_tflop_per_step(scale: Scale) -> float:
    """Wan-style DiT forward FLOPs x2 (classifier-free guidance): L·[2N(6d²+2df) + 4N²d + 4NMd + 4Md²]."""
    t = scale.transformer
    d = t["num_attention_heads"] * t["attention_head_dim"]
    f, layers, m = t["ffn_dim"], t["num_layers"], TEXT_TOKENS
    n = ((scale.frames - 1) // 4 + 1) * (scale.height // 16) * (scale.width // 16)
    forward = layers * (2 * n * (6 * d * d + 2 * d * f) + 4 * n * n * d + 4 * n * m * d + 4 * m * d * d)
    return float(2 * forward / 1e12)


def build(model_dir: Path, scale: Scale) -> dict[str, Any]:
    torch = lib("torch")
    diffusers = lib("diffusers")
    transformers = lib("transformers")
    from videogen_runner.tiny_models import build_tokenizer

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    started = time.perf_counter()
    torch.manual_seed(SEED)
    previous = torch.get_default_dtype()
    # Random init straight on the GPU in bf16: minutes faster than fp32 on the CPU for 7B parameters.
    torch.set_default_dtype(torch.bfloat16 if cuda else torch.float32)
    try:
        with torch.device(device):
            transformer = diffusers.WanTransformer3DModel(**scale.transformer)
            text_encoder = transformers.UMT5EncoderModel(transformers.UMT5Config(**scale.text_encoder))
    finally:
        torch.set_default_dtype(previous)
    with torch.device(device):
        vae = diffusers.AutoencoderKLWan(**scale.vae)
    scheduler = diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    pipe = diffusers.WanPipeline(
        tokenizer=build_tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer
    )
    pipe.save_pretrained(str(model_dir), safe_serialization=True)
    size = sum(p.stat().st_size for p in model_dir.rglob("*.safetensors"))
    return {
        "model_dir": str(model_dir),
        "bytes_on_disk": size,
        "build_seconds": round(time.perf_counter() - started, 1),
    }


class StepTimer:
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, *_args: Any) -> None:
        torch = lib("torch")
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def summary(self, call_started: float | None = None) -> dict[str, float]:
        # The first step holds text encoding and warm-up (and a first compile); steady-state steps are the rest.
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        if not gaps:
            return {}
        out = {
            "step_seconds_median": round(statistics.median(gaps), 4),
            "step_seconds_mean": round(statistics.fmean(gaps), 4),
            "denoise_seconds": round(self.stamps[-1] - self.stamps[0], 3),
        }
        if call_started is not None:
            out["first_step_seconds"] = round(self.stamps[0] - call_started, 3)
            out["denoise_seconds"] = round(self.stamps[-1] - call_started, 3)
        return out


def _gpu_facts() -> dict[str, Any]:
    torch = lib("torch")
    if not torch.cuda.is_available():
        return {"device": "cpu"}
    return {
        "device": torch.cuda.get_device_name(0),
        "peak_vram_bytes": int(torch.cuda.max_memory_allocated()),
        "peak_vram_reserved_bytes": int(torch.cuda.max_memory_reserved()),
    }


# spec.acceleration and preset per runner variant.
VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "eager": ("standard", {"compile": "off", "stepCache": {"type": "none"}}),
    "compiled": ("standard", {"compile": "on", "stepCache": {"type": "none"}}),
    "first-block": ("standard", {"compile": "off", "stepCache": {"type": "first-block"}}),
    "taylorseer": ("standard", {"compile": "off", "stepCache": {"type": "taylorseer"}}),
    "fast": ("fast", None),
    "standard": ("standard", None),
}


def _process_seconds(t0: float | None) -> float | None:
    return round(time.time() - t0, 3) if t0 else None


def run_runner(
    model_dir: Path, scale: Scale, variant: str = "standard", t0: float | None = None, video: Path | None = None
) -> dict[str, Any]:
    """The runner's own path (videogen_runner.render): imports overlapped, from_pretrained, memory plan,
    acceleration, denoise, streamed decode, encode. torch is not imported here before the runner does it."""
    from videogen_api import v1alpha1 as api
    from videogen_runner.render import StageClock, render_video

    preset, acceleration = VARIANTS[variant]
    spec = api.VideoGenJobSpec.model_validate(
        {
            "model": str(model_dir),
            "task": "text-to-video",
            "prompt": PROMPT,
            "preset": preset,
            "width": scale.width,
            "height": scale.height,
            "numFrames": scale.frames,
            "fps": 16,
            "steps": scale.steps,
            "guidanceScale": GUIDANCE,
            "seed": SEED,
            **({"acceleration": acceleration} if acceleration is not None else {}),
        }
    )
    timer = StepTimer()
    clock = StageClock()
    call_started: list[float] = []

    def on_stage(stage: Any, *_args: Any) -> None:
        if stage is api.Stage.GENERATING and not call_started:
            call_started.append(time.perf_counter())

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        out = video or Path(work) / "v.mp4"
        rendered = render_video(
            spec,
            {**os.environ, "HF_HUB_OFFLINE": "1"},
            video_path=out,
            on_step=timer,
            on_stage=on_stage,
            clock=clock,
        )
        process = _process_seconds(t0)
    total = time.perf_counter() - started
    timings = clock.timings()
    return {
        "path": "runner",
        "variant": variant,
        "process_seconds": process,
        "total_seconds": round(total, 3),
        "load_seconds": timings.loading,
        "load_import_seconds": timings.loading_import,
        "load_read_seconds": timings.loading_read,
        "load_place_seconds": timings.loading_place,
        "generate_and_decode_seconds": timings.generating,
        "encode_seconds": timings.encoding,
        "memory_mode": rendered.plan.describe(),
        "acceleration": rendered.acceleration,
        "frames": rendered.encoded.frames,
        **timer.summary(call_started[0] if call_started else None),
        **_gpu_facts(),
    }


def run_plain(model_dir: Path, scale: Scale, t0: float | None = None, video_out: Path | None = None) -> dict[str, Any]:
    """What a diffusers user writes: WanPipeline.from_pretrained(...).to("cuda"), pipe(...), then the whole
    video as uint8 into ffmpeg (diffusers' export_to_video does the same through imageio)."""
    torch = lib("torch")
    diffusers = lib("diffusers")
    imageio_ffmpeg = lib("imageio_ffmpeg")
    np = lib("numpy")

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    vae = diffusers.AutoencoderKLWan.from_pretrained(str(model_dir), subfolder="vae", torch_dtype=torch.float32)
    pipe = diffusers.WanPipeline.from_pretrained(str(model_dir), vae=vae, torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter()
    timer = StepTimer()

    def callback(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        timer()
        return kwargs

    call_started = time.perf_counter()
    output = pipe(
        prompt=PROMPT,
        height=scale.height,
        width=scale.width,
        num_frames=scale.frames,
        num_inference_steps=scale.steps,
        guidance_scale=GUIDANCE,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="np",
        callback_on_step_end=callback,
    )
    generated = time.perf_counter()
    video = np.ascontiguousarray((output.frames[0] * 255).round().astype(np.uint8))
    with tempfile.TemporaryDirectory() as work:
        writer = imageio_ffmpeg.write_frames(
            str(video_out or Path(work) / "v.mp4"), (scale.width, scale.height), fps=16, macro_block_size=1
        )
        writer.send(None)
        for frame in video:
            writer.send(frame)
        writer.close()
        process = _process_seconds(t0)
    done = time.perf_counter()
    return {
        "path": "plain-diffusers",
        "variant": "plain",
        "process_seconds": process,
        "total_seconds": round(done - started, 3),
        "load_seconds": round(loaded - started, 3),
        "generate_and_decode_seconds": round(generated - loaded, 3),
        "encode_seconds": round(done - generated, 3),
        "memory_mode": "none (pipe.to(device))",
        "frames": int(output.frames.shape[1]),
        **timer.summary(call_started),
        **_gpu_facts(),
    }


def matmul_peak() -> dict[str, Any]:
    """bf16 dense matmul TFLOP/s (8192^3, best of 20 after warm-up): the denominator of MFU."""
    torch = lib("torch")
    if not torch.cuda.is_available():
        return {"device": "cpu", "matmul_tflops_bf16": None}
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    best = float("inf")
    for _ in range(20):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / 10)
    return {"device": torch.cuda.get_device_name(0), "matmul_tflops_bf16": round(2 * n**3 / best / 1e12, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phase", choices=["build", "peak", "runner", "plain"])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--frames", type=int, help="override the scale's frame count")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="standard")
    parser.add_argument("--t0", type=float, help="the driver's time.time() just before starting this process")
    parser.add_argument("--video", type=Path, help="keep the encoded video here")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    if args.frames:
        scale = replace(scale, frames=args.frames)
    if args.phase == "build":
        result = build(args.model, scale)
    elif args.phase == "peak":
        result = matmul_peak()
    elif args.phase == "plain":
        result = run_plain(args.model, scale, args.t0, args.video)
    else:
        result = run_runner(args.model, scale, args.variant, args.t0, args.video)
    sys.stdout.write(json.dumps({**result, "scale": asdict(scale) | {"name": args.scale}}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
