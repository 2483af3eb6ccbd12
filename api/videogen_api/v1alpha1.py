"""The VideoGenJob API contract (videogen.dev/v1alpha1).

This module is the single source of truth shared by the CRD generator, the
operator and the runner: spec and status types, phases, condition types and
reasons, label keys, environment variable names and the runner's exit codes.
It deliberately imports neither kopf nor torch so both sides can depend on it.

CEL rules that the API server enforces are declared next to the pydantic
validators that enforce the same thing in Python, so a spec the runner accepts
is a spec `kubectl apply` accepts, and vice versa.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any, Final, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic.alias_generators import to_camel

# --------------------------------------------------------------------------- identity

GROUP: Final = "videogen.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "VideoGenJob"
LIST_KIND: Final = "VideoGenJobList"
PLURAL: Final = "videogenjobs"
SINGULAR: Final = "videogenjob"
SHORT_NAMES: Final = ("vgj",)
CATEGORIES: Final = ("videogen",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# --------------------------------------------------------------------------- limits

MAX_PROMPT_LENGTH: Final = 2000
MIN_DIMENSION: Final = 64
MAX_DIMENSION: Final = 2048
DIMENSION_MULTIPLE: Final = 8
MAX_FRAMES: Final = 257
MAX_FPS: Final = 60
MAX_STEPS: Final = 200
MAX_GUIDANCE_SCALE: Final = 30.0
MAX_SEED: Final = 2**32 - 1
MAX_RETRIES: Final = 10
MAX_GPUS: Final = 8
MAX_TIMEOUT_SECONDS: Final = 7 * 24 * 3600
MAX_PRESIGN_SECONDS: Final = 7 * 24 * 3600  # the SigV4 maximum
MAX_URI_LENGTH: Final = 1024

# catalog-name (a VideoGenModel) | hf://org/name[@revision] | s3://bucket[/prefix] | /absolute/path
MODEL_URI_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?"
    r"|hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?"
    r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?"
    r"|/[^\s]*)$"
)
IMAGE_URI_PATTERN: Final = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+|https://[^\s]+)$"
BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# A relative object key: no leading "/", no whitespace or control characters (segments are checked by CEL).
OUTPUT_KEY_PATTERN: Final = r"^[^/\s\x00-\x1f\x7f][^\s\x00-\x1f\x7f]*$"
# RE2 (CEL) and Python agree on this one: a "." or ".." segment, or an empty one.
BAD_KEY_SEGMENT_PATTERN: Final = r"(^|/)\.{1,2}(/|$)|//|/$"
CONTROL_CHARACTERS_PATTERN: Final = r"[\x00-\x1f\x7f]"
GPU_RESOURCE_PATTERN: Final = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"

# --------------------------------------------------------------------------- enums


class Task(StrEnum):
    TEXT_TO_VIDEO = "text-to-video"
    IMAGE_TO_VIDEO = "image-to-video"


class Preset(StrEnum):
    FAST = "fast"
    STANDARD = "standard"
    QUALITY = "quality"


class MemoryMode(StrEnum):
    AUTO = "auto"
    NONE = "none"
    MODEL_OFFLOAD = "model-offload"
    GROUP_OFFLOAD = "group-offload"
    SEQUENTIAL_OFFLOAD = "sequential-offload"


class CompileMode(StrEnum):
    """torch.compile of the denoiser's repeated blocks (regional compile)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class AttentionBackend(StrEnum):
    """Attention kernels diffusers can dispatch to without downloading anything."""

    AUTO = "auto"
    NATIVE = "native"
    CUDNN = "cudnn"
    EFFICIENT = "efficient"
    MATH = "math"
    FLASH = "flash"
    FLEX = "flex"
    SAGE = "sage"
    XFORMERS = "xformers"


class StepCacheType(StrEnum):
    """Reuse of denoiser computation across steps (trades quality for speed)."""

    NONE = "none"
    FIRST_BLOCK = "first-block"
    TAYLORSEER = "taylorseer"
    MAG = "mag"


class WeightStorage(StrEnum):
    """How the denoiser's weights are stored in memory."""

    AUTO = "auto"
    NATIVE = "native"
    FP8 = "fp8"


class OutputFormat(StrEnum):
    MP4 = "mp4"
    WEBM = "webm"
    GIF = "gif"


class DeletePolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


TERMINAL_PHASES: Final = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})


class Stage(StrEnum):
    """Where a running job spends its time; reported in status.progress.stage."""

    LOADING = "loading"
    GENERATING = "generating"
    ENCODING = "encoding"
    UPLOADING = "uploading"
    DONE = "done"


class ConditionType(StrEnum):
    """metav1.Condition types. `Complete` and `Failed` mirror batch/v1 Job so
    `kubectl wait --for=condition=Complete vgj/NAME` works the same way."""

    ACCEPTED = "Accepted"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    COMPLETE = "Complete"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class Reason(StrEnum):
    """Machine-readable reasons used in status.reason, conditions and Events."""

    # lifecycle
    CREATED = "Created"
    VALIDATION_FAILED = "ValidationFailed"
    QUEUED = "Queued"
    WAITING_FOR_ADMISSION = "WaitingForAdmission"
    JOB_CREATED = "JobCreated"
    POD_STARTING = "PodStarting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    CACHE_HIT = "CacheHit"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    CANCELLED = "Cancelled"
    RETRYING = "Retrying"
    GRANT_RENEWED = "GrantRenewed"
    # infrastructure failures lifted from pod state
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    OOM_KILLED = "OOMKilled"
    STARTUP_TIMEOUT = "StartupTimeout"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    POD_FAILED = "PodFailed"
    JOB_MISSING = "JobMissing"
    # the API server refused a child object (invalid pod spec, quota, admission webhook)
    CREATE_FAILED = "CreateFailed"
    # the Job controller could not create the runner pod (FailedCreate on the Job)
    POD_CREATE_FAILED = "PodCreateFailed"
    # Kueue: the LocalQueue named in spec.queueName does not exist
    LOCAL_QUEUE_MISSING = "LocalQueueMissing"
    # the operator failed to reconcile this job (it retries); the error is in the message
    RECONCILE_ERROR = "ReconcileError"
    # the runner's own failure classes (see ExitCode)
    INVALID_INPUT = "InvalidInput"
    MODEL_NOT_FOUND = "ModelNotFound"
    MODEL_LOAD_ERROR = "ModelLoadError"
    CUDA_OUT_OF_MEMORY = "CudaOutOfMemory"
    INPUT_IMAGE_ERROR = "InputImageError"
    UPLOAD_ERROR = "UploadError"
    INTERNAL_ERROR = "InternalError"
    # the operator's tenancy policy refused the spec (bucket, key, image or model source)
    POLICY_VIOLATION = "PolicyViolation"
    # the catalog model (VideoGenModel) is not Ready yet: the job waits in Queued
    MODEL_NOT_READY = "ModelNotReady"
    # the catalog model does not allow the job's namespace, or the URI is not in the catalog
    MODEL_NOT_ALLOWED = "ModelNotAllowed"
    # the catalog model Failed, is being deleted, or never appeared
    MODEL_UNAVAILABLE = "ModelUnavailable"
    # the runner said it succeeded but the object at the spec's location is not what it claims
    OUTPUT_VERIFICATION_FAILED = "OutputVerificationFailed"


class ExitCode(IntEnum):
    """The runner's exit codes, one per failure class.

    Kept clear of 1 (Python's generic error), 2 (argparse) and 126+ (shell and
    signals) so the operator never mistakes one class for another.
    """

    OK = 0
    INVALID_INPUT = 10
    MODEL_NOT_FOUND = 11
    MODEL_LOAD_ERROR = 12
    CUDA_OUT_OF_MEMORY = 13
    INPUT_IMAGE_ERROR = 14
    UPLOAD_ERROR = 15
    INTERNAL_ERROR = 20


EXIT_CODE_REASONS: Final[dict[ExitCode, Reason]] = {
    ExitCode.INVALID_INPUT: Reason.INVALID_INPUT,
    ExitCode.MODEL_NOT_FOUND: Reason.MODEL_NOT_FOUND,
    ExitCode.MODEL_LOAD_ERROR: Reason.MODEL_LOAD_ERROR,
    ExitCode.CUDA_OUT_OF_MEMORY: Reason.CUDA_OUT_OF_MEMORY,
    ExitCode.INPUT_IMAGE_ERROR: Reason.INPUT_IMAGE_ERROR,
    ExitCode.UPLOAD_ERROR: Reason.UPLOAD_ERROR,
    ExitCode.INTERNAL_ERROR: Reason.INTERNAL_ERROR,
}

# Retrying these cannot help: the same spec and model give the same failure.
# The operator turns them into a podFailurePolicy FailJob rule.
NON_RETRYABLE_EXIT_CODES: Final = frozenset(
    {
        ExitCode.INVALID_INPUT,
        ExitCode.MODEL_NOT_FOUND,
        ExitCode.MODEL_LOAD_ERROR,
        ExitCode.CUDA_OUT_OF_MEMORY,
        ExitCode.INPUT_IMAGE_ERROR,
    }
)


def reason_for_exit_code(code: int) -> Reason:
    try:
        return EXIT_CODE_REASONS[ExitCode(code)]
    except (ValueError, KeyError):
        return Reason.POD_FAILED


# --------------------------------------------------------------------------- labels, env

LABEL_PREFIX: Final = GROUP
LABEL_JOB_NAME: Final = f"{GROUP}/job-name"
LABEL_JOB_UID: Final = f"{GROUP}/job-uid"
LABEL_SPEC_HASH: Final = f"{GROUP}/spec-hash"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
# On a VideoGenJob with output.deletePolicy: Delete: its objects are deleted before it goes.
OUTPUTS_FINALIZER: Final = f"{GROUP}/delete-outputs"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
MANAGED_BY: Final = "videogen-operator"
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
ANNOTATION_PROMPT_PREVIEW: Final = f"{GROUP}/prompt-preview"
S3_METADATA_SPEC_HASH: Final = "videogen-spec-hash"
S3_METADATA_SHA256: Final = "sha256"
# Signed into the presigned PUT by the operator, so it proves which job wrote an object.
S3_METADATA_JOB_UID: Final = "videogen-job-uid"

ENV_SPEC: Final = "VIDEOGEN_SPEC"
ENV_SPEC_FILE: Final = "VIDEOGEN_SPEC_FILE"
ENV_JOB_NAMESPACE: Final = "VIDEOGEN_JOB_NAMESPACE"
ENV_JOB_NAME: Final = "VIDEOGEN_JOB_NAME"
ENV_JOB_UID: Final = "VIDEOGEN_JOB_UID"
ENV_OUTPUT_BUCKET: Final = "VIDEOGEN_OUTPUT_BUCKET"
ENV_OUTPUT_KEY: Final = "VIDEOGEN_OUTPUT_KEY"
ENV_TERMINATION_LOG: Final = "VIDEOGEN_TERMINATION_LOG"
ENV_MODEL_CACHE: Final = "VIDEOGEN_MODEL_CACHE"
# The per-job grant (presigned URLs, JSON; its part URLs: videogen_api.grant) and the addresses the runner must not fetch from.
ENV_GRANT: Final = "VIDEOGEN_GRANT"
ENV_BLOCKED_CIDRS: Final = "VIDEOGEN_BLOCKED_CIDRS"
GRANT_SECRET_KEY: Final = "grant.json"
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT: Final = 4096  # bytes; the kubelet truncates beyond this

# --------------------------------------------------------------------------- base


class _Model(BaseModel):
    """camelCase on the wire (like every Kubernetes API), snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def _schema_extra(**extra: Any) -> dict[str, Any]:
    return extra


# --------------------------------------------------------------------------- spec


class Toleration(_Model):
    """A subset of core/v1 Toleration; the pod tolerates taints that match it."""

    key: str | None = Field(None, max_length=316, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, max_length=63, description="Taint value to match when operator is Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="How long a NoExecute taint is tolerated before eviction."
    )


class ResourcesSpec(_Model):
    """Where and on what the runner pod runs. It always holds whole GPUs."""

    gpus: int = Field(1, ge=1, le=MAX_GPUS, description="Number of GPUs the runner pod requests (whole devices).")
    gpu_resource_name: str | None = Field(
        None,
        max_length=253,
        pattern=GPU_RESOURCE_PATTERN,
        description=(
            "Extended resource name of the GPU, e.g. nvidia.com/gpu or amd.com/gpu. "
            "Defaults to the operator's setting (nvidia.com/gpu)."
        ),
    )
    node_selector: dict[str, str] | None = Field(
        None,
        max_length=32,
        description="Node labels the runner pod must match, merged over the operator's defaults.",
    )
    tolerations: list[Toleration] | None = Field(
        None, max_length=32, description="Tolerations added to the runner pod."
    )
    affinity: dict[str, Any] | None = Field(
        None,
        description="A core/v1 Affinity for the runner pod (node, pod affinity and anti-affinity).",
        json_schema_extra=_schema_extra(**{"x-kubernetes-preserve-unknown-fields": True}),
    )
    priority_class_name: str | None = Field(
        None,
        max_length=253,
        description="PriorityClass of the runner pod; also orders the operator's own queue.",
    )


class OutputSpec(_Model):
    """Where the video goes."""

    @field_validator("key")
    @classmethod
    def _relative_key(cls, value: str | None) -> str | None:
        if value is not None and re.search(BAD_KEY_SEGMENT_PATTERN, value):
            raise ValueError("must be relative to the namespace's prefix: no empty, '.' or '..' segments")
        return value

    bucket: str | None = Field(
        None,
        pattern=BUCKET_PATTERN,
        description="S3 bucket for the video. Defaults to the operator's configured bucket.",
    )
    key: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_URI_LENGTH,
        pattern=OUTPUT_KEY_PATTERN,
        description=(
            "Object key of the video, relative to the namespace's prefix (videogen/<namespace>/ unless the "
            "operator is configured otherwise). Defaults to <name>-<specHash>.<format>. No empty, '.' or '..' "
            "segments. A poster image is stored beside it as <key>.poster.jpg."
        ),
        json_schema_extra=_schema_extra(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        f"!self.matches('{BAD_KEY_SEGMENT_PATTERN.replace(chr(92), chr(92) * 2)}')",
                        "key must be relative to the namespace's prefix: no empty, '.' or '..' segments",
                    )
                ]
            }
        ),
    )
    format: OutputFormat = Field(
        OutputFormat.MP4,
        description="Container format: mp4 (H.264, yuv420p, faststart), webm (VP9) or gif.",
    )
    presign_seconds: int | None = Field(
        3600,
        ge=0,
        le=MAX_PRESIGN_SECONDS,
        description="Lifetime of the presigned GET URL put in status.output.url; 0 disables it.",
    )
    delete_policy: DeletePolicy = Field(
        DeletePolicy.RETAIN,
        description="Retain keeps the objects when the VideoGenJob is deleted; Delete removes them.",
    )


MAX_STEP_CACHE_INTERVAL: Final = 20
MAX_MAG_RATIOS: Final = MAX_STEPS + 1


STEP_CACHE_VALIDATIONS: Final[list[dict[str, str]]] = [
    _cel(
        "!has(self.threshold) || self.type == 'first-block' || self.type == 'mag'",
        "threshold applies to first-block and mag only",
        field_path=".threshold",
        reason="FieldValueForbidden",
    ),
    _cel(
        "!has(self.interval) || self.type == 'taylorseer'",
        "interval applies to taylorseer only",
        field_path=".interval",
        reason="FieldValueForbidden",
    ),
    _cel(
        "self.type != 'mag' || has(self.magRatios)",
        "mag needs magRatios: the per-step residual magnitude ratios of this checkpoint (a calibration run)",
        field_path=".magRatios",
        reason="FieldValueRequired",
    ),
    _cel(
        "!has(self.magRatios) || self.type == 'mag'",
        "magRatios applies to mag only",
        field_path=".magRatios",
        reason="FieldValueForbidden",
    ),
]


class StepCacheSpec(_Model):
    """Which step cache the denoiser uses; unset fields take the family's defaults."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": cast(list[JsonValue], STEP_CACHE_VALIDATIONS)},
    )

    type: StepCacheType = Field(
        ...,
        description=(
            "none; first-block (skip the remaining blocks while the first block's residual changes less than "
            "threshold); taylorseer (predict block outputs from a Taylor series, recomputing every interval steps); "
            "mag (skip steps by accumulated residual-magnitude error, needs magRatios). Caches trade quality for speed."
        ),
    )
    threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="first-block: relative residual change below which blocks are skipped; mag: accumulated error.",
    )
    interval: int | None = Field(
        None, ge=1, le=MAX_STEP_CACHE_INTERVAL, description="taylorseer: steps between full computations."
    )
    mag_ratios: list[float] | None = Field(
        None,
        min_length=2,
        max_length=MAX_MAG_RATIOS,
        description="mag: per-step residual magnitude ratios of this checkpoint (interpolated to the step count).",
    )

    @model_validator(mode="after")
    def _fields_match_type(self) -> StepCacheSpec:
        kind = self.type
        if self.threshold is not None and kind not in (StepCacheType.FIRST_BLOCK, StepCacheType.MAG):
            raise ValueError("spec.acceleration.stepCache.threshold: applies to first-block and mag only")
        if self.interval is not None and kind is not StepCacheType.TAYLORSEER:
            raise ValueError("spec.acceleration.stepCache.interval: applies to taylorseer only")
        if kind is StepCacheType.MAG and not self.mag_ratios:
            raise ValueError(
                "spec.acceleration.stepCache.magRatios: required for mag (the per-step residual magnitude "
                "ratios of this checkpoint, from a calibration run)"
            )
        if self.mag_ratios is not None and kind is not StepCacheType.MAG:
            raise ValueError("spec.acceleration.stepCache.magRatios: applies to mag only")
        return self


class AccelerationSpec(_Model):
    """How the denoiser is sped up. Unset or auto fields take the preset's choice for the model family
    (fast may trade quality, standard and quality never do); status.acceleration says what was applied."""

    compile: CompileMode = Field(
        CompileMode.AUTO,
        description=(
            "Regional torch.compile of the denoiser's repeated blocks. auto: on with a GPU when the model "
            "declares repeated blocks; the compiled kernels are cached on the model-cache volume."
        ),
    )
    attention: AttentionBackend = Field(
        AttentionBackend.AUTO,
        description=(
            "Attention kernel: auto (PyTorch SDPA's own choice), native, cudnn, efficient, math, flex, or "
            "flash / sage / xformers when the runner image has those libraries."
        ),
    )
    step_cache: StepCacheSpec | None = Field(
        None, description="Step cache of the denoiser; unset takes the preset's choice (only fast uses one)."
    )
    weight_storage: WeightStorage = Field(
        WeightStorage.AUTO,
        description=(
            "native keeps the loaded dtype; fp8 stores the denoiser's weights in float8 and upcasts each layer "
            "when it runs (about half the weight memory, small quality cost). auto: native."
        ),
    )


# Fields whose change would change the video; they are immutable after creation
# and make up the spec hash used by the result cache.
GENERATION_FIELDS: Final = (
    "model",
    "task",
    "prompt",
    "negativePrompt",
    "image",
    "preset",
    "width",
    "height",
    "numFrames",
    "fps",
    "steps",
    "guidanceScale",
    "seed",
)
# Generation fields added later: hashed only when set, so the hashes of older specs stay the same.
OPTIONAL_GENERATION_FIELDS: Final = ("acceleration",)
IMMUTABLE_OUTPUT_FIELDS: Final = ("bucket", "key", "format")


def _immutable_rule(field: str, required: bool) -> dict[str, str]:
    if required:
        rule = f"self.{field} == oldSelf.{field}"
    else:
        rule = f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"
    return _cel(
        rule,
        f"{field} is immutable after creation; create a new VideoGenJob to generate a different video",
        field_path=f".{field}",
    )


_REQUIRED_SPEC_FIELDS: Final = frozenset({"model", "task", "prompt", "preset"})

SPEC_VALIDATIONS: Final[list[dict[str, str]]] = [
    _cel(
        "self.task != 'image-to-video' || has(self.image)",
        "image is required when task is image-to-video",
        field_path=".image",
        reason="FieldValueRequired",
    ),
    _cel(
        "self.task != 'text-to-video' || !has(self.image)",
        "image must not be set when task is text-to-video",
        field_path=".image",
        reason="FieldValueForbidden",
    ),
    *(_immutable_rule(f, f in _REQUIRED_SPEC_FIELDS) for f in GENERATION_FIELDS),
    *(_immutable_rule(f, False) for f in OPTIONAL_GENERATION_FIELDS),
    _cel(
        "has(self.output) == has(oldSelf.output) && (!has(self.output) || ("
        + " && ".join(
            f"has(self.output.{f}) == has(oldSelf.output.{f}) && "
            f"(!has(self.output.{f}) || self.output.{f} == oldSelf.output.{f})"
            for f in IMMUTABLE_OUTPUT_FIELDS
        )
        + "))",
        "output.bucket, output.key and output.format are immutable after creation",
        field_path=".output",
    ),
]


def _multiple_of_8(name: str) -> dict[str, Any]:
    return _schema_extra(
        **{
            "x-kubernetes-validations": [
                _cel(f"self % {DIMENSION_MULTIPLE} == 0", f"{name} must be a multiple of {DIMENSION_MULTIPLE}")
            ]
        }
    )


class VideoGenJobSpec(_Model):
    """What to generate, with which model, and where it runs. The fields that
    affect the video are immutable; suspend, resources, retries and timeouts
    stay mutable."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": cast(list[JsonValue], SPEC_VALIDATIONS)},
    )

    model: str = Field(
        ...,
        max_length=MAX_URI_LENGTH,
        pattern=MODEL_URI_PATTERN,
        description=(
            "The diffusers pipeline to load: the name of a VideoGenModel in the platform's catalog "
            "(kubectl get videogenmodels; mounted read-only, nothing is downloaded), or, where the "
            "operator's models.allowUnlisted permits, hf://org/name[@revision] (read from the model-cache "
            "volume's Hugging Face cache, offline), s3://bucket/prefix (synced per job), or an "
            "absolute path of a save_pretrained directory inside the model-cache volume."
        ),
    )
    task: Task = Field(..., description="text-to-video, or image-to-video (which requires image).")
    prompt: str = Field(
        ...,
        min_length=1,
        max_length=MAX_PROMPT_LENGTH,
        description=f"What the video shows; 1 to {MAX_PROMPT_LENGTH} characters, not only whitespace.",
        json_schema_extra=_schema_extra(
            **{"x-kubernetes-validations": [_cel("self.matches('[^\\\\s\\\\p{Z}]')", "prompt must not be blank")]}
        ),
    )
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_LENGTH, description="What the video should avoid.")
    image: str | None = Field(
        None,
        max_length=MAX_URI_LENGTH,
        pattern=IMAGE_URI_PATTERN,
        description=(
            "First-frame image for image-to-video: s3://bucket/key (inside the namespace's prefix) or an "
            "https:// URL on a public address (PNG, JPEG or WebP)."
        ),
        json_schema_extra=_schema_extra(
            **{
                "x-kubernetes-validations": [
                    _cel(
                        "!self.startsWith('s3://') || !self.substring(5).matches("
                        f"'{BAD_KEY_SEGMENT_PATTERN.replace(chr(92), chr(92) * 2)}')",
                        "an s3:// image key must not have empty, '.' or '..' segments",
                    )
                ]
            }
        ),
    )
    preset: Preset = Field(
        Preset.STANDARD,
        description=(
            "fast, standard or quality: fills width, height, numFrames, fps, steps and guidanceScale "
            "when they are unset, with values suited to the model family."
        ),
    )
    width: int | None = Field(
        None,
        ge=MIN_DIMENSION,
        le=MAX_DIMENSION,
        description="Frame width in pixels, a multiple of 8. The family may round it further (reported).",
        json_schema_extra=_multiple_of_8("width"),
    )
    height: int | None = Field(
        None,
        ge=MIN_DIMENSION,
        le=MAX_DIMENSION,
        description="Frame height in pixels, a multiple of 8. The family may round it further (reported).",
        json_schema_extra=_multiple_of_8("height"),
    )
    num_frames: int | None = Field(
        None,
        ge=1,
        le=MAX_FRAMES,
        description="Number of frames. Wan needs 4k+1, LTX 8k+1: other values are adjusted and reported.",
    )
    fps: int | None = Field(None, ge=1, le=MAX_FPS, description="Frames per second of the encoded video.")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Number of denoising steps.")
    guidance_scale: float | None = Field(
        None,
        ge=0.0,
        le=MAX_GUIDANCE_SCALE,
        description="Classifier-free guidance scale; 1 or less disables it.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Random seed. Unset picks one (reported in status.seed); set it for reproducible output.",
    )
    memory: MemoryMode = Field(
        MemoryMode.AUTO,
        description=(
            "GPU memory strategy: auto (chosen from free VRAM and model size), none, model-offload, "
            "group-offload or sequential-offload (slowest, least VRAM)."
        ),
    )
    acceleration: AccelerationSpec | None = Field(
        None,
        description=(
            "Speed-ups of the denoiser (compile, attention kernel, step cache, fp8 weights). Unset takes the "
            "preset's choices for the model family. Part of the spec hash: most of these change the pixels."
        ),
    )
    output: OutputSpec = Field(
        default_factory=OutputSpec, description="Where the video is stored and for how long it is kept."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="GPUs and scheduling constraints of the runner pod."
    )
    queue_name: str | None = Field(
        None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "Kueue LocalQueue name. When set the Job is created suspended with the "
            "kueue.x-k8s.io/queue-name label and Kueue admits it; the operator's own cap is bypassed."
        ),
    )
    retries: int = Field(
        2,
        ge=0,
        le=MAX_RETRIES,
        description="Retries after a retryable failure (upload or internal error, node disruption).",
    )
    timeout_seconds: int = Field(
        3600,
        ge=10,
        le=MAX_TIMEOUT_SECONDS,
        description="Wall-clock limit of the whole run once started; past it the job fails with DeadlineExceeded.",
    )
    startup_timeout_seconds: int = Field(
        600,
        ge=10,
        le=MAX_TIMEOUT_SECONDS,
        description=(
            "How long the job may wait for its pod to start running (scheduling, image pull); "
            "past it the job fails with StartupTimeout and the pod's own reason."
        ),
    )
    suspend: bool = Field(
        False,
        description=(
            "true stops the runner pod (a queued job stays queued); false resumes it. A job suspended "
            "for longer than the operator's cancel grace period ends as Cancelled."
        ),
    )
    cache: bool = Field(
        True,
        description="Reuse the output of an earlier identical job (same spec hash, explicit seed) instead of running.",
    )

    @model_validator(mode="after")
    def _image_matches_task(self) -> VideoGenJobSpec:
        if self.task is Task.IMAGE_TO_VIDEO and not self.image:
            raise ValueError("spec.image: required when task is image-to-video")
        if self.task is Task.TEXT_TO_VIDEO and self.image:
            raise ValueError("spec.image: must not be set when task is text-to-video")
        return self

    @field_validator("image")
    @classmethod
    def _image_key_segments(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("s3://") and re.search(BAD_KEY_SEGMENT_PATTERN, value[5:]):
            raise ValueError("an s3:// image key must not have empty, '.' or '..' segments")
        return value

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % DIMENSION_MULTIPLE:
            raise ValueError(f"must be a multiple of {DIMENSION_MULTIPLE}")
        return value


# --------------------------------------------------------------------------- status


class Progress(_Model):
    """Live progress written by the runner at most once every 2 seconds."""

    stage: Stage | None = Field(None, description="loading, generating, encoding, uploading or done.")
    step: int | None = Field(None, ge=0, description="Denoising steps finished.")
    total_steps: int | None = Field(None, ge=0, description="Denoising steps in total.")
    percent: int | None = Field(None, ge=0, le=100, description="Overall completion, 0-100.")
    summary: str | None = Field(
        None, max_length=128, description="Human-readable progress, e.g. 'generating 12/30 (42%)'."
    )
    updated_at: datetime | None = Field(None, description="When the runner last reported progress.")


class OutputStatus(_Model):
    """The stored video, as the runner uploaded it."""

    uri: str | None = Field(None, description="s3://bucket/key of the video.")
    url: str | None = Field(None, description="Presigned GET URL (expires after output.presignSeconds).")
    url_expires_at: datetime | None = Field(None, description="When url stops working.")
    poster_uri: str | None = Field(None, description="s3:// URI of the poster image.")
    size_bytes: int | None = Field(None, ge=0, description="Size of the video object in bytes.")
    sha256: str | None = Field(None, description="SHA-256 of the video object, hex.")
    format: OutputFormat | None = Field(None, description="Container format of the video.")
    width: int | None = Field(None, description="Width of the encoded video in pixels.")
    height: int | None = Field(None, description="Height of the encoded video in pixels.")
    frames: int | None = Field(None, description="Number of frames in the video.")
    fps: int | None = Field(None, description="Frames per second of the video.")
    duration_seconds: float | None = Field(None, description="Playing time in seconds.")


class Timings(_Model):
    """Seconds spent per stage of the run."""

    loading: float | None = Field(None, description="Seconds spent syncing and loading the model.")
    loading_import: float | None = Field(
        None,
        description="Part of loading: waiting for torch, diffusers and CUDA to load (the rest overlaps fetching inputs).",
    )
    loading_read: float | None = Field(
        None, description="Part of loading: syncing the model and reading its weights (from_pretrained)."
    )
    loading_place: float | None = Field(
        None, description="Part of loading: placing the weights on the GPU and applying the acceleration."
    )
    generating: float | None = Field(None, description="Seconds spent denoising and decoding.")
    encoding: float | None = Field(None, description="Seconds spent encoding the video.")
    uploading: float | None = Field(None, description="Seconds spent uploading to object storage.")
    total: float | None = Field(None, description="Seconds from runner start to result.")


class LastFailure(_Model):
    """The most recent failure, kept after a retry so the cause stays visible."""

    reason: str | None = Field(None, description="Machine-readable failure reason (a Reason constant).")
    message: str | None = Field(None, description="Human-readable explanation.")
    exit_code: int | None = Field(None, description="Exit code of the runner container, when it exited.")
    location: str | None = Field(None, description="Where it happened: runner, pod, job, scheduler or operator.")
    time: datetime | None = Field(None, description="When the failure was observed.")


class Condition(_Model):
    """A metav1.Condition."""

    type: str = Field(..., max_length=316, description="Condition type, e.g. Complete or Failed.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation the condition was set for.")
    last_transition_time: datetime = Field(..., description="When status last changed.")
    reason: str = Field(..., max_length=1024, description="CamelCase reason for the last transition.")
    message: str = Field("", max_length=32768, description="Human-readable details.")


class VideoGenJobStatus(_Model):
    """Observed state, written by the operator (and progress by the runner)."""

    phase: Phase | None = Field(None, description="Pending, Queued, Running, Succeeded, Failed or Cancelled.")
    reason: str | None = Field(None, description="Why the job is in this phase (a Reason constant).")
    message: str | None = Field(None, description="Human-readable details of the phase.")
    progress: Progress | None = Field(None, description="Live progress of the running job.")
    attempts: int | None = Field(None, ge=0, description="Runner pods started so far.")
    job_name: str | None = Field(None, description="Name of the batch/v1 Job running this VideoGenJob.")
    pod_name: str | None = Field(None, description="Name of the current or last runner pod.")
    spec_hash: str | None = Field(None, description="Hash of the generation-affecting spec fields.")
    queue_position: int | None = Field(None, ge=1, description="1-based position while Queued.")
    start_time: datetime | None = Field(None, description="When the runner pod started running.")
    completion_time: datetime | None = Field(None, description="When the job reached a terminal phase.")
    seed: int | None = Field(None, description="The seed actually used.")
    memory_mode: str | None = Field(None, description="The memory mode the runner chose, with its reason.")
    adjustments: list[str] | None = Field(
        None, description="Inputs the runner adjusted to fit the model family (e.g. numFrames 32 -> 33)."
    )
    acceleration: list[str] | None = Field(
        None, description="Speed-ups the runner applied, and why any asked for was not (e.g. compile: regional)."
    )
    output: OutputStatus | None = Field(None, description="The stored video.")
    timings: Timings | None = Field(None, description="Seconds per stage.")
    runner_result: RunnerResult | None = Field(
        None,
        description=(
            "The result as the runner recorded it after uploading (so it survives the Job's TTL). "
            "Untrusted: the operator verifies the object before accepting it into status.output."
        ),
    )
    gpu_seconds: float | None = Field(
        None,
        ge=0,
        description="GPUs x wall time the runner pods held them (from each pod's start on its node to its end), "
        "summed over attempts: the job's GPU cost.",
    )
    last_failure: LastFailure | None = Field(None, description="The most recent failure.")
    conditions: list[Condition] | None = Field(
        None,
        description="Standard conditions: Accepted, Queued, Running, Suspended, Complete, Failed, Cancelled.",
        json_schema_extra=_schema_extra(**{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
    )
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation the operator last acted on.")


class VideoGenJob(_Model):
    """VideoGenJob runs one video generation on one GPU pod and records where the video is."""

    api_version: Literal["videogen.dev/v1alpha1"] = Field("videogen.dev/v1alpha1", description=API_VERSION)
    kind: Literal["VideoGenJob"] = Field("VideoGenJob", description=KIND)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: VideoGenJobSpec = Field(..., description="What to generate and where it runs.")
    status: VideoGenJobStatus | None = Field(None, description="Observed state.")


# --------------------------------------------------------------------------- runner result


class RunnerResult(_Model):
    """What the runner prints and writes to its termination message on success.

    Field names match status.output/timings so the operator copies them as they are.
    It must fit in the 4096-byte termination message, so no presigned URL here
    if it would not fit (the operator can presign on its own)."""

    output: OutputStatus = Field(..., description="The stored video.")
    seed: int = Field(..., description="The seed actually used.")
    timings: Timings = Field(..., description="Seconds per stage.")
    memory_mode: str = Field(..., description="Memory mode chosen, with its reason.")
    adjustments: list[str] = Field(default_factory=list, description="Inputs adjusted to fit the family.")
    acceleration: list[str] = Field(
        default_factory=list, description="Speed-ups applied, and why any asked for was not."
    )
    spec_hash: str = Field(..., description="Hash of the generation-affecting spec fields.")


class RunnerFailure(_Model):
    """What the runner writes to its termination message when it fails."""

    reason: Reason = Field(..., description="Failure class.")
    message: str = Field(..., description="One-line explanation naming the field or resource.")
    exit_code: int = Field(..., description="The process exit code.")


# --------------------------------------------------------------------------- spec hash


@dataclass(frozen=True)
class ModelIdentity:
    """Which files a catalog model's name stood for when a job used it (VideoGenModel status)."""

    revision: str
    digest: str


def spec_hash(spec: VideoGenJobSpec, model: ModelIdentity | None = None) -> str:
    """Stable hash over what determines the video's content (and its format).

    A catalog model's name says nothing about its files: its resolved revision and manifest
    digest are hashed too, so a model upgrade never serves a cached video of the old revision.
    Used as the result-cache key and stored in the object's metadata; 16 hex
    digits keeps it label-safe."""
    wire = spec.to_wire()
    payload: dict[str, Any] = {f: wire.get(f) for f in GENERATION_FIELDS}
    if model is not None:
        payload["modelRevision"] = model.revision
        payload["modelDigest"] = model.digest
    payload["outputFormat"] = wire["output"]["format"]
    for name in OPTIONAL_GENERATION_FIELDS:
        if wire.get(name) is not None:
            payload[name] = wire[name]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_LABEL_VALUE_RE: Final = re.compile(r"[^A-Za-z0-9._-]")


def label_safe(value: str) -> str:
    """Turn an arbitrary string into a valid label value (63 chars, alnum ends)."""
    cleaned = _LABEL_VALUE_RE.sub("-", value)[:63]
    return cleaned.strip("-._")


def prompt_preview(prompt: str, limit: int = 40) -> str:
    """A short, log-safe preview: full prompts never reach info-level logs."""
    one_line = " ".join(prompt.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def default_output_key(namespace: str, name: str, digest: str, fmt: OutputFormat) -> str:
    return f"videogen/{namespace}/{name}-{digest}.{fmt.value}"


def poster_key(video_key: str) -> str:
    return f"{video_key}.poster.jpg"


@dataclass(frozen=True)
class ObjectLocation:
    """Where one job's video (and its poster beside it) live in object storage.

    Shared by the operator (which derives it from the spec and its policy) and the runner
    (which writes there), so both name the same objects the same way."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def poster_key(self) -> str:
        return poster_key(self.key)

    @property
    def poster_uri(self) -> str:
        return f"s3://{self.bucket}/{self.poster_key}"
