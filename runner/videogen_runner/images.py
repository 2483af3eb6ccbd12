"""The image-to-video input image: fetched from s3:// or https://, checked before any GPU work.

Checks happen on bytes we hold, in order of cost: size, magic bytes, header
dimensions (before decoding, so a decompression bomb never expands), then decode
(EXIF orientation applied, so a phone photo is the right way up).

https:// images come from wherever the tenant points, so they are fetched
defensively (`SafeFetcher`): the host is resolved once and refused when any of
its addresses is not a public one (loopback, link-local and the cloud metadata
address, private, CGNAT, ULA, the cluster's configured service and pod CIDRs);
the connection goes to the checked address, with TLS SNI and certificate
hostname still those of the URL; redirects are followed only to https:// URLs
that pass the same check; one deadline bounds the whole fetch and a byte cap its
size. A refusal is an InputImageError raised before any packet is sent, and no
remote error text reaches the job's status.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urljoin, urlsplit

from PIL import Image, ImageOps

from .errors import InputImageError, InternalError, one_line
from .s3 import RetryPolicy, error_code, is_transient, split_s3_uri, with_retries

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024
MIN_IMAGE_SIDE: Final = 32
MAX_IMAGE_SIDE: Final = 8192
MAX_IMAGE_PIXELS: Final = 40_000_000
HTTPS_TIMEOUT_SECONDS: Final = 30  # the whole fetch, redirects included
MAX_REDIRECTS: Final = 5
ENV_BLOCKED_CIDRS: Final = "VIDEOGEN_BLOCKED_CIDRS"  # = videogen_api.v1alpha1.ENV_BLOCKED_CIDRS
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK: Final = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

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
            # Cameras store "rotate me" in EXIF instead of rotating the pixels.
            upright = ImageOps.exif_transpose(img) or img
            rgb = upright.convert("RGB")
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


def _resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the runner may fetch from: public ones only, minus `blocked`.

    `allowed` punches holes for specific networks (tests, or an internal mirror a
    platform chooses to trust)."""

    blocked: tuple[IPNetwork, ...] = ()
    allowed: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AddressPolicy:
        return cls(blocked=tuple(_networks((env.get(ENV_BLOCKED_CIDRS) or "").split(","))))

    def refusal(self, address: str) -> str | None:
        """Why `address` is refused, or None when it may be fetched from."""
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return None
        if any(ip in net for net in self.blocked):
            return "a cluster-internal address"
        if ip.is_unspecified:
            return "not a public address"
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_link_local:
            return "a link-local address (e.g. the cloud metadata service)"
        if ip in _CGNAT:
            return "a carrier-grade NAT address"
        if ip.is_private:
            return "a private address"
        if ip.is_multicast or ip.is_reserved or not ip.is_global:
            return "not a public address"
        return None


_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")


def _networks(values: Iterable[str]) -> list[IPNetwork]:
    out: list[IPNetwork] = []
    for value in values:
        if value.strip():
            try:
                out.append(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError:
                log.warning("ignoring %s entry %r: not a CIDR", ENV_BLOCKED_CIDRS, value)
    return out


class SafeFetcher:
    """GET one https:// resource from a checked public address (see the module docstring)."""

    def __init__(
        self,
        addresses: AddressPolicy,
        *,
        resolver: Resolver = _resolve,
        timeout: float = HTTPS_TIMEOUT_SECONDS,
        max_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self.addresses = addresses
        self.resolver = resolver
        self.timeout = timeout
        self.max_bytes = max_bytes

    def fetch(self, uri: str) -> bytes:
        deadline = time.monotonic() + self.timeout
        url = uri
        for _ in range(MAX_REDIRECTS + 1):
            status, location, data = self._one(uri, url, deadline)
            if status in _REDIRECTS:
                if not location:
                    raise InputImageError(f"{FIELD}: {uri} answered HTTP {status} without a Location")
                url = urljoin(url, location)
                continue
            if status != 200:
                raise InputImageError(f"{FIELD}: {uri} answered HTTP {status}")
            return data
        raise InputImageError(f"{FIELD}: {uri} redirected more than {MAX_REDIRECTS} times")

    def _checked_address(self, uri: str, url: str) -> tuple[str, str, int]:
        """(host, address, port) of `url`, or InputImageError before any request is made."""
        parts = urlsplit(url)
        where = "" if url == uri else f" (redirected to {url})"
        if parts.scheme != "https":
            raise InputImageError(f"{FIELD}: {uri}{where}: only https:// is fetched")
        host = parts.hostname
        if not host:
            raise InputImageError(f"{FIELD}: {uri}{where}: no host")
        try:
            port = parts.port or 443
        except ValueError as exc:
            raise InputImageError(f"{FIELD}: {uri}{where}: bad port") from exc
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            raise InputImageError(f"{FIELD}: {uri}{where}: host {host} does not resolve") from exc
        if not addresses:
            raise InputImageError(f"{FIELD}: {uri}{where}: host {host} does not resolve")
        for address in addresses:
            why = self.addresses.refusal(address)
            if why is not None:
                raise InputImageError(
                    f"{FIELD}: {uri}{where}: {host} resolves to {address}, {why}; images are fetched "
                    "only from public addresses"
                )
        return host, addresses[0], port

    def _one(self, uri: str, url: str, deadline: float) -> tuple[int, str | None, bytes]:
        import urllib3

        host, address, port = self._checked_address(uri, url)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InternalError(f"{FIELD}: fetching {uri} took longer than {self.timeout:.0f}s")
        netloc = parts.netloc.rpartition("@")[2]
        pool = urllib3.HTTPSConnectionPool(
            host=address,
            port=port,
            # TLS is about the URL's host, not the address we connect to.
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            timeout=urllib3.Timeout(connect=remaining, read=remaining),
            retries=False,
        )
        try:
            response = pool.urlopen(
                "GET",
                path,
                headers={"Host": netloc, "User-Agent": "videogen-runner", "Accept": "image/*"},
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                if response.status != 200:
                    return response.status, response.headers.get("Location"), b""
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > self.max_bytes:
                    raise InputImageError(f"{FIELD}: {uri} is {length} bytes, more than the {self.max_bytes} allowed")
                data = bytearray()
                for chunk in response.stream(_READ_CHUNK):
                    data.extend(chunk)
                    if len(data) > self.max_bytes:
                        raise InputImageError(f"{FIELD}: {uri} is more than the {self.max_bytes} bytes allowed")
                    if time.monotonic() > deadline:
                        raise InternalError(f"{FIELD}: fetching {uri} took longer than {self.timeout:.0f}s")
                return 200, None, bytes(data)
            finally:
                response.release_conn()
        except urllib3.exceptions.SSLError as exc:
            raise InputImageError(f"{FIELD}: {uri}: TLS verification of {host} failed") from exc
        except urllib3.exceptions.HTTPError as exc:
            # Connection trouble is worth a retry of the pod; its text stays out of the status.
            raise InternalError(f"{FIELD}: could not fetch {uri} ({type(exc).__name__})") from exc
        finally:
            pool.close()


def fetch_input_image(
    uri: str,
    client: S3Client | None,
    policy: RetryPolicy,
    *,
    fetcher: SafeFetcher | None = None,
) -> InputImage:
    if uri.startswith("s3://"):
        if client is None:
            raise InputImageError(f"{FIELD}: {uri} needs S3 access, but no S3 client is configured")
        data = _fetch_s3(client, uri, policy)
    elif uri.startswith("https://"):
        data = (fetcher or SafeFetcher(AddressPolicy.from_env(os.environ))).fetch(uri)
    else:
        raise InputImageError(f"{FIELD}: {uri!r} must be s3://bucket/key or https://")
    image = check_image_bytes(data, uri)
    log.info("input image %s: %s %dx%d, %d bytes", uri, image.kind, *image.size, image.size_bytes)
    return image
