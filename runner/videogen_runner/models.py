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

from .cache import hub_cache_dir, model_sync_root
from .catalog_model import catalog_model, open_catalog_model
from .errors import InvalidInputError, ModelLoadError, ModelNotFoundError, one_line
from .model_sync import file_lock, lock_path_for, sync_prefix
from .presets import Family, ShapeRules
from .profiles import FamilyData, Profile, family_data, geometry_from_configs, profile_table, select_pipeline
from .s3 import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# Libraries whose classes may appear in model_index.json; anything else would import model-supplied code.
TRUSTED_LIBRARIES = frozenset({"diffusers", "transformers"})
_PACKAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def is_trusted_library(library: str) -> bool:
    """diffusers, transformers, or one of diffusers' own pipeline packages.

    A model_index.json entry such as LTX-2's `"vocoder": ["ltx2", "LTX2Vocoder"]` names a package under
    diffusers.pipelines: diffusers loads that class from its own code (`hasattr(diffusers.pipelines,
    "ltx2")`), not from the model. Checked on disk, so the model loader need not import diffusers."""
    if library in TRUSTED_LIBRARIES:
        return True
    if not _PACKAGE_NAME.match(library):
        return False
    import importlib.util

    spec = importlib.util.find_spec("diffusers")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    return any((Path(root) / "pipelines" / library / "__init__.py").is_file() for root in roots)


_HF_URI = re.compile(r"^hf://(?P<repo>[^@]+?)(?:@(?P<rev>.+))?$")


@dataclass(frozen=True)
class ModelInfo:
    uri: str
    path: Path
    class_name: str
    family: Family
    # Shape rules as the configs on disk tell them (the loaded pipeline's own numbers replace them).
    rules: ShapeRules
    accepts_image: bool
    call_parameters: frozenset[str] = field(default_factory=frozenset)
    # The class loaded for this task (may differ from model_index.json's, e.g. Wan 2.2 TI2V image-to-video).
    pipeline_class: str = ""
    data: FamilyData | None = None


@dataclass(frozen=True)
class LoadedModel:
    pipe: Any
    info: ModelInfo
    device: str
    model_bytes: int
    largest_component_bytes: int
    component_bytes: dict[str, int]
    profile: Profile


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
    stay share-locked while the caller loads them, so no sync replaces files mid-load.
    A catalog model's directory is opened as it is: read-only, never synced, no lock."""
    if uri.startswith("hf://"):
        yield resolve_hf(uri, env)
    elif uri.startswith("s3://"):
        if s3_client is None:
            raise ModelNotFoundError(f"model {uri}: no S3 client configured")
        result = sync_prefix(s3_client, uri, model_sync_root(env), policy, env)
        with file_lock(lock_path_for(result.path), exclusive=False):
            yield result.path
    elif uri.startswith("/"):
        path = Path(uri)
        if not path.exists():
            raise ModelNotFoundError(f"model {uri}: no such directory")
        if not path.is_dir():
            raise ModelNotFoundError(f"model {uri}: not a directory")
        yield path
    elif (named := catalog_model(uri, env)) is not None:
        yield open_catalog_model(named)
    else:
        raise InvalidInputError(f"spec.model: {uri!r} is not a catalog model name, hf://, s3:// or an absolute path")


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


def inspect_model(uri: str, path: Path, task: api.Task, env: Mapping[str, str] | None = None) -> ModelInfo:
    """Read model_index.json, check the pipeline is a trusted diffusers class and pick the class
    that serves the task (refusing a task the model cannot serve).

    Imports diffusers (slow) but loads no weights.
    """
    env = os.environ if env is None else env
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
        if not isinstance(library, str) or not is_trusted_library(library):
            raise ModelLoadError(
                f"model {uri}: component {name} comes from {library!r}; only diffusers (and its pipeline "
                "packages) and transformers classes are loaded (model code is never run)"
            )

    import diffusers

    pipeline_cls = getattr(diffusers, class_name, None)
    if not (isinstance(pipeline_cls, type) and issubclass(pipeline_cls, diffusers.DiffusionPipeline)):
        raise ModelLoadError(f"model {uri}: {class_name} is not a pipeline class of diffusers {diffusers.__version__}")
    chosen = select_pipeline(class_name, task, path, env, uri)
    if chosen != class_name:
        log.info("model %s is %s; %s is served by %s from the same directory", uri, class_name, task.value, chosen)
    chosen_cls = getattr(diffusers, chosen)
    params = frozenset(inspect.signature(chosen_cls.__call__).parameters)
    data = family_data(chosen, path, env)
    geometry = geometry_from_configs(path)
    return ModelInfo(
        uri=uri,
        path=path,
        class_name=class_name,
        family=Family.of(data.family),
        rules=ShapeRules(geometry.frame_step, geometry.size_multiple, data.label),
        accepts_image="image" in params or data.image_input != "image",
        call_parameters=params,
        pipeline_class=chosen,
        data=data,
    )


def component_dtypes(family: Family | FamilyData, cuda: bool) -> Any:
    """bf16 on CUDA, except the components the profile keeps in fp32; fp32 on CPU (bf16 matmuls are slow there)."""
    import torch

    if not cuda:
        return torch.float32
    if isinstance(family, FamilyData):
        keep = list(family.float32_components)
    else:
        keep = []
        for entry in profile_table({}).values():
            if entry.get("family") == family.value:
                keep += [c for c in entry.get("float32Components", []) if c not in keep]
    if not keep:
        return torch.bfloat16
    return {"default": torch.bfloat16, **{name: torch.float32 for name in keep}}


def module_bytes(module: Any) -> int:
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor.numel() * tensor.element_size()
    return int(total)


def load_pipeline(
    info: ModelInfo, *, cuda: bool, env: Mapping[str, str] | None = None, device_map: str | None = None
) -> LoadedModel:
    """from_pretrained on CPU memory (or straight onto `device_map`, see coldstart.device_map_for);
    the memory plan decides afterwards what moves to the GPU."""
    import diffusers
    import torch

    from .profiles import resolve_profile

    env = os.environ if env is None else env
    quiet_library_progress_bars()
    dtype = component_dtypes(info.data if info.data is not None else info.family, cuda)
    # The class chosen for the task (from_pretrained of a pipeline class loads the same directory).
    pipeline_cls = getattr(diffusers, info.pipeline_class or info.class_name)
    from_pretrained: Any = pipeline_cls.from_pretrained
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
    from .compat import apply_compat_shims

    apply_compat_shims(pipe)
    sizes = {
        name: module_bytes(component)
        for name, component in pipe.components.items()
        if isinstance(component, torch.nn.Module)
    }
    total = sum(sizes.values())
    largest = max(sizes.values(), default=0)
    profile = resolve_profile(pipe, info.path, env)
    log.info(
        "loaded %s (%s, %s) from %s: %.1f MiB of weights [%s]",
        info.uri,
        type(pipe).__name__,
        profile.label,
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
        profile=profile,
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
