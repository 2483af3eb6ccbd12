"""The model catalog's pure parts: which model a job gets, and the manifests the operator makes for it.

- `resolve_job_model`: what a VideoGenJob's spec.model means here (a Ready catalog model, one to wait
  for, one this namespace may not use, one that cannot run on the job's spec.resources.gpus, or an
  unlisted URI the policy allows or refuses). Decided from the spec, the job's namespace and the
  VideoGenModel (cluster-scoped: tenants cannot write it), never from the job's status.
- `build_loader_job` / `build_remover_job` / `build_prewarm_daemonset`: the operator's own pods, in its
  own namespace, with its own credentials.
- `build_namespace_volume` / `build_namespace_claim`: a read-only PersistentVolume and claim per job
  namespace, bound to the same storage as the operator's cache claim (the way KServe binds its model
  cache into namespaces), so runners read the catalog without credentials and without hostPath.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_operator.settings import OperatorSettings

LOADER_CONTAINER: Final = "loader"
# app.kubernetes.io/component of prewarm DaemonSets and their pods (README: Upgrade/uninstall).
COMPONENT_PREWARM: Final = "model-prewarm"
# A prewarm pod's requests: one Python process that read the files and waits for SIGTERM.
PREWARM_REQUESTS: Final = {"cpu": "10m", "memory": "128Mi"}
CACHE_VOLUME: Final = "model-cache"
# Volume sources whose PersistentVolume fields carry a readOnly flag of their own.
_READ_ONLY_SOURCES: Final = ("nfs", "csi", "cephfs", "glusterfs", "iscsi", "rbd", "azureFile", "fc", "flexVolume")
# Sources a second PersistentVolume cannot share: attached to one node by one claim at a time.
_UNSHAREABLE_SOURCES: Final = ("awsElasticBlockStore", "gcePersistentDisk", "azureDisk", "cinder", "vsphereVolume")


@dataclass(frozen=True)
class ResolvedModel:
    """A Ready catalog model as one job will use it."""

    name: str
    identity: api.ModelIdentity
    path: str  # relative to the cache root


@dataclass(frozen=True)
class ModelDecision:
    """What spec.model means for this job: `model` to run with, `wait`, or `fail` (reason, message)."""

    model: ResolvedModel | None = None
    wait: str | None = None
    fail: tuple[str, str] | None = None
    unlisted: bool = False


def loader_image(settings: OperatorSettings) -> str:
    return settings.loader_image or settings.runner_image


def _short(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _dns_label(prefix: str, name: str, suffix: str) -> str:
    """<prefix><name>-<suffix>, cut to 63 characters (a Job's name is also its pods' label value)."""
    room = 63 - len(prefix) - len(suffix) - 1
    head = name[:room].rstrip("-.")
    return f"{prefix}{head}-{suffix}".replace(".", "-")


def source_key(spec: cat.VideoGenModelSpec, refetch: str = "") -> str:
    """A hash of what makes up a revision request (source, revision, expected files, profile, and the
    refetch annotation an admin changes to fetch again)."""
    wire = spec.to_wire()
    relevant: dict[str, Any] = {k: wire.get(k) for k in ("source", "revision", "files", "profile")}
    if refetch:
        relevant["refetch"] = refetch
    return _short(json.dumps(relevant, sort_keys=True, separators=(",", ":")), 10)


def refetch_of(model: dict[str, Any]) -> str:
    return str(((model.get("metadata") or {}).get("annotations") or {}).get(cat.ANNOTATION_REFETCH) or "")


def loader_job_name(name: str, spec: cat.VideoGenModelSpec, refetch: str = "") -> str:
    """One loader Job per (model, revision request): editing the source makes a new one."""
    return _dns_label("vgm-load-", name, source_key(spec, refetch))


def remover_job_name(name: str, uid: str) -> str:
    return _dns_label("vgm-rm-", name, uid[:8])


def prewarm_name(name: str) -> str:
    return _dns_label("vgm-warm-", name, _short(name, 6))


def namespace_volume_name(namespace: str) -> str:
    return f"videogen-models-{namespace}"


def _owner_reference(model: dict[str, Any]) -> dict[str, Any]:
    meta = model["metadata"]
    return {
        "apiVersion": api.API_VERSION,
        "kind": cat.MODEL_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def _labels(name: str, component: str) -> dict[str, str]:
    return {
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_PART_OF: api.MANAGED_BY,
        api.LABEL_COMPONENT: component,
        cat.LABEL_MODEL_NAME: api.label_safe(name),
    }


def _cache_volume(settings: OperatorSettings, *, read_only: bool) -> dict[str, Any] | None:
    """The operator namespace's view of the cache: the claim itself (pvc) or the node directory."""
    cache = settings.model_cache
    if cache.type == "pvc" and cache.claim_name:
        source: dict[str, Any] = {"claimName": cache.claim_name}
        if read_only:
            source["readOnly"] = True
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": source}
    if cache.type == "hostPath" and cache.host_path:
        return {"name": CACHE_VOLUME, "hostPath": {"path": cache.host_path, "type": "DirectoryOrCreate"}}
    return None


def catalog_unavailable(settings: OperatorSettings) -> str | None:
    """Why this operator's cache cannot hold a catalog; None when it can."""
    cache = settings.model_cache
    if cache.type == "pvc" and not cache.claim_name:
        return "modelCache.type is pvc but modelCache.claimName is empty"
    if cache.type == "hostPath" and not cache.host_path:
        return "modelCache.type is hostPath but modelCache.hostPath is empty"
    if cache.type == "emptyDir":
        return "modelCache.type is emptyDir: nothing outlives a pod, so there is no catalog to fetch into"
    return None


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _loader_env(settings: OperatorSettings, spec_json: str) -> list[dict[str, Any]]:
    root = settings.model_cache.mount_path.rstrip("/")
    env: list[dict[str, Any]] = [
        {"name": cat.ENV_LOADER_SPEC, "value": spec_json},
        {"name": "AWS_REGION", "value": settings.s3_region},
        {"name": "VIDEOGEN_S3_ADDRESSING_STYLE", "value": settings.s3_addressing_style},
        # The Hub's own cache (metadata, partial downloads) on the cache volume, not the node's
        # ephemeral storage: a 20 GB model must not pass through an emptyDir, and a retry resumes.
        {"name": "HF_HOME", "value": f"{root}/{cat.CATALOG_DIR}/.hf-home"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if "HF_HUB_OFFLINE" not in settings.extra_loader_env:
        # The runner image (the loader's by default) sets HF_HUB_OFFLINE=1 for runners; the loader
        # is the one component that downloads from the Hub.
        env.append({"name": "HF_HUB_OFFLINE", "value": "0"})
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint})
    if settings.hf_token_secret_name:
        ref = {"name": settings.hf_token_secret_name, "key": "HF_TOKEN", "optional": True}
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    env.extend({"name": k, "value": v} for k, v in sorted(settings.extra_loader_env.items()))
    return env


def _operator_pod(
    settings: OperatorSettings, command: list[str], env: list[dict[str, Any]], *, read_only: bool
) -> dict[str, Any]:
    volume = _cache_volume(settings, read_only=read_only)
    assert volume is not None, "callers check catalog_unavailable first"
    mount: dict[str, Any] = {"name": CACHE_VOLUME, "mountPath": settings.model_cache.mount_path}
    if read_only:
        mount["readOnly"] = True
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.loader_service_account,
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        "containers": [
            {
                "name": LOADER_CONTAINER,
                "image": loader_image(settings),
                "imagePullPolicy": settings.runner_image_pull_policy,
                "command": command,
                "env": env,
                "resources": {
                    "requests": {"cpu": settings.loader_cpu_request, "memory": settings.loader_memory_request}
                },
                "terminationMessagePath": api.DEFAULT_TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": _container_security(),
                "volumeMounts": [mount, {"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [volume, {"name": "tmp", "emptyDir": {}}],
    }
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    return pod


def build_loader_job(model: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Job that fetches one revision of a model into the cache (operator's namespace, its credentials)."""
    meta = model["metadata"]
    spec = cat.VideoGenModelSpec.model_validate(model.get("spec") or {})
    loader_spec = cat.LoaderSpec(
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
        source=spec.source,
        revision=spec.revision,
        files=spec.files,
        profile=spec.profile,
        cache_root=settings.model_cache.mount_path,
    )
    env = _loader_env(settings, json.dumps(loader_spec.to_wire(), separators=(",", ":")))
    pod = _operator_pod(settings, [*settings.loader_command, "fetch"], env, read_only=False)
    # The platform's storage keys, from the Secret in the operator's own namespace (never a tenant's).
    pod["containers"][0]["envFrom"] = [{"secretRef": {"name": settings.s3_secret_name, "optional": True}}]
    labels = _labels(meta["name"], cat.COMPONENT_LOADER)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": loader_job_name(meta["name"], spec, refetch_of(model)),
            "namespace": settings.operator_namespace,
            "labels": labels,
            "ownerReferences": [_owner_reference(model)],
        },
        "spec": {
            "backoffLimit": settings.loader_backoff_limit,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        # A missing source or a failed verification fails the same way again.
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": LOADER_CONTAINER,
                            "operator": "In",
                            "values": [int(api.ExitCode.MODEL_NOT_FOUND), int(api.ExitCode.MODEL_LOAD_ERROR)],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "podReplacementPolicy": "Failed",
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def build_remover_job(model: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Job that reclaims a deleted model's cache space (all its revisions)."""
    meta = model["metadata"]
    command = [
        *settings.loader_command,
        "remove",
        "--name",
        meta["name"],
        "--cache-root",
        settings.model_cache.mount_path,
    ]
    pod = _operator_pod(settings, command, [{"name": "PYTHONUNBUFFERED", "value": "1"}], read_only=False)
    labels = _labels(meta["name"], cat.COMPONENT_REMOVER)
    # No owner reference: the model is about to go, and its Job must outlive it long enough to be read.
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": remover_job_name(meta["name"], meta["uid"]),
            "namespace": settings.operator_namespace,
            "labels": labels,
        },
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def build_prewarm_daemonset(model: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """Reads a Ready model's files once on every GPU node, then idles (so it is re-read on new nodes)."""
    meta = model["metadata"]
    status = model.get("status") or {}
    path = f"{settings.model_cache.mount_path.rstrip('/')}/{status.get('path', '')}"
    env = [{"name": cat.ENV_MODEL_DIR, "value": path}]
    pod = _operator_pod(settings, [*settings.loader_command, "prewarm"], env, read_only=True)
    pod["restartPolicy"] = "Always"
    # Reads once, then sleeps for the node's lifetime: a loader's request (a CPU, 2Gi) would hold
    # that much of every GPU node per prewarmed model, for nothing.
    pod["containers"][0]["resources"] = {"requests": dict(PREWARM_REQUESTS)}
    if settings.default_node_selector:
        pod["nodeSelector"] = dict(settings.default_node_selector)
    pod["tolerations"] = [
        {"key": settings.gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"},
        *settings.default_tolerations,
    ]
    labels = _labels(meta["name"], COMPONENT_PREWARM)
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": prewarm_name(meta["name"]),
            "namespace": settings.operator_namespace,
            "labels": labels,
            "ownerReferences": [_owner_reference(model)],
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


# ---------------------------------------------------------------------- namespaces


class CacheBindingError(Exception):
    """The operator's cache claim cannot be shared into job namespaces (message says why)."""


def build_namespace_volume(namespace: str, source_pv: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """A read-only PersistentVolume onto the same storage as the operator's cache volume,
    pre-bound to the namespace's claim. Retain: deleting the claim never deletes the catalog."""
    spec = dict(source_pv.get("spec") or {})
    for kind in _UNSHAREABLE_SOURCES:
        if kind in spec:
            raise CacheBindingError(
                f"the model cache volume {source_pv['metadata']['name']} is a {kind}, which one node attaches "
                "for one claim at a time; use a ReadWriteMany storage class (NFS, CephFS, EFS, Filestore, ...)"
            )
    copied: dict[str, Any] = {}
    for key, value in spec.items():
        if key in ("claimRef", "persistentVolumeReclaimPolicy", "storageClassName", "accessModes", "mountOptions"):
            continue
        copied[key] = json.loads(json.dumps(value))
    for kind in _READ_ONLY_SOURCES:
        if kind in copied and isinstance(copied[kind], dict):
            copied[kind]["readOnly"] = True
    mount_options = [o for o in spec.get("mountOptions") or [] if o not in ("rw",)]
    if "nfs" in copied:
        mount_options = sorted({*mount_options, "ro"})
    volume: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": namespace_volume_name(namespace),
            "labels": {
                api.LABEL_MANAGED_BY: api.MANAGED_BY,
                api.LABEL_COMPONENT: "model-cache",
                f"{api.GROUP}/namespace": namespace,
            },
            "annotations": {f"{api.GROUP}/source-volume": source_pv["metadata"]["name"]},
        },
        "spec": {
            **copied,
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": settings.model_cache.namespace_claim_name,
            },
        },
    }
    if mount_options:
        volume["spec"]["mountOptions"] = mount_options
    return volume


def build_namespace_claim(namespace: str, source_pv: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    capacity = ((source_pv.get("spec") or {}).get("capacity") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": settings.model_cache.namespace_claim_name,
            "namespace": namespace,
            "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY, api.LABEL_COMPONENT: "model-cache"},
        },
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": namespace_volume_name(namespace),
            "resources": {"requests": {"storage": capacity}},
        },
    }


def volume_matches(volume: dict[str, Any], namespace: str, settings: OperatorSettings) -> bool:
    """Our namespace volume, bound (or bindable) to the namespace's claim and no other."""
    ref = (volume.get("spec") or {}).get("claimRef") or {}
    labels = (volume.get("metadata") or {}).get("labels") or {}
    return (
        labels.get(api.LABEL_MANAGED_BY) == api.MANAGED_BY
        and ref.get("namespace") == namespace
        and ref.get("name") == settings.model_cache.namespace_claim_name
    )


# ---------------------------------------------------------------------- jobs


def model_identity(model: dict[str, Any]) -> api.ModelIdentity | None:
    status = model.get("status") or {}
    if status.get("revision") and status.get("digest"):
        return api.ModelIdentity(revision=str(status["revision"]), digest=str(status["digest"]))
    return None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _progress_text(status: dict[str, Any]) -> str:
    """Download progress for a waiting job's message, in steps of 10%: every waiting job's status is
    rewritten when its message changes, so a loader's progress every 2 s must not become N writes."""
    percent = (status.get("progress") or {}).get("percent")
    if not isinstance(percent, int):
        return ""
    return f" (downloaded {percent // 10 * 10}%)"


def gpus_refusal(name: str, gpus: int, architecture: Any) -> str | None:
    """Why a Ready catalog model cannot run on `gpus` GPUs, or None.

    From status.architecture, which the model loader wrote from the model's configs and diffusers'
    classes (the runner's own test, parallel.has_context_parallel_plan): a transformer without a
    context-parallel plan runs on one GPU, so a multi-GPU job is refused here, before its pod holds
    the GPUs. Unknown facts (a loader that could not tell, or one older than this check) refuse
    nothing: the runner then refuses after loading, as it does for unlisted URIs."""
    if gpus <= 1:
        return None
    try:
        facts = cat.ModelArchitecture.model_validate(architecture) if architecture else None
    except ValidationError:
        return None
    if facts is None or facts.context_parallel is not False:
        return None
    what = f"{facts.pipeline} with {facts.transformer}" if facts.transformer else f"{facts.pipeline} (no transformer)"
    version = f" {facts.diffusers_version}" if facts.diffusers_version else ""
    return (
        f"spec.resources.gpus: {gpus} GPUs need a model diffusers can split across GPUs (a context-parallel "
        f"plan, e.g. Wan, LTX); VideoGenModel {name!r} is {what}, which diffusers{version} runs on one GPU only "
        "(status.architecture.contextParallel: false). Set gpus: 1"
    )


def resolve_job_model(
    namespace: str,
    spec: api.VideoGenJobSpec,
    model: dict[str, Any] | None,
    settings: OperatorSettings,
    created: datetime | None = None,
) -> ModelDecision:
    """What spec.model means for a job in `namespace` (created at `created`), given the VideoGenModel of
    that name (if any)."""
    if not cat.is_catalog_name(spec.model):
        if settings.allow_unlisted_models:
            return ModelDecision(unlisted=True)
        return ModelDecision(
            fail=(
                api.Reason.MODEL_NOT_ALLOWED,
                f"spec.model: {spec.model} is not in the model catalog, and this cluster runs catalog models "
                "only (kubectl get videogenmodels; an admin may set models.allowUnlisted)",
            )
        )
    name = spec.model
    if model is None:
        return ModelDecision(
            wait=f"VideoGenModel {name!r} does not exist (yet); the job waits for it (kubectl get videogenmodels)"
        )
    meta = model.get("metadata") or {}
    deleting = _parse_time(meta.get("deletionTimestamp"))
    if deleting is not None and (created is None or created > deleting):
        # Jobs accepted before the deletion keep the model (its finalizer waits for them); new ones fail.
        return ModelDecision(
            fail=(api.Reason.MODEL_UNAVAILABLE, f"spec.model: VideoGenModel {name!r} is being deleted")
        )
    model_spec = cat.VideoGenModelSpec.model_validate(model.get("spec") or {})
    if not cat.namespace_allowed(model_spec, namespace):
        return ModelDecision(
            fail=(
                api.Reason.MODEL_NOT_ALLOWED,
                f"spec.model: VideoGenModel {name!r} may not be used from namespace {namespace!r} "
                f"(its spec.namespaces: {', '.join(model_spec.namespaces or [])})",
            )
        )
    status = model.get("status") or {}
    phase = status.get("phase")
    # Setting deletionTimestamp bumps a custom resource's generation: a model being deleted keeps the
    # files it had (its finalizer waits for the jobs accepted before).
    current = status.get("observedGeneration") == meta.get("generation") or deleting is not None
    if phase == cat.ModelPhase.FAILED and current:
        why = status.get("message") or status.get("reason") or "failed"
        return ModelDecision(
            fail=(api.Reason.MODEL_UNAVAILABLE, f"spec.model: VideoGenModel {name!r} failed: {why}"[:1000])
        )
    identity = model_identity(model)
    if phase == cat.ModelPhase.READY and current and identity is not None and status.get("path"):
        refusal = gpus_refusal(name, spec.resources.gpus, status.get("architecture"))
        if refusal is not None:
            return ModelDecision(fail=(api.Reason.INVALID_INPUT, refusal))
        return ModelDecision(model=ResolvedModel(name=name, identity=identity, path=str(status["path"])))
    state = phase or "Pending"
    return ModelDecision(
        wait=f"VideoGenModel {name!r} is {state}{_progress_text(status)}; the job starts once it is Ready"
    )


def identity_of_job(job: dict[str, Any] | None) -> api.ModelIdentity | None:
    """The catalog model identity a runner Job was created with (from its immutable pod template)."""
    if not job:
        return None
    model = job.get("model")
    if isinstance(model, dict) and model.get("revision") and model.get("digest"):
        return api.ModelIdentity(revision=str(model["revision"]), digest=str(model["digest"]))
    return None


def job_model_from_body(body: dict[str, Any]) -> dict[str, str] | None:
    """The model identity env of a full Job object's runner container (for the slim view)."""
    template = ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in template.get("containers") or []:
        env = {e.get("name"): e.get("value") for e in container.get("env") or [] if isinstance(e, dict)}
        if env.get(cat.ENV_MODEL_DIGEST):
            return {
                "revision": str(env.get(cat.ENV_MODEL_REVISION) or ""),
                "digest": str(env[cat.ENV_MODEL_DIGEST]),
            }
    return None
