"""Locates (building on first use, with hack/build-tools.sh) the Go-built test tools:
promtool (checks alert rules) and luahealth (runs Argo CD health Lua in gopher-lua).
Kept apart from the cluster binaries so that their cache key never changes for these.
Also Kueue's CRDs, fetched from its Go module by hack/fetch-kueue-crds.sh (`make tools`)."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from .binaries import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "hack" / "build-tools.sh"
TOOLS = ("promtool", "luahealth")


def _run(*args: str) -> Path:
    result = subprocess.run(["bash", str(BUILD_SCRIPT), *args], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} {' '.join(args)} failed (exit {result.returncode}); its log is above")
    return Path(result.stdout.strip().splitlines()[-1])


@functools.cache
def tool(name: str) -> Path:
    """The path of one tool, building only that one when it is not cached yet."""
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r} (known: {', '.join(TOOLS)})")
    path = _run("--print-dir") / name
    if not path.exists():
        path = _run(name) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing after {BUILD_SCRIPT} {name}")
    return path


KUEUE_CRDS_SCRIPT = REPO_ROOT / "hack" / "fetch-kueue-crds.sh"


@functools.cache
def kueue_crd(plural: str) -> Path:
    """The YAML of Kueue's `<plural>.kueue.x-k8s.io` CRD at the version the script pins (fetched on first use)."""
    result = subprocess.run(["bash", str(KUEUE_CRDS_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{KUEUE_CRDS_SCRIPT} failed (exit {result.returncode}); its log is above")
    path = Path(result.stdout.strip().splitlines()[-1]) / f"kueue.x-k8s.io_{plural}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing after {KUEUE_CRDS_SCRIPT}")
    return path


ARGOCD_HEALTH_SCRIPT = REPO_ROOT / "charts" / "videogen-operator" / "argocd" / "health.lua"


def argocd_health(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The chart's Argo CD health script run over `objects` in gopher-lua (the Lua Argo CD embeds):
    one {status, message} (or {error}) per object, in order."""
    run = subprocess.run(
        [str(tool("luahealth")), str(ARGOCD_HEALTH_SCRIPT)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
    )
    results = json.loads(run.stdout)
    assert isinstance(results, list)
    return results
