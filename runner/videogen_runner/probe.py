"""An ffprobe stand-in: imageio-ffmpeg ships ffmpeg only, so read `ffmpeg -i` and count decoded frames.

Used by the tests and benchmarks to check encoded videos, and by hand:
`python -m videogen_runner.probe video.mp4`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+)[^,]*, (?P<pix>\w+)")
_SIZE = re.compile(r", (?P<w>\d{2,5})x(?P<h>\d{2,5})[,\s\[]")
_FPS = re.compile(r", (?P<fps>[\d.]+) fps")
_FRAMES = re.compile(r"frame=\s*(?P<n>\d+)")


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def probe(path: Path) -> VideoInfo:
    header = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, check=False
    ).stderr
    stream = next((line for line in header.splitlines() if "Video:" in line), None)
    if stream is None:
        raise ValueError(f"{path}: no video stream in ffmpeg output:\n{header}")
    kind = _STREAM.search(stream)
    size = _SIZE.search(stream)
    fps = _FPS.search(stream)
    if not (kind and size and fps):
        raise ValueError(f"{path}: cannot parse stream line {stream!r}")
    decoded = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    counts = _FRAMES.findall(decoded)
    return VideoInfo(
        codec=kind["codec"],
        pix_fmt=kind["pix"],
        width=int(size["w"]),
        height=int(size["h"]),
        fps=float(fps["fps"]),
        frames=int(counts[-1]) if counts else 0,
    )


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps({"path": arg, **asdict(probe(Path(arg)))}))
