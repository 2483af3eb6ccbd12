"""The Argo CD health check (charts/videogen-operator/argocd/health.lua), run by a real Lua interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest

SCRIPT = (Path(__file__).resolve().parents[2] / "charts" / "videogen-operator" / "argocd" / "health.lua").read_text()


def health(obj: dict[str, Any]) -> dict[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


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
