"""Presigned URLs for the parts of one multipart upload, without botocore's per-URL pipeline.

A job whose video could be large gets up to 64 part URLs in its grant. botocore builds each one
through its whole request pipeline (about 0.9 ms of CPU apiece), which made presigning the largest
part of the operator's CPU per job in a burst. The URLs differ only in `partNumber`, so the first
one comes from botocore and the rest are signed here with the same date, credential scope and
expiry (AWS Signature Version 4, query-string form, `UNSIGNED-PAYLOAD`, only `host` signed: what
botocore's S3 query signer does). Before anything is reused, the first URL's signature is
recomputed here and must equal botocore's: where it does not (a signer botocore changed, session
credentials, an endpoint with an unusual path), every part falls back to botocore.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_SIGNATURE = "X-Amz-Signature"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


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
        key = _hmac(f"AWS4{secret_key}".encode(), day)
        for piece in (region, service, terminal):
            key = _hmac(key, piece)
        self._key = key
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
