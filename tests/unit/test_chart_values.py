"""The chart's values for the model catalog agree with the contract: a models.catalog entry is
checked by values.schema.json exactly as the VideoGenModel CRD would check it (so `helm install`
refuses, naming the key, what the API server would refuse later), and every field of the CRD's
spec can be given from values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from videogen_api import catalog, crd

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "videogen-operator"
CONSTRAINTS = ("type", "pattern", "maxLength", "minLength", "maxItems", "required")


def values_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def model_spec_schema() -> dict[str, Any]:
    root = crd.build_model_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec: dict[str, Any] = root["properties"]["spec"]
    return spec


def constraints(node: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k in CONSTRAINTS}


def test_catalog_entries_are_checked_like_the_crd_checks_them() -> None:
    entry = values_schema()["properties"]["models"]["properties"]["catalog"]["items"]
    spec = model_spec_schema()["properties"]
    # Every spec field of the CRD can be set from values, and nothing else (plus the name).
    assert set(entry["properties"]) == set(spec) | {"name"}
    assert entry["additionalProperties"] is False
    for field in ("source", "revision", "prewarm"):
        assert constraints(entry["properties"][field]) == constraints(spec[field]), field
    files, crd_files = entry["properties"]["files"], spec["files"]
    assert constraints(files) == constraints(crd_files)
    for field in ("path", "sha256"):
        assert constraints(files["items"]["properties"][field]) == constraints(
            crd_files["items"]["properties"][field]
        ), field
    assert constraints(files["items"]) == constraints(crd_files["items"])
    namespaces = entry["properties"]["namespaces"]
    assert constraints(namespaces["items"]) == constraints(spec["namespaces"]["items"])
    assert namespaces["maxItems"] == spec["namespaces"]["maxItems"]
    assert entry["properties"]["profile"]["type"] == "object"
    assert entry["properties"]["name"]["pattern"] == catalog.CATALOG_NAME_PATTERN
    assert entry["properties"]["name"]["maxLength"] == catalog.MAX_CATALOG_NAME_LENGTH
    assert set(entry["required"]) == {"name"} | set(model_spec_schema()["required"])


def test_every_new_value_has_a_schema() -> None:
    """values.yaml and values.schema.json list the same keys under modelCache and models."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = values_schema()["properties"]

    def keys(node: Any, shape: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in shape:
            return
        assert set(node) <= set(shape["properties"]), f"{path}: {set(node) - set(shape['properties'])} unchecked"
        assert shape.get("additionalProperties") is False or path.endswith(("profile", "extraEnv")), path
        for key, value in node.items():
            keys(value, shape["properties"][key], f"{path}.{key}")

    for top in ("modelCache", "models", "networkPolicy"):
        keys(values[top], schema[top], top)


def test_runner_shm_size_defaults_agree_and_are_checked() -> None:
    """runner.shmSize (the /dev/shm of multi-GPU runner pods): the chart's default is the operator's,
    and the schema refuses what the operator's setting would refuse."""
    import re

    from videogen_operator.settings import OperatorSettings

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["runner"]["shmSize"] == OperatorSettings().runner_shm_size == "8Gi"
    pattern = values_schema()["properties"]["runner"]["properties"]["shmSize"]["pattern"]
    setting = OperatorSettings.model_json_schema()["properties"]["runner_shm_size"]["pattern"]
    assert pattern == setting
    assert re.match(pattern, "16Gi") and not re.match(pattern, "lots")
