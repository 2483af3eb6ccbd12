"""The grant's part URLs as a template and signatures: exact for botocore's presigned URLs (the
operator's real ObjectStore, no request made), the full list for anything else, and the runner's
reading gives the same URLs either way."""

from __future__ import annotations

import json

import pytest

from videogen_api import grant
from videogen_operator.results import ObjectStore
from videogen_operator.settings import OperatorSettings


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    return ObjectStore(OperatorSettings(s3_bucket="videos", s3_endpoint="http://127.0.0.1:9"))


@pytest.mark.parametrize("key", ["videogen/team-a/clip-0123abcd.mp4", "videogen/team a/ünï cödé+%2F (1).mp4"])
def test_botocore_part_urls_become_a_template_that_gives_them_back_exactly(store: ObjectStore, key: str) -> None:
    urls = store.presign_parts("videos", key, "upload/id+with=odd&chars", 49, 8100)
    fields = grant.compact(urls)
    assert set(fields) == {"partUrl", "partSignatures"}
    assert grant.part_urls(fields) == urls
    assert len(json.dumps(fields)) * 4 < len(json.dumps(urls)), "a quarter of the list's size or less"


def test_urls_that_differ_in_more_than_number_and_signature_stay_a_list(store: ObjectStore) -> None:
    urls = store.presign_parts("videos", "videogen/team-a/clip.mp4", "u1", 3, 8100)
    other_host = [urls[0], urls[1].replace("127.0.0.1:9", "127.0.0.2:9"), urls[2]]
    out_of_order = [urls[1], urls[0], urls[2]]
    unsigned = [u.split("&X-Amz-Signature=")[0] for u in urls]
    for listed in (other_host, out_of_order, unsigned, ["https://s3.test/b/k?op=upload_part&PartNumber=1"]):
        assert grant.compact(listed) == {"parts": listed}
        assert grant.part_urls(grant.compact(listed)) == listed
    assert grant.compact([]) == {"parts": []}
