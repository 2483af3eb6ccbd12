"""Presigned URLs without botocore's per-URL pipeline: the parts of one multipart upload, and
every other URL of a grant (`QueryPresigner`).

A job whose video could be large gets up to 64 part URLs in its grant. botocore builds each one
through its whole request pipeline (about 0.9 ms of CPU apiece), which made presigning the largest
part of the operator's CPU per job in a burst. The URLs differ only in `partNumber`, so the first
one is presigned as any other (by botocore, or by `CheckedPresigner` below once its shape matched
botocore's) and the rest are signed here with the same date, credential scope and expiry (AWS
Signature Version 4, query-string form, `UNSIGNED-PAYLOAD`, only `host` signed: what botocore's S3
query signer does). Before anything is reused, the first URL's signature is recomputed here and
must equal the one it carries: where it does not (a signer botocore changed, session credentials,
an endpoint with an unusual path), every part falls back to the first URL's presigner.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

log = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
_SIGNATURE = "X-Amz-Signature"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _derived_key(secret_key: str, day: str, region: str, service: str, terminal: str = "aws4_request") -> bytes:
    """SigV4's signing key for one day's credential scope."""
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    for piece in (region, service, terminal):
        key = _hmac(key, piece)
    return key


def _canonical_query(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params))


class PartSigner:
    """Signs URLs that differ from `first` (a botocore presigned URL) only in one query parameter."""

    def __init__(self, first: str, secret_key: str, method: str = "PUT") -> None:
        self.method = method
        parts = urlsplit(first)
        self._parts = parts
        query = parse_qsl(parts.query, keep_blank_values=True)
        self._signature = dict(query).get(_SIGNATURE, "")
        self._query = [(k, v) for k, v in query if k != _SIGNATURE]
        values = dict(self._query)
        self._date = values.get("X-Amz-Date", "")
        credential = values.get("X-Amz-Credential", "")
        # access-key/date/region/service/aws4_request
        _, _, scope = credential.partition("/")
        self._scope = scope
        day, region, service, terminal = ([*scope.split("/"), "", "", "", ""])[:4]
        self.usable = (
            values.get("X-Amz-Algorithm") == ALGORITHM
            and values.get("X-Amz-SignedHeaders") == "host"
            and terminal == "aws4_request"
            and bool(self._signature)
        )
        self._key = _derived_key(secret_key, day, region, service, terminal)
        # botocore signs the path as sent (already percent-encoded), not encoded a second time for S3.
        self._path = parts.path or "/"
        self.usable = self.usable and self._sign(self._query) == self._signature

    def _canonical(self, query: list[tuple[str, str]]) -> str:
        return "\n".join(
            [
                self.method,
                self._path,
                _canonical_query(query),
                f"host:{self._parts.netloc}\n",
                "host",
                "UNSIGNED-PAYLOAD",
            ]
        )

    def _signature_of(self, canonical: str) -> str:
        to_sign = "\n".join([ALGORITHM, self._date, self._scope, hashlib.sha256(canonical.encode()).hexdigest()])
        return hmac.new(self._key, to_sign.encode(), hashlib.sha256).hexdigest()

    def _sign(self, query: list[tuple[str, str]]) -> str:
        return self._signature_of(self._canonical(query))

    def url(self, name: str, value: str) -> str:
        """The first URL with query parameter `name` set to `value`, signed."""
        query = [(k, value if k == name else v) for k, v in self._query]
        signed = [*query, (_SIGNATURE, self._sign(query))]
        return urlunsplit(self._parts._replace(query=urlencode(signed, quote_via=quote, safe="-_.~")))

    def urls(self, name: str, values: list[str]) -> list[str]:
        """`url(name, v)` for each v, the same strings: everything but the one value is built once
        (the canonical request around it, the URL around it), so each URL costs one hash and one HMAC."""
        marker = "\x00"  # never in a query value: splits each template where the value goes
        query = [(k, marker if k == name else v) for k, v in self._query]
        if sum(k == name for k, _ in query) != 1:
            return [self.url(name, v) for v in values]
        canonical = self._canonical(query)
        c_head, c_tail = canonical.split(quote(marker, safe="-_.~"))
        template = urlunsplit(self._parts._replace(query=urlencode(query, quote_via=quote, safe="-_.~")))
        u_head, u_tail = template.split(quote(marker, safe="-_.~"))
        out = []
        for value in values:
            encoded = quote(value, safe="-_.~")
            signature = self._signature_of(f"{c_head}{encoded}{c_tail}")
            out.append(f"{u_head}{encoded}{u_tail}&{_SIGNATURE}={signature}")
        return out


def part_urls(
    count: int, presign_part: Callable[[int], str], secret_key: str | None, *, method: str = "PUT"
) -> list[str]:
    """URLs for parts 1..count: part 1 from `presign_part` (botocore), the rest signed alike when
    this module reproduces part 1's signature exactly, else each from `presign_part`."""
    if count <= 0:
        return []
    first = presign_part(1)
    signer = PartSigner(first, secret_key, method) if secret_key else None
    if signer is None or not signer.usable:
        return [first, *(presign_part(n) for n in range(2, count + 1))]
    return [first, *signer.urls("partNumber", [str(n) for n in range(2, count + 1)])]


# ---------------------------------------------------------------------- every other URL of a grant
#
# A grant holds six to eight more presigned URLs (the video's and the poster's PUT and GET, the
# multipart upload's complete and abort, an input image's GET), each about 1 ms of botocore's
# pipeline on an idle core: in a profile of the first seconds of a 1,000-job burst they were a fifth
# of the operator's time holding the GIL, and every start waited for them. `QueryPresigner` signs
# them here (SigV4 query form, path-style addressing, as botocore's S3 presigner does). Each shape
# of request (method, query names, signed header names) is checked once against botocore: the
# first URL of a shape comes from botocore and is rebuilt here with botocore's own date; only when
# the two are the same string is that shape signed here from then on. A shape that differs (another
# addressing style, a botocore that signs otherwise) stays with botocore for good. So does every
# request with a session token or a bucket or key outside plain characters.

_SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
# Names and values where encodings cannot differ: percent-encoding leaves these characters alone.
_PLAIN = re.compile(r"[A-Za-z0-9._~/-]*")
# Query and header values: printable ASCII, no spaces (no folding or escaping to tell apart).
_VISIBLE = re.compile(r"[\x21-\x7e]*")
_AMZ_DATE = re.compile(r"X-Amz-Date=(\d{8}T\d{6}Z)")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _escape(text: str, safe: str = "-_.~") -> str:
    """quote(text, safe=safe), without its per-character work for text that needs no escaping."""
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe=safe)


@dataclass(frozen=True)
class Request:
    """What one presigned URL allows: `query` in the order botocore writes it, `headers` (lowercase
    names, besides host) the ones signed in, which the holder must send with these values."""

    method: str
    bucket: str
    key: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def shape(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        return (self.method, tuple(k for k, _ in self.query), tuple(sorted(k for k, _ in self.headers)))

    @property
    def plain(self) -> bool:
        return (
            bool(self.bucket)
            and all(_PLAIN.fullmatch(v) for v in (self.bucket, self.key))
            # No segment a client or proxy might collapse ("a//b", "a/../b"): such keys stay with botocore.
            and all(segment not in ("", ".", "..") for segment in self.key.split("/"))
            and all(_VISIBLE.fullmatch(v) for _, v in (*self.query, *self.headers))
        )


# botocore's S3 operations a grant presigns (upload_part: the first part, the template of the rest):
# method, query names by parameter, signed header names by parameter.
_OPERATIONS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "get_object": ("GET", {}, {}),
    "put_object": ("PUT", {}, {"ContentType": "content-type", "IfNoneMatch": "if-none-match"}),
    "complete_multipart_upload": ("POST", {"UploadId": "uploadId"}, {"IfNoneMatch": "if-none-match"}),
    "abort_multipart_upload": ("DELETE", {"UploadId": "uploadId"}, {}),
    "upload_part": ("PUT", {"UploadId": "uploadId", "PartNumber": "partNumber"}, {}),
}


def request_of(operation: str, params: Mapping[str, Any]) -> Request | None:
    """The request botocore would presign for `operation` with `params`; None for any operation or
    parameter not mapped here (botocore presigns those)."""
    known = _OPERATIONS.get(operation)
    if known is None:
        return None
    method, query_names, header_names = known
    rest = {k: v for k, v in params.items() if k not in ("Bucket", "Key")}
    metadata = rest.pop("Metadata", None) if operation == "put_object" else None
    if set(rest) - set(query_names) - set(header_names) or not isinstance(params.get("Key"), str):
        return None
    if metadata is not None and not (
        isinstance(metadata, Mapping) and all(isinstance(v, str) for v in metadata.values())
    ):
        return None
    # botocore writes the query in the order the parameters were given (the shape keeps that order).
    query = tuple((query_names[k], str(v)) for k, v in rest.items() if k in query_names)
    headers = [(header_names[k], str(rest[k])) for k in header_names if k in rest]
    headers += [(f"x-amz-meta-{k.lower()}", str(v)) for k, v in (metadata or {}).items()]
    return Request(method, str(params.get("Bucket") or ""), params["Key"], query, tuple(headers))


class QueryPresigner:
    """SigV4 query presigning of path-style S3 URLs at `endpoint` (scheme://host[:port][/prefix])."""

    def __init__(self, endpoint: str, region: str) -> None:
        parts = urlsplit(endpoint)
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._region = region
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret_key: str, day: str) -> bytes:
        key = self._keys.get((secret_key, day))
        if key is None:
            key = _derived_key(secret_key, day, self._region, "s3")
            self._keys = {(secret_key, day): key}  # one day's key at a time
        return key

    def url(self, req: Request, access_key: str, secret_key: str, seconds: int, when: datetime) -> str:
        stamp = when.strftime(_SIGV4_TIMESTAMP)
        day = stamp[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        headers = sorted(
            [("host", self._netloc), *((k, " ".join(v.split())) for k, v in req.headers)], key=lambda h: h[0]
        )
        signed = ";".join(k for k, _ in headers)
        query = [
            *req.query,
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", f"{access_key}/{scope}"),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(seconds)),
            ("X-Amz-SignedHeaders", signed),
        ]
        path = f"{self._prefix}/{_escape(req.bucket, '')}/{_escape(req.key, '/~')}"
        # Encoded once, for the canonical request (sorted) and the URL (botocore's order) alike.
        encoded = [(_escape(k), _escape(v)) for k, v in query]
        canonical = "\n".join(
            [
                req.method,
                path,
                "&".join(f"{k}={v}" for k, v in sorted(encoded)),
                "".join(f"{k}:{v}\n" for k, v in headers),
                signed,
                "UNSIGNED-PAYLOAD",
            ]
        )
        to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()
        url_query = "&".join(f"{k}={v}" for k, v in encoded)
        return f"{self._scheme}://{self._netloc}{path}?{url_query}&{_SIGNATURE}={signature}"


class CheckedPresigner:
    """`QueryPresigner` for the shapes it reproduced botocore exactly for, botocore for the rest."""

    def __init__(self, endpoint: str | None, region: str) -> None:
        self._signer = QueryPresigner(endpoint, region) if endpoint else None
        # Sets change under the GIL: two threads may both check a new shape, to the same answer.
        self.verified: set[tuple[Any, ...]] = set()
        self.refused: set[tuple[Any, ...]] = set()

    def presign(
        self,
        operation: str,
        params: Mapping[str, Any],
        seconds: int,
        credentials: tuple[str, str, str | None] | None,
        botocore: Callable[[], str],
    ) -> str:
        """The URL for `operation`: signed here for a verified shape, else `botocore()` (which
        verifies the shape when it can). `credentials`: (access key, secret key, session token)."""
        req = request_of(operation, params)
        if self._signer is None or req is None or credentials is None or credentials[2] or not req.plain:
            return botocore()
        access_key, secret_key, _ = credentials
        shape = req.shape
        if shape in self.verified:
            return self._signer.url(req, access_key, secret_key, seconds, datetime.now(UTC))
        theirs = botocore()
        if shape not in self.refused:
            date = _AMZ_DATE.search(theirs)
            when = datetime.strptime(date.group(1), _SIGV4_TIMESTAMP).replace(tzinfo=UTC) if date else None
            ours = self._signer.url(req, access_key, secret_key, seconds, when) if when else None
            if ours == theirs:
                self.verified.add(shape)
            else:
                self.refused.add(shape)
                log.info("presigning %s %s with botocore: its URL differs from ours", operation, shape)
        return theirs
