"""What a job's spec.model means with the model catalog, decided from the spec and the VideoGenModel
(never from the job's status), and the manifests the catalog needs. The integration tests
(tests/integration/test_model_catalog.py) run the same paths against the real API server and S3."""

from __future__ import annotations

import json
from concurrent.futures import wait as settle
from datetime import timedelta
from typing import Any

import pytest
from test_operator_views_reconcile import NOW, NS, RecordingApi, ref, stamp, status_of, vgj

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_operator import catalog, manifests
from videogen_operator.reconcile import Reconciler
from videogen_operator.settings import OperatorSettings
from videogen_operator.views import Views, slim_job

DIGEST_1 = "sha256:" + "1" * 64
DIGEST_2 = "sha256:" + "2" * 64


def model(
    name: str = "wan-tiny",
    phase: str | None = "Ready",
    digest: str = DIGEST_1,
    generation: int = 1,
    namespaces: list[str] | None = None,
    **status: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": "s3://models/wan-tiny"}
    if namespaces is not None:
        spec["namespaces"] = namespaces
    st: dict[str, Any] = {"observedGeneration": generation}
    if phase:
        st["phase"] = phase
    if phase == "Ready":
        st.update(revision=digest, digest=digest, path=cat.model_dir(name, digest))
    st.update(status)
    return {
        "metadata": {"name": name, "uid": f"uid-model-{name}", "generation": generation, "resourceVersion": "5"},
        "spec": spec,
        "status": st,
    }


def setup(
    bodies: list[dict[str, Any]],
    models: list[dict[str, Any]],
    jobs: dict[str, list[dict[str, Any]]] | None = None,
    **settings: Any,
) -> tuple[Reconciler, RecordingApi]:
    index = {(b["metadata"]["namespace"], b["metadata"]["name"]): [b] for b in bodies}
    model_index = {m["metadata"]["name"]: [m] for m in models}
    views = Views(index, jobs or {}, {}, None, model_index)
    for b in bodies:  # what the VideoGenJob event handler does for each listed object
        views.observe_vgj(b)
    fake = RecordingApi()
    fake.statuses = {b["metadata"]["name"]: dict(b["status"]) for b in bodies}
    fake.specs = {b["metadata"]["name"]: b["spec"] for b in bodies}
    settings.setdefault("model_cache", {"type": "hostPath", "host_path": "/srv/models"})
    s = OperatorSettings(s3_bucket="videos", status_min_interval_seconds=0, **settings)
    return Reconciler(fake, s, None, clock=lambda: NOW, views=views), fake  # type: ignore[arg-type]


def job_env(fake: RecordingApi) -> dict[str, str]:
    (job,) = [c for c in fake.created if c["kind"] == "Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_an_unlisted_uri_is_refused_by_default_naming_the_field() -> None:
    r, _ = setup([vgj("j")], [])
    r.reconcile(NS, "j")
    s = status_of(r, "j")
    assert (s["phase"], s["reason"]) == ("Failed", "ModelNotAllowed")
    assert "spec.model: hf://org/tiny is not in the model catalog" in s["message"]


def test_a_job_waits_for_its_model_and_takes_no_queue_slot() -> None:
    downloading = model(phase="Downloading", progress={"summary": "3/12 files (47%)", "percent": 47})
    r, fake = setup([vgj("j", model="wan-tiny")], [downloading])
    r.reconcile(NS, "j")
    s = status_of(r, "j")
    assert (s["phase"], s["reason"]) == ("Queued", "ModelNotReady")
    # In steps of 10%: a loader's progress every 2 s must not rewrite every waiting job.
    assert "'wan-tiny' is Downloading (downloaded 40%)" in s["message"]
    settle(r.admit())
    assert fake.jobs_created() == []
    assert "queuePosition" not in status_of(r, "j")


def test_a_model_that_never_appears_fails_the_job_after_its_startup_timeout() -> None:
    body = vgj("j", model="no-such-model")
    r, _ = setup([body], [])
    r.reconcile(NS, "j")
    assert status_of(r, "j")["reason"] == "ModelNotReady"
    late = vgj("late", model="no-such-model")
    late["metadata"]["creationTimestamp"] = stamp(NOW - timedelta(seconds=601))
    r2, _ = setup([late], [])
    r2.reconcile(NS, "late")
    s = status_of(r2, "late")
    assert (s["phase"], s["reason"]) == ("Failed", "ModelUnavailable")
    assert "'no-such-model' does not exist" in s["message"]


def test_a_namespace_the_model_does_not_allow_fails_with_model_not_allowed() -> None:
    r, fake = setup([vgj("j", model="wan-tiny")], [model(namespaces=["team-b"])])
    r.reconcile(NS, "j")
    s = status_of(r, "j")
    assert (s["phase"], s["reason"]) == ("Failed", "ModelNotAllowed")
    assert "'wan-tiny' may not be used from namespace 'team-a'" in s["message"]
    assert fake.jobs_created() == []


def test_a_failed_model_fails_its_jobs_naming_the_model_and_the_file() -> None:
    failed = model(phase="Failed", reason="VerificationFailed", message="vae/x.safetensors: sha256 differs")
    r, _ = setup([vgj("j", model="wan-tiny")], [failed])
    r.reconcile(NS, "j")
    s = status_of(r, "j")
    assert (s["phase"], s["reason"]) == ("Failed", "ModelUnavailable")
    assert "'wan-tiny' failed: vae/x.safetensors: sha256 differs" in s["message"]


def test_a_ready_model_starts_the_job_with_its_directory_and_revision_in_the_hash() -> None:
    body = vgj("j", model="wan-tiny")
    r, fake = setup([body], [model()])
    r.reconcile(NS, "j")
    assert fake.patches == [], "a new job's first write is the admission's"
    settle(r.admit())
    r.reconcile(NS, "j")  # what the new Job's watch event starts
    assert status_of(r, "j")["reason"] == "PodStarting"
    env = job_env(fake)
    assert env[cat.ENV_MODEL_DIR] == "/models/" + cat.model_dir("wan-tiny", DIGEST_1)
    assert env[cat.ENV_MODEL_DIGEST] == DIGEST_1
    spec = api.VideoGenJobSpec.model_validate(body["spec"])
    expected = api.spec_hash(spec, api.ModelIdentity(DIGEST_1, DIGEST_1))
    assert expected != api.spec_hash(spec)
    assert status_of(r, "j")["specHash"] == expected
    assert env[api.ENV_OUTPUT_KEY].endswith(f"-{expected}.mp4")


def test_an_upgrade_changes_the_hash_but_never_a_running_jobs_hash() -> None:
    spec = api.VideoGenJobSpec.model_validate(vgj("x", model="wan-tiny")["spec"])
    one = api.spec_hash(spec, api.ModelIdentity("r1", DIGEST_1))
    two = api.spec_hash(spec, api.ModelIdentity("r2", DIGEST_2))
    assert one != two
    # A job whose runner Job was made with revision 1 keeps revision 1's hash after the upgrade.
    body = vgj("j", model="wan-tiny", status={"phase": "Running", "reason": "Running", "jobName": "x"})
    made = manifests.build_job(
        ref(body),
        spec,
        OperatorSettings(s3_bucket="videos"),
        one,
        mount=manifests.CacheMount(catalog.ResolvedModel("wan-tiny", api.ModelIdentity("r1", DIGEST_1), "p")),
    )
    made["metadata"]["uid"] = "job-uid"
    r, _ = setup([body], [model(digest=DIGEST_2)], jobs={"uid-j": [slim_job(made)]})
    decision, digest = r._model_of(
        ref(body), spec, r.views.job_of(made["metadata"]["namespace"], "uid-j", made["metadata"]["name"])
    )
    assert digest == one
    assert decision.model is not None and decision.model.identity.digest == DIGEST_2


def test_status_cannot_make_a_waiting_job_start() -> None:
    # A tenant rewriting status (reason Queued, a made-up specHash) does not get its job admitted.
    body = vgj("j", model="wan-tiny", status={"phase": "Queued", "reason": "Queued", "specHash": "0" * 16})
    r, fake = setup([body], [model(phase="Downloading")])
    settle(r.admit())
    assert fake.jobs_created() == []


def test_an_out_of_date_ready_status_does_not_count() -> None:
    # Ready for generation 1 while the admin's edit (generation 2) is being fetched: wait.
    stale = model(generation=2)
    stale["status"]["observedGeneration"] = 1
    r, _ = setup([vgj("j", model="wan-tiny")], [stale])
    r.reconcile(NS, "j")
    assert status_of(r, "j")["reason"] == "ModelNotReady"


COGVIDEOX: dict[str, Any] = {
    "pipeline": "CogVideoXPipeline",
    "transformer": "CogVideoXTransformer3DModel",
    "contextParallel": False,
    "attentionHeads": 30,
    "diffusersVersion": "0.42.1",
}
WAN: dict[str, Any] = {
    "pipeline": "WanPipeline",
    "transformer": "WanTransformer3DModel",
    "contextParallel": True,
    "attentionHeads": 12,
    "diffusersVersion": "0.42.1",
}


def test_a_multi_gpu_job_on_a_model_diffusers_cannot_split_fails_before_any_pod() -> None:
    r, fake = setup([vgj("j", model="wan-tiny", resources={"gpus": 2})], [model(architecture=COGVIDEOX)])
    r.reconcile(NS, "j")
    settle(r.admit())
    s = status_of(r, "j")
    assert (s["phase"], s["reason"]) == ("Failed", "InvalidInput")
    assert s["message"].startswith("spec.resources.gpus: 2 GPUs need a model diffusers can split across GPUs")
    assert "VideoGenModel 'wan-tiny' is CogVideoXPipeline with CogVideoXTransformer3DModel" in s["message"]
    assert "diffusers 0.42.1 runs on one GPU only" in s["message"] and s["message"].endswith("Set gpus: 1")
    assert s["lastFailure"]["reason"] == "InvalidInput"
    assert fake.jobs_created() == [] and fake.created == [], "no Job, no grant, nothing holds a GPU"


def test_the_same_model_on_one_gpu_runs() -> None:
    r, fake = setup([vgj("j", model="wan-tiny", resources={"gpus": 1})], [model(architecture=COGVIDEOX)])
    r.reconcile(NS, "j")
    settle(r.admit())
    r.reconcile(NS, "j")  # what the new Job's watch event starts
    assert status_of(r, "j")["reason"] == "PodStarting"
    assert len(fake.jobs_created()) == 1


@pytest.mark.parametrize(
    ("architecture", "model_name"),
    [
        (WAN, "wan-tiny"),  # a context-parallel plan: torchrun splits it
        ({**WAN, "contextParallel": None}, "wan-tiny"),  # the loader could not tell
        (None, "wan-tiny"),  # fetched by a loader older than status.architecture
        (None, "hf://org/tiny"),  # an unlisted URI: only the runner can tell, after loading
    ],
    ids=["context-parallel", "unknown", "not-described", "unlisted"],
)
def test_a_multi_gpu_job_is_admitted_unless_the_model_is_known_not_to_split(
    architecture: dict[str, Any] | None, model_name: str
) -> None:
    status = {"architecture": architecture} if architecture is not None else {}
    r, fake = setup(
        [vgj("j", model=model_name, resources={"gpus": 2})],
        [model(**status)],
        allow_unlisted_models=True,
    )
    r.reconcile(NS, "j")
    settle(r.admit())
    r.reconcile(NS, "j")  # what the new Job's watch event starts
    assert status_of(r, "j")["reason"] == "PodStarting"
    (job,) = [c for c in fake.created if c["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_a_malformed_architecture_refuses_nothing() -> None:
    # Written by the operator from the loader's result; if it were ever unreadable, the runner still decides.
    assert catalog.gpus_refusal("m", 2, {"contextParallel": "maybe"}) is None
    assert catalog.gpus_refusal("m", 2, "not an object") is None
    assert catalog.gpus_refusal("m", 1, COGVIDEOX) is None
    refusal = catalog.gpus_refusal("m", 4, {"pipeline": "I2VGenXLPipeline", "contextParallel": False})
    assert refusal is not None and "is I2VGenXLPipeline (no transformer)" in refusal


# ---------------------------------------------------------------------- manifests


def pv(**source: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "pvc-123"},
        "spec": {
            "capacity": {"storage": "500Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "nfs",
            "claimRef": {"namespace": "videogen-system", "name": "videogen-models", "uid": "u"},
            "mountOptions": ["rw", "nfsvers=4.1"],
            **source,
        },
    }


def test_namespace_volume_is_read_only_retained_and_prebound() -> None:
    s = OperatorSettings()
    volume = catalog.build_namespace_volume("team-a", pv(nfs={"server": "10.0.0.2", "path": "/models"}), s)
    spec = volume["spec"]
    assert volume["metadata"]["name"] == "videogen-models-team-a"
    assert spec["nfs"] == {"server": "10.0.0.2", "path": "/models", "readOnly": True}
    assert spec["accessModes"] == ["ReadOnlyMany"]
    # Deleting the namespace's claim must never delete the catalog's files.
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == ""
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "team-a",
        "name": "videogen-models",
    }
    assert spec["mountOptions"] == ["nfsvers=4.1", "ro"]
    claim = catalog.build_namespace_claim("team-a", pv(nfs={"server": "x", "path": "/"}), s)
    assert claim["spec"]["volumeName"] == "videogen-models-team-a"
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claim["spec"]["storageClassName"] == ""


def test_csi_volumes_are_shared_read_only_and_block_storage_is_refused() -> None:
    s = OperatorSettings()
    volume = catalog.build_namespace_volume("t", pv(csi={"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"}), s)
    assert volume["spec"]["csi"] == {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1", "readOnly": True}
    with pytest.raises(catalog.CacheBindingError, match="ReadWriteMany storage class"):
        catalog.build_namespace_volume("t", pv(awsElasticBlockStore={"volumeID": "vol-1"}), s)


def test_loader_runs_in_the_operators_namespace_with_its_credentials() -> None:
    s = OperatorSettings(s3_endpoint="http://s3:7070", model_cache={"type": "pvc", "claim_name": "videogen-models"})
    body = model(phase=None)
    body["spec"]["files"] = [{"path": "model_index.json", "sha256": "a" * 64}]
    job = catalog.build_loader_job(body, s)
    assert job["metadata"]["namespace"] == "videogen-system"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["videogen-model-loader", "fetch"]
    assert container["envFrom"] == [{"secretRef": {"name": "videogen-s3", "optional": True}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    loader_spec = cat.LoaderSpec.model_validate(json.loads(env[cat.ENV_LOADER_SPEC]))
    assert (loader_spec.name, loader_spec.source, loader_spec.cache_root) == (
        "wan-tiny",
        "s3://models/wan-tiny",
        "/models",
    )
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "videogen-models"}
    assert pod["serviceAccountName"] == "videogen-model-loader"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # A missing source or a failed verification is not retried.
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [11, 12]


def test_a_new_revision_request_gets_a_new_loader_and_other_edits_do_not() -> None:
    base = cat.VideoGenModelSpec(source="s3://models/a")
    assert catalog.loader_job_name("m", base) == catalog.loader_job_name(
        "m", base.model_copy(update={"namespaces": ["x"], "prewarm": True})
    )
    assert catalog.loader_job_name("m", base) != catalog.loader_job_name(
        "m", cat.VideoGenModelSpec(source="s3://models/b")
    )
    long_name = catalog.loader_job_name("m" * 250, base)
    assert len(long_name) <= 63


def test_emptydir_cannot_hold_a_catalog() -> None:
    assert catalog.catalog_unavailable(OperatorSettings()) is not None
    assert catalog.catalog_unavailable(OperatorSettings(model_cache={"type": "pvc", "claim_name": "c"})) is None


def test_a_model_being_deleted_serves_the_jobs_accepted_before_and_refuses_new_ones() -> None:
    deleting = model()
    deleting["metadata"]["deletionTimestamp"] = stamp(NOW + timedelta(minutes=5))
    older, newer = vgj("older", 0, model="wan-tiny"), vgj("newer", 10, model="wan-tiny")
    r, _ = setup([older, newer], [deleting])
    r.reconcile(NS, "older")
    r.reconcile(NS, "newer")
    settle(r.admit())
    r.reconcile(NS, "older")  # what the new Job's watch event starts
    assert status_of(r, "older")["reason"] == "PodStarting"  # its model's finalizer waits for it
    s = status_of(r, "newer")
    assert (s["phase"], s["reason"]) == ("Failed", "ModelUnavailable")
    assert "'wan-tiny' is being deleted" in s["message"]


def test_the_remover_names_the_model_and_the_cache_root_on_its_command_line() -> None:
    # The loader's `remove` takes --name/--cache-root (a full LoaderSpec is a fetch's input).
    from videogen_runner.model_loader import build_parser

    s = OperatorSettings(model_cache={"type": "pvc", "claim_name": "videogen-models"})
    job = catalog.build_remover_job(model(), s)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["videogen-model-loader", "remove"]
    args = build_parser().parse_args(command[1:])
    assert (args.name, str(args.cache_root)) == ("wan-tiny", "/models")


def test_the_prewarm_daemonset_reads_the_served_revision_read_only_and_holds_little() -> None:
    s = OperatorSettings(model_cache={"type": "pvc", "claim_name": "videogen-models"})
    ds = catalog.build_prewarm_daemonset(model(digest=DIGEST_2), s)
    assert ds["metadata"]["namespace"] == "videogen-system"
    pod = ds["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["videogen-model-loader", "prewarm"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env == {cat.ENV_MODEL_DIR: "/models/" + cat.model_dir("wan-tiny", DIGEST_2)}
    assert "envFrom" not in container, "reading the cache needs no credential"
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "videogen-models", "readOnly": True}
    assert container["volumeMounts"][0]["readOnly"] is True
    assert pod["serviceAccountName"] == "videogen-model-loader"
    # One per node and model, for the node's lifetime: not a loader's CPU and 2Gi.
    assert container["resources"] == {"requests": {"cpu": "10m", "memory": "128Mi"}}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
