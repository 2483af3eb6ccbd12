"""The image-to-video input image is checked (size, type, dimensions) before any GPU work."""

from __future__ import annotations

import http.server
import io
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from runner_support import HttpsServer

from videogen_devcluster.testing import ConnectionRecorder
from videogen_runner import images
from videogen_runner.errors import InputImageError
from videogen_runner.images import AddressPolicy, SafeFetcher, check_image_bytes, fetch_input_image, fit_to_frame, sniff
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


# The test CA's serving certificate names "kubernetes"; tests resolve that name to loopback
# addresses and allow exactly those, which the default policy refuses.
SERVER_NAME = "kubernetes"


def fetcher_to(address: str, **names: str) -> SafeFetcher:
    """A fetcher that trusts only `address` and resolves SERVER_NAME (and `names`) by table."""
    table = {SERVER_NAME: address, **{k.replace("_", "."): v for k, v in names.items()}}

    def resolve(host: str, port: int) -> list[str]:
        return [table[host]] if host in table else images._resolve(host, port)

    return SafeFetcher(AddressPolicy(allowed=(ipaddress.ip_network(f"{address}/32"),)), resolver=resolve)


@pytest.fixture
def recorder() -> Iterator[ConnectionRecorder]:
    rec = ConnectionRecorder()
    yield rec
    rec.close()


@pytest.fixture
def redirector(tmp_path: Path, png_bytes: Callable[..., bytes]) -> Iterator[tuple[int, dict[str, str]]]:
    """An HTTPS server on 127.0.0.2: /go/<name> redirects to routes[name], /real.png is an image."""
    from videogen_devcluster.pki import generate_pki

    pki = generate_pki(tmp_path / "pki")
    routes: dict[str, str] = {}
    image = png_bytes(80, 64)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/go/"):
                self.send_response(302)
                self.send_header("Location", routes[self.path.removeprefix("/go/")])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/real.png":
                self.send_response(200)
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)
            else:
                self.send_error(404)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.serving_cert, pki.serving_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("SSL_CERT_FILE", str(pki.ca_cert))
    try:
        yield int(server.server_address[1]), routes
    finally:
        mp.undo()
        server.shutdown()
        server.server_close()


def https_port(server: HttpsServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


class TestFetchingOverHttps:
    def test_an_https_image(self, https_server: HttpsServer, png_bytes: Callable[..., bytes]) -> None:
        (https_server.root / "first.png").write_bytes(png_bytes(80, 64))
        url = f"https://{SERVER_NAME}:{https_port(https_server)}/first.png"
        image = fetch_input_image(url, None, RetryPolicy(attempts=1), fetcher=fetcher_to("127.0.0.1"))
        assert (image.kind, image.size) == ("PNG", (80, 64))

    def test_an_https_error_names_the_status(self, https_server: HttpsServer) -> None:
        url = f"https://{SERVER_NAME}:{https_port(https_server)}/missing.png"
        with pytest.raises(InputImageError, match="answered HTTP 404"):
            fetch_input_image(url, None, RetryPolicy(attempts=1), fetcher=fetcher_to("127.0.0.1"))

    def test_an_untrusted_certificate_is_refused(
        self, https_server: HttpsServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("SSL_CERT_FILE")
        url = f"https://{SERVER_NAME}:{https_port(https_server)}/first.png"
        with pytest.raises(InputImageError, match="TLS verification"):
            fetch_input_image(url, None, RetryPolicy(attempts=1), fetcher=fetcher_to("127.0.0.1"))

    def test_the_certificate_must_name_the_urls_host_not_the_address(self, https_server: HttpsServer) -> None:
        fetcher = fetcher_to("127.0.0.1", images_example_com="127.0.0.1")
        with pytest.raises(InputImageError, match=r"TLS verification of images\.example\.com"):
            fetcher.fetch(f"https://images.example.com:{https_port(https_server)}/first.png")

    def test_the_byte_cap_holds_without_a_content_length(
        self, https_server: HttpsServer, png_bytes: Callable[..., bytes]
    ) -> None:
        (https_server.root / "big.png").write_bytes(png_bytes(400, 400))
        fetcher = fetcher_to("127.0.0.1")
        capped = SafeFetcher(fetcher.addresses, resolver=fetcher.resolver, max_bytes=100)
        with pytest.raises(InputImageError, match="more than the 100"):
            capped.fetch(f"https://{SERVER_NAME}:{https_port(https_server)}/big.png")


class TestRefusedAddresses:
    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
    def test_loopback_is_refused_before_any_request(self, recorder: ConnectionRecorder, host: str) -> None:
        with pytest.raises(InputImageError, match="loopback"):
            fetch_input_image(f"https://{host}:{recorder.port}/x.png", None, RetryPolicy(attempts=1))
        assert recorder.connections == []

    @pytest.mark.parametrize(
        ("address", "why"),
        [
            ("169.254.169.254", "link-local"),
            ("10.1.2.3", "private"),
            ("192.168.0.1", "private"),
            ("172.20.0.1", "private"),
            ("100.64.3.4", "carrier-grade NAT"),
            ("fd00::1", "private"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("0.0.0.0", "not a public"),
        ],
    )
    def test_non_public_addresses_are_refused(self, address: str, why: str) -> None:
        assert why in (AddressPolicy().refusal(address) or "")

    def test_cluster_cidrs_from_the_environment_are_refused(self) -> None:
        addresses = AddressPolicy.from_env({"VIDEOGEN_BLOCKED_CIDRS": "34.118.224.0/20, not-a-cidr"})
        assert addresses.refusal("34.118.230.1") == "a cluster-internal address"
        assert addresses.refusal("34.119.0.1") is None
        assert AddressPolicy().refusal("93.184.216.34") is None

    def test_a_name_with_any_private_address_is_refused(self) -> None:
        fetcher = SafeFetcher(AddressPolicy(), resolver=lambda _h, _p: ["93.184.216.34", "10.0.0.5"])
        with pytest.raises(InputImageError, match=r"10\.0\.0\.5, a private address"):
            fetcher.fetch("https://mixed.example.com/x.png")


class TestRedirects:
    def test_a_redirect_that_passes_the_check_is_followed(self, redirector: tuple[int, dict[str, str]]) -> None:
        port, routes = redirector
        routes["ok"] = "/real.png"
        data = fetcher_to("127.0.0.2").fetch(f"https://{SERVER_NAME}:{port}/go/ok")
        assert data.startswith(b"\x89PNG")

    def test_a_redirect_to_loopback_is_refused_and_never_requested(
        self, redirector: tuple[int, dict[str, str]], recorder: ConnectionRecorder
    ) -> None:
        port, routes = redirector
        routes["loop"] = f"https://127.0.0.1:{recorder.port}/x.png"
        routes["name"] = f"https://localhost:{recorder.port}/x.png"
        for route in ("loop", "name"):
            with pytest.raises(InputImageError, match=r"redirected to .*loopback"):
                fetcher_to("127.0.0.2").fetch(f"https://{SERVER_NAME}:{port}/go/{route}")
        assert recorder.connections == []

    def test_a_redirect_to_the_metadata_address_is_refused(self, redirector: tuple[int, dict[str, str]]) -> None:
        port, routes = redirector
        routes["meta"] = "https://169.254.169.254/latest/meta-data/"
        with pytest.raises(InputImageError, match="link-local"):
            fetcher_to("127.0.0.2").fetch(f"https://{SERVER_NAME}:{port}/go/meta")

    def test_a_redirect_that_leaves_https_is_refused(
        self, redirector: tuple[int, dict[str, str]], recorder: ConnectionRecorder
    ) -> None:
        port, routes = redirector
        routes["plain"] = f"http://{SERVER_NAME}:{recorder.port}/x.png"
        with pytest.raises(InputImageError, match="only https"):
            fetcher_to("127.0.0.2").fetch(f"https://{SERVER_NAME}:{port}/go/plain")
        assert recorder.connections == []

    def test_redirect_loops_end(self, redirector: tuple[int, dict[str, str]]) -> None:
        port, routes = redirector
        routes["loop"] = "/go/loop"
        with pytest.raises(InputImageError, match="redirected more than"):
            fetcher_to("127.0.0.2").fetch(f"https://{SERVER_NAME}:{port}/go/loop")


class TestOrientation:
    def test_exif_orientation_is_applied(self) -> None:
        img = Image.new("RGB", (96, 64), (10, 120, 200))
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
        buf = io.BytesIO()
        img.save(buf, format="JPEG", exif=exif.tobytes())
        assert check_image_bytes(buf.getvalue(), "https://x/y.jpg").size == (64, 96)


@pytest.mark.s3
class TestFetching:
    def test_from_s3(self, s3_client: S3Client, bucket: str, png_bytes: Callable[..., bytes]) -> None:
        s3_client.put_object(Bucket=bucket, Key="in/a.png", Body=png_bytes(80, 64))
        image = fetch_input_image(f"s3://{bucket}/in/a.png", s3_client, RetryPolicy(attempts=1))
        assert image.size == (80, 64)

    def test_a_missing_s3_object(self, s3_client: S3Client, bucket: str) -> None:
        with pytest.raises(InputImageError, match="does not exist"):
            fetch_input_image(f"s3://{bucket}/in/none.png", s3_client, RetryPolicy(attempts=1))
