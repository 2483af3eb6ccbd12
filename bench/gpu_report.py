"""The GPU benchmark in one run: plain diffusers and the runner side by side on the same weights.

    python bench/gpu_report.py --out DIR [--scale full|tiny] [--frames 33,81]
                               [--variants eager,compiled,first-block,taylorseer,fast]

Builds Wan2.1-T2V-1.3B (real architecture, random bf16 weights) once, measures the bf16 matmul
peak, then for each frame count runs, each in a fresh process timed from before its start:
plain diffusers, and the runner in each variant (wan_gpu_bench.VARIANTS). Per run: whole-process
seconds, load (and its import/read/place split), first step, steady step, denoise, total, peak
VRAM, MFU of the DiT, and the PSNR of its video against the eager runner's (what a step cache
costs in fidelity). Writes DIR/wan2.1-t2v-1.3b-<gpu>.json and a PNG beside it; an existing JSON
for the same GPU gets the new frame counts merged in (so 33 and 81 frames may come from two calls).
Needs only torch, diffusers, transformers, numpy, pillow and imageio-ffmpeg (no pytest).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from wan_gpu_bench import SCALES, VARIANTS, dit_tflop_per_step  # noqa: E402

DEFAULT_VARIANTS = ("eager", "compiled", "first-block", "taylorseer", "fast")
BENCHMARK = "Wan2.1-T2V-1.3B architecture, random bf16 weights, 480x832, 30 steps, CFG 5.0"


def phase(name: str, model: Path, scale: str, *extra: str, timeout: float = 900) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / "wan_gpu_bench.py"), name, "--model", str(model), "--scale", scale, *extra]
    t0 = time.time()
    proc = subprocess.run(
        [*cmd, "--t0", repr(t0)] if name in ("runner", "plain") else cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(extra)} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds_from_driver"] = round(time.time() - t0, 3)
    return result


def read_video(path: Path) -> Any:
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(f, dtype=np.uint8).reshape(height, width, 3) for f in reader])


def psnr(a: Any, b: Any) -> float | None:
    import numpy as np

    if a.shape != b.shape:
        return None
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return round(10 * math.log10(255.0**2 / mse), 2) if mse > 0 else float("inf")


def run_benchmark(out: Path, scale: str, frame_counts: list[int], variants: list[str]) -> tuple[Path, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="wan-bench-") as scratch:
        work = Path(scratch)
        model = work / "wan2.1-t2v-1.3b-random"
        built = phase("build", model, scale, timeout=1200)
        peak = phase("peak", model, scale)
        runs: dict[str, dict[str, Any]] = {}
        for frames in frame_counts:
            by_variant: dict[str, Any] = {}
            videos: dict[str, Path] = {}
            for variant in ["plain", *variants]:
                video = work / f"{variant}-{frames}.mp4"
                try:
                    if variant == "plain":
                        result = phase("plain", model, scale, "--frames", str(frames), "--video", str(video))
                    else:
                        args = ("--frames", str(frames), "--variant", variant, "--video", str(video))
                        result = phase("runner", model, scale, *args)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    # One failing variant must not cost the figures of the others (GPU time is scarce).
                    result = {"variant": variant, "error": str(exc)[-3000:]}
                else:
                    videos[variant] = video
                by_variant[variant] = result
                print(f"{frames} frames, {variant}: {json.dumps(result)}", file=sys.stderr, flush=True)
            tflop = dit_tflop_per_step(replace(SCALES[scale], frames=frames))
            reference = read_video(videos["eager"]) if "eager" in videos else None
            for variant, result in by_variant.items():
                step = result.get("step_seconds_median")
                if step:
                    result["dit_tflops_achieved"] = round(tflop / step, 1)
                    if peak.get("matmul_tflops_bf16"):
                        result["mfu"] = round(tflop / step / peak["matmul_tflops_bf16"], 3)
                if reference is not None and variant in videos and variant != "eager":
                    result["psnr_vs_runner_eager_db"] = psnr(read_video(videos[variant]), reference)
            runs[str(frames)] = {"dit_tflop_per_step_with_cfg": round(tflop, 2), "runs": by_variant}

    device = str(peak.get("device") or "cpu")
    gpu = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    path = out / f"wan2.1-t2v-1.3b-{gpu}.json"
    report: dict[str, Any] = {}
    if path.exists():
        report = json.loads(path.read_text())
    report.update(
        {
            "benchmark": BENCHMARK,
            "device": device,
            "matmul_peak": peak,
            "model": built,
            "variants": {v: {"preset": VARIANTS[v][0], "acceleration": VARIANTS[v][1]} for v in variants},
            "versions": versions(),
        }
    )
    report.setdefault("frames", {}).update(runs)
    report["goals"] = goals(report)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    from plot import plot_report

    plot_report(report, path.with_suffix(".png"))
    return path, report


def versions() -> dict[str, str]:
    import diffusers
    import torch

    return {"torch": torch.__version__, "diffusers": diffusers.__version__}


def goals(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, judged from the figures (None where a figure is missing)."""
    out: dict[str, Any] = {}
    runs = report.get("frames", {}).get("81", {}).get("runs", {})
    plain, standard = runs.get("plain", {}), runs.get("standard") or runs.get("compiled") or {}
    if plain.get("process_seconds") and standard.get("process_seconds"):
        ratio = standard["process_seconds"] / plain["process_seconds"]
        out["standard_81f_process_vs_plain"] = {"ratio": round(ratio, 3), "goal": 0.80, "met": ratio <= 0.80}
    compiled = runs.get("compiled", {})
    if compiled.get("mfu") is not None:
        out["compiled_dit_mfu_81f"] = {"mfu": compiled["mfu"], "goal": 0.65, "met": compiled["mfu"] >= 0.65}
    fast = runs.get("fast", {})
    if plain.get("denoise_seconds") and fast.get("denoise_seconds"):
        speedup = plain["denoise_seconds"] / fast["denoise_seconds"]
        out["fast_denoise_speedup_81f"] = {
            "speedup": round(speedup, 2),
            "goal": 2.0,
            "met": speedup >= 2.0,
            "psnr_vs_runner_eager_db": fast.get("psnr_vs_runner_eager_db"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--frames", default="", help="comma-separated frame counts (default 33,81; tiny: 9)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    args = parser.parse_args(argv)
    frames = [int(f) for f in args.frames.split(",") if f] or ([33, 81] if args.scale == "full" else [9])
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    path, report = run_benchmark(args.out, args.scale, frames, variants)
    print(json.dumps({"written": str(path), "goals": report["goals"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
