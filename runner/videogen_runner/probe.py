"""An ffprobe stand-in: imageio-ffmpeg ships ffmpeg only, so read `ffmpeg -i` and count decoded frames.

Used by the tests and benchmarks to check encoded videos, and by hand:
`python -m videogen_runner.probe video.mp4`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+)[^,]*, (?P<pix>\w+)")
_SIZE = re.compile(r", (?P<w>\d{2,5})x(?P<h>\d{2,5})[,\s\[]")
_FPS = re.compile(r", (?P<fps>[\d.]+) fps")
_FRAMES = re.compile(r"frame=\s*(?P<n>\d+)")
_AUDIO = re.compile(r"Audio: (?P<codec>\w+).*?, (?P<rate>\d+) Hz, (?P<layout>[\w.() ]+?),")
_LAYOUTS = {"mono": 1, "stereo": 2}


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int
    # The first audio stream, when there is one: codec, sample rate, channels, decoded length.
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    audio_seconds: float | None = None


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
    info = VideoInfo(
        codec=kind["codec"],
        pix_fmt=kind["pix"],
        width=int(size["w"]),
        height=int(size["h"]),
        fps=float(fps["fps"]),
        frames=int(counts[-1]) if counts else 0,
    )
    audio_line = next((line for line in header.splitlines() if "Audio:" in line), None)
    audio = _AUDIO.search(audio_line) if audio_line else None
    if audio_line is None:
        return info
    if audio is None:
        raise ValueError(f"{path}: cannot parse audio stream line {audio_line!r}")
    rate = int(audio["rate"])
    layout = audio["layout"].strip()
    channels = _LAYOUTS.get(layout)
    if channels is None and layout.split()[0].isdigit():  # "6 channels"; named layouts such as 5.1 stay None
        channels = int(layout.split()[0])
    # Decoded as 16-bit mono: two bytes a sample, whatever the stream's layout.
    pcm = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return replace(
        info,
        audio_codec=audio["codec"],
        audio_rate=rate,
        audio_channels=channels,
        audio_seconds=round(len(pcm) / 2 / rate, 4),
    )


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps({"path": arg, **asdict(probe(Path(arg)))}))
