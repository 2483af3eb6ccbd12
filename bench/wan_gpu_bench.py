"""Wan2.1-T2V-1.3B at real size, random weights: the runner's path vs a plain diffusers call.

Each phase runs in its own process (clean peak-VRAM numbers, no warm caches shared):

    python bench/wan_gpu_bench.py build  --model DIR [--scale full|tiny]
    python bench/wan_gpu_bench.py runner --model DIR [--scale ...]   -> JSON on stdout
    python bench/wan_gpu_bench.py plain  --model DIR [--scale ...]   -> JSON on stdout

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
from dataclasses import asdict, dataclass
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

    def summary(self) -> dict[str, float]:
        # The first interval holds text encoding and warm-up; steady-state steps are the rest.
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        if not gaps:
            return {}
        return {
            "step_seconds_median": round(statistics.median(gaps), 4),
            "step_seconds_mean": round(statistics.fmean(gaps), 4),
            "denoise_seconds": round(self.stamps[-1] - self.stamps[0], 3),
        }


def _gpu_facts() -> dict[str, Any]:
    torch = lib("torch")
    if not torch.cuda.is_available():
        return {"device": "cpu"}
    return {
        "device": torch.cuda.get_device_name(0),
        "peak_vram_bytes": int(torch.cuda.max_memory_allocated()),
        "peak_vram_reserved_bytes": int(torch.cuda.max_memory_reserved()),
    }


def run_runner(model_dir: Path, scale: Scale) -> dict[str, Any]:
    """The runner's own path (videogen_runner.render): from_pretrained, memory plan, denoise, streamed decode, encode."""
    torch = lib("torch")
    from videogen_api import v1alpha1 as api
    from videogen_runner.render import StageClock, render_video

    spec = api.VideoGenJobSpec(
        model=str(model_dir),
        task=api.Task.TEXT_TO_VIDEO,
        prompt=PROMPT,
        width=scale.width,
        height=scale.height,
        num_frames=scale.frames,
        fps=16,
        steps=scale.steps,
        guidance_scale=GUIDANCE,
        seed=SEED,
    )
    timer = StepTimer()
    clock = StageClock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        rendered = render_video(
            spec, {**os.environ, "HF_HUB_OFFLINE": "1"}, video_path=Path(work) / "v.mp4", on_step=timer, clock=clock
        )
    total = time.perf_counter() - started
    timings = clock.timings()
    return {
        "path": "runner",
        "total_seconds": round(total, 3),
        "load_seconds": timings.loading,
        "generate_and_decode_seconds": timings.generating,
        "encode_seconds": timings.encoding,
        "memory_mode": rendered.plan.describe(),
        "frames": rendered.encoded.frames,
        **timer.summary(),
        **_gpu_facts(),
    }


def run_plain(model_dir: Path, scale: Scale) -> dict[str, Any]:
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
            str(Path(work) / "v.mp4"), (scale.width, scale.height), fps=16, macro_block_size=1
        )
        writer.send(None)
        for frame in video:
            writer.send(frame)
        writer.close()
    done = time.perf_counter()
    return {
        "path": "plain-diffusers",
        "total_seconds": round(done - started, 3),
        "load_seconds": round(loaded - started, 3),
        "generate_and_decode_seconds": round(generated - loaded, 3),
        "encode_seconds": round(done - generated, 3),
        "memory_mode": "none (pipe.to(device))",
        "frames": int(output.frames.shape[1]),
        **timer.summary(),
        **_gpu_facts(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phase", choices=["build", "runner", "plain"])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    phases = {"build": build, "runner": run_runner, "plain": run_plain}
    result = phases[args.phase](args.model, scale)
    sys.stdout.write(json.dumps({**result, "scale": asdict(scale) | {"name": args.scale}}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
