"""The model catalog end to end: a VideoGenModel fetched once by the operator's loader (in the
operator's namespace, with its credentials) into the cache claim the chart's defaults make
(`modelCache.type: pvc`), shared read-only into job namespaces, and used by name.

Real API server, real S3 (its access log counts the reads), real loader and runner pods on the
local node, the operator as a process with the chart's catalog settings (`allowUnlisted: false`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import page_cache
import pytest
import yaml
from media_checks import check_output
from operator_support import BUCKET, Jobs, tiny_job

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_devcluster.devcluster import DevCluster
from videogen_devcluster.operator_process import (
    CACHE_CLAIM,
    CATALOG_SETTINGS,
    OPERATOR_NAMESPACE,
    OperatorProcess,
    create_cache_claim,
    create_peering,
    model_manifest,
    operator_env,
    upload_model_dir,
)
from videogen_devcluster.procs import pid_alive
from videogen_devcluster.testing import unique_name
from videogen_operator.catalog import COMPONENT_PREWARM, LOADER_CONTAINER, prewarm_name
from videogen_operator.settings import OperatorSettings

pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow, pytest.mark.mounts]
_DEFAULTS = OperatorSettings()
MOUNT_PATH = _DEFAULTS.model_cache.mount_path.rstrip("/")
LOADER_SERVICE_ACCOUNT = _DEFAULTS.loader_service_account


def catalog_job(name: str, model: str, **spec: Any) -> dict[str, Any]:
    # Several jobs share the local node's few GPUs here: a pod may wait for one longer than the
    # tiny jobs' usual startup timeout.
    return tiny_job(name, model=model, startupTimeoutSeconds=900, **spec)


def wait_until(check: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def kubectl_json(dc: DevCluster, *args: str) -> Any:
    result = dc.kubectl(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def apply(dc: DevCluster, obj: dict[str, Any]) -> None:
    result = dc.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    assert result.returncode == 0, result.stderr


def get_model(dc: DevCluster, name: str) -> dict[str, Any] | None:
    result = dc.kubectl("get", "videogenmodel", name, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_model(dc: DevCluster, name: str, *phases: str, timeout: float = 180) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        found = get_model(dc, name)
        status = (found or {}).get("status") or {}
        current = status.get("observedGeneration") == (found or {}).get("metadata", {}).get("generation")
        return found if current and status.get("phase") in phases else None

    try:
        return wait_until(ready, timeout, f"VideoGenModel {name} to be {'/'.join(phases)}")  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(f"{name}: {json.dumps(get_model(dc, name), indent=1)[-3000:]}") from None


@pytest.fixture(scope="module")
def cache_claim(operator_base: DevCluster) -> str:
    return create_cache_claim(operator_base)


@pytest.fixture
def tenants(operator_base: DevCluster, namespace: str) -> Iterator[list[str]]:
    """Four job namespaces: the test's own and three more."""
    extra = [unique_name(f"team-{c}") for c in "bcd"]
    for ns in extra:
        operator_base.kubectl("create", "namespace", ns)
    yield [namespace, *extra]
    for ns in extra:
        operator_base.kubectl("delete", "namespace", ns, "--wait=false")


@pytest.fixture
def catalog_operator(
    operator_base: DevCluster, model_cache: Path, cache_claim: str, tenants: list[str], tmp_path: Path
) -> Iterator[OperatorProcess]:
    for ns in tenants:
        create_peering(operator_base, ns)
    env = operator_env(operator_base, model_cache, tenants, **CATALOG_SETTINGS)
    op = OperatorProcess(env, tmp_path / "operator-0.log").start()
    yield op
    op.stop()


def cache_root(dc: DevCluster) -> Path:
    """Where the local node keeps the operator's cache claim (a local-path PersistentVolume)."""
    claim = kubectl_json(dc, "get", "pvc", CACHE_CLAIM, "-n", OPERATOR_NAMESPACE)
    volume = kubectl_json(dc, "get", "pv", claim["spec"]["volumeName"])
    return Path(volume["spec"]["hostPath"]["path"])


def test_one_download_serves_three_namespaces_without_credentials(
    operator_base: DevCluster, catalog_operator: OperatorProcess, tenants: list[str], model_cache: Path
) -> None:
    dc = operator_base
    team_a, team_b, team_c, outsider = tenants
    name = unique_name("tiny-wan")
    prefix = f"catalog-src/{name}"
    files = upload_model_dir(dc, model_cache / "build" / "wan-t2v", prefix)

    # A job that names the model before it exists waits for it.
    early = Jobs(dc, team_a)
    early.apply(catalog_job("early", name))
    waiting = wait_until(lambda: early.status("early").get("reason") == "ModelNotReady" and early.status("early"))
    assert waiting["phase"] == "Queued" and name in waiting["message"]

    apply(dc, model_manifest(name, f"s3://{BUCKET}/{prefix}", namespaces=[team_a, team_b, team_c]))
    ready = wait_model(dc, name, "Ready", "Failed")
    status = ready["status"]
    assert status["phase"] == "Ready", status
    assert status["fileCount"] == files and status["digest"].startswith("sha256:")
    assert status["path"] == cat.model_dir(name, status["digest"])
    table = dc.kubectl("get", "videogenmodels", name).stdout
    assert table.split("\n")[0].split()[:4] == ["NAME", "PHASE", "SIZE", "PROGRESS"]
    assert "Ready" in table and status["size"] in table

    others = {ns: Jobs(dc, ns) for ns in (team_b, team_c)}
    for ns, client in others.items():
        client.apply(catalog_job(f"in-{ns[:20]}", name))
    refused = Jobs(dc, outsider)
    refused.apply(catalog_job("outsider", name))
    denied = refused.wait_phase("outsider", "Failed", timeout=60)
    assert denied["reason"] == "ModelNotAllowed" and outsider in denied["message"]

    done = [early.wait_phase("early", "Succeeded", "Failed", timeout=300)]
    done += [c.wait_phase(f"in-{ns[:20]}", "Succeeded", "Failed", timeout=300) for ns, c in others.items()]
    for result in done:
        assert result["phase"] == "Succeeded", result
        check_output(dc.s3_client(), result, frames=9)
    identity = api.ModelIdentity(status["revision"], status["digest"])
    spec = api.VideoGenJobSpec.model_validate(early.get("early")["spec"])
    assert done[0]["specHash"] == api.spec_hash(spec, identity)

    # Every file of the model was read from S3 exactly once: by the loader, never by a runner.
    reads = dc.s3.object_reads(BUCKET, prefix + "/")  # type: ignore[union-attr]
    assert len(reads) == files and set(reads.values()) == {1}, reads

    secret_key = dc.s3.env()["AWS_SECRET_ACCESS_KEY"]  # type: ignore[union-attr]
    for ns in (team_a, team_b, team_c):
        for secret in kubectl_json(dc, "get", "secrets", "-n", ns)["items"]:
            values = [str(v) for v in (secret.get("data") or {}).values()]
            assert "AWS_SECRET_ACCESS_KEY" not in (secret.get("data") or {})
            assert not any(secret_key.encode().hex() in v or secret_key in v for v in values)
        claim = kubectl_json(dc, "get", "pvc", CACHE_CLAIM, "-n", ns)
        assert claim["status"]["phase"] == "Bound"
        assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
        volume = kubectl_json(dc, "get", "pv", claim["spec"]["volumeName"])
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        pods = kubectl_json(dc, "get", "pods", "-n", ns, "-l", f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}")["items"]
        assert pods, f"no runner pod left in {ns}"
        for pod in pods:
            mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
            assert mounts["model-cache"]["readOnly"] is True
            cache = next(v for v in pod["spec"]["volumes"] if v["name"] == "model-cache")
            assert cache["persistentVolumeClaim"] == {"claimName": CACHE_CLAIM, "readOnly": True}

    # The files on the shared volume are read-only once verified.
    model_path = cache_root(dc) / status["path"]
    assert (model_path / "model_index.json").stat().st_mode & 0o222 == 0


def test_upgrades_change_the_hash_bad_files_fail_and_deletion_waits_for_jobs(
    operator_base: DevCluster, catalog_operator: OperatorProcess, tenants: list[str], model_cache: Path
) -> None:
    dc = operator_base
    team = tenants[0]
    jobs = Jobs(dc, team)
    name = unique_name("tiny-up")
    source = model_cache / "build" / "wan-t2v"
    upload_model_dir(dc, source, f"catalog-src/{name}/v1")
    apply(dc, model_manifest(name, f"s3://{BUCKET}/catalog-src/{name}/v1"))
    first = wait_model(dc, name, "Ready", "Failed")["status"]
    assert first["phase"] == "Ready", first
    jobs.apply(catalog_job("before", name))
    before = jobs.wait_phase("before", "Succeeded", "Failed", timeout=300)
    assert before["phase"] == "Succeeded", before

    # Revision 2: the same model with one config file changed (the scheduler's, re-serialised).
    upload_model_dir(dc, source, f"catalog-src/{name}/v2")
    scheduler = json.loads((source / "scheduler" / "scheduler_config.json").read_text())
    dc.s3_client().put_object(
        Bucket=BUCKET,
        Key=f"catalog-src/{name}/v2/scheduler/scheduler_config.json",
        Body=json.dumps(scheduler, indent=4).encode(),
    )
    apply(dc, model_manifest(name, f"s3://{BUCKET}/catalog-src/{name}/v2"))
    second = wait_model(dc, name, "Ready", "Failed")["status"]
    assert second["phase"] == "Ready" and second["digest"] != first["digest"], second
    jobs.apply(catalog_job("after", name))  # the same spec as "before"
    after = jobs.wait_phase("after", "Succeeded", "Failed", timeout=300)
    assert after["phase"] == "Succeeded" and after["reason"] != "CacheHit", after
    assert after["specHash"] != before["specHash"]

    # A file that does not match its pinned digest fails the model, naming the file.
    bad = unique_name("tiny-bad")
    wrong = hashlib.sha256(b"not the file").hexdigest()
    apply(
        dc,
        model_manifest(
            bad, f"s3://{BUCKET}/catalog-src/{name}/v1", files=[{"path": "model_index.json", "sha256": wrong}]
        ),
    )
    failed = wait_model(dc, bad, "Failed", "Ready")["status"]
    assert failed["phase"] == "Failed" and "model_index.json" in failed["message"], failed
    jobs.apply(catalog_job("on-bad", bad))
    unavailable = jobs.wait_phase("on-bad", "Failed", timeout=60)
    assert unavailable["reason"] == "ModelUnavailable" and bad in unavailable["message"]

    # Deletion waits for the jobs that still use the model, then reclaims its files.
    jobs.apply(catalog_job("held", name, suspend=True, prompt="held back until its model is deleted"))
    wait_until(lambda: jobs.status("held").get("reason") == "Suspended", 60, "the held job to be suspended")
    root = cache_root(dc)
    assert (root / cat.CATALOG_DIR / name).is_dir()
    deleted = dc.kubectl("delete", "videogenmodel", name, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    blocked = wait_until(
        lambda: ((get_model(dc, name) or {}).get("status") or {}).get("reason") == "InUse" and get_model(dc, name),
        60,
        "the deletion to be blocked",
    )
    assert f"{team}/held" in blocked["status"]["message"]
    jobs.patch_spec("held", {"suspend": False})
    assert jobs.wait_phase("held", "Succeeded", "Failed", timeout=300)["phase"] == "Succeeded"
    wait_until(lambda: get_model(dc, name) is None, 300, "the model to be deleted")
    assert not (root / cat.CATALOG_DIR / name).exists()
    events = kubectl_json(dc, "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}")
    assert "InUse" in {e["reason"] for e in events["items"]}


def test_a_multi_gpu_job_on_a_model_diffusers_cannot_split_fails_before_any_pod(
    operator_base: DevCluster, catalog_operator: OperatorProcess, tenants: list[str], tmp_path: Path
) -> None:
    from videogen_runner.tiny_models import save_tiny_pipeline

    dc = operator_base
    team = tenants[0]
    jobs = Jobs(dc, team)
    name = unique_name("tiny-cog")
    upload_model_dir(dc, save_tiny_pipeline("cogvideox-t2v", tmp_path / "cogvideox"), f"catalog-src/{name}")
    apply(dc, model_manifest(name, f"s3://{BUCKET}/catalog-src/{name}"))
    status = wait_model(dc, name, "Ready", "Failed")["status"]
    assert status["phase"] == "Ready", status
    # The loader read the configs and asked diffusers: CogVideoX's transformer has no context-parallel plan.
    architecture = status["architecture"]
    assert (architecture["pipeline"], architecture["transformer"]) == (
        "CogVideoXPipeline",
        "CogVideoXTransformer3DModel",
    )
    assert architecture["contextParallel"] is False
    wide = dc.kubectl("get", "videogenmodel", name, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["PIPELINE", "MULTI-GPU"] and wide[1].split()[-2:] == ["CogVideoXPipeline", "false"]

    jobs.apply(catalog_job("two-gpus", name, resources={"gpus": 2}))
    refused = jobs.wait_phase("two-gpus", "Failed", "Succeeded", timeout=60)
    assert (refused["phase"], refused["reason"]) == ("Failed", "InvalidInput"), refused
    message = refused["message"]
    assert message.startswith("spec.resources.gpus: 2 GPUs need a model diffusers can split"), message
    assert f"VideoGenModel '{name}' is CogVideoXPipeline with CogVideoXTransformer3DModel" in message
    assert "jobName" not in refused
    # Refused at admission: no Job, no pod, no grant was ever made for it.
    for kind in ("jobs", "pods", "secrets"):
        items = kubectl_json(dc, "get", kind, "-n", team, "-l", f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}")["items"]
        assert items == [], f"{kind}: {[i['metadata']['name'] for i in items]}"

    # The same model on one GPU runs: the refusal is about spec.resources.gpus alone. (Preset standard:
    # fast's first-block cache needs at least two transformer blocks, and the tiny CogVideoX has one.)
    jobs.apply(catalog_job("one-gpu", name, resources={"gpus": 1}, preset="standard"))
    done = jobs.wait_phase("one-gpu", "Succeeded", "Failed", timeout=300)
    assert done["phase"] == "Succeeded", done
    check_output(dc.s3_client(), done, frames=9)


def prewarm_pods(dc: DevCluster, name: str) -> list[dict[str, Any]]:
    selector = f"{api.LABEL_COMPONENT}={COMPONENT_PREWARM},{cat.LABEL_MODEL_NAME}={api.label_safe(name)}"
    return list(kubectl_json(dc, "get", "pods", "-n", OPERATOR_NAMESPACE, "-l", selector)["items"])


def get_daemonset(dc: DevCluster, name: str) -> dict[str, Any] | None:
    result = dc.kubectl("get", "daemonset", prewarm_name(name), "-n", OPERATOR_NAMESPACE, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def warmed(dc: DevCluster, name: str, model_path: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The running prewarm pod that has read `model_path` (its summary on stdout), and that summary."""
    assert dc.gpu_node is not None
    for pod in prewarm_pods(dc, name):
        if pod["metadata"].get("deletionTimestamp") or (pod.get("status") or {}).get("phase") != "Running":
            continue
        log = dc.gpu_node.logs(OPERATOR_NAMESPACE, pod["metadata"]["name"], LOADER_CONTAINER)
        for line in log.splitlines():
            if line.startswith("{") and json.loads(line).get("path") == model_path:
                return pod, json.loads(line)
    return None


def set_prewarm(dc: DevCluster, name: str, on: bool) -> None:
    patched = dc.kubectl("patch", "videogenmodel", name, "--type=merge", "-p", json.dumps({"spec": {"prewarm": on}}))
    assert patched.returncode == 0, patched.stderr


def test_prewarm_reads_the_served_revision_into_the_nodes_page_cache_and_goes_with_the_flag_and_the_model(
    operator_base: DevCluster, catalog_operator: OperatorProcess, model_cache: Path
) -> None:
    dc = operator_base
    node = dc.gpu_node
    assert node is not None
    name = unique_name("tiny-warm")
    source = model_cache / "build" / "wan-t2v"
    upload_model_dir(dc, source, f"catalog-src/{name}/v1")
    apply(dc, model_manifest(name, f"s3://{BUCKET}/catalog-src/{name}/v1"))
    first = wait_model(dc, name, "Ready", "Failed")["status"]
    assert first["phase"] == "Ready", first
    assert get_daemonset(dc, name) is None, "no prewarm unless asked"

    # Out of the page cache first (the loader just wrote the files, so they are in it).
    files = sorted(p for p in (cache_root(dc) / first["path"]).rglob("*") if p.is_file())
    page_cache.drop(files)
    assert page_cache.resident(files) == 0

    # Prewarm on: an edit that fetches nothing; a DaemonSet pod on the node reads every file once.
    set_prewarm(dc, name, True)
    assert wait_model(dc, name, "Ready")["status"]["loaderJob"] == first["loaderJob"]
    mounted = f"{MOUNT_PATH}/{first['path']}"
    pod, summary = wait_until(lambda: warmed(dc, name, mounted), 180, "the prewarm pod to read the model")
    assert pod["spec"]["nodeName"] == node.name
    assert pod["spec"]["serviceAccountName"] == LOADER_SERVICE_ACCOUNT
    assert next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "model-cache")["readOnly"]
    assert summary["files"] == len(files)
    assert summary["bytes"] == sum(p.stat().st_size for p in files)
    assert page_cache.resident(files) == page_cache.total_pages(files), "every page of every file is cached"
    pid = node.container_pid(OPERATOR_NAMESPACE, pod["metadata"]["name"], LOADER_CONTAINER)
    assert pid is not None and pid_alive(pid), "it stays (a new node gets its own pod and reads the files too)"

    # A new revision: the same DaemonSet, rolled to read the new directory.
    upload_model_dir(dc, source, f"catalog-src/{name}/v2")
    dc.s3_client().put_object(
        Bucket=BUCKET,
        Key=f"catalog-src/{name}/v2/model_index.json",
        Body=(source / "model_index.json").read_bytes() + b"\n",
    )
    apply(dc, model_manifest(name, f"s3://{BUCKET}/catalog-src/{name}/v2", prewarm=True))
    second = wait_model(dc, name, "Ready", "Failed")["status"]
    assert second["phase"] == "Ready" and second["digest"] != first["digest"], second
    new_files = sorted(p for p in (cache_root(dc) / second["path"]).rglob("*") if p.is_file())
    rolled, _ = wait_until(
        lambda: warmed(dc, name, f"{MOUNT_PATH}/{second['path']}"), 180, "the prewarm pod to read the new revision"
    )
    assert rolled["metadata"]["name"] != pod["metadata"]["name"]
    assert page_cache.resident(new_files) == page_cache.total_pages(new_files)
    wait_until(lambda: not pid_alive(pid), 60, "the old revision's prewarm process to end")
    pid = node.container_pid(OPERATOR_NAMESPACE, rolled["metadata"]["name"], LOADER_CONTAINER)
    assert pid is not None

    # Prewarm off: the DaemonSet and its pod's process go.
    set_prewarm(dc, name, False)
    wait_until(lambda: get_daemonset(dc, name) is None, 60, "the DaemonSet to be deleted")
    wait_until(lambda: not pid_alive(pid), 60, "the prewarm process to end")

    # On again, then the model is deleted: the DaemonSet goes with it, before its files.
    set_prewarm(dc, name, True)
    again, _ = wait_until(lambda: warmed(dc, name, f"{MOUNT_PATH}/{second['path']}"), 180, "prewarm to come back")
    pid = node.container_pid(OPERATOR_NAMESPACE, again["metadata"]["name"], LOADER_CONTAINER)
    assert pid is not None
    assert dc.kubectl("delete", "videogenmodel", name, "--wait=false").returncode == 0
    wait_until(lambda: get_model(dc, name) is None, 300, "the model to be deleted")
    wait_until(lambda: get_daemonset(dc, name) is None and not prewarm_pods(dc, name), 60, "the DaemonSet to go")
    wait_until(lambda: not pid_alive(pid), 60, "the prewarm process to end")
    assert not (cache_root(dc) / cat.CATALOG_DIR / name).exists()
