"""One PNG of the GPU benchmark, drawn with Pillow (the GPU machine has no matplotlib).

Per frame count, one row per run (plain diffusers, then each runner variant): a bar of its whole
process time split into start-up and loading, denoising, and decode + encode + the rest, with the
steady step time, MFU and PSNR against the eager runner written beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WIDTH = 1400
ROW = 34
LEFT = 170
RIGHT = 430
COLOURS = {"load": (120, 144, 156), "denoise": (30, 136, 229), "rest": (255, 179, 0)}


def _segments(run: dict[str, Any]) -> tuple[float, float, float, float]:
    total = float(run.get("process_seconds") or run.get("total_seconds") or 0.0)
    in_process = float(run.get("total_seconds") or total)
    denoise = float(run.get("denoise_seconds") or 0.0)
    load = total - in_process + float(run.get("load_seconds") or 0.0)
    rest = max(total - load - denoise, 0.0)
    return total, load, denoise, rest


def plot_report(report: dict[str, Any], out: Path) -> Path:
    from PIL import Image, ImageDraw

    groups = sorted(report.get("frames", {}).items(), key=lambda kv: int(kv[0]))
    rows = sum(len(g["runs"]) + 2 for _, g in groups)
    height = 90 + rows * ROW + 40
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((20, 15), f"{report.get('benchmark', '')} on {report.get('device', '?')}", fill="black")
    peak = (report.get("matmul_peak") or {}).get("matmul_tflops_bf16")
    draw.text((20, 35), f"bf16 matmul peak {peak} TFLOP/s; whole process seconds (imports included)", fill="black")
    x = 20
    for name, colour in (
        ("start-up + load", COLOURS["load"]),
        ("denoise", COLOURS["denoise"]),
        ("decode, encode, rest", COLOURS["rest"]),
    ):
        draw.rectangle([x, 58, x + 14, 72], fill=colour)
        draw.text((x + 20, 59), name, fill="black")
        x += 200
    longest = max((_segments(r)[0] for _, g in groups for r in g["runs"].values()), default=1.0) or 1.0
    scale = (WIDTH - LEFT - RIGHT) / longest
    y = 90
    for frames, group in groups:
        draw.text((20, y + 8), f"{frames} frames", fill="black")
        y += ROW
        for variant, run in group["runs"].items():
            total, load, denoise, rest = _segments(run)
            draw.text((20, y + 8), variant, fill="black")
            x0 = LEFT
            for value, key in ((load, "load"), (denoise, "denoise"), (rest, "rest")):
                x1 = x0 + value * scale
                draw.rectangle([x0, y + 4, x1, y + ROW - 6], fill=COLOURS[key])
                x0 = x1
            step = run.get("step_seconds_median")
            label = "failed (see the JSON)" if run.get("error") else f"{total:.1f} s"
            label += f" | step {step:.3f} s" if step else ""
            label += f" | MFU {run['mfu']:.0%}" if run.get("mfu") is not None else ""
            psnr = run.get("psnr_vs_runner_eager_db")
            label += f" | PSNR {psnr} dB" if psnr is not None else ""
            draw.text((x0 + 8, y + 8), label, fill="black")
            y += ROW
        y += ROW
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return out
