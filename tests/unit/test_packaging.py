"""The two halves stay apart: the operator never needs torch, the runner never
needs kopf, and nothing shadows the standard library's `operator`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_operator_does_not_import_torch_or_diffusers() -> None:
    loaded = imported_after("import videogen_operator.__main__")
    assert "kopf" in loaded
    assert not {"torch", "diffusers", "transformers"} & loaded


def test_contract_imports_neither_kopf_nor_torch() -> None:
    assert not {"kopf", "torch", "kubernetes"} & imported_after("import videogen_api.v1alpha1, videogen_api.crd")


def test_runner_entry_point_does_not_import_kopf() -> None:
    assert "kopf" not in imported_after("import videogen_runner.cli")


def test_standard_library_operator_is_not_shadowed() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"], capture_output=True, text=True, check=True
    )
    path = Path(out.stdout.strip())
    assert path.name == "operator.py" and REPO not in path.parents and "site-packages" not in path.parts
