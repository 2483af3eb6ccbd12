"""GPU benchmark: Wan2.1-T2V-1.3B (real architecture, random bf16 weights) at 480x832, 33 frames,
30 steps, through the runner and through a plain diffusers call on the same weights.

Time per step, total, peak VRAM and the memory mode chosen go to bench/results/wan2.1-t2v-1.3b-<gpu>.json.
Without CUDA it skips. VIDEOGEN_BENCH_SCALE=tiny runs the same harness with a tiny config on the CPU
(a check of the benchmark itself; its numbers mean nothing and are not written to results/).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
SCALE = os.environ.get("VIDEOGEN_BENCH_SCALE", "full")


def phase(name: str, model: Path, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "wan_gpu_bench.py"), name, "--model", str(model), "--scale", SCALE],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.gpu
@pytest.mark.timeout(1800)
def test_wan_1_3b_runner_vs_plain_diffusers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if SCALE == "full" and not torch.cuda.is_available():
        pytest.skip(
            "CUDA is not available: the Wan2.1-T2V-1.3B benchmark needs a GPU (VIDEOGEN_BENCH_SCALE=tiny checks it on CPU)"
        )
    sys.path.insert(0, str(BENCH))
    from wan_gpu_bench import SCALES, dit_tflop_per_step

    model = tmp_path / "wan2.1-t2v-1.3b-random"
    built = phase("build", model, timeout=1200)
    plain = phase("plain", model, timeout=1200)
    runner = phase("runner", model, timeout=1200)

    tflop = dit_tflop_per_step(SCALES[SCALE])
    for result in (plain, runner):
        if result.get("step_seconds_median"):
            result["dit_tflops_achieved"] = round(tflop / result["step_seconds_median"], 1)
    report = {
        "benchmark": "Wan2.1-T2V-1.3B architecture, random weights, 480x832, 33 frames, 30 steps, CFG 5.0",
        "dit_tflop_per_step_with_cfg": round(tflop, 1),
        "model": built,
        "plain_diffusers": plain,
        "runner": runner,
        "runner_over_plain": {
            "step_time": round(runner["step_seconds_median"] / plain["step_seconds_median"], 3),
            "total_time": round(runner["total_seconds"] / plain["total_seconds"], 3),
        },
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__},
    }
    print(json.dumps(report, indent=2))
    if SCALE == "full":
        RESULTS.mkdir(exist_ok=True)
        gpu = re.sub(r"[^a-z0-9]+", "-", runner["device"].lower()).strip("-")
        (RESULTS / f"wan2.1-t2v-1.3b-{gpu}.json").write_text(json.dumps(report, indent=2) + "\n")

    assert runner["frames"] == plain["frames"] == SCALES[SCALE].frames
    if SCALE == "full":
        # The runner adds progress, a memory plan and a streamed decode; denoising itself must not get slower.
        # (Tiny CPU steps take milliseconds and are all noise, so only the real size is judged.)
        assert runner["step_seconds_median"] <= plain["step_seconds_median"] * 1.10
