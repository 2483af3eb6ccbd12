"""Status is untrusted: what the operator accepts, reuses and deletes comes from the spec and from
objects it checked, never from a VideoGenJob's status."""

from __future__ import annotations

from typing import Any

import pytest

from videogen_api import v1alpha1 as api
from videogen_operator.manifests import JobRef
from videogen_operator.outputs import Outputs
from videogen_operator.results import VerificationError, Verified
from videogen_operator.settings import OperatorSettings

A = JobRef(namespace="team-a", name="clip", uid="uid-a")
SETTINGS = OperatorSettings(s3_bucket="videos")


def spec(**overrides: Any) -> api.VideoGenJobSpec:
    raw: dict[str, Any] = {"model": "hf://org/tiny", "task": "text-to-video", "prompt": "a cat", "seed": 1}
    raw.update(overrides)
    return api.VideoGenJobSpec.model_validate(raw)


class FakeStore:
    """Objects by (bucket, key) -> owner uid; records deletions, lookups and pointers."""

    def __init__(self, objects: dict[tuple[str, str], str]) -> None:
        self.objects = objects
        self.deleted: list[str] = []
        self.recorded: list[str] = []
        self.lookups: list[tuple[str, str, str | None]] = []

    def verify(self, bucket: str, key: str, job_uid: str | None) -> Verified:
        owner = self.objects.get((bucket, key))
        if owner is None:
            raise VerificationError(f"s3://{bucket}/{key} does not exist")
        if owner != job_uid:
            raise VerificationError(f"s3://{bucket}/{key} was not written by this job")
        return Verified(bucket, key, 123, "ab" * 32, '"etag"')

    def owner_of(self, bucket: str, key: str) -> str | None:
        return self.objects.get((bucket, key))

    def record(self, pointer_key: str, verified: Verified, output: dict[str, Any], uid: str, ns: str) -> None:
        self.recorded.append(pointer_key)

    def lookup(self, bucket: str, pointer_key: str, within: str | None) -> dict[str, Any] | None:
        self.lookups.append((bucket, pointer_key, within))
        return None

    def delete_owned(self, bucket: str, keys: list[str], job_uid: str, pointer_key: str | None) -> list[str]:
        gone = [f"s3://{bucket}/{k}" for k in keys if self.objects.get((bucket, k)) == job_uid]
        self.deleted.extend(gone)
        return gone


class FakeKube:
    def __init__(self, vgjs: list[dict[str, Any]] | None = None) -> None:
        self.vgjs = vgjs or []

    def list_vgjs(self, namespaces: Any = ()) -> list[dict[str, Any]]:
        return self.vgjs


def outputs(store: FakeStore, kube: FakeKube | None = None, **settings: Any) -> Outputs:
    st = SETTINGS.model_copy(update=settings) if settings else SETTINGS
    return Outputs(kube or FakeKube(), st, store)  # type: ignore[arg-type]


MINE = ("videos", "videogen/team-a/clip-d.mp4")
THEIRS = ("videos", "videogen/team-b/theirs.mp4")


class TestAccept:
    def test_the_result_is_the_verified_object_at_the_spec_location(self) -> None:
        store = FakeStore({MINE: "uid-a", (MINE[0], MINE[1] + ".poster.jpg"): "uid-a"})
        reported = {
            "uri": "s3://videos/videogen/team-b/theirs.mp4",  # whatever the runner says
            "sizeBytes": 1,
            "sha256": "00" * 32,
            "posterUri": "s3://videos/elsewhere.jpg",
            "width": 64,
        }
        out = outputs(store).accept(A, spec(), "d", reported)
        assert out["uri"] == "s3://videos/videogen/team-a/clip-d.mp4"
        assert (out["sizeBytes"], out["sha256"]) == (123, "ab" * 32)
        assert out["posterUri"] == "s3://videos/videogen/team-a/clip-d.mp4.poster.jpg"
        assert out["width"] == 64
        assert store.recorded == ["videogen/.cache/team-a/d.json"]

    def test_an_object_another_job_wrote_is_refused(self) -> None:
        store = FakeStore({MINE: "uid-other"})
        with pytest.raises(VerificationError, match="not written by this job"):
            outputs(store).accept(A, spec(), "d", {})
        assert store.recorded == []

    def test_no_seed_no_cache_entry(self) -> None:
        store = FakeStore({MINE: "uid-a"})
        outputs(store).accept(A, spec(seed=None), "d", {})
        assert store.recorded == []


class TestCacheScope:
    def test_namespace_scope_by_default(self) -> None:
        store = FakeStore({})
        outputs(store).cache_hit(A, spec(), "d")
        assert store.lookups == [("videos", "videogen/.cache/team-a/d.json", "videogen/team-a/")]

    def test_cluster_scope_only_when_configured(self) -> None:
        store = FakeStore({})
        outputs(store, cache_scope="cluster").cache_hit(A, spec(), "d")
        assert store.lookups == [("videos", "videogen/.cache/_cluster/d.json", None)]

    def test_no_seed_no_lookup(self) -> None:
        store = FakeStore({})
        assert outputs(store).cache_hit(A, spec(seed=None), "d") is None
        assert store.lookups == []


class TestCleanup:
    def body(self, status_uri: str) -> dict[str, Any]:
        return {
            "metadata": {"namespace": "team-a", "name": "clip", "uid": "uid-a"},
            "spec": spec(output={"deletePolicy": "Delete"}).to_wire(),
            "status": {"output": {"uri": status_uri}},
        }

    def test_a_forged_status_deletes_nothing_of_anyone_else(self) -> None:
        s = spec(output={"deletePolicy": "Delete"})
        mine = ("videos", f"videogen/team-a/clip-{api.spec_hash(s)}.mp4")
        store = FakeStore({mine: "uid-a", THEIRS: "uid-b"})
        deleted = outputs(store).cleanup(self.body("s3://videos/videogen/team-b/theirs.mp4"), A, s, [])
        assert deleted == [f"s3://{mine[0]}/{mine[1]}"]
        assert THEIRS in store.objects and f"s3://{THEIRS[0]}/{THEIRS[1]}" not in store.deleted

    def test_objects_this_job_did_not_write_are_kept(self) -> None:
        s = spec(output={"deletePolicy": "Delete"})
        mine = ("videos", f"videogen/team-a/clip-{api.spec_hash(s)}.mp4")
        store = FakeStore({mine: "uid-someone-else"})
        assert outputs(store).cleanup(self.body(""), A, s, []) == []

    def test_an_object_another_job_shows_is_kept(self) -> None:
        s = spec(output={"deletePolicy": "Delete"})
        mine = ("videos", f"videogen/team-a/clip-{api.spec_hash(s)}.mp4")
        other = {
            "metadata": {"namespace": "team-a", "name": "hit", "uid": "uid-c"},
            "status": {"output": {"uri": f"s3://{mine[0]}/{mine[1]}"}},
        }
        store = FakeStore({mine: "uid-a"})
        assert outputs(store).cleanup(self.body(""), A, s, [other]) == []
