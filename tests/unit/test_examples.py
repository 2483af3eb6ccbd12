"""The manifests in examples/: each is a valid object of the contract, every catalog name a job
example uses is a model the examples define, and the profile hints of the model examples are
what the runner reads from a model directory. (Their acceptance by the API server's own schema
is checked in tests/integration/test_chart.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from videogen_api import catalog
from videogen_api import v1alpha1 as api
from videogen_runner import profiles

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path, doc))
    return found


def models() -> dict[str, catalog.VideoGenModel]:
    return {
        doc["metadata"]["name"]: catalog.VideoGenModel.model_validate(doc)
        for _, doc in manifests()
        if doc["kind"] == catalog.MODEL_KIND
    }


@pytest.mark.parametrize(
    ("path", "doc"),
    [pytest.param(p, d, id=f"{p.relative_to(EXAMPLES)}:{d['metadata']['name']}") for p, d in manifests()],
)
def test_every_example_is_a_valid_object(path: Path, doc: dict[str, Any]) -> None:
    assert doc["kind"] in (api.KIND, catalog.MODEL_KIND), path
    if doc["kind"] == api.KIND:
        api.VideoGenJob.model_validate(doc)
    else:
        model = catalog.VideoGenModel.model_validate(doc)
        assert catalog.is_catalog_name(doc["metadata"]["name"]), path
        assert path.stem == doc["metadata"]["name"], "one model per file, named for it"
        assert model.spec.source.startswith(("hf://", "s3://", "/"))


def test_job_examples_name_catalog_models_the_examples_define() -> None:
    defined = models()
    jobs = [(p, d) for p, d in manifests() if d["kind"] == api.KIND]
    assert jobs
    for path, doc in jobs:
        name = doc["spec"]["model"]
        assert catalog.is_catalog_name(name), f"{path}: spec.model should name a catalog model, not {name}"
        assert name in defined, f"{path}: no example defines the VideoGenModel {name}"
        namespace = doc["metadata"].get("namespace", "default")
        assert catalog.namespace_allowed(defined[name].spec, namespace), f"{path}: {name} does not allow {namespace}"


def test_the_real_wan_examples_come_from_the_hub_with_a_revision() -> None:
    defined = models()
    assert defined["wan2-1-t2v-1-3b"].spec.source == "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert defined["wan2-2-ti2v-5b"].spec.source == "hf://Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    assert all(defined[n].spec.revision for n in ("wan2-1-t2v-1-3b", "wan2-2-ti2v-5b"))
    # One example shows a model restricted to some namespaces.
    assert defined["wan2-2-ti2v-5b"].spec.namespaces == ["media-team"]


@pytest.mark.parametrize("name", ["wan2-1-t2v-1-3b", "wan2-2-ti2v-5b"])
def test_example_profile_hints_are_what_the_runner_reads(name: str, tmp_path: Path) -> None:
    """The loader writes spec.profile as videogen-profile.json into the model's directory; the
    runner merges it over the family entry of the pipeline class. The hints must survive that."""
    spec = models()[name].spec
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    if spec.profile is not None:
        (tmp_path / catalog.PROFILE_FILE_NAME).write_text(json.dumps(spec.profile))
    data = profiles.family_data("WanPipeline", tmp_path, {})
    presets = profiles.preset_values(data)
    hinted = (spec.profile or {}).get("presets") or {}
    assert isinstance(hinted, dict)
    for preset, values in hinted.items():
        assert isinstance(values, dict)
        got = presets[api.Preset(preset)]
        assert (got.width, got.height, got.steps) == (values["width"], values["height"], values["steps"])
