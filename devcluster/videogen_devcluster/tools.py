"""Locates (building on first use, with hack/build-tools.sh) the Go-built test tools:
promtool (checks alert rules) and luahealth (runs Argo CD health Lua in gopher-lua).
Kept apart from the cluster binaries so that their cache key never changes for these."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .binaries import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "hack" / "build-tools.sh"


@dataclass(frozen=True)
class Tools:
    bin_dir: Path

    @property
    def promtool(self) -> Path:
        return self.bin_dir / "promtool"

    @property
    def luahealth(self) -> Path:
        return self.bin_dir / "luahealth"


@functools.cache
def find_tools() -> Tools:
    """The tools' directory; the script returns at once when they are cached."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed (exit {result.returncode}); its log is above")
    tools = Tools(Path(result.stdout.strip().splitlines()[-1]))
    for tool in (tools.promtool, tools.luahealth):
        if not tool.exists():
            raise FileNotFoundError(f"{tool} is missing after {BUILD_SCRIPT}")
    return tools
