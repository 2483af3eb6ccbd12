"""Where models live on the node: one volume holding the Hugging Face cache and synced s3:// models.

Layout under the volume root ($VIDEOGEN_MODEL_CACHE, else $HF_HOME):
  hub/models--org--name/snapshots/<commit>/...   hf:// models (the standard HF cache; HF_HOME=<root>)
  s3/<bucket>/<prefix>/...                       s3:// models, with .videogen-manifest.json
  catalog/<name>/<digest16>/...                  catalog models (VideoGenModel), written by the model loader

Where the volume is mounted read-only (tenant namespaces, catalog in use), s3:// syncs go to
$VIDEOGEN_MODEL_SYNC_DIR instead (the operator points it at a writable emptyDir).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from videogen_api import catalog
from videogen_api import v1alpha1 as api


def model_cache_root(env: Mapping[str, str]) -> Path:
    root = env.get(api.ENV_MODEL_CACHE) or env.get("HF_HOME")
    if root:
        return Path(root)
    return Path.home() / ".cache" / "videogen"


def model_sync_root(env: Mapping[str, str]) -> Path:
    """Where s3:// models are synced: $VIDEOGEN_MODEL_SYNC_DIR when set, else the cache volume."""
    sync_dir = env.get(catalog.ENV_MODEL_SYNC_DIR)
    return Path(sync_dir) if sync_dir else model_cache_root(env)


def hub_cache_dir(env: Mapping[str, str]) -> Path:
    """The huggingface_hub cache directory, honouring HF's own variables first."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    if env.get(api.ENV_MODEL_CACHE):
        return Path(env[api.ENV_MODEL_CACHE]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"
