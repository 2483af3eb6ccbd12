"""Capture every state of the VideoGenJobs in a namespace (`kubectl get vgj -w -o json`) and judge
each with the Argo CD health script as Argo CD runs it (gopher-lua, via hack/luahealth)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from videogen_devcluster.tools import argocd_health

TERMINAL_HEALTH = {"Succeeded": "Healthy", "Failed": "Degraded", "Cancelled": "Degraded"}


def expected_health(obj: dict[str, Any]) -> str:
    """What the README beside the script promises for this object."""
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase in TERMINAL_HEALTH:
        return TERMINAL_HEALTH[phase]
    if not phase:
        return "Progressing"
    observed, generation = status.get("observedGeneration"), obj["metadata"].get("generation")
    if observed is not None and generation is not None and observed < generation:
        return "Progressing"
    return "Suspended" if status.get("reason") == "Suspended" else "Progressing"


def judge(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    return argocd_health(objects)


class Capture(threading.Thread):
    def __init__(self, kubectl: Path, env: dict[str, str], namespace: str) -> None:
        super().__init__(daemon=True)
        self.objects: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [str(kubectl), "get", "vgj", "-n", namespace, "--watch", "-o", "json"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.start()

    def run(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    obj, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break
                buffer = buffer.lstrip()[end:]
                self.objects.append(obj)

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(1)  # let the last update arrive
        self.proc.terminate()
        self.proc.wait(10)
        self.join(10)
        return self.objects

    def check(self) -> list[dict[str, Any]]:
        """Stop, judge every captured state, and return them as fixture cases."""
        objects = self.stop()
        cases = []
        for obj, result in zip(objects, judge(objects), strict=True):
            assert "error" not in result, (obj.get("status"), result)
            assert result["status"] == expected_health(obj), (obj.get("status"), result)
            cases.append({"source": f"{obj['metadata']['name']}", "health": result["status"], "object": obj})
        out = os.environ.get("VIDEOGEN_ARGOCD_CAPTURE")
        if out:  # refresh tests/unit/argocd_captured.json from a real run
            existing = json.loads(Path(out).read_text()) if Path(out).exists() else []
            Path(out).write_text(json.dumps(existing + cases, indent=1) + "\n")
        return cases
