"""Streaming frames into the ffmpeg that imageio-ffmpeg ships, plus the poster image.

Frames arrive one at a time (from a chunked VAE decode or from the pipeline's
float array) and are converted to uint8 one at a time, so the encoder never
holds a second copy of the video: its memory stays flat as frames grow.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from videogen_api import v1alpha1 as api

log = logging.getLogger(__name__)

POSTER_QUALITY = 90


@dataclass(frozen=True)
class CodecSettings:
    codec: str
    pix_fmt: str
    output_params: tuple[str, ...]


CODECS: dict[api.OutputFormat, CodecSettings] = {
    # yuv420p + faststart: plays in every browser and starts before the download ends.
    api.OutputFormat.MP4: CodecSettings(
        "libx264",
        "yuv420p",
        ("-crf", "18", "-preset", "medium", "-profile:v", "high", "-movflags", "+faststart"),
    ),
    api.OutputFormat.WEBM: CodecSettings(
        "libvpx-vp9",
        "yuv420p",
        ("-b:v", "0", "-crf", "31", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1"),
    ),
    # A palette computed from the whole clip looks far better than the fixed 256-colour one.
    api.OutputFormat.GIF: CodecSettings(
        "gif",
        "pal8",
        ("-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse", "-loop", "0"),
    ),
}


@dataclass(frozen=True)
class EncodedVideo:
    path: Path
    format: api.OutputFormat
    width: int
    height: int
    frames: int
    fps: int
    poster_jpeg: bytes | None

    @property
    def duration_seconds(self) -> float:
        return round(self.frames / self.fps, 3)


class EncodeError(RuntimeError):
    pass


def to_uint8(frame: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """One HxWx3 frame as contiguous uint8; floats are taken as 0..1."""
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    scaled = np.multiply(frame, 255.0, dtype=np.float32)
    np.clip(scaled + 0.5, 0, 255, out=scaled)
    out: np.ndarray[Any, Any] = scaled.astype(np.uint8, order="C")
    return out


def even(n: int) -> int:
    return n - n % 2


def poster_jpeg(frame: np.ndarray[Any, Any]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=POSTER_QUALITY)
    return buf.getvalue()


def encode_frames(
    frames: Iterable[np.ndarray[Any, Any]],
    path: Path,
    fmt: api.OutputFormat,
    fps: int,
    *,
    poster_index: int | None = None,
) -> EncodedVideo:
    """Encode frames (HxWx3, uint8 or float 0..1) as they come; keep only the poster frame."""
    import imageio_ffmpeg

    settings = CODECS[fmt]
    writer: Any = None
    width = height = count = 0
    poster: bytes | None = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                # yuv420p subsamples chroma 2x2: odd sides are refused by libx264.
                height, width = even(h), even(w)
                if (height, width) != (h, w):
                    log.warning("frames are %dx%d; encoding %dx%d (even sides for yuv420p)", w, h, width, height)
                writer = imageio_ffmpeg.write_frames(
                    str(path),
                    (width, height),
                    fps=fps,
                    codec=settings.codec,
                    pix_fmt_in="rgb24",
                    pix_fmt_out=settings.pix_fmt,
                    quality=None,
                    macro_block_size=1,
                    output_params=list(settings.output_params),
                    ffmpeg_log_level="error",
                )
                writer.send(None)
            rgb = to_uint8(frame[:height, :width])
            if poster_index is not None and count == poster_index:
                poster = poster_jpeg(rgb)
            writer.send(rgb)
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise EncodeError("no frames to encode")
    if poster is None:
        log.warning("poster frame %s was never produced (%d frames)", poster_index, count)
    if not path.is_file() or path.stat().st_size == 0:
        raise EncodeError(f"ffmpeg wrote no output to {path}")
    log.info(
        "encoded %d frames %dx%d at %d fps as %s (%d bytes)", count, width, height, fps, fmt.value, path.stat().st_size
    )
    return EncodedVideo(path=path, format=fmt, width=width, height=height, frames=count, fps=fps, poster_jpeg=poster)
