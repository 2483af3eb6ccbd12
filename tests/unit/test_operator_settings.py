"""Operator settings from environment and a mounted ConfigMap file."""

from __future__ import annotations

from pathlib import Path

import pytest

from videogen_operator.settings import load_settings


def test_defaults_watch_all_namespaces() -> None:
    s = load_settings({})
    assert s.clusterwide and s.gpu_resource_name == "nvidia.com/gpu"


def test_environment_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("maxRunning: 3\ns3Bucket: from-file\nmodelCache:\n  type: hostPath\n  hostPath: /data/models\n")
    s = load_settings({"VIDEOGEN_CONFIG_FILE": str(f), "VIDEOGEN_MAX_RUNNING": "1", "VIDEOGEN_NAMESPACES": "a, b"})
    assert s.max_running == 1
    assert s.s3_bucket == "from-file"
    assert s.namespaces == ["a", "b"]
    assert s.model_cache.host_path == "/data/models"


def test_bad_setting_names_the_key() -> None:
    with pytest.raises(ValueError, match="max_running"):
        load_settings({"VIDEOGEN_MAX_RUNNING": "many"})
