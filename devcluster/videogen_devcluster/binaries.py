"""Locates (building on first use) the pinned Go binaries: control plane, kubectl, helm, versitygw."""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.35.4"

# devcluster/videogen_devcluster/binaries.py -> repository root (the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-binaries.sh"


@dataclass(frozen=True)
class Binaries:
    bin_dir: Path
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    helm: Path
    versitygw: Path

    @classmethod
    def in_dir(cls, bin_dir: Path) -> Binaries:
        found = cls(
            bin_dir=bin_dir,
            etcd=bin_dir / "etcd",
            kube_apiserver=bin_dir / "kube-apiserver",
            kube_controller_manager=bin_dir / "kube-controller-manager",
            kube_scheduler=bin_dir / "kube-scheduler",
            kubectl=bin_dir / "kubectl",
            helm=bin_dir / "helm",
            versitygw=bin_dir / "versitygw",
        )
        missing = [p.name for p in found.all() if not os.access(p, os.X_OK)]
        if missing:
            raise FileNotFoundError(f"{bin_dir} lacks executables: {', '.join(missing)}")
        return found

    def all(self) -> list[Path]:
        return [
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kube_scheduler,
            self.kubectl,
            self.helm,
            self.versitygw,
        ]

    def path_env(self, base: str | None = None) -> str:
        """PATH with these binaries first, so the machine's own (older) kubectl is never picked."""
        rest = os.environ.get("PATH", "") if base is None else base
        return os.pathsep.join(p for p in (str(self.bin_dir), rest) if p)


@functools.cache
def find_binaries() -> Binaries:
    """Runs hack/build-binaries.sh (instant once cached) and returns the binaries it reports.

    ``VIDEOGEN_BIN_DIR`` skips the script and uses a directory as is. The script's progress goes to
    stderr, which is passed through so a first build (tens of minutes) is visibly alive.
    """
    override = os.environ.get("VIDEOGEN_BIN_DIR")
    if override:
        return Binaries.in_dir(Path(override))
    result = subprocess.run(
        [str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=None,
        stdin=subprocess.DEVNULL,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed with exit status {result.returncode}; see its output above")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{BUILD_SCRIPT} printed no bin directory")
    return Binaries.in_dir(Path(lines[-1].strip()))
