"""What a fetched model is, as the operator needs to know it before a job holds a GPU.

The model loader reads model_index.json and the transformer's config.json of the verified model
directory and asks the runner image's diffusers about the classes they name (imported, never
instantiated; no weights are read). The answer goes into the LoaderResult and from there into the
VideoGenModel's status.architecture, where the operator reads it to refuse `spec.resources.gpus > 1`
for a model the runner could not split (parallel.has_context_parallel_plan decides both).

Nothing here fails a fetch: a fact the loader cannot establish is left unset, and the runner then
decides after loading, as it does for unlisted URIs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
from pathlib import Path

from videogen_api import catalog

from .loader_errors import LoaderError
from .model_verify import MODEL_INDEX, pipeline_components, read_model_index
from .parallel import has_context_parallel_plan

log = logging.getLogger(__name__)

TRANSFORMER = "transformer"


def describe(model_dir: Path) -> catalog.ModelArchitecture | None:
    """The model's pipeline and transformer classes, whether diffusers can split the transformer
    across GPUs, and its attention heads; None when model_index.json cannot be read."""
    try:
        index = read_model_index(model_dir / MODEL_INDEX)
        components = pipeline_components(index)
    except LoaderError as exc:
        log.warning("cannot describe %s: %s", model_dir, exc.message)
        return None
    version = _diffusers_version()
    pipeline = str(index["_class_name"])
    component = components.get(TRANSFORMER)
    if component is None:
        # The runner splits only a pipeline's transformer: a UNet pipeline runs on one GPU.
        return catalog.ModelArchitecture(pipeline=pipeline, context_parallel=False, diffusers_version=version)
    library, class_name = component
    return catalog.ModelArchitecture(
        pipeline=pipeline,
        transformer=class_name,
        context_parallel=_splittable(library, class_name),
        attention_heads=_attention_heads(model_dir / TRANSFORMER / "config.json"),
        diffusers_version=version,
    )


def _splittable(library: str, class_name: str) -> bool | None:
    """has_context_parallel_plan of the class model_index.json names; None when it cannot be imported."""
    try:
        module = importlib.import_module(library)
    except Exception as exc:  # a broken install must not fail a verified fetch
        log.warning("cannot import %s to inspect %s: %s", library, class_name, exc)
        return None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        log.warning("%s has no class %s; whether it splits across GPUs is left to the runner", library, class_name)
        return None
    return has_context_parallel_plan(cls)


def _attention_heads(config_path: Path) -> int | None:
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return None
    heads = config.get("num_attention_heads") if isinstance(config, dict) else None
    return heads if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 else None


def _diffusers_version() -> str | None:
    try:
        return importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        return None
