"""The image-to-video input image: fetched from s3:// or https://, checked before any GPU work.

Checks happen on bytes we hold, in order of cost: size, magic bytes, header
dimensions (before decoding, so a decompression bomb never expands), then decode.
"""

from __future__ import annotations

import io
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from PIL import Image

from .errors import InputImageError, InternalError, one_line
from .s3 import RetryPolicy, error_code, is_transient, split_s3_uri, with_retries

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024
MIN_IMAGE_SIDE: Final = 32
MAX_IMAGE_SIDE: Final = 8192
MAX_IMAGE_PIXELS: Final = 40_000_000
HTTPS_TIMEOUT_SECONDS: Final = 30

FIELD = "spec.image"


@dataclass(frozen=True)
class InputImage:
    image: Image.Image
    kind: str
    size_bytes: int

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.image.size
        return int(w), int(h)


def sniff(data: bytes) -> str | None:
    """PNG, JPEG or WEBP from the magic bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def check_image_bytes(data: bytes, source: str) -> InputImage:
    """Validate and decode; every failure names spec.image and says what is wrong."""
    if not data:
        raise InputImageError(f"{FIELD}: {source} is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputImageError(f"{FIELD}: {source} is {len(data)} bytes, more than the {MAX_IMAGE_BYTES} allowed")
    kind = sniff(data)
    if kind is None:
        raise InputImageError(f"{FIELD}: {source} is not a PNG, JPEG or WebP image (starts with {data[:8]!r})")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format != kind:
                raise InputImageError(f"{FIELD}: {source} looks like {kind} but decodes as {probe.format}")
            width, height = probe.size
    except InputImageError:
        raise
    except Exception as exc:
        raise InputImageError(f"{FIELD}: {source} is a damaged {kind} file ({one_line(str(exc), 200)})") from exc
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputImageError(f"{FIELD}: {source} is {width}x{height}; each side must be at least {MIN_IMAGE_SIDE}px")
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise InputImageError(
            f"{FIELD}: {source} is {width}x{height}; the limit is {MAX_IMAGE_SIDE}px a side "
            f"and {MAX_IMAGE_PIXELS} pixels"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = img.convert("RGB")
    except Exception as exc:
        raise InputImageError(f"{FIELD}: {source} is a damaged {kind} file ({one_line(str(exc), 200)})") from exc
    return InputImage(image=rgb, kind=kind, size_bytes=len(data))


def fit_to_frame(image: Image.Image, width: int, height: int) -> Image.Image:
    """Center-crop to the video's aspect ratio, then resize: the first frame is never squashed."""
    src_w, src_h = image.size
    target = width / height
    if src_w / src_h > target:
        crop_w = round(src_h * target)
        left = (src_w - crop_w) // 2
        box = (left, 0, left + crop_w, src_h)
    else:
        crop_h = round(src_w / target)
        top = (src_h - crop_h) // 2
        box = (0, top, src_w, top + crop_h)
    return image.crop(box).resize((width, height), Image.Resampling.LANCZOS)


def _fetch_s3(client: S3Client, uri: str, policy: RetryPolicy) -> bytes:
    bucket, key = split_s3_uri(uri)

    def get() -> bytes:
        response = client.get_object(Bucket=bucket, Key=key)
        length = int(response.get("ContentLength", 0))
        if length > MAX_IMAGE_BYTES:
            response["Body"].close()
            raise InputImageError(f"{FIELD}: {uri} is {length} bytes, more than the {MAX_IMAGE_BYTES} allowed")
        return response["Body"].read(MAX_IMAGE_BYTES + 1)

    try:
        return with_retries(f"fetching {uri}", get, policy)
    except InputImageError:
        raise
    except Exception as exc:
        code = error_code(exc)
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise InputImageError(f"{FIELD}: {uri} does not exist") from exc
        if code in ("AccessDenied", "403"):
            raise InputImageError(f"{FIELD}: {uri} is not readable with the runner's credentials") from exc
        if is_transient(exc):
            # An outage, not a bad image: keep it retryable.
            raise InternalError(f"{FIELD}: could not fetch {uri}: {one_line(str(exc), 300)}") from exc
        raise InputImageError(f"{FIELD}: could not fetch {uri}: {one_line(str(exc), 300)}") from exc


def _fetch_https(uri: str) -> bytes:
    request = urllib.request.Request(uri, headers={"User-Agent": "videogen-runner"})
    try:
        with urllib.request.urlopen(request, timeout=HTTPS_TIMEOUT_SECONDS) as response:
            length = response.headers.get("Content-Length")
            if length and int(length) > MAX_IMAGE_BYTES:
                raise InputImageError(f"{FIELD}: {uri} is {length} bytes, more than the {MAX_IMAGE_BYTES} allowed")
            data: bytes = response.read(MAX_IMAGE_BYTES + 1)
            return data
    except urllib.error.HTTPError as exc:
        raise InputImageError(f"{FIELD}: {uri} answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise InternalError(f"{FIELD}: could not fetch {uri}: {exc.reason}") from exc


def fetch_input_image(uri: str, client: S3Client | None, policy: RetryPolicy) -> InputImage:
    if uri.startswith("s3://"):
        if client is None:
            raise InputImageError(f"{FIELD}: {uri} needs S3 access, but no S3 client is configured")
        data = _fetch_s3(client, uri, policy)
    elif uri.startswith("https://"):
        data = _fetch_https(uri)
    else:
        raise InputImageError(f"{FIELD}: {uri!r} must be s3://bucket/key or https://")
    image = check_image_bytes(data, uri)
    log.info("input image %s: %s %dx%d, %d bytes", uri, image.kind, *image.size, image.size_bytes)
    return image
