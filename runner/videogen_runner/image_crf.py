"""The H.264 re-compression some image-to-video models expect of their conditioning image.

LTX-2 was trained on first frames that had been through H.264 at a given CRF (33 up to LTX-2.3, 18
for LTX-2.5), so its pipeline re-compresses the input image the same way before encoding it. diffusers
does that with PyAV, which the runner does not ship; the runner has the ffmpeg of imageio-ffmpeg and
does the same round trip with it (one frame, libx264 at the CRF, preset veryfast, yuv420p, bilinear
colour conversion as PyAV's reformat), then passes the pipeline `image_crf=0` so it is not done twice.
The profile's `imageCrf` says which models want it and at what CRF.
"""

from __future__ import annotations

import subprocess

import numpy as np
from PIL import Image

from .errors import InternalError, one_line
from .probe import ffmpeg_exe

# The pipelines' argument that would re-compress the image themselves (0 turns it off).
IMAGE_CRF_ARGUMENT = "image_crf"


def h264_round_trip(image: Image.Image, crf: int) -> Image.Image:
    """The image encoded as one H.264 frame at `crf` and decoded again (sides cut to even, as yuv420p needs)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = np.ascontiguousarray(rgb[:height, :width])
    common = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-sws_flags", "bilinear"]
    encode = [
        *common,
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-i", "-"),
        *("-frames:v", "1", "-c:v", "libx264", "-crf", str(crf), "-preset", "veryfast", "-pix_fmt", "yuv420p"),
        *("-f", "h264", "-"),
    ]
    decode = [*common, "-f", "h264", "-i", "-", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    encoded = subprocess.run(encode, input=rgb.tobytes(), capture_output=True, check=False)
    if encoded.returncode != 0 or not encoded.stdout:
        raise InternalError(f"H.264 re-compression of the input image failed: {one_line(encoded.stderr.decode())}")
    decoded = subprocess.run(decode, input=encoded.stdout, capture_output=True, check=False)
    if decoded.returncode != 0 or len(decoded.stdout) != rgb.nbytes:
        raise InternalError(f"decoding the re-compressed input image failed: {one_line(decoded.stderr.decode())}")
    return Image.fromarray(np.frombuffer(decoded.stdout, dtype=np.uint8).reshape(height, width, 3))
