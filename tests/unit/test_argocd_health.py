"""The Argo CD health check (charts/videogen-operator/argocd/health.lua), run the way Argo CD
runs it: in gopher-lua (the Lua Argo CD embeds), with only the libraries Argo CD opens for a
custom health check, by the small Go harness hack/luahealth (built and cached by
hack/build-tools.sh). Inputs: hand-made edge cases below, and VideoGenJobs captured from real
end-to-end runs (argocd_captured.json; the helm install test checks live ones too)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from videogen_devcluster.tools import argocd_health, tool

CAPTURED = Path(__file__).with_name("argocd_captured.json")


def health_of(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    return argocd_health(objects)


def health(obj: dict[str, Any]) -> dict[str, str]:
    result = health_of([obj])[0]
    assert "error" not in result, result
    return result


def vgj(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "v", "generation": generation}, "spec": {}, "status": status or None}


@pytest.mark.parametrize(
    ("obj", "expected", "fragment"),
    [
        ({"metadata": {"name": "v", "generation": 1}, "spec": {}}, "Progressing", "Waiting for the videogen operator"),
        (
            vgj(phase="Queued", reason="Queued", message="position 2 of 3", observedGeneration=1),
            "Progressing",
            "position 2 of 3",
        ),
        (
            vgj(
                phase="Running", reason="Running", observedGeneration=1, progress={"summary": "generating 12/30 (42%)"}
            ),
            "Progressing",
            "generating 12/30",
        ),
        (
            vgj(phase="Queued", reason="Suspended", message="suspended by spec.suspend", observedGeneration=1),
            "Suspended",
            "suspended by spec.suspend",
        ),
        (
            vgj(phase="Succeeded", reason="CacheHit", observedGeneration=1, output={"uri": "s3://b/k.mp4"}),
            "Healthy",
            "s3://b/k.mp4",
        ),
        (
            vgj(phase="Failed", reason="ModelNotFound", message="hf://x/y is not in the cache", observedGeneration=1),
            "Degraded",
            "ModelNotFound: hf://x/y",
        ),
        (
            vgj(phase="Cancelled", reason="Cancelled", message="suspended too long", observedGeneration=1),
            "Degraded",
            "Cancelled",
        ),
        (
            vgj(generation=2, phase="Queued", reason="Suspended", message="x", observedGeneration=1),
            "Progressing",
            "generation 2",
        ),
        (vgj(generation=2, phase="Succeeded", reason="Succeeded", observedGeneration=1), "Healthy", "Succeeded"),
    ],
)
def test_health(obj: dict[str, Any], expected: str, fragment: str) -> None:
    result = health(obj)
    assert result["status"] == expected
    assert fragment in result["message"]


def test_captured_statuses_from_real_runs() -> None:
    """Every VideoGenJob state an end-to-end run produced maps to the health its phase means."""
    captured = json.loads(CAPTURED.read_text())
    objects = [c["object"] for c in captured]
    assert {o["status"]["phase"] for o in objects if o.get("status")} >= {"Queued", "Running", "Succeeded", "Failed"}
    for case, result in zip(captured, health_of(objects), strict=True):
        assert "error" not in result, (case["source"], result)
        assert result["status"] == case["health"], (case["source"], case["object"].get("status"), result)


def test_script_uses_nothing_argo_cd_does_not_open(tmp_path: Path) -> None:
    """Argo CD opens no string library for custom health checks: string.* or s:method() fail there."""
    result = health_of([{"metadata": {}, "status": {"phase": "Running", "message": "x"}}])[0]
    assert "error" not in result
    probe = tmp_path / "probe.lua"
    probe.write_text('return {status = string.upper("healthy")}')
    run = subprocess.run([str(tool("luahealth")), str(probe)], input="[{}]", capture_output=True, text=True, check=True)
    assert "error" in json.loads(run.stdout)[0], "the harness must refuse what Argo CD refuses"
