"""Part URLs signed by presign.py are byte-for-byte the URLs botocore would presign in the same second,
and a signer that cannot reproduce botocore's first URL falls back to botocore for every part.
(The runner's upload test puts real parts through these URLs into the local S3 server.)"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from videogen_operator.presign import PartSigner, part_urls

KEYS = ["videogen/team-a/clip-abc.mp4", "videogen/team a/clip+1 é.mp4"]


def client(endpoint: str, style: str, token: str | None = None) -> object:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-3",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalr/XUtnFEMI+K7MDENG",
        aws_session_token=token,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    ("endpoint", "style", "token"),
    [
        ("http://127.0.0.1:7070", "path", None),
        ("https://s3.example.com", "virtual", None),
        ("https://s3.example.com", "path", "session/token+=="),
    ],
)
def test_part_urls_equal_botocores(key: str, endpoint: str, style: str, token: str | None) -> None:
    s3 = client(endpoint, style, token)

    def botocore_part(n: int) -> str:
        params = {"Bucket": "videos", "Key": key, "UploadId": "2~abc/+=", "PartNumber": n}
        return str(s3.generate_presigned_url("upload_part", Params=params, ExpiresIn=3600))  # type: ignore[attr-defined]

    for _ in range(3):  # a second boundary between the two signings would change X-Amz-Date: retry
        ours = part_urls(40, botocore_part, "wJalr/XUtnFEMI+K7MDENG")
        theirs = [botocore_part(n) for n in range(1, 41)]
        if ours == theirs:
            break
    assert ours == theirs
    assert PartSigner(theirs[0], "wJalr/XUtnFEMI+K7MDENG").usable


def test_a_signer_that_cannot_reproduce_the_first_url_falls_back_to_botocore() -> None:
    calls: list[int] = []

    def botocore_part(n: int) -> str:
        calls.append(n)
        return client("http://127.0.0.1:7070", "path").generate_presigned_url(  # type: ignore[attr-defined,no-any-return]
            "upload_part", Params={"Bucket": "b", "Key": "k", "UploadId": "u", "PartNumber": n}, ExpiresIn=60
        )

    urls = part_urls(5, botocore_part, "not-the-secret")
    assert calls == [1, 2, 3, 4, 5], "every part came from botocore"
    assert [u.split("partNumber=")[1].split("&")[0] for u in urls] == ["1", "2", "3", "4", "5"]
    assert part_urls(0, botocore_part, "x") == []
