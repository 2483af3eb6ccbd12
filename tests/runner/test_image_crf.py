"""The H.264 round trip LTX-2's conditioning image goes through (image_crf.py), with the runner's ffmpeg."""

from __future__ import annotations

import numpy as np
from PIL import Image

from videogen_runner.image_crf import h264_round_trip


def picture(width: int, height: int) -> Image.Image:
    """A flat red left half and a grey noisy right half: detail in luma only (yuv420p keeps luma at full
    resolution), which H.264 at a high CRF throws away."""
    rng = np.random.default_rng(0)
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[:, : width // 2] = (220, 30, 30)
    rgb[:, width // 2 :] = rng.integers(0, 256, size=(height, width - width // 2, 1), dtype=np.uint8)
    return Image.fromarray(rgb)


def error(a: Image.Image, b: Image.Image, columns: slice) -> float:
    x = np.asarray(a, dtype=np.float32)[:, columns]
    y = np.asarray(b, dtype=np.float32)[: x.shape[0], columns]
    return float(np.abs(x - y).mean())


def test_the_round_trip_loses_detail_as_the_crf_grows_and_keeps_the_picture() -> None:
    image = picture(96, 64)
    fine, coarse = h264_round_trip(image, 10), h264_round_trip(image, 33)

    assert fine.size == coarse.size == (96, 64)
    left, right = slice(4, 44), slice(52, 96)
    assert error(coarse, image, left) < 4, "flat colour survives"
    assert error(coarse, image, right) > 2 * error(fine, image, right), "CRF 33 loses far more detail than CRF 10"


def test_odd_sides_are_cut_to_even_as_yuv420p_needs() -> None:
    assert h264_round_trip(picture(97, 65), 33).size == (96, 64)
