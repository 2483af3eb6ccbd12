"""The generated CRD, served by the real API server: kubectl-native UX and
validation at `kubectl apply` time, with messages that name the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from videogen_api import v1alpha1 as api

pytestmark = pytest.mark.cluster

NAMESPACE = "crd-tests"


def manifest(name: str, **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "task": "text-to-video",
        "prompt": "a red fox running through snow",
    }
    for key, value in spec_overrides.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def k(cluster: Any, videogen_crds: None) -> Any:
    """kubectl that returns the result instead of raising: these tests expect refusals."""
    cluster.kubectl("create", "namespace", NAMESPACE)

    def run(*args: str, input: str | None = None) -> Any:
        return cluster.kubectl(*args, input=input)

    return run


def apply(k: Any, obj: dict[str, Any]) -> Any:
    return k("apply", "-f", "-", input=yaml.safe_dump(obj))


class TestKubectlExperience:
    def test_get_shows_printer_columns(self, k: Any) -> None:
        assert apply(k, manifest("columns")).returncode == 0
        status = {
            "phase": "Running",
            "reason": "Running",
            "podName": "columns-abc-xyz",
            "progress": {
                "stage": "generating",
                "step": 12,
                "totalSteps": 30,
                "percent": 42,
                "summary": "generating 12/30 (42%)",
            },
            "output": {"uri": "s3://videos/columns.mp4"},
        }
        patched = k(
            "patch",
            "vgj",
            "columns",
            "-n",
            NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        assert patched.returncode == 0, patched.stderr
        out = k("get", "vgj", "columns", "-n", NAMESPACE)
        header, row = out.stdout.splitlines()[:2]
        assert header.split() == ["NAME", "PHASE", "PROGRESS", "MODEL", "AGE"]
        assert "Running" in row and "generating 12/30 (42%)" in row
        assert "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in row
        wide = k("get", "videogenjobs", "columns", "-n", NAMESPACE, "-o", "wide").stdout.splitlines()
        assert wide[0].split()[-3:] == ["REASON", "OUTPUT", "POD"]
        assert "s3://videos/columns.mp4" in wide[1] and "columns-abc-xyz" in wide[1]

    def test_category_and_short_name(self, k: Any) -> None:
        assert "columns" in k("get", "videogen", "-n", NAMESPACE).stdout

    def test_explain_prints_field_descriptions(self, k: Any) -> None:
        out = k("explain", "videogenjob.spec.output")
        assert out.returncode == 0, out.stderr
        text = " ".join(out.stdout.split())
        for field in ("bucket", "key", "format", "presignSeconds", "deletePolicy"):
            assert field in text
        assert "Lifetime of the presigned GET URL" in text
        assert "Retain keeps the objects" in text

    def test_defaults_are_applied_by_the_api_server(self, k: Any) -> None:
        assert apply(k, manifest("defaults")).returncode == 0
        spec = json.loads(k("get", "vgj", "defaults", "-n", NAMESPACE, "-o", "json").stdout)["spec"]
        assert spec["preset"] == "standard"
        assert spec["memory"] == "auto"
        assert spec["output"]["format"] == "mp4"
        assert spec["resources"]["gpus"] == 1
        assert "width" not in spec  # left for the preset to fill


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("missing-prompt", {"prompt": None}, ["spec.prompt", "Required value"]),
    ("i2v-without-image", {"task": "image-to-video"}, ["spec.image", "required when task is image-to-video"]),
    ("t2v-with-image", {"image": "s3://inputs/cat.png"}, ["spec.image", "must not be set when task is text-to-video"]),
    ("width-not-8", {"width": 100}, ["spec.width", "multiple of 8"]),
    ("height-too-big", {"height": 4096}, ["spec.height", "less than or equal to 2048"]),
    ("frames-out-of-range", {"numFrames": 1000}, ["spec.numFrames", "less than or equal to 257"]),
    ("steps-zero", {"steps": 0}, ["spec.steps", "greater than or equal to 1"]),
    ("guidance-too-high", {"guidanceScale": 50}, ["spec.guidanceScale", "less than or equal to 30"]),
    ("unknown-task", {"task": "video-to-video"}, ["spec.task", "Unsupported value"]),
    ("unknown-format", {"output": {"format": "avi"}}, ["spec.output.format", "Unsupported value"]),
    ("unknown-memory", {"memory": "lots"}, ["spec.memory", "Unsupported value"]),
    ("prompt-too-long", {"prompt": "x" * (api.MAX_PROMPT_LENGTH + 1)}, ["spec.prompt", "Too long"]),
    ("zero-gpus", {"resources": {"gpus": 0}}, ["spec.resources.gpus", "greater than or equal to 1"]),
    ("bad-model-uri", {"model": "http://example.com/model.bin"}, ["spec.model", "should match"]),
    ("bad-image-uri", {"task": "image-to-video", "image": "ftp://x/y.png"}, ["spec.image", "should match"]),
    ("negative-seed", {"seed": -1}, ["spec.seed", "greater than or equal to 0"]),
    ("presign-too-long", {"output": {"presignSeconds": 10**7}}, ["spec.output.presignSeconds"]),
    ("unknown-field", {"promt": "typo"}, ['unknown field "spec.promt"']),
]


@pytest.mark.parametrize(("name", "overrides", "expected"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_manifest_is_rejected_naming_the_field(
    k: Any, name: str, overrides: dict[str, Any], expected: list[str]
) -> None:
    result = apply(k, manifest(name, **overrides))
    assert result.returncode != 0, f"{name} was accepted"
    for fragment in expected:
        assert fragment in result.stderr, result.stderr
    assert k("get", "vgj", name, "-n", NAMESPACE).returncode != 0, "nothing may be stored"


class TestImmutability:
    def test_prompt_cannot_change_after_creation(self, k: Any) -> None:
        original = manifest("immutable")
        assert apply(k, original).returncode == 0
        changed = copy.deepcopy(original)
        changed["spec"]["prompt"] = "a different video"
        result = apply(k, changed)
        assert result.returncode != 0
        assert "spec.prompt" in result.stderr and "immutable" in result.stderr
        stored = json.loads(k("get", "vgj", "immutable", "-n", NAMESPACE, "-o", "json").stdout)
        assert stored["spec"]["prompt"] == original["spec"]["prompt"]

    def test_adding_a_seed_later_is_refused(self, k: Any) -> None:
        original = manifest("seedless")
        assert apply(k, original).returncode == 0
        changed = copy.deepcopy(original)
        changed["spec"]["seed"] = 5
        result = apply(k, changed)
        assert result.returncode != 0 and "spec.seed" in result.stderr

    def test_output_location_cannot_change(self, k: Any) -> None:
        original = manifest("output-fixed", output={"key": "a.mp4"})
        assert apply(k, original).returncode == 0
        changed = copy.deepcopy(original)
        changed["spec"]["output"]["key"] = "b.mp4"
        result = apply(k, changed)
        assert result.returncode != 0 and "spec.output" in result.stderr

    def test_suspend_and_scheduling_stay_mutable(self, k: Any) -> None:
        original = manifest("mutable")
        assert apply(k, original).returncode == 0
        changed = copy.deepcopy(original)
        changed["spec"]["suspend"] = True
        changed["spec"]["retries"] = 5
        changed["spec"]["output"] = {"deletePolicy": "Delete"}
        result = apply(k, changed)
        assert result.returncode == 0, result.stderr
        stored = json.loads(k("get", "vgj", "mutable", "-n", NAMESPACE, "-o", "json").stdout)["spec"]
        assert stored["suspend"] is True and stored["retries"] == 5


# spec.acceleration: the API server enforces the contract's rules, naming the field, and keeps it immutable.


def test_a_full_acceleration_spec_is_accepted_and_kept(k: Any) -> None:
    acceleration = {
        "compile": "on",
        "attention": "cudnn",
        "stepCache": {"type": "first-block", "threshold": 0.1},
        "weightStorage": "fp8",
    }
    assert apply(k, manifest("accel-accepted", acceleration=acceleration)).returncode == 0
    got = json.loads(k("get", "vgj", "accel-accepted", "-n", NAMESPACE, "-o", "json").stdout)
    assert got["spec"]["acceleration"] == acceleration
    api.VideoGenJobSpec.model_validate(got["spec"])


@pytest.mark.parametrize(
    ("acceleration", "message"),
    [
        ({"stepCache": {"type": "mag"}}, "mag needs magRatios"),
        ({"stepCache": {"type": "taylorseer", "threshold": 0.2}}, "threshold applies to first-block and mag only"),
        ({"stepCache": {"type": "first-block", "interval": 3}}, "interval applies to taylorseer only"),
        ({"stepCache": {"type": "taylorseer", "magRatios": [1.0, 0.9]}}, "magRatios applies to mag only"),
        ({"stepCache": {"type": "teacache"}}, "spec.acceleration.stepCache.type"),
        ({"attention": "flash_hub"}, "spec.acceleration.attention"),
        ({"compile": "max"}, "spec.acceleration.compile"),
    ],
)
def test_bad_acceleration_is_refused_at_apply(k: Any, acceleration: dict[str, Any], message: str) -> None:
    outcome = apply(k, manifest("accel-refused", acceleration=acceleration))
    assert outcome.returncode != 0
    assert message in outcome.stderr, outcome.stderr
    with pytest.raises(ValueError):
        api.AccelerationSpec.model_validate(acceleration)


def test_acceleration_is_immutable(k: Any) -> None:
    assert apply(k, manifest("accel-immutable", acceleration={"stepCache": {"type": "none"}})).returncode == 0
    changed = apply(k, manifest("accel-immutable", acceleration={"stepCache": {"type": "first-block"}}))
    assert changed.returncode != 0
    assert "acceleration is immutable after creation" in changed.stderr
