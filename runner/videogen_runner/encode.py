"""Streaming frames into the ffmpeg that imageio-ffmpeg ships, plus the poster image and, for
pipelines that generate sound (LTX-2), the audio track.

Frames arrive one at a time (from a chunked VAE decode or from the pipeline's
float array) and are converted to uint8 one at a time, so the encoder never
holds a second copy of the video: its memory stays flat as frames grow. The
audio, small next to the video, is muxed in afterwards without re-encoding it.
"""

from __future__ import annotations

import io
import logging
import subprocess
import wave
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


# Audio codec and its options per container; GIF has no audio track.
AUDIO_CODECS: dict[api.OutputFormat, tuple[str, ...]] = {
    api.OutputFormat.MP4: ("-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"),
    api.OutputFormat.WEBM: ("-c:a", "libopus", "-b:a", "128k"),
}


@dataclass(frozen=True)
class Audio:
    """A generated waveform: samples x channels, float in -1..1, at `rate` Hz."""

    samples: np.ndarray[Any, Any]
    rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def seconds(self) -> float:
        return float(self.samples.shape[0]) / self.rate


@dataclass(frozen=True)
class EncodedVideo:
    path: Path
    format: api.OutputFormat
    width: int
    height: int
    frames: int
    fps: int
    poster_jpeg: bytes | None
    # The muxed audio track's sample rate and channels; None without one.
    audio_rate: int | None = None
    audio_channels: int | None = None

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


def write_wav(audio: Audio, path: Path) -> None:
    """16-bit PCM WAV (what every ffmpeg reads), clipped to -1..1."""
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(audio.channels)
        out.setsampwidth(2)
        out.setframerate(audio.rate)
        out.writeframes(np.ascontiguousarray(pcm).tobytes())


def mux_audio(video: EncodedVideo, audio: Audio) -> EncodedVideo:
    """Add the audio track to the encoded video (the video stream is copied, not re-encoded).

    Raises EncodeError for a container without audio (GIF); the caller reports the dropped track."""
    from dataclasses import replace

    from .probe import ffmpeg_exe

    options = AUDIO_CODECS.get(video.format)
    if options is None:
        raise EncodeError(f"{video.format.value} has no audio track")
    wav = video.path.with_name(video.path.name + ".audio.wav")
    muxed = video.path.with_name(video.path.stem + ".muxed" + video.path.suffix)
    try:
        write_wav(audio, wav)
        command = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-i", str(video.path), "-i", str(wav)]
        command += ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *options, str(muxed)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not muxed.is_file():
            raise EncodeError(f"ffmpeg could not mux the audio track: {done.stderr.strip()[-500:]}")
        muxed.replace(video.path)
    finally:
        wav.unlink(missing_ok=True)
        muxed.unlink(missing_ok=True)
    log.info(
        "muxed %.2f s of %d-channel audio at %d Hz into %s (%d bytes)",
        audio.seconds,
        audio.channels,
        audio.rate,
        video.path.name,
        video.path.stat().st_size,
    )
    return replace(video, audio_rate=audio.rate, audio_channels=audio.channels)
