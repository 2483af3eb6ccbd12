"""A catalog model (spec.model names a VideoGenModel) as the runner sees it: a read-only directory
the operator mounted, and the identity (revision, manifest digest) the spec hash covers.

The operator passes VIDEOGEN_MODEL_DIR, VIDEOGEN_MODEL_REVISION and VIDEOGEN_MODEL_DIGEST once the
model is Ready. The runner opens the directory as it is: it never syncs it, takes no lock and writes
nothing there (the volume is mounted read-only in tenant namespaces).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videogen_api import catalog
from videogen_api import v1alpha1 as api

from .errors import ModelNotFoundError

CATALOG_ENV = (catalog.ENV_MODEL_DIR, catalog.ENV_MODEL_REVISION, catalog.ENV_MODEL_DIGEST)


@dataclass(frozen=True)
class CatalogModel:
    name: str
    path: Path
    identity: api.ModelIdentity


def catalog_model(model: str, env: Mapping[str, str]) -> CatalogModel | None:
    """The catalog model spec.model names, from the operator's environment; None for a URI."""
    if model.startswith(("hf://", "s3://", "/")) or not catalog.is_catalog_name(model):
        return None
    missing = [name for name in CATALOG_ENV if not env.get(name)]
    if missing:
        raise ModelNotFoundError(
            f"model {model} is a catalog name (a VideoGenModel), but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: the operator sets them once the model is Ready "
            f"(run by hand: point them at a directory made by `videogen-model-loader fetch`)"
        )
    return CatalogModel(
        name=model,
        path=Path(env[catalog.ENV_MODEL_DIR]),
        identity=api.ModelIdentity(revision=env[catalog.ENV_MODEL_REVISION], digest=env[catalog.ENV_MODEL_DIGEST]),
    )


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The loader's manifest of a model directory (None when absent or unreadable)."""
    try:
        data = json.loads((model_dir / catalog.MODEL_MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def open_catalog_model(model: CatalogModel) -> Path:
    """The model's directory, checked to be the revision the operator named (read only, nothing written)."""
    path = model.path
    if not path.is_dir():
        raise ModelNotFoundError(
            f"model {model.name}: {catalog.ENV_MODEL_DIR}={path} is not a directory (is the model cache mounted?)"
        )
    manifest = read_manifest(path)
    if manifest is not None and manifest.get("digest") != model.identity.digest:
        # The spec hash (and the result cache) must describe the files actually loaded.
        raise ModelNotFoundError(
            f"model {model.name}: {path} holds digest {manifest.get('digest')}, "
            f"but the job was admitted for {model.identity.digest}"
        )
    return path
