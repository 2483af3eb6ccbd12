"""spec.acceleration at `kubectl apply`: the API server enforces the same rules as the contract,
with messages that name the field, and the field is immutable like the other generation fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from videogen_api import v1alpha1 as api

pytestmark = pytest.mark.cluster

NAMESPACE = "acceleration-crd"


def manifest(name: str, acceleration: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": "hf://Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            "task": "text-to-video",
            "prompt": "a red fox running through snow",
            "acceleration": acceleration,
        },
    }


@pytest.fixture(scope="module")
def k(cluster: Any, videogen_crds: None) -> Any:
    cluster.kubectl("create", "namespace", NAMESPACE)

    def run(*args: str, input: str | None = None) -> Any:
        return cluster.kubectl(*args, input=input)

    return run


def apply(k: Any, obj: dict[str, Any]) -> Any:
    return k("apply", "-f", "-", input=yaml.safe_dump(obj))


def test_a_full_acceleration_spec_is_accepted_and_kept(k: Any) -> None:
    acceleration = {
        "compile": "on",
        "attention": "cudnn",
        "stepCache": {"type": "first-block", "threshold": 0.1},
        "weightStorage": "fp8",
    }
    assert apply(k, manifest("accepted", acceleration)).returncode == 0
    got = json.loads(k("get", "vgj", "accepted", "-n", NAMESPACE, "-o", "json").stdout)
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
    outcome = apply(k, manifest("refused", acceleration))
    assert outcome.returncode != 0
    assert message in outcome.stderr, outcome.stderr
    with pytest.raises(ValueError):
        api.AccelerationSpec.model_validate(acceleration)


def test_acceleration_is_immutable(k: Any) -> None:
    assert apply(k, manifest("immutable", {"stepCache": {"type": "none"}})).returncode == 0
    changed = apply(k, manifest("immutable", {"stepCache": {"type": "first-block"}}))
    assert changed.returncode != 0
    assert "acceleration is immutable after creation" in changed.stderr
