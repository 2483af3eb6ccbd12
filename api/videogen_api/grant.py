"""The part URLs of a grant's multipart upload, as the operator writes them and the runner reads them.

A job whose video could be large gets up to 64 presigned upload_part URLs. They differ only in
`partNumber` and `X-Amz-Signature`, and listed in full they were 86% of the grant (about 21 KB of
a 25 KB grant, 33 KB once base64 in the Secret). The grant Secret is created on the way to every
job's Job, and in the scale benchmark's burst its create was the slowest request on that path
(p50 0.52 s, against 0.28 s with a few-URL grant). So the operator writes them as one template with
two placeholders and the list of signatures (`partUrl`, `partSignatures`), and only where the
template reproduces every URL exactly; otherwise (a store whose URLs differ in more than that)
the full list as before (`parts`). `part_urls` gives the runner the list either way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

PART_NUMBER: Final = "{partNumber}"
SIGNATURE: Final = "{signature}"
_PART = re.compile(r"([?&])partNumber=(\d+)(?=&|$)")
_SIG = re.compile(r"([?&])X-Amz-Signature=([0-9a-f]+)(?=&|$)")


def _template_of(url: str, number: int) -> tuple[str, str] | None:
    """(template, signature) of the URL of part `number`, or None if it is not one."""
    parts = _PART.findall(url)
    sigs = _SIG.findall(url)
    if len(parts) != 1 or parts[0][1] != str(number) or len(sigs) != 1 or "{" in url or "}" in url:
        return None
    template = _SIG.sub(
        lambda m: f"{m.group(1)}X-Amz-Signature={SIGNATURE}",
        _PART.sub(lambda m: f"{m.group(1)}partNumber={PART_NUMBER}", url),
    )
    return template, sigs[0][1]


def expand(template: str, signatures: list[str]) -> list[str]:
    """The URLs of parts 1..len(signatures)."""
    return [template.replace(PART_NUMBER, str(n)).replace(SIGNATURE, sig) for n, sig in enumerate(signatures, 1)]


def compact(urls: list[str]) -> dict[str, Any]:
    """The grant's fields for part URLs 1..n: a template and signatures when that reproduces every
    URL byte for byte, else the list itself."""
    found = [_template_of(url, n) for n, url in enumerate(urls, 1)]
    templates = {f[0] for f in found if f is not None}
    if urls and None not in found and len(templates) == 1:
        template = templates.pop()
        signatures = [f[1] for f in found if f is not None]
        if expand(template, signatures) == urls:
            return {"partUrl": template, "partSignatures": signatures}
    return {"parts": list(urls)}


def part_urls(multipart: Mapping[str, Any]) -> list[str]:
    """The part URLs of a grant's `multipart`, in either form."""
    if "parts" in multipart:
        return [str(u) for u in multipart["parts"]]
    return expand(str(multipart["partUrl"]), [str(s) for s in multipart["partSignatures"]])
