"""Operator settings: environment variables, optionally overlaid on a YAML/JSON
file mounted from a ConfigMap (VIDEOGEN_CONFIG_FILE).

Precedence: built-in default < config file < environment variable, so a Helm
value can be overridden per deployment without editing the ConfigMap.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "VIDEOGEN_"
# Below this a finished Job can vanish before a restarted or busy operator reads it
# (the runner also records its result on the VideoGenJob, but the Job is the witness).
MIN_JOB_TTL_SECONDS = 300
ENV_CONFIG_FILE = "VIDEOGEN_CONFIG_FILE"


class ModelCacheVolume(BaseModel):
    """The model cache (mounted at `mountPath`, HF_HOME below it).

    pvc: `claimName` is a claim in the operator's namespace on a ReadWriteMany volume; the operator's
    loader writes the catalog there, and each job namespace gets a read-only PersistentVolume and claim
    (`namespaceClaimName`) bound to the same volume. hostPath: one directory per node (single-node
    clusters, development). emptyDir: no cache at all (no catalog; unlisted URIs only)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["pvc", "hostPath", "emptyDir"] = "emptyDir"
    claim_name: str | None = None
    host_path: str | None = None
    mount_path: str = "/models"
    namespace_claim_name: str = Field(
        "videogen-models", description="Name of the read-only claim the operator provisions in each job namespace."
    )


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty means all.")
    operator_namespace: str = "videogen-system"
    max_running: int = Field(
        8, ge=0, description="Cap on GPUs held by running jobs, cluster-wide (a 2-GPU job counts 2); 0 = no cap."
    )
    max_running_per_namespace: int = Field(
        0, ge=0, description="Cap on GPUs per namespace; 0 = namespaceSharePercent of maxRunning."
    )
    namespace_share_percent: int = Field(
        50,
        ge=0,
        le=100,
        description=(
            "Without maxRunningPerNamespace, one namespace may hold at most this share of maxRunning "
            "(rounded up, at least 1 GPU), so one tenant's burst never starves the others; 0 = no share limit."
        ),
    )
    allowed_priority_classes: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "PriorityClasses each namespace may name in spec.resources.priorityClassName "
            "(key: namespace, or '*' for every namespace). Empty: any class except the system-* ones."
        ),
    )
    queue_positions_exact: int = Field(
        3,
        ge=0,
        description="Exact queue positions are written for this many waiting jobs; the rest say 'behind the first N'.",
    )
    runner_image: str = "ghcr.io/videogen/videogen-runner:0.1.0"
    runner_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    runner_command: list[str] = Field(default_factory=lambda: ["videogen-runner"])
    runner_service_account: str | None = Field(
        None,
        description="Use this ServiceAccount for every runner instead of a per-job one (e.g. for cloud IAM).",
    )
    image_pull_secrets: list[str] = Field(default_factory=list)
    gpu_resource_name: str = "nvidia.com/gpu"
    max_gpus_per_job: int = Field(8, ge=1)
    default_node_selector: dict[str, str] = Field(default_factory=dict)
    default_tolerations: list[dict[str, Any]] = Field(default_factory=list)
    runner_cpu_request: str = "2"
    runner_memory_request: str = "16Gi"
    runner_memory_limit: str | None = None
    runner_shm_size: str = Field(
        "8Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(k|Ki|M|Mi|G|Gi|T|Ti)?$",
        description=(
            "sizeLimit of the memory-backed /dev/shm a runner pod with spec.resources.gpus > 1 gets (its torchrun "
            "ranks exchange tensors through it; the container runtime's default is 64Mi). Counts against the "
            "pod's memory."
        ),
    )
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    s3_secret_name: str = Field(
        "videogen-s3",
        description=(
            "Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the operator's namespace. Only the "
            "operator reads it (as env vars); it is never copied into job namespaces."
        ),
    )
    # ---------------------------------------------------------------- tenancy policy
    output_prefix_template: str = Field(
        "videogen/{namespace}/",
        description="Per-namespace prefix every object a job writes lives under; spec.output.key is relative to it.",
    )
    allowed_buckets: list[str] = Field(
        default_factory=list,
        description="Buckets every namespace may name in spec.output.bucket besides s3Bucket.",
    )
    namespace_buckets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extra buckets per namespace (namespace -> buckets).",
    )
    allowed_model_prefixes: list[str] = Field(
        default_factory=list,
        description=(
            "s3:// prefixes spec.model may read from ('{namespace}' is replaced by the job's namespace); "
            "empty refuses every s3:// model."
        ),
    )
    runner_credentials: Literal["presigned", "workload-identity"] = Field(
        "presigned",
        description=(
            "presigned: each runner gets a per-job Secret of presigned URLs and no keys; workload-identity: "
            "runners use runnerServiceAccount's cloud identity (IRSA / Workload Identity) through boto3."
        ),
    )
    presign_margin_seconds: int = Field(
        300, ge=0, description="Added to a job's startup and run timeouts to bound its presigned URLs' lifetime."
    )
    kueue_grant_wait_seconds: int = Field(
        21600,
        ge=600,
        le=7 * 24 * 3600,  # SigV4's longest presigned URL
        description=(
            "A job with spec.queueName may wait this long for Kueue's admission on one grant: its presigned "
            "URLs cover the wait as well as its run. While Kueue still holds it, the grant is renewed before "
            "what is left of it would be too short for the run."
        ),
    )
    multipart_threshold_bytes: int = Field(
        256 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        description="Jobs whose uncompressed video could exceed this also get presigned multipart part URLs.",
    )
    multipart_part_bytes: int = Field(64 * 1024 * 1024, ge=5 * 1024 * 1024, description="Size of one upload part.")
    cache_scope: Literal["namespace", "cluster"] = Field(
        "namespace", description="namespace: cache hits only from the same namespace; cluster: from any namespace."
    )
    verify_max_bytes: int = Field(
        8 * 1024 * 1024 * 1024,
        ge=0,
        description="Largest output the operator hashes itself when the store reports no SHA-256 checksum.",
    )
    runner_blocked_cidrs: list[str] = Field(
        default_factory=list,
        description="Cluster service and pod CIDRs the runner never fetches https images from (besides private ranges).",
    )
    model_cache: ModelCacheVolume = Field(default_factory=ModelCacheVolume)
    # ---------------------------------------------------------------- model catalog
    allow_unlisted_models: bool = Field(
        False,
        description=(
            "Accept hf://, s3:// and path URIs in spec.model besides catalog names (VideoGenModels). "
            "Off by default: the catalog is how a platform team says which models its users may run."
        ),
    )
    loader_image: str | None = Field(None, description="Image of the model loader; unset: runnerImage.")
    loader_command: list[str] = Field(default_factory=lambda: ["videogen-model-loader"])
    loader_service_account: str = Field(
        "videogen-model-loader",
        description="ServiceAccount (operator's namespace) of loader pods: may patch videogenmodels/status only.",
    )
    loader_cpu_request: str = "1"
    loader_memory_request: str = "2Gi"
    loader_backoff_limit: int = Field(2, ge=0, description="Retries of a loader pod before the model is Failed.")
    hf_token_secret_name: str | None = Field(
        None, description="Secret (operator's namespace) with HF_TOKEN for gated hf:// models; loaders only."
    )
    extra_loader_env: dict[str, str] = Field(default_factory=dict)
    job_ttl_seconds: int = Field(
        3600,
        ge=MIN_JOB_TTL_SECONDS,
        description=(
            "ttlSecondsAfterFinished of runner Jobs (never the CR). At least "
            f"{MIN_JOB_TTL_SECONDS}s, so the operator can read a finished Job before it is collected."
        ),
    )
    cancel_grace_seconds: int = Field(3600, ge=0, description="A job suspended for longer than this ends as Cancelled.")
    cache_enabled: bool = True
    status_min_interval_seconds: float = Field(2.0, ge=0)
    resync_seconds: float = Field(5.0, gt=0, description="Period of the queue and deadline sweep.")
    termination_grace_seconds: int = 30
    extra_runner_env: dict[str, str] = Field(default_factory=dict)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    liveness_port: int = 8080
    metrics_port: int = Field(8081, ge=0, le=65535, description="Port of the Prometheus endpoint /metrics; 0 = off.")
    peering_name: str = "videogen-operator"
    peering_lifetime_seconds: int = Field(
        30, ge=5, description="How long a silent peer counts as alive; bounds the pause after a crash."
    )

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @model_validator(mode="after")
    def _tenancy_is_consistent(self) -> OperatorSettings:
        template = self.output_prefix_template
        if template.count("{namespace}") != 1 or template.startswith("/"):
            raise ValueError("output_prefix_template: must be relative and contain '{namespace}' exactly once")
        # The operator's cache pointers (videogen/.cache/...) must lie outside every namespace's prefix.
        head, _, tail = template.partition("{namespace}")
        as_regex = re.escape(head) + r"[a-z0-9]([-a-z0-9]*[a-z0-9])?" + re.escape(tail)
        if re.match(as_regex, "videogen/.cache/_cluster/0.json"):
            raise ValueError("output_prefix_template: a namespace's prefix would contain videogen/.cache/")
        if self.runner_credentials == "workload-identity" and not self.runner_service_account:
            raise ValueError(
                "runner_credentials: workload-identity needs runner_service_account (the annotated ServiceAccount)"
            )
        return self


# Environment variable -> field. Lists and mappings are JSON; everything else is a plain string.
_ENV_FIELDS = {
    f"{ENV_PREFIX}{name.upper()}": name for name in OperatorSettings.model_fields if name not in {"model_cache"}
}


def _parse_env_value(field: str, raw: str) -> Any:
    annotation = str(OperatorSettings.model_fields[field].annotation)
    if field == "namespaces" and not raw.lstrip().startswith("["):
        return [ns.strip() for ns in raw.split(",") if ns.strip()]
    if field == "runner_command" and not raw.lstrip().startswith("["):
        return raw.split()
    if any(t in annotation for t in ("list", "dict")):
        return json.loads(raw)
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Build settings from the config file and environment; raise ValueError naming the bad key."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = env.get(ENV_CONFIG_FILE)
    if config_file:
        raw = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{config_file}: expected a mapping of settings")
        values.update(_snake_keys(raw))
    for var, field in _ENV_FIELDS.items():
        if var in env:
            try:
                values[field] = _parse_env_value(field, env[var])
            except json.JSONDecodeError as err:
                raise ValueError(f"{var}: not valid JSON ({err})") from err
    cache_env = {k: v for k, v in env.items() if k.startswith(f"{ENV_PREFIX}MODEL_CACHE_")}
    if cache_env:
        cache = dict(values.get("model_cache", {}))
        for var, value in cache_env.items():
            cache[var.removeprefix(f"{ENV_PREFIX}MODEL_CACHE_").lower()] = value
        values["model_cache"] = cache
    try:
        return OperatorSettings.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"invalid operator setting {where}: {first['msg']}") from err


def _snake_keys(data: dict[str, Any]) -> dict[str, Any]:
    """The ConfigMap uses camelCase like the Helm values; accept both spellings."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")
        out[snake] = _snake_keys(value) if isinstance(value, dict) and snake == "model_cache" else value
    return out
