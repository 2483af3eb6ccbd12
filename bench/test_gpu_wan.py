"""GPU benchmark: Wan2.1-T2V-1.3B (real architecture, random bf16 weights) at 480x832, 30 steps, CFG 5, at
33 and 81 frames: plain diffusers and the runner (eager, compiled, each step cache, the fast preset) on the
same weights in one run, each in a fresh process. Results: bench/results/wan2.1-t2v-1.3b-<gpu>.json and .png
(bench/gpu_report.py; on the GPU machine, which has no pytest, run that script directly: see bench/README.md).

Without CUDA it skips. VIDEOGEN_BENCH_SCALE=tiny runs the same harness with a tiny config on the CPU
(a check of the benchmark itself; its numbers mean nothing and go to a temporary directory).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent
SCALE = os.environ.get("VIDEOGEN_BENCH_SCALE", "full")


@pytest.mark.gpu
@pytest.mark.timeout(3600)
def test_wan_1_3b_runner_vs_plain_diffusers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if SCALE == "full" and not torch.cuda.is_available():
        pytest.skip(
            "CUDA is not available: the Wan2.1-T2V-1.3B benchmark needs a GPU (VIDEOGEN_BENCH_SCALE=tiny checks it on CPU)"
        )
    sys.path.insert(0, str(BENCH))
    from gpu_report import DEFAULT_VARIANTS, run_benchmark

    out = BENCH / "results" if SCALE == "full" else tmp_path
    frames = [33, 81] if SCALE == "full" else [9]
    variants = [*DEFAULT_VARIANTS, "standard"] if SCALE == "full" else ["eager", "first-block", "taylorseer", "fast"]
    path, report = run_benchmark(out, SCALE, frames, variants)
    print(json.dumps(report, indent=2))

    assert path.with_suffix(".png").stat().st_size > 0
    for count in frames:
        runs = report["frames"][str(count)]["runs"]
        assert set(runs) == {"plain", *variants}
        assert not [v for v, run in runs.items() if "error" in run], {v: r.get("error") for v, r in runs.items()}
        assert all(run["frames"] == count for run in runs.values()), "every path made the whole video"
        assert all(run["process_seconds"] >= run["total_seconds"] for run in runs.values())
        assert runs["fast"]["acceleration"][2].startswith("stepCache: first-block")
    if SCALE == "full":
        runs = report["frames"]["81"]["runs"]
        # Denoising itself must not get slower than plain diffusers; compile must not slow it down.
        assert runs["eager"]["step_seconds_median"] <= runs["plain"]["step_seconds_median"] * 1.10
        assert runs["compiled"]["step_seconds_median"] <= runs["eager"]["step_seconds_median"]
