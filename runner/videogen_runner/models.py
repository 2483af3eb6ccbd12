"""Finding a model (local path, hf:// cache entry, s3:// prefix) and loading it with diffusers.

Loading goes through `DiffusionPipeline.from_pretrained` exactly as users do,
with the pipeline class taken from model_index.json. Code shipped with a model
never runs: custom pipeline classes and components from libraries other than
diffusers/transformers are refused, and trust_remote_code stays off.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen_api import v1alpha1 as api

from .cache import hub_cache_dir, model_cache_root
from .errors import InvalidInputError, ModelLoadError, ModelNotFoundError, one_line
from .model_sync import file_lock, lock_path_for, sync_prefix
from .presets import Family, ShapeRules, family_for_class, rules_from_configs
from .s3 import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# Libraries whose classes may appear in model_index.json; anything else would import model-supplied code.
TRUSTED_LIBRARIES = frozenset({"diffusers", "transformers"})
_HF_URI = re.compile(r"^hf://(?P<repo>[^@]+?)(?:@(?P<rev>.+))?$")


@dataclass(frozen=True)
class ModelInfo:
    uri: str
    path: Path
    class_name: str
    family: Family
    rules: ShapeRules
    accepts_image: bool
    call_parameters: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class LoadedModel:
    pipe: Any
    info: ModelInfo
    device: str
    model_bytes: int
    largest_component_bytes: int
    component_bytes: dict[str, int]


def parse_hf_uri(uri: str) -> tuple[str, str]:
    """("org/name", revision) of hf://org/name[@revision]; revision defaults to main."""
    match = _HF_URI.match(uri)
    if not match:
        raise InvalidInputError(f"spec.model: {uri!r} is not hf://org/name[@revision]")
    return match["repo"], match["rev"] or "main"


def resolve_hf(uri: str, env: Mapping[str, str]) -> Path:
    """The snapshot directory of an hf:// model in the cache, without touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    repo_id, revision = parse_hf_uri(uri)
    cache = hub_cache_dir(env)
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True)
    except (LocalEntryNotFoundError, IncompleteSnapshotError) as exc:
        raise ModelNotFoundError(
            f"model {uri} is not in the model cache {cache} (runners never download from the Hub; "
            f"pre-populate the cache, e.g. HF_HOME={cache.parent} hf download {repo_id} --revision {revision})"
        ) from exc
    except HFValidationError as exc:
        raise InvalidInputError(f"spec.model: {one_line(str(exc), 200)}") from exc
    return Path(path)


@contextlib.contextmanager
def open_model(
    uri: str,
    *,
    env: Mapping[str, str],
    s3_client: S3Client | None,
    policy: RetryPolicy,
) -> Iterator[Path]:
    """Yield the local directory of the model; s3:// models are synced first and
    stay share-locked while the caller loads them, so no sync replaces files mid-load."""
    if uri.startswith("hf://"):
        yield resolve_hf(uri, env)
    elif uri.startswith("s3://"):
        if s3_client is None:
            raise ModelNotFoundError(f"model {uri}: no S3 client configured")
        result = sync_prefix(s3_client, uri, model_cache_root(env), policy, env)
        with file_lock(lock_path_for(result.path), exclusive=False):
            yield result.path
    elif uri.startswith("/"):
        path = Path(uri)
        if not path.exists():
            raise ModelNotFoundError(f"model {uri}: no such directory")
        if not path.is_dir():
            raise ModelNotFoundError(f"model {uri}: not a directory")
        yield path
    else:
        raise InvalidInputError(f"spec.model: {uri!r} is not hf://, s3:// or an absolute path")


def _read_json(path: Path, uri: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ModelLoadError(f"model {uri}: cannot read {path.name}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ModelLoadError(f"model {uri}: {path.name} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"model {uri}: {path.name} is not a JSON object")
    return data


def _optional_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def inspect_model(uri: str, path: Path, task: api.Task) -> ModelInfo:
    """Read model_index.json and check the pipeline is a trusted diffusers class fit for the task.

    Imports diffusers (slow) but loads no weights.
    """
    index_path = path / "model_index.json"
    if not index_path.is_file():
        raise ModelNotFoundError(f"model {uri}: no diffusers pipeline there (model_index.json missing in {path})")
    index = _read_json(index_path, uri)
    class_name = index.get("_class_name")
    if not isinstance(class_name, str):
        raise ModelLoadError(
            f"model {uri}: model_index.json names a custom pipeline ({class_name!r}); model code is never run"
        )
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
            continue
        library = value[0]
        if library not in TRUSTED_LIBRARIES:
            raise ModelLoadError(
                f"model {uri}: component {name} comes from {library!r}; only diffusers and transformers "
                "classes are loaded (model code is never run)"
            )

    import diffusers

    pipeline_cls = getattr(diffusers, class_name, None)
    if not (isinstance(pipeline_cls, type) and issubclass(pipeline_cls, diffusers.DiffusionPipeline)):
        raise ModelLoadError(f"model {uri}: {class_name} is not a pipeline class of diffusers {diffusers.__version__}")
    params = frozenset(inspect.signature(pipeline_cls.__call__).parameters)
    accepts_image = "image" in params
    if task is api.Task.IMAGE_TO_VIDEO and not accepts_image:
        raise InvalidInputError(
            f"spec.task: image-to-video needs an image-to-video pipeline, but {uri} is {class_name}"
        )
    if task is api.Task.TEXT_TO_VIDEO and accepts_image:
        raise InvalidInputError(f"spec.task: {uri} is {class_name}, an image-to-video pipeline; set task and image")

    family = family_for_class(class_name)
    rules = rules_from_configs(
        family,
        _optional_json(path / "vae" / "config.json"),
        _optional_json(path / "transformer" / "config.json"),
    )
    return ModelInfo(
        uri=uri,
        path=path,
        class_name=class_name,
        family=family,
        rules=rules,
        accepts_image=accepts_image,
        call_parameters=params,
    )


def component_dtypes(family: Family, cuda: bool) -> Any:
    """bf16 on CUDA, except parts a family keeps in fp32; fp32 on CPU (bf16 matmuls are slow there)."""
    import torch

    if not cuda:
        return torch.float32
    if family is Family.WAN:
        # The Wan VAE and CLIP image encoder lose visible quality in bf16 (Wan's own examples keep them fp32).
        return {"default": torch.bfloat16, "vae": torch.float32, "image_encoder": torch.float32}
    return torch.bfloat16


def module_bytes(module: Any) -> int:
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor.numel() * tensor.element_size()
    return int(total)


def load_pipeline(info: ModelInfo, *, cuda: bool, device_map: str | None = None) -> LoadedModel:
    """from_pretrained on CPU memory (or straight onto `device_map`, see coldstart.device_map_for);
    the memory plan decides afterwards what moves to the GPU."""
    import torch
    from diffusers import DiffusionPipeline

    quiet_library_progress_bars()
    dtype = component_dtypes(info.family, cuda)
    from_pretrained: Any = DiffusionPipeline.from_pretrained
    try:
        with warnings.catch_warnings():
            # Newer diffusers renamed torch_dtype to dtype; the old name works across all supported versions.
            warnings.simplefilter("ignore", FutureWarning)
            pipe = from_pretrained(
                str(info.path),
                torch_dtype=dtype,
                local_files_only=True,
                trust_remote_code=False,
                **({"device_map": device_map} if device_map else {}),
            )
    except Exception as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        raise ModelLoadError(
            f"model {info.uri}: loading failed: {one_line(f'{type(exc).__name__}: {exc}', 600)}"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    sizes = {
        name: module_bytes(component)
        for name, component in pipe.components.items()
        if isinstance(component, torch.nn.Module)
    }
    total = sum(sizes.values())
    largest = max(sizes.values(), default=0)
    log.info(
        "loaded %s (%s, %s) from %s: %.1f MiB of weights [%s]",
        info.uri,
        info.class_name,
        info.family.value,
        info.path,
        total / 2**20,
        ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(sizes.items())),
    )
    return LoadedModel(
        pipe=pipe,
        info=info,
        device="cuda" if cuda else "cpu",
        model_bytes=total,
        largest_component_bytes=largest,
        component_bytes=sizes,
    )


def hf_offline_env() -> None:
    """Make every library in this process treat the Hub as unreachable: models come from the cache only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # Our own progress bar is the one in the logs; tqdm bars from loaders are noise there.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def quiet_library_progress_bars() -> None:
    import importlib

    for module in ("diffusers.utils.logging", "transformers.utils.logging"):
        library_logging: Any = importlib.import_module(module)
        library_logging.disable_progress_bar()
