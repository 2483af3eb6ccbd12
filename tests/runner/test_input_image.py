"""The image-to-video input image is checked (size, type, dimensions) before any GPU work."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from runner_support import HttpsServer

from videogen_runner import images
from videogen_runner.errors import InputImageError, InternalError
from videogen_runner.images import check_image_bytes, fetch_input_image, fit_to_frame, sniff
from videogen_runner.s3 import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def encoded(fmt: str, size: tuple[int, int] = (96, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


def rejection(data: bytes) -> str:
    with pytest.raises(InputImageError) as err:
        check_image_bytes(data, "s3://in/img")
    assert err.value.message.startswith("spec.image: s3://in/img")
    return err.value.message


class TestTypes:
    @pytest.mark.parametrize(("fmt", "kind"), [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WEBP")])
    def test_png_jpeg_and_webp_are_accepted(self, fmt: str, kind: str) -> None:
        image = check_image_bytes(encoded(fmt), "s3://in/img")
        assert (image.kind, image.size, image.image.mode) == (kind, (96, 64), "RGB")

    def test_types_are_sniffed_from_the_bytes_not_the_name(self) -> None:
        assert sniff(encoded("PNG")) == "PNG"
        assert sniff(encoded("GIF")) is None
        assert sniff(b"<html>not an image</html>") is None

    def test_other_formats_are_refused(self) -> None:
        assert "not a PNG, JPEG or WebP image" in rejection(encoded("GIF"))
        assert "not a PNG, JPEG or WebP image" in rejection(b"hello, world")

    def test_a_damaged_file_is_refused(self) -> None:
        assert "damaged PNG" in rejection(encoded("PNG")[:60])

    def test_an_empty_file_is_refused(self) -> None:
        assert "is empty" in rejection(b"")


class TestLimits:
    def test_too_many_bytes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 100)
        assert "more than the 100 allowed" in rejection(encoded("PNG"))

    def test_too_small(self) -> None:
        assert "at least 32px" in rejection(encoded("PNG", (16, 64)))

    def test_too_large_is_refused_from_the_header_before_decoding(self) -> None:
        assert "the limit is 8192px" in rejection(encoded("PNG", (9000, 40)))


class TestFitting:
    def test_the_first_frame_is_cropped_not_squashed(self) -> None:
        wide = Image.new("RGB", (200, 100), (255, 0, 0))
        for x in range(50, 150):
            for y in range(100):
                wide.putpixel((x, y), (0, 0, 255))

        fitted = fit_to_frame(wide, 64, 64)

        assert fitted.size == (64, 64)
        assert fitted.getpixel((32, 32)) == (0, 0, 255), "the centre square survives; the red sides are cropped"
        assert fitted.getpixel((1, 32))[2] > 200


class TestFetchingOverHttps:
    def test_an_https_image(self, https_server: HttpsServer, png_bytes: Callable[..., bytes]) -> None:
        (https_server.root / "first.png").write_bytes(png_bytes(80, 64))
        image = fetch_input_image(f"{https_server.url}/first.png", None, RetryPolicy(attempts=1))
        assert (image.kind, image.size) == ("PNG", (80, 64))

    def test_an_https_error_names_the_status(self, https_server: HttpsServer) -> None:
        with pytest.raises(InputImageError, match="answered HTTP 404"):
            fetch_input_image(f"{https_server.url}/missing.png", None, RetryPolicy(attempts=1))

    def test_an_untrusted_certificate_is_refused(
        self, https_server: HttpsServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(InternalError, match="could not fetch"):
            fetch_input_image(f"{https_server.url}/first.png", None, RetryPolicy(attempts=1))


@pytest.mark.s3
class TestFetching:
    def test_from_s3(self, s3_client: S3Client, bucket: str, png_bytes: Callable[..., bytes]) -> None:
        s3_client.put_object(Bucket=bucket, Key="in/a.png", Body=png_bytes(80, 64))
        image = fetch_input_image(f"s3://{bucket}/in/a.png", s3_client, RetryPolicy(attempts=1))
        assert image.size == (80, 64)

    def test_a_missing_s3_object(self, s3_client: S3Client, bucket: str) -> None:
        with pytest.raises(InputImageError, match="does not exist"):
            fetch_input_image(f"s3://{bucket}/in/none.png", s3_client, RetryPolicy(attempts=1))
