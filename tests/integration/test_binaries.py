"""The Go-built binaries are cached: a second build is a no-op that prints where they are."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from videogen_devcluster.binaries import KUBERNETES_VERSION

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def test_second_build_reuses_the_cache(cluster: object) -> None:
    first = subprocess.run([str(REPO / "hack" / "build-binaries.sh")], capture_output=True, text=True, check=True)
    bin_dir = Path(first.stdout.strip().splitlines()[-1])
    stamps = {p.name: p.stat().st_mtime_ns for p in bin_dir.iterdir()}
    again = subprocess.run([str(REPO / "hack" / "build-binaries.sh")], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == str(bin_dir)
    assert "building" not in again.stderr, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in bin_dir.iterdir()} == stamps
    assert KUBERNETES_VERSION in bin_dir.name
    for tool in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "helm", "versitygw"):
        assert (bin_dir / tool).is_file() or (bin_dir / tool).is_symlink(), tool
