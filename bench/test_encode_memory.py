"""Encoding memory: peak RSS of the encode step at 9 vs 129 frames of 480x832, in fresh processes.

The runner streams frames into ffmpeg and converts them to uint8 one at a time, so its peak
memory should not grow with the frame count. For contrast the same frames are also encoded the
naive way (collected first, then written), which grows by the frames' own size.
Results: bench/results/encode_memory.json.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
WIDTH, HEIGHT = 832, 480
FRAME_COUNTS = (9, 129)

SCRIPT = """
import json, resource, sys, time
from pathlib import Path
import numpy as np
from videogen_api.v1alpha1 import OutputFormat
from videogen_runner.encode import encode_frames, to_uint8

n, width, height, mode, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
base = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)

def frames():
    for i in range(n):
        yield np.roll(base, i * 8, axis=1)  # a fresh float32 frame, as the VAE decode hands them over

baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if mode == "streamed":
    encode_frames(frames(), out, OutputFormat.MP4, 16, poster_index=n // 2)
else:  # naive: hold every frame as uint8, then encode
    held = [to_uint8(f) for f in frames()]
    encode_frames(iter(held), out, OutputFormat.MP4, 16, poster_index=n // 2)
print(json.dumps({
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "rss_before_encode_bytes": baseline * 1024,
    "children_peak_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    "seconds": round(time.perf_counter() - started, 3),
}))
"""


def measure(frames: int, mode: str, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(frames), str(WIDTH), str(HEIGHT), mode, str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_encode_peak_rss_is_flat_in_the_frame_count(tmp_path: Path) -> None:
    runs = {
        mode: {n: measure(n, mode, tmp_path / f"{mode}-{n}.mp4") for n in FRAME_COUNTS}
        for mode in ("streamed", "naive")
    }
    extra_frames = FRAME_COUNTS[1] - FRAME_COUNTS[0]
    frames_uint8_bytes = extra_frames * WIDTH * HEIGHT * 3
    growth = {
        mode: r[FRAME_COUNTS[1]]["peak_rss_bytes"] - r[FRAME_COUNTS[0]]["peak_rss_bytes"] for mode, r in runs.items()
    }
    report = {
        "benchmark": "encode step peak RSS, runner (streamed) vs naive (frames held), MP4 H.264",
        "frame_size": f"{WIDTH}x{HEIGHT}",
        "frame_counts": list(FRAME_COUNTS),
        "extra_frames_uint8_bytes": frames_uint8_bytes,
        "extra_frames_float32_bytes": frames_uint8_bytes * 4,
        "peak_rss_growth_bytes": growth,
        "note": (
            "peak_rss_bytes is the Python process doing the encode step; children_peak_rss_bytes is ffmpeg "
            "(its x264 lookahead holds ~40 frames, and the figure includes the parent's pages at fork time)"
        ),
        "runs": {mode: {str(n): v for n, v in r.items()} for mode, r in runs.items()},
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "encode_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"peak_rss_growth_MiB": {k: round(v / 2**20, 1) for k, v in growth.items()}}))

    assert growth["streamed"] < frames_uint8_bytes / 4, growth
    assert growth["naive"] > frames_uint8_bytes / 2, "the contrast run holds the frames, as it should"
