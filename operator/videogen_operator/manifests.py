"""Pure builders for every object the operator creates. No API calls here.

Names are deterministic (derived from the VideoGenJob's name and uid), so a
restarted operator finds what it created instead of creating it twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from videogen_api import catalog as cat
from videogen_api import v1alpha1 as api
from videogen_operator import policy
from videogen_operator.catalog import ResolvedModel
from videogen_operator.settings import OperatorSettings

RUNNER_CONTAINER = "runner"
# The runner ServiceAccount, Role and RoleBinding: one set per namespace, shared by its
# jobs (per-job sets would leave three objects behind for every job ever run).
RUNNER_RBAC_NAME = "videogen-runner"
HF_SUBDIR = "hf"
# Multi-GPU pods: NCCL and torch.multiprocessing move tensors between the ranks through /dev/shm,
# which the container runtime makes 64Mi by default.
SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
MAX_NAME = 63
OWNER_ANNOTATION = f"{api.GROUP}/owner"


@dataclass(frozen=True)
class JobRef:
    """The identity of one VideoGenJob, as the builders need it."""

    namespace: str
    name: str
    uid: str

    @property
    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def child_name(ref: JobRef, suffix: str = "") -> str:
    """`<name>-<uid8>[-suffix]`, at most 63 characters, stable for this object.

    The uid part keeps a re-created VideoGenJob of the same name from adopting
    the previous incarnation's Job while the garbage collector still removes it."""
    tail = f"-{ref.uid.replace('-', '')[:8]}" + (f"-{suffix}" if suffix else "")
    head = ref.name[: MAX_NAME - len(tail)].rstrip("-.")
    return f"{head}{tail}"


def grant_secret_name(ref: JobRef) -> str:
    """The per-job Secret of presigned URLs (see credentials.py)."""
    return child_name(ref, "grant")


def child_metadata(ref: JobRef, digest: str) -> dict[str, Any]:
    """Labels, annotations and the controller owner reference every child of this job carries."""
    return {
        "labels": labels(ref, digest),
        "annotations": owner_annotations(ref),
        "ownerReferences": [ref.owner_reference],
    }


def runner_service_account_name(ref: JobRef, settings: OperatorSettings) -> str:
    return settings.runner_service_account or RUNNER_RBAC_NAME


def labels(ref: JobRef, digest: str) -> dict[str, str]:
    return {
        api.LABEL_JOB_NAME: api.label_safe(ref.name),
        api.LABEL_JOB_UID: ref.uid,
        api.LABEL_SPEC_HASH: digest,
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_COMPONENT: "runner",
    }


def owner_annotations(ref: JobRef) -> dict[str, str]:
    """The exact owner name (labels may only hold a truncated, sanitised copy)."""
    return {OWNER_ANNOTATION: ref.name}


def _metadata(ref: JobRef, name: str, digest: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": labels(ref, digest),
        "annotations": owner_annotations(ref),
        "ownerReferences": [ref.owner_reference],
    }


def resolve_output(ref: JobRef, spec: api.VideoGenJobSpec, settings: OperatorSettings, digest: str) -> tuple[str, str]:
    """Bucket and full key of the video: below the namespace's prefix (see policy.output_location)."""
    location = policy.output_location(ref.namespace, ref.name, spec, settings, digest)
    return location.bucket, location.key


def _runner_env(
    ref: JobRef,
    spec: api.VideoGenJobSpec,
    settings: OperatorSettings,
    bucket: str,
    key: str,
    mount: CacheMount,
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": api.ENV_SPEC, "value": json.dumps(spec.to_wire(), separators=(",", ":"))},
        {"name": api.ENV_JOB_NAMESPACE, "value": ref.namespace},
        {"name": api.ENV_JOB_NAME, "value": ref.name},
        {"name": api.ENV_JOB_UID, "value": ref.uid},
        {"name": api.ENV_OUTPUT_BUCKET, "value": bucket},
        {"name": api.ENV_OUTPUT_KEY, "value": key},
        {"name": api.ENV_MODEL_CACHE, "value": settings.model_cache.mount_path},
        {"name": "HF_HOME", "value": f"{settings.model_cache.mount_path}/{HF_SUBDIR}"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "AWS_REGION", "value": settings.s3_region},
        {"name": "VIDEOGEN_S3_ADDRESSING_STYLE", "value": settings.s3_addressing_style},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint})
    if mount.model is not None:
        # The catalog model's directory and identity: the runner hashes the spec with them (the
        # hash is signed into its upload URL) and reads the files read-only, never syncing.
        root = settings.model_cache.mount_path.rstrip("/")
        env.append({"name": cat.ENV_MODEL_DIR, "value": f"{root}/{mount.model.path}"})
        env.append({"name": cat.ENV_MODEL_REVISION, "value": mount.model.identity.revision})
        env.append({"name": cat.ENV_MODEL_DIGEST, "value": mount.model.identity.digest})
    if mount.read_only:
        # Nothing may be written to a read-only cache: an unlisted s3:// model syncs into scratch space.
        env.append({"name": cat.ENV_MODEL_SYNC_DIR, "value": "/tmp/model-sync"})
    if settings.runner_credentials == "presigned":
        # Presigned URLs for this job's objects only; no platform key reaches the pod.
        secret = {"name": grant_secret_name(ref), "key": api.GRANT_SECRET_KEY}
        env.append({"name": api.ENV_GRANT, "valueFrom": {"secretKeyRef": secret}})
    # else workload identity: boto3's own chain through the annotated runner ServiceAccount.
    if settings.runner_blocked_cidrs:
        env.append({"name": api.ENV_BLOCKED_CIDRS, "value": ",".join(settings.runner_blocked_cidrs)})
    env.extend({"name": k, "value": v} for k, v in sorted(settings.extra_runner_env.items()))
    return env


@dataclass(frozen=True)
class CacheMount:
    """How a runner pod sees the model cache.

    pvc: the namespace's read-only claim onto the operator's cache volume (`claim`), or nothing
    shared yet (an emptyDir) when the operator's claim is not bound. hostPath: the node directory,
    read-only for a catalog model. A catalog model's files are never writable from a runner."""

    model: ResolvedModel | None = None
    claim: str | None = None

    @property
    def read_only(self) -> bool:
        return self.claim is not None or self.model is not None


def _model_cache_volume(settings: OperatorSettings, mount: CacheMount) -> dict[str, Any]:
    cache = settings.model_cache
    if mount.claim is not None:
        return {"name": "model-cache", "persistentVolumeClaim": {"claimName": mount.claim, "readOnly": True}}
    if cache.type == "hostPath":
        kind = "Directory" if mount.model is not None else "DirectoryOrCreate"
        return {"name": "model-cache", "hostPath": {"path": cache.host_path, "type": kind}}
    return {"name": "model-cache", "emptyDir": {}}


def _tolerations(spec: api.VideoGenJobSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    gpu_toleration = {"key": _gpu_resource(spec, settings), "operator": "Exists", "effect": "NoSchedule"}
    user = [t.to_wire() for t in spec.resources.tolerations or []]
    return [gpu_toleration, *settings.default_tolerations, *user]


def _gpu_resource(spec: api.VideoGenJobSpec, settings: OperatorSettings) -> str:
    return spec.resources.gpu_resource_name or settings.gpu_resource_name


def build_job(
    ref: JobRef,
    spec: api.VideoGenJobSpec,
    settings: OperatorSettings,
    digest: str,
    *,
    suspend: bool = False,
    mount: CacheMount | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs the runner once (plus retries) on one pod with spec.resources.gpus GPUs."""
    mount = mount or CacheMount()
    bucket, key = resolve_output(ref, spec, settings, digest)
    gpu = _gpu_resource(spec, settings)
    gpus = str(spec.resources.gpus)
    resources: dict[str, Any] = {
        "requests": {"cpu": settings.runner_cpu_request, "memory": settings.runner_memory_request, gpu: gpus},
        "limits": {gpu: gpus},
    }
    if settings.runner_memory_limit:
        resources["limits"]["memory"] = settings.runner_memory_limit
    pod_labels = labels(ref, digest)
    job_labels = dict(pod_labels)
    if spec.queue_name:
        job_labels[api.KUEUE_QUEUE_LABEL] = spec.queue_name
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": runner_service_account_name(ref, settings),
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": {**settings.default_node_selector, **(spec.resources.node_selector or {})},
        "tolerations": _tolerations(spec, settings),
        "containers": [
            {
                "name": RUNNER_CONTAINER,
                "image": settings.runner_image,
                "imagePullPolicy": settings.runner_image_pull_policy,
                "command": list(settings.runner_command),
                "env": _runner_env(ref, spec, settings, bucket, key, mount),
                "resources": resources,
                "terminationMessagePath": api.DEFAULT_TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "model-cache", "mountPath": settings.model_cache.mount_path, "readOnly": mount.read_only},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [_model_cache_volume(settings, mount), {"name": "tmp", "emptyDir": {}}],
    }
    if spec.resources.gpus > 1:
        # Memory-backed and bounded (an emptyDir: PodSecurity restricted allows it); one GPU needs none.
        pod_spec["volumes"].append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": settings.runner_shm_size}}
        )
        pod_spec["containers"][0]["volumeMounts"].append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    if spec.resources.affinity:
        pod_spec["affinity"] = spec.resources.affinity
    if spec.resources.priority_class_name:
        pod_spec["priorityClassName"] = spec.resources.priority_class_name
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if not pod_spec["nodeSelector"]:
        del pod_spec["nodeSelector"]
    non_retryable = sorted(int(c) for c in api.NON_RETRYABLE_EXIT_CODES)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {**_metadata(ref, child_name(ref), digest), "labels": job_labels},
        "spec": {
            "suspend": suspend,
            "backoffLimit": spec.retries,
            "activeDeadlineSeconds": spec.timeout_seconds,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": RUNNER_CONTAINER,
                            "operator": "In",
                            "values": non_retryable,
                        },
                    },
                    # Node drains and preemption are not the runner's fault.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": owner_annotations(ref)},
                "spec": pod_spec,
            },
        },
    }


def _shared_metadata(namespace: str) -> dict[str, Any]:
    return {
        "name": RUNNER_RBAC_NAME,
        "namespace": namespace,
        "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY, api.LABEL_COMPONENT: "runner"},
    }


def build_runner_service_account(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _shared_metadata(namespace),
        "automountServiceAccountToken": True,
    }


def build_runner_role(namespace: str) -> dict[str, Any]:
    """Runners may read and patch VideoGenJob status in their namespace, nothing else.

    Shared by the namespace's runners: a runner could write another job's status in
    the same namespace, which the tenant can do anyway; the operator treats status as
    untrusted input and verifies every result before accepting it."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _shared_metadata(namespace),
        "rules": [
            {
                "apiGroups": [api.GROUP],
                "resources": [f"{api.PLURAL}/status"],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_runner_role_binding(namespace: str, settings: OperatorSettings) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _shared_metadata(namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RUNNER_RBAC_NAME},
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": settings.runner_service_account or RUNNER_RBAC_NAME,
                "namespace": namespace,
            }
        ],
    }


def fingerprint(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]
