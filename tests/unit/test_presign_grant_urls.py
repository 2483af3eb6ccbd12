"""A grant's other URLs (PUT and GET of the video and poster, complete and abort of its multipart
upload) signed by presign.py are byte-for-byte what botocore presigns in the same second, once
their shape was checked against botocore; a shape, credentials or key it cannot reproduce stays
with botocore. (tests/integration/test_s3.py puts and gets through them against the local S3 server.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from videogen_operator import presign
from videogen_operator.results import ObjectStore
from videogen_operator.settings import OperatorSettings

METADATA = {"videogen-job-uid": "0f6c2a4e-1b7d-4c55-9a1e-3d2b8e7f6a10", "videogen-spec-hash": "9f" * 32}
GRANT_OPERATIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "put_object",
        {"ContentType": "video/mp4", "Metadata": METADATA, "IfNoneMatch": "*"},
    ),
    ("put_object", {"ContentType": "image/jpeg", "Metadata": METADATA, "IfNoneMatch": "*"}),
    ("get_object", {}),
    ("complete_multipart_upload", {"UploadId": "2~Vz.abc_DEF-0123+/=", "IfNoneMatch": "*"}),
    ("abort_multipart_upload", {"UploadId": "2~Vz.abc_DEF-0123+/="}),
    ("upload_part", {"UploadId": "2~Vz.abc_DEF-0123+/=", "PartNumber": 1}),
    ("upload_part", {"PartNumber": 7, "UploadId": "2~Vz.abc_DEF-0123+/="}),
]


def store_for(monkeypatch: pytest.MonkeyPatch, endpoint: str, style: str = "path", token: str = "") -> ObjectStore:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    if token:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    else:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return ObjectStore(
        OperatorSettings(s3_bucket="videos", s3_endpoint=endpoint, s3_region="eu-west-3", s3_addressing_style=style)
    )


def counting_botocore(store: ObjectStore) -> list[str]:
    """Every URL the store has botocore presign from now on (botocore itself stays at `store.botocore`)."""
    calls: list[str] = []
    presign_url: Callable[..., str] = store._s3.generate_presigned_url

    def counted(operation: str, **kwargs: Any) -> str:
        calls.append(operation)
        return presign_url(operation, **kwargs)

    store._s3.generate_presigned_url = counted  # type: ignore[method-assign]
    store.botocore = presign_url  # type: ignore[attr-defined]
    return calls


def same_second(ours: Callable[[], str], theirs: Callable[[], str]) -> tuple[str, str]:
    for _ in range(3):  # a second boundary between the two signings changes X-Amz-Date: retry
        pair = ours(), theirs()
        if pair[0] == pair[1]:
            break
    return pair


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:7070", "https://s3.example.com", "https://gw.example.com/s3"])
@pytest.mark.parametrize(("operation", "extra"), GRANT_OPERATIONS)
def test_each_grant_url_equals_botocores_and_only_the_first_of_a_shape_comes_from_botocore(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, operation: str, extra: dict[str, Any]
) -> None:
    store = store_for(monkeypatch, endpoint)
    calls = counting_botocore(store)
    params = {"Bucket": "videos", "Key": "videogen/team-a/clip-0f6c2a4e.mp4", **extra}
    store.presign_op(operation, 8100, **params)  # the shape's first URL: botocore's, checked
    assert calls == [operation]
    other = {**params, "Key": "videogen/team-b/other_clip~2.mp4"}
    ours, theirs = same_second(
        lambda: store.presign_op(operation, 7200, **other),
        lambda: store.botocore(operation, Params=other, ExpiresIn=7200),  # type: ignore[attr-defined]
    )
    assert ours == theirs
    assert calls == [operation], "signed here once the shape was checked"


def test_what_it_cannot_reproduce_stays_with_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"Bucket": "videos", "Key": "videogen/team-a/clip.mp4", "ContentType": "video/mp4", "IfNoneMatch": "*"}
    # Virtual-hosted addressing (the bucket in the host name): not what presign.py builds.
    store = store_for(monkeypatch, "https://s3.example.com", style="virtual")
    calls = counting_botocore(store)
    urls = [store.presign_op("put_object", 600, **params) for _ in range(3)]
    assert calls == ["put_object"] * 3 and all(u.startswith("https://videos.s3.example.com/") for u in urls)
    # Session credentials, a key outside plain characters, an operation it does not map.
    store = store_for(monkeypatch, "http://127.0.0.1:7070", token="session/token+==")
    calls = counting_botocore(store)
    for _ in range(3):
        store.presign_op("get_object", 600, Bucket="videos", Key="k")
    assert calls == ["get_object"] * 3
    store = store_for(monkeypatch, "http://127.0.0.1:7070")
    calls = counting_botocore(store)
    for _ in range(3):
        store.presign_op("get_object", 600, Bucket="videos", Key="team a/ünï+(1).mp4")
        store.presign_op("get_object", 600, Bucket="videos", Key="team-a/../team-b/clip.mp4")
        store.presign_op("head_object", 600, Bucket="videos", Key="k")
    assert calls == ["get_object", "get_object", "head_object"] * 3


def test_a_signer_that_differs_from_botocore_never_signs_that_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_for(monkeypatch, "http://127.0.0.1:7070")
    calls = counting_botocore(store)
    monkeypatch.setattr(store, "_credentials", lambda: ("AKIAIOSFODNN7EXAMPLE", "not-the-secret", None))
    for _ in range(3):
        store.presign_op("get_object", 600, Bucket="videos", Key="k")
    assert calls == ["get_object"] * 3
    assert ("GET", (), ()) in store._presigner.refused and not store._presigner.verified


def test_requests_carry_the_signed_headers_botocore_would() -> None:
    req = presign.request_of(
        "put_object",
        {"Bucket": "b", "Key": "k", "ContentType": "video/mp4", "Metadata": {"A-B": "v"}, "IfNoneMatch": "*"},
    )
    assert req is not None
    assert req.shape == ("PUT", (), ("content-type", "if-none-match", "x-amz-meta-a-b"))
    assert presign.request_of("put_object", {"Bucket": "b", "Key": "k", "ACL": "public-read"}) is None
    assert presign.request_of("upload_part_copy", {"Bucket": "b", "Key": "k"}) is None
