"""Decode what a job produced, so a test proves the video is a video: frames, codec, pixel
format, faststart (box order), a poster that decodes fully, and the presigned URL's bytes."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
from PIL import Image


@dataclass(frozen=True)
class Decoded:
    frames: int
    codec: str
    pixel_format: str
    width: int
    height: int
    top_level_boxes: list[str]

    @property
    def faststart(self) -> bool:
        """moov (the index) before mdat (the samples): players start before the download ends."""
        boxes = self.top_level_boxes
        return "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")


def mp4_boxes(data: bytes) -> list[str]:
    """Top-level ISO BMFF box types, in file order."""
    out: list[str] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        out.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return out


def decode_video(data: bytes, suffix: str = ".mp4") -> Decoded:
    """Decode every frame with ffmpeg (the one imageio-ffmpeg ships) and read the stream header."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"video{suffix}"
        path.write_bytes(data)
        run = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "info", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
            capture_output=True,
            text=True,
            check=False,
        )
    assert run.returncode == 0, f"ffmpeg could not decode the video:\n{run.stderr[-2000:]}"
    stream = re.search(r"Stream #0:\d+.*?: Video: (\w+).*?, (\w+)(?:\(.*?\))?, (\d+)x(\d+)", run.stderr)
    assert stream, run.stderr[-2000:]
    frames = [int(m) for m in re.findall(r"frame=\s*(\d+)", run.stderr)]
    assert frames, run.stderr[-2000:]
    return Decoded(
        frames=frames[-1],
        codec=stream.group(1),
        pixel_format=stream.group(2),
        width=int(stream.group(3)),
        height=int(stream.group(4)),
        top_level_boxes=mp4_boxes(data) if suffix == ".mp4" else [],
    )


def decode_poster(data: bytes) -> Image.Image:
    """The poster, every pixel decoded (a truncated file fails here, not only at open)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
        assert isinstance(body, bytes)
        return body


def s3_bytes(s3_client: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert isinstance(body, bytes)
    return body


def check_output(s3_client: Any, status: dict[str, Any], frames: int) -> Decoded:
    """The job's video and poster as a user gets them: stored, hashed, decodable, and the
    presigned URL serving the very same bytes."""
    output = status["output"]
    video = s3_bytes(s3_client, output["uri"])
    assert hashlib.sha256(video).hexdigest() == output["sha256"]
    assert len(video) == output["sizeBytes"]
    decoded = decode_video(video)
    assert decoded.frames == frames == output["frames"], decoded
    assert (decoded.codec, decoded.pixel_format) == ("h264", "yuv420p"), decoded
    assert (decoded.width, decoded.height) == (output["width"], output["height"])
    assert decoded.faststart, f"moov must precede mdat for faststart: {decoded.top_level_boxes}"
    if output.get("posterUri"):
        poster = decode_poster(s3_bytes(s3_client, output["posterUri"]))
        assert poster.width > 0 and poster.height > 0
    if output.get("url"):
        assert hashlib.sha256(fetch(output["url"])).hexdigest() == output["sha256"], "presigned URL serves other bytes"
    return decoded
