"""Encoding: browser-playable MP4, WebM and GIF at the requested fps, a poster, and flat memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from videogen_api import v1alpha1 as api
from videogen_runner.encode import Audio, encode_frames, mux_audio, to_uint8
from videogen_runner.probe import probe


def moving_frames(n: int, width: int, height: int, dtype: str = "float32") -> Iterator[np.ndarray[Any, Any]]:
    """A bar sweeping across a gradient; frame i is recognisable by the bar's position."""
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None].repeat(height, 0).repeat(3, 2)
    for i in range(n):
        frame = ramp.copy()
        frame[:, (i * 4) % width : (i * 4) % width + 4] = 1.0
        yield frame if dtype == "float32" else to_uint8(frame)


class TestAudioTrack:
    @pytest.mark.parametrize(("fmt", "codec"), [(api.OutputFormat.MP4, "aac"), (api.OutputFormat.WEBM, "opus")])
    def test_the_sound_is_muxed_beside_the_untouched_video(
        self, fmt: api.OutputFormat, codec: str, tmp_path: Path
    ) -> None:
        video = encode_frames(moving_frames(17, 96, 64), tmp_path / f"v.{fmt.value}", fmt, 12)
        before = probe(video.path)
        t = np.arange(round(17 / 12 * 24000)) / 24000
        stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1) * 0.5

        muxed = mux_audio(video, Audio(samples=stereo.astype(np.float32), rate=24000))

        info = probe(muxed.path)
        assert (info.codec, info.width, info.height, info.frames, info.fps) == (
            before.codec,
            96,
            64,
            17,
            12.0,
        ), "the video stream is as it was"
        assert (info.audio_codec, info.audio_channels, muxed.audio_rate, muxed.audio_channels) == (codec, 2, 24000, 2)
        assert info.audio_seconds is not None and abs(info.audio_seconds - 17 / 12) < 0.05
        if fmt is api.OutputFormat.MP4:
            data = muxed.path.read_bytes()
            assert data.find(b"moov") < data.find(b"mdat"), "still starts before the download ends"
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"v.{fmt.value}"], "no temporary files left"


class TestFormats:
    def test_mp4_is_h264_yuv420p_with_faststart(self, tmp_path: Path) -> None:
        video = encode_frames(moving_frames(17, 96, 64), tmp_path / "v.mp4", api.OutputFormat.MP4, 12)

        info = probe(video.path)
        assert (info.codec, info.pix_fmt, info.width, info.height) == ("h264", "yuv420p", 96, 64)
        assert (info.frames, info.fps) == (17, 12.0)
        data = video.path.read_bytes()
        assert data.find(b"moov") < data.find(b"mdat")
        assert (video.frames, video.duration_seconds) == (17, round(17 / 12, 3))

    def test_webm_is_vp9(self, tmp_path: Path) -> None:
        video = encode_frames(moving_frames(9, 64, 64), tmp_path / "v.webm", api.OutputFormat.WEBM, 8)
        info = probe(video.path)
        assert (info.codec, info.pix_fmt, info.frames, info.fps) == ("vp9", "yuv420p", 9, 8.0)

    def test_gif_loops_at_the_requested_rate(self, tmp_path: Path) -> None:
        video = encode_frames(moving_frames(9, 64, 64), tmp_path / "v.gif", api.OutputFormat.GIF, 10)
        info = probe(video.path)
        assert (info.codec, info.frames, info.fps) == ("gif", 9, 10.0)

    def test_uint8_frames_are_taken_as_they_are(self, tmp_path: Path) -> None:
        video = encode_frames(moving_frames(5, 64, 64, "uint8"), tmp_path / "v.mp4", api.OutputFormat.MP4, 8)
        assert probe(video.path).frames == 5

    def test_odd_sizes_become_even_for_yuv420p(self, tmp_path: Path) -> None:
        video = encode_frames(moving_frames(5, 65, 63), tmp_path / "v.mp4", api.OutputFormat.MP4, 8)
        info = probe(video.path)
        assert (info.width, info.height) == (video.width, video.height) == (64, 62)


class TestPoster:
    def test_the_poster_is_the_middle_frame_as_jpeg(self, tmp_path: Path) -> None:
        frames = list(moving_frames(9, 64, 64))
        video = encode_frames(iter(frames), tmp_path / "v.mp4", api.OutputFormat.MP4, 8, poster_index=4)

        assert video.poster_jpeg is not None
        with Image.open(io.BytesIO(video.poster_jpeg)) as img:
            assert (img.format, img.size) == ("JPEG", (64, 64))
            poster = np.asarray(img.convert("RGB"), dtype=np.float32)
        expected = to_uint8(frames[4]).astype(np.float32)
        assert np.abs(poster - expected).mean() < 4, "JPEG of frame 4, not of another frame"
        assert np.abs(poster - to_uint8(frames[0]).astype(np.float32)).mean() > 4


class TestConversion:
    def test_floats_round_and_clip_to_bytes(self) -> None:
        frame = np.array([[[-0.5, 0.0, 0.5], [1.0, 1.5, 0.2]]], dtype=np.float32)
        assert to_uint8(frame).tolist() == [[[0, 0, 128], [255, 255, 51]]]

    def test_strided_frames_become_contiguous(self) -> None:
        strided = np.zeros((3, 8, 8), dtype=np.float32).transpose(1, 2, 0)
        assert to_uint8(strided).flags["C_CONTIGUOUS"]


ENCODE_RSS = """
import json, resource, sys
from pathlib import Path
import numpy as np
from videogen_api.v1alpha1 import OutputFormat
from videogen_runner.encode import encode_frames

n, width, height, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
base = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)

def frames():
    for i in range(n):
        yield np.roll(base, i * 8, axis=1)  # a fresh float32 frame, as a decoder hands them over

encode_frames(frames(), out, OutputFormat.MP4, 16, poster_index=n // 2)
print(json.dumps({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def encode_peak_rss(frames: int, width: int, height: int, out: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", ENCODE_RSS, str(frames), str(width), str(height), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak: int = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_kib"] * 1024
    return peak


class TestMemory:
    @pytest.mark.timeout(300)
    def test_encoding_memory_stays_flat_as_frames_grow(self, tmp_path: Path) -> None:
        width = height = 256
        short = encode_peak_rss(9, width, height, tmp_path / "short.mp4")
        long = encode_peak_rss(129, width, height, tmp_path / "long.mp4")

        extra_frames_bytes = (129 - 9) * width * height * 3  # as uint8, the smallest they could be held
        assert long - short < extra_frames_bytes / 4, (short, long, extra_frames_bytes)
        assert probe(tmp_path / "long.mp4").frames == 129
