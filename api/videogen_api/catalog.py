"""The VideoGenModel API contract (videogen.dev/v1alpha1, cluster-scoped): the platform's model catalog.

An admin declares a model once; the operator fetches it with its own credentials, from its own
namespace, into the shared model cache (safetensors only, verified, then read-only); jobs in any
namespace the model allows name it by its catalog name (`spec.model: wan2-1-t2v-1-3b`) and mount it
read-only, without credentials.

Shared by the CRD generator, the operator and the model loader; imports neither kopf nor torch.
The loader's contract (its input, its result and the directory layout on the cache volume) lives
here too, so the operator and the loader cannot disagree about where a model's files are.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal, cast

from pydantic import ConfigDict, Field, JsonValue, field_validator

from videogen_api.v1alpha1 import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    MAX_URI_LENGTH,
    Condition,
    _cel,
    _Model,
    _schema_extra,
)

# --------------------------------------------------------------------------- identity

MODEL_KIND: Final = "VideoGenModel"
MODEL_LIST_KIND: Final = "VideoGenModelList"
MODEL_PLURAL: Final = "videogenmodels"
MODEL_SINGULAR: Final = "videogenmodel"
MODEL_SHORT_NAMES: Final = ("vgm",)
MODEL_CRD_NAME: Final = f"{MODEL_PLURAL}.{GROUP}"
MODEL_CATEGORIES: Final = CATEGORIES

# A catalog name is the VideoGenModel's metadata.name: a DNS-1123 subdomain.
CATALOG_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
MAX_CATALOG_NAME_LENGTH: Final = 253
# hf://org/name[@revision] | s3://bucket[/prefix] | /absolute/path on the cache volume
MODEL_SOURCE_PATTERN: Final = (
    r"^(hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._/-]+)?"
    r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?"
    r"|/[^\s]*)$"
)
NAMESPACE_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
# The API server bounds the CEL cost of the path rule by this times the path's maxLength: 10000 exceeded
# its budget (the CRD was refused); a pipeline has tens of files.
MAX_EXPECTED_FILES: Final = 1000
MAX_ALLOWED_NAMESPACES: Final = 1000

# Files the loader fetches: weights as safetensors, configs, tokenizer data. Never pickles
# (.bin/.pt/.pth/.ckpt/.pkl), never code (.py): nothing a model ships can execute in a runner.
FETCHED_SUFFIXES: Final = (".safetensors", ".json", ".txt", ".model", ".tiktoken", ".jinja")
PICKLE_SUFFIXES: Final = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz")
CODE_SUFFIXES: Final = (".py", ".pyc", ".so", ".sh")

# Layout of the cache volume (relative to its root, the runner's and loader's mount path).
CATALOG_DIR: Final = "catalog"
MODEL_MANIFEST_NAME: Final = ".videogen-model.json"
# The profile hints of spec.profile, written into the model directory (the runner reads them there).
PROFILE_FILE_NAME: Final = "videogen-profile.json"

# Finalizer: a model's cache space is reclaimed before it goes, and never while jobs use it.
MODEL_FINALIZER: Final = f"{GROUP}/model-cache"
LABEL_MODEL_NAME: Final = f"{GROUP}/model-name"
# Change this annotation's value to fetch a model again without editing its spec (e.g. after fixing
# the files at its source): `kubectl annotate vgm NAME videogen.dev/refetch=$(date +%s) --overwrite`.
ANNOTATION_REFETCH: Final = f"{GROUP}/refetch"
COMPONENT_LOADER: Final = "model-loader"
COMPONENT_REMOVER: Final = "model-remover"

# The loader's input (JSON) and where it writes its result.
ENV_LOADER_SPEC: Final = "VIDEOGEN_LOADER_SPEC"
# Given to a runner whose spec.model is a catalog name: the model's directory (read-only) and its identity.
ENV_MODEL_DIR: Final = "VIDEOGEN_MODEL_DIR"
ENV_MODEL_REVISION: Final = "VIDEOGEN_MODEL_REVISION"
ENV_MODEL_DIGEST: Final = "VIDEOGEN_MODEL_DIGEST"
# Where a runner syncs an unlisted s3:// model when the cache volume is mounted read-only.
ENV_MODEL_SYNC_DIR: Final = "VIDEOGEN_MODEL_SYNC_DIR"


class ModelPhase(StrEnum):
    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    READY = "Ready"
    FAILED = "Failed"


class ModelReason(StrEnum):
    CREATED = "Created"
    DOWNLOADING = "Downloading"
    VERIFIED = "Verified"
    # the loader could not read the source (missing prefix or repository, no access)
    SOURCE_NOT_FOUND = "SourceNotFound"
    # a file is missing, corrupt (digest or safetensors header), or only pickle weights exist
    VERIFICATION_FAILED = "VerificationFailed"
    # spec.profile is not a valid profile entry
    INVALID_PROFILE = "InvalidProfile"
    # the loader failed for another reason, after its retries
    LOADER_FAILED = "LoaderFailed"
    # the operator's model cache cannot hold a catalog (emptyDir) or its claim is missing
    CACHE_UNAVAILABLE = "CacheUnavailable"
    # deletion waits for the jobs that use the model, then for its files to be removed
    IN_USE = "InUse"
    RECLAIMING = "Reclaiming"


MODEL_TERMINAL_PHASES: Final = frozenset({ModelPhase.READY, ModelPhase.FAILED})


# --------------------------------------------------------------------------- spec


class ExpectedFile(_Model):
    """A file the model must contain, with its SHA-256; a mismatch or a missing file fails the model."""

    path: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        pattern=r"^[^/\s][^\s]*$",
        description="Path relative to the model's root, e.g. transformer/diffusion_pytorch_model.safetensors.",
        json_schema_extra=_schema_extra(
            **{
                "x-kubernetes-validations": [
                    _cel("!self.matches('(^|/)\\\\.\\\\.?(/|$)')", "path must not contain '.' or '..' segments")
                ]
            }
        ),
    )
    sha256: str = Field(..., pattern=SHA256_PATTERN, description="Lower-case hex SHA-256 of the file's content.")

    @field_validator("path")
    @classmethod
    def _no_dot_segments(cls, value: str) -> str:
        if re.search(r"(^|/)\.\.?(/|$)", value):
            raise ValueError("path must not contain '.' or '..' segments")
        return value


MODEL_SPEC_VALIDATIONS: Final[list[dict[str, str]]] = [
    _cel(
        "!has(self.revision) || self.source.startsWith('hf://')",
        "revision applies to hf:// sources only",
        field_path=".revision",
        reason="FieldValueForbidden",
    ),
    _cel(
        "!has(self.revision) || !self.source.contains('@')",
        "give the revision either in source (hf://org/name@revision) or in revision, not both",
        field_path=".revision",
        reason="FieldValueForbidden",
    ),
]


class VideoGenModelSpec(_Model):
    """Where the model comes from, what it must contain, and who may use it. Editing source, revision,
    files or profile makes the operator fetch the model again (a new revision: jobs started after it is
    Ready use it, and its spec hash differs, so the result cache does not mix revisions)."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": cast(list[JsonValue], MODEL_SPEC_VALIDATIONS)},
    )

    source: str = Field(
        ...,
        max_length=MAX_URI_LENGTH,
        pattern=MODEL_SOURCE_PATTERN,
        description=(
            "hf://org/name[@revision] (fetched from the Hugging Face Hub by the operator's loader), "
            "s3://bucket/prefix (fetched with the operator's own storage credentials), or an absolute path "
            "of a save_pretrained directory already on the model-cache volume (verified in place, not copied)."
        ),
    )
    revision: str | None = Field(
        None,
        max_length=255,
        pattern=r"^[A-Za-z0-9._/-]+$",
        description="hf:// only: the commit, branch or tag to fetch (pin a commit for reproducible videos).",
    )
    files: list[ExpectedFile] | None = Field(
        None,
        max_length=MAX_EXPECTED_FILES,
        description=(
            "Files the model must contain, with their SHA-256. Each is checked after the download; a missing "
            "or different file fails the model naming it. Files not listed are still fetched and hashed."
        ),
        json_schema_extra=_schema_extra(**{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"]}),
    )
    profile: dict[str, JsonValue] | None = Field(
        None,
        description=(
            "Profile hints for the runner (presets, flowShift, float32Components, vaeTilingFromPixels, "
            "callDefaults, ...; the schema of one entry of the runner's model_profiles.yaml, without the "
            "class key). Written into the model's directory as videogen-profile.json; see runner/README.md."
        ),
        json_schema_extra=_schema_extra(**{"x-kubernetes-preserve-unknown-fields": True}),
    )
    namespaces: list[str] | None = Field(
        None,
        max_length=MAX_ALLOWED_NAMESPACES,
        description="Namespaces whose jobs may use the model; unset or empty: every namespace.",
        json_schema_extra=_schema_extra(
            **{
                "x-kubernetes-list-type": "set",
                "items": {"type": "string", "maxLength": 63, "pattern": NAMESPACE_PATTERN},
            }
        ),
    )
    prewarm: bool = Field(
        False,
        description=(
            "Once Ready, read the model's files on every GPU node (a DaemonSet in the operator's namespace), so "
            "the first job on a node loads from page cache instead of the shared volume."
        ),
    )

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: list[str] | None) -> list[str] | None:
        for ns in value or []:
            if len(ns) > 63 or not re.match(NAMESPACE_PATTERN, ns):
                raise ValueError(f"namespaces: {ns!r} is not a namespace name")
        return value


# --------------------------------------------------------------------------- status


class ModelProgress(_Model):
    """Download progress, written by the loader at most every 2 seconds."""

    files_done: int | None = Field(None, ge=0, description="Files fetched and verified so far.")
    files_total: int | None = Field(None, ge=0, description="Files to fetch.")
    bytes_done: int | None = Field(None, ge=0, description="Bytes fetched so far.")
    bytes_total: int | None = Field(None, ge=0, description="Bytes to fetch.")
    percent: int | None = Field(None, ge=0, le=100, description="bytesDone / bytesTotal, 0-100.")
    summary: str | None = Field(None, max_length=128, description="e.g. 'downloading 3/12 files, 1.2/14.7 GB (8%)'.")
    updated_at: datetime | None = Field(None, description="When the loader last reported.")


class ModelArchitecture(_Model):
    """What the loader read from the model's configs, and what the runner image's diffusers says about
    the classes they name: the facts the operator needs to admit or refuse a job before it holds a GPU."""

    pipeline: str | None = Field(
        None, max_length=256, description="The pipeline class of model_index.json (_class_name), e.g. WanPipeline."
    )
    transformer: str | None = Field(
        None,
        max_length=256,
        description=(
            "The class of the pipeline's transformer component (model_index.json), e.g. WanTransformer3DModel; "
            "unset when the pipeline has no transformer (UNet pipelines)."
        ),
    )
    context_parallel: bool | None = Field(
        None,
        description=(
            "Whether diffusers defines a context-parallel plan (_cp_plan) for the transformer: true, jobs may ask "
            "for spec.resources.gpus > 1 (the runner splits the denoiser's sequence across the GPUs); false, "
            "the model runs on one GPU and the operator refuses gpus > 1 at admission; unset, unknown (the "
            "runner decides)."
        ),
    )
    attention_heads: int | None = Field(
        None,
        ge=1,
        description=(
            "num_attention_heads of the transformer's config: with gpus > 1, Ulysses attention spans the GPUs "
            "that divide it (the greatest common divisor) and ring attention the rest."
        ),
    )
    diffusers_version: str | None = Field(
        None, max_length=64, description="The diffusers version whose classes were inspected (the loader image's)."
    )


class VideoGenModelStatus(_Model):
    """Observed state, written by the operator (progress by its loader)."""

    phase: ModelPhase | None = Field(None, description="Pending, Downloading, Ready or Failed.")
    reason: str | None = Field(None, description="Why the model is in this phase (a ModelReason).")
    message: str | None = Field(None, description="Human-readable details; names the file on a verification failure.")
    observed_generation: int | None = Field(None, ge=0, description="metadata.generation the status describes.")
    revision: str | None = Field(
        None, description="The revision fetched: the Hub commit for hf://, the manifest digest for s3:// and paths."
    )
    digest: str | None = Field(
        None, description="sha256:<hex> over the manifest (path, size, SHA-256 of every file): the model's identity."
    )
    size_bytes: int | None = Field(None, ge=0, description="Total size of the model's files in bytes.")
    size: str | None = Field(None, description="Total size, human-readable (e.g. 14.7GB).")
    file_count: int | None = Field(None, ge=0, description="Number of files in the model.")
    skipped_files: list[str] | None = Field(
        None, description="Files of the source that were not fetched (pickles, code, other formats); at most 50."
    )
    path: str | None = Field(
        None, description="Directory of the model relative to the model-cache volume's root (read-only once Ready)."
    )
    progress: ModelProgress | None = Field(None, description="Download progress.")
    architecture: ModelArchitecture | None = Field(
        None, description="Pipeline and transformer classes and whether the model can be split across GPUs."
    )
    loader_job: str | None = Field(None, description="The loader Job (operator's namespace) of this revision.")
    last_error: str | None = Field(None, description="The last error of the loader or the operator.")
    conditions: list[Condition] | None = Field(
        None,
        description="Standard conditions: Ready.",
        json_schema_extra=_schema_extra(**{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
    )


class VideoGenModel(_Model):
    """VideoGenModel declares one diffusers pipeline in the platform's catalog: fetched once by the
    operator into the shared model cache, verified, read-only, and usable by name from the namespaces
    it allows."""

    api_version: Literal["videogen.dev/v1alpha1"] = Field("videogen.dev/v1alpha1", description=API_VERSION)
    kind: Literal["VideoGenModel"] = Field("VideoGenModel", description=MODEL_KIND)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: VideoGenModelSpec = Field(..., description="Source, expected files, profile hints and allowed namespaces.")
    status: VideoGenModelStatus | None = Field(None, description="Observed state.")


# --------------------------------------------------------------------------- loader contract


class LoaderSpec(_Model):
    """What the operator asks one loader run to do (JSON in $VIDEOGEN_LOADER_SPEC)."""

    name: str = Field(..., description="The VideoGenModel's name.")
    uid: str = Field(..., description="Its uid (the loader patches progress only onto this object).")
    generation: int = Field(..., ge=0, description="metadata.generation being fetched.")
    source: str
    revision: str | None = None
    files: list[ExpectedFile] | None = None
    profile: dict[str, JsonValue] | None = None
    cache_root: str = Field(..., description="Mount path of the model-cache volume in the loader pod.")


class LoaderResult(_Model):
    """The loader's result (its termination message on success)."""

    revision: str
    digest: str = Field(..., description="sha256:<hex> over the manifest.")
    size_bytes: int = Field(..., ge=0)
    file_count: int = Field(..., ge=0)
    path: str = Field(..., description="Model directory relative to cache_root.")
    downloaded: int = Field(0, ge=0, description="Files fetched in this run (0 when the cache already held them).")
    skipped_files: list[str] = Field(default_factory=list)
    architecture: ModelArchitecture | None = Field(
        None, description="What the model's configs and diffusers' classes say (None: the loader could not tell)."
    )


class LoaderFailure(_Model):
    """The loader's termination message on failure."""

    reason: ModelReason
    message: str
    file: str | None = Field(None, description="The file concerned, when there is one.")


def model_dir(name: str, digest: str) -> str:
    """Directory (relative to the cache root) of one verified revision: content-addressed, so a new
    revision never overwrites the files a running job reads."""
    hexdigest = digest.removeprefix("sha256:")
    return f"{CATALOG_DIR}/{name}/{hexdigest[:16]}"


def staging_dir(name: str, uid: str, generation: int) -> str:
    return f"{CATALOG_DIR}/{name}/.staging-{uid[:8]}-{generation}"


def manifest_digest(entries: list[dict[str, Any]]) -> str:
    """sha256 over the manifest: every file's path, size and SHA-256, in path order."""
    rows = sorted(({"path": e["path"], "size": int(e["size"]), "sha256": e["sha256"]} for e in entries), key=_path)
    blob = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def _path(entry: dict[str, Any]) -> str:
    return str(entry["path"])


def human_size(size_bytes: int) -> str:
    value = float(size_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def is_catalog_name(model: str) -> bool:
    """spec.model names a VideoGenModel (not an hf://, s3:// or path URI)."""
    return bool(re.match(CATALOG_NAME_PATTERN, model)) and len(model) <= MAX_CATALOG_NAME_LENGTH


def namespace_allowed(spec: VideoGenModelSpec, namespace: str) -> bool:
    return not spec.namespaces or namespace in spec.namespaces
