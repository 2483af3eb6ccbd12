"""The runner Job the operator builds: one GPU pod, safe defaults, deterministic names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from videogen_api import v1alpha1 as api
from videogen_operator import manifests
from videogen_operator.manifests import JobRef
from videogen_operator.settings import OperatorSettings

REF = JobRef(namespace="team-a", name="cat-video", uid="0f1e2d3c-aaaa-bbbb-cccc-1234567890ab")


def make_spec(**overrides: Any) -> api.VideoGenJobSpec:
    raw: dict[str, Any] = {"model": "hf://org/tiny", "task": "text-to-video", "prompt": "a cat", "seed": 7}
    raw.update(overrides)
    return api.VideoGenJobSpec.model_validate(raw)


def build(spec: api.VideoGenJobSpec | None = None, **settings: Any) -> dict[str, Any]:
    s = OperatorSettings(s3_bucket="videos", s3_endpoint="http://s3.local:7070", **settings)
    return manifests.build_job(REF, spec or make_spec(), s, "abc123")


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod_spec(job)["containers"][0]["env"]}


class TestNaming:
    def test_name_is_deterministic_and_includes_the_uid(self) -> None:
        assert manifests.child_name(REF) == "cat-video-0f1e2d3c"
        assert manifests.child_name(REF) == build()["metadata"]["name"]

    def test_long_names_fit_in_63_characters(self) -> None:
        ref = JobRef("ns", "x" * 250, REF.uid)
        assert len(manifests.child_name(ref, "runner")) <= 63

    def test_job_is_owned_by_the_videogenjob(self) -> None:
        owner = build()["metadata"]["ownerReferences"][0]
        assert owner == {
            "apiVersion": "videogen.dev/v1alpha1",
            "kind": "VideoGenJob",
            "name": "cat-video",
            "uid": REF.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


class TestGpuAndScheduling:
    def test_one_gpu_by_default(self) -> None:
        container = pod_spec(build())["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"

    def test_gpu_resource_name_and_count_from_spec(self) -> None:
        job = build(make_spec(resources={"gpus": 2, "gpuResourceName": "amd.com/gpu"}))
        assert pod_spec(job)["containers"][0]["resources"]["limits"] == {"amd.com/gpu": "2"}

    def test_operator_default_gpu_resource(self) -> None:
        job = build(gpu_resource_name="example.com/gpu")
        assert "example.com/gpu" in pod_spec(job)["containers"][0]["resources"]["limits"]

    def test_scheduling_constraints_merge_spec_over_defaults(self) -> None:
        spec = make_spec(
            resources={
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "video", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
                "priorityClassName": "high",
            }
        )
        ps = pod_spec(build(spec, default_node_selector={"pool": "gpu", "gpu": "any"}))
        assert ps["nodeSelector"] == {"pool": "gpu", "gpu": "h100"}
        assert {"key": "dedicated", "operator": "Equal", "value": "video", "effect": "NoSchedule"} in ps["tolerations"]
        assert ps["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}
        assert ps["priorityClassName"] == "high"


class TestRetriesAndDeadlines:
    def test_retries_timeout_and_ttl(self) -> None:
        job = build(make_spec(retries=3, timeoutSeconds=900), job_ttl_seconds=600)
        assert job["spec"]["backoffLimit"] == 3
        assert job["spec"]["activeDeadlineSeconds"] == 900
        assert job["spec"]["ttlSecondsAfterFinished"] == 600

    def test_pod_failure_policy_fails_fast_on_non_retryable_exit_codes(self) -> None:
        rules = build()["spec"]["podFailurePolicy"]["rules"]
        fail = next(r for r in rules if r["action"] == "FailJob")
        assert set(fail["onExitCodes"]["values"]) == {int(c) for c in api.NON_RETRYABLE_EXIT_CODES}
        assert int(api.ExitCode.UPLOAD_ERROR) not in fail["onExitCodes"]["values"]
        ignore = next(r for r in rules if r["action"] == "Ignore")
        assert ignore["onPodConditions"][0]["type"] == "DisruptionTarget"
        assert pod_spec(build())["restartPolicy"] == "Never"


class TestRunnerInputs:
    def test_spec_and_identity_reach_the_runner(self) -> None:
        e = env(build())
        assert json.loads(e[api.ENV_SPEC])["prompt"] == "a cat"
        assert e[api.ENV_JOB_NAME] == "cat-video"
        assert e[api.ENV_JOB_NAMESPACE] == "team-a"
        assert e[api.ENV_JOB_UID] == REF.uid
        assert e[api.ENV_OUTPUT_BUCKET] == "videos"
        assert e[api.ENV_OUTPUT_KEY] == "videogen/team-a/cat-video-abc123.mp4"
        assert e["AWS_ENDPOINT_URL"] == "http://s3.local:7070"

    def test_the_runner_gets_its_grant_and_never_a_platform_key(self) -> None:
        e = env(build(s3_secret_name="creds"))
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & e.keys()
        grant = {"secretKeyRef": {"name": manifests.grant_secret_name(REF), "key": api.GRANT_SECRET_KEY}}
        assert e[api.ENV_GRANT] == grant
        assert "creds" not in json.dumps(pod_spec(build(s3_secret_name="creds")))

    def test_workload_identity_has_no_grant(self) -> None:
        e = env(build(runner_credentials="workload-identity", runner_service_account="videogen-runner"))
        assert api.ENV_GRANT not in e and "AWS_SECRET_ACCESS_KEY" not in e

    def test_explicit_output_location_is_below_the_namespace_prefix(self) -> None:
        e = env(build(make_spec(output={"bucket": "mine", "key": "a/b.mp4"}), allowed_buckets=["mine"]))
        assert (e[api.ENV_OUTPUT_BUCKET], e[api.ENV_OUTPUT_KEY]) == ("mine", "videogen/team-a/a/b.mp4")

    def test_no_bucket_anywhere_is_an_error_naming_the_field(self) -> None:
        with pytest.raises(ValueError, match=r"spec\.output\.bucket"):
            manifests.build_job(REF, make_spec(), OperatorSettings(), "abc")

    def test_model_cache_volume_is_the_namespaces_read_only_claim(self) -> None:
        s = OperatorSettings(s3_bucket="videos", model_cache={"type": "pvc", "claim_name": "models"})
        mount = manifests.CacheMount(claim="videogen-models")
        job = manifests.build_job(REF, make_spec(), s, "abc123", mount=mount)
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        # Never the operator's own claim (it lives in another namespace), and never writable.
        assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "videogen-models", "readOnly": True}
        mounts = {m["name"]: m for m in pod_spec(job)["containers"][0]["volumeMounts"]}
        assert mounts["model-cache"]["readOnly"] is True
        assert env(job)["HF_HOME"] == "/models/hf"
        # An unlisted s3:// model cannot sync into a read-only cache: scratch space instead.
        assert env(job)["VIDEOGEN_MODEL_SYNC_DIR"] == "/tmp/model-sync"

    def test_pvc_cache_not_shared_yet_gives_scratch_space(self) -> None:
        job = build(model_cache={"type": "pvc", "claim_name": "models"})
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {}}

    def test_catalog_model_is_mounted_read_only_with_its_identity(self) -> None:
        from videogen_operator.catalog import ResolvedModel

        digest = "sha256:" + "ab" * 32
        model = ResolvedModel("wan-tiny", api.ModelIdentity("rev1", digest), "catalog/wan-tiny/abababababababab")
        s = OperatorSettings(s3_bucket="videos", model_cache={"type": "hostPath", "host_path": "/srv/models"})
        job = manifests.build_job(REF, make_spec(model="wan-tiny"), s, "abc123", mount=manifests.CacheMount(model))
        e = env(job)
        assert e["VIDEOGEN_MODEL_DIR"] == "/models/catalog/wan-tiny/abababababababab"
        assert (e["VIDEOGEN_MODEL_REVISION"], e["VIDEOGEN_MODEL_DIGEST"]) == ("rev1", digest)
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert volumes["model-cache"]["hostPath"] == {"path": "/srv/models", "type": "Directory"}
        mounts = {m["name"]: m for m in pod_spec(job)["containers"][0]["volumeMounts"]}
        assert mounts["model-cache"]["readOnly"] is True


class TestSharedMemory:
    """torchrun's ranks (NCCL) exchange tensors through /dev/shm, which a container gets as 64Mi."""

    def test_a_multi_gpu_pod_gets_a_bounded_memory_backed_dev_shm(self) -> None:
        ps = pod_spec(build(make_spec(resources={"gpus": 4})))
        volumes = {v["name"]: v for v in ps["volumes"]}
        assert volumes[manifests.SHM_VOLUME] == {
            "name": "dshm",
            "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"},
        }
        mounts = {m["mountPath"]: m for m in ps["containers"][0]["volumeMounts"]}
        assert mounts["/dev/shm"] == {"name": "dshm", "mountPath": "/dev/shm"}

    def test_its_size_is_a_setting(self) -> None:
        ps = pod_spec(build(make_spec(resources={"gpus": 2}), runner_shm_size="32Gi"))
        (shm,) = [v for v in ps["volumes"] if v["name"] == manifests.SHM_VOLUME]
        assert shm["emptyDir"]["sizeLimit"] == "32Gi"
        with pytest.raises(ValueError, match="runner_shm_size"):
            OperatorSettings(runner_shm_size="lots")

    def test_a_one_gpu_pod_gets_none(self) -> None:
        ps = pod_spec(build(make_spec(resources={"gpus": 1})))
        assert manifests.SHM_VOLUME not in {v["name"] for v in ps["volumes"]}
        assert "/dev/shm" not in {m["mountPath"] for m in ps["containers"][0]["volumeMounts"]}


class TestSecurity:
    def test_restricted_security_context(self) -> None:
        ps = pod_spec(build())
        assert ps["securityContext"]["runAsNonRoot"] is True
        assert ps["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        csc = ps["containers"][0]["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}

    def test_runner_role_allows_only_videogenjob_status_in_its_namespace(self) -> None:
        role = manifests.build_runner_role("team-a")
        assert role["metadata"]["namespace"] == "team-a"
        assert role["rules"] == [
            {"apiGroups": ["videogen.dev"], "resources": ["videogenjobs/status"], "verbs": ["get", "patch"]}
        ]

    def test_runner_rbac_is_one_set_per_namespace(self) -> None:
        settings = OperatorSettings()
        names = {
            manifests.build_runner_service_account("ns")["metadata"]["name"],
            manifests.build_runner_role("ns")["metadata"]["name"],
            manifests.build_runner_role_binding("ns", settings)["metadata"]["name"],
            pod_spec(build())["serviceAccountName"],
        }
        assert names == {manifests.RUNNER_RBAC_NAME}
        assert "ownerReferences" not in manifests.build_runner_role("ns")["metadata"]

    def test_kueue_label_only_with_queue_name(self) -> None:
        assert api.KUEUE_QUEUE_LABEL not in build()["metadata"]["labels"]
        job = build(make_spec(queueName="gpu-queue"))
        assert job["metadata"]["labels"][api.KUEUE_QUEUE_LABEL] == "gpu-queue"
