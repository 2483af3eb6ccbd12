"""The contract: what the Python models accept is what the CRD accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from videogen_api import crd
from videogen_api import v1alpha1 as api

REPO = Path(__file__).resolve().parents[2]


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "task": "text-to-video",
        "prompt": "a cat",
    }
    base.update(overrides)
    return base


class TestGeneratedCRD:
    def test_checked_in_crd_matches_the_contract(self) -> None:
        checked_in = (REPO / "crds" / "videogenjobs.yaml").read_text()
        assert checked_in == crd.render_crd(), "crds/ is stale: run `make crds`"

    def test_checked_in_model_crd_matches_the_contract(self) -> None:
        checked_in = (REPO / "crds" / "videogenmodels.yaml").read_text()
        assert checked_in == crd.render_model_crd(), "crds/ is stale: run `make crds`"
        chart_copy = REPO / "charts" / "videogen-operator" / "crds" / "videogenmodels.yaml"
        assert chart_copy.read_text() == checked_in, "the chart's copy is stale: run `make crds`"

    @pytest.mark.parametrize("build", [crd.build_crd, crd.build_model_crd], ids=["videogenjobs", "videogenmodels"])
    def test_every_field_has_a_description_for_kubectl_explain(self, build: Any) -> None:
        schema = build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        missing: list[str] = []

        def walk(node: dict[str, Any], path: str) -> None:
            for name, prop in node.get("properties", {}).items():
                if path == "" and name == "metadata":
                    continue
                if not prop.get("description"):
                    missing.append(f"{path}.{name}")
                walk(prop, f"{path}.{name}")
            if "items" in node:
                walk(node["items"], f"{path}[]")

        walk(schema, "")
        assert missing == []

    @pytest.mark.parametrize("build", [crd.build_crd, crd.build_model_crd], ids=["videogenjobs", "videogenmodels"])
    def test_schema_is_structural(self, build: Any) -> None:
        schema = build()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

        def walk(node: dict[str, Any], path: str) -> None:
            assert not {"anyOf", "$ref", "title", "allOf"} & node.keys(), path
            if not node.get("x-kubernetes-preserve-unknown-fields") and path:
                assert "type" in node, f"{path} has no type"
            for name, prop in node.get("properties", {}).items():
                walk(prop, f"{path}.{name}")
            if isinstance(node.get("items"), dict):
                walk(node["items"], f"{path}[]")

        walk(schema, "")

    def test_printer_columns(self) -> None:
        columns = crd.build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
        normal = [c["name"] for c in columns if not c.get("priority")]
        wide = [c["name"] for c in columns if c.get("priority") == 1]
        assert normal == ["Phase", "Progress", "Model", "Age"]
        assert wide == ["Reason", "Output", "Pod"]

    def test_crd_names(self) -> None:
        names = yaml.safe_load(crd.render_crd())["spec"]["names"]
        assert names["shortNames"] == ["vgj"]
        assert names["categories"] == ["videogen"]
        assert names["plural"] == "videogenjobs"


class TestSpecValidation:
    def test_minimal_spec_gets_defaults(self) -> None:
        s = api.VideoGenJobSpec.model_validate(spec())
        assert s.preset is api.Preset.STANDARD
        assert s.memory is api.MemoryMode.AUTO
        assert s.output.format is api.OutputFormat.MP4
        assert s.resources.gpus == 1
        assert s.width is None  # left for the preset to fill

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"prompt": ""}, "prompt"),
            ({"prompt": "x" * (api.MAX_PROMPT_LENGTH + 1)}, "prompt"),
            ({"task": "video-to-video"}, "task"),
            ({"task": "image-to-video"}, "image"),
            ({"image": "s3://bucket/cat.png"}, "image"),
            ({"width": 100}, "width"),
            ({"numFrames": 0}, "numFrames"),
            ({"steps": 1000}, "steps"),
            ({"guidanceScale": 31}, "guidanceScale"),
            ({"memory": "lots"}, "memory"),
            ({"output": {"format": "avi"}}, "format"),
            ({"resources": {"gpus": 0}}, "gpus"),
            ({"model": "http://example.com/model"}, "model"),
            ({"unknownField": 1}, "unknownField"),
        ],
    )
    def test_invalid_specs_name_the_field(self, overrides: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationError) as err:
            api.VideoGenJobSpec.model_validate(spec(**overrides))
        assert field in str(err.value)

    @pytest.mark.parametrize(
        "model",
        [
            "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            "hf://org/name@v1.0",
            "s3://models/wan/tiny",
            "/models/wan",
        ],
    )
    def test_model_uri_forms(self, model: str) -> None:
        assert api.VideoGenJobSpec.model_validate(spec(model=model)).model == model


class TestSpecHash:
    def test_hash_ignores_scheduling_fields(self) -> None:
        a = api.VideoGenJobSpec.model_validate(spec(seed=1))
        b = api.VideoGenJobSpec.model_validate(spec(seed=1, retries=5, suspend=True, resources={"gpus": 2}))
        assert api.spec_hash(a) == api.spec_hash(b)

    def test_hash_follows_generation_fields(self) -> None:
        a = api.VideoGenJobSpec.model_validate(spec(seed=1))
        assert api.spec_hash(a) != api.spec_hash(api.VideoGenJobSpec.model_validate(spec(seed=2)))
        assert api.spec_hash(a) != api.spec_hash(
            api.VideoGenJobSpec.model_validate(spec(seed=1, output={"format": "gif"}))
        )
        assert len(api.spec_hash(a)) == 16


class TestExitCodes:
    def test_every_failure_class_has_a_distinct_code_and_reason(self) -> None:
        codes = [c for c in api.ExitCode if c is not api.ExitCode.OK]
        assert len({int(c) for c in codes}) == len(codes)
        assert set(api.EXIT_CODE_REASONS) == set(codes)

    def test_unknown_exit_code_is_a_pod_failure(self) -> None:
        assert api.reason_for_exit_code(137) is api.Reason.POD_FAILED
        assert api.reason_for_exit_code(11) is api.Reason.MODEL_NOT_FOUND


def test_prompt_preview_is_short_and_single_line() -> None:
    assert api.prompt_preview("a\n cat   sat on a mat " * 10, limit=20).count("\n") == 0
    assert len(api.prompt_preview("x" * 500)) == 40
