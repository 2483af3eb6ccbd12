"""The runner as a process: its entry points, and what it does not load before it must."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_cli_starts_without_kopf_or_torch() -> None:
    # Spec validation happens before torch is imported (no GPU is touched for a bad spec),
    # and the runner never depends on the operator's framework.
    code = "import sys, videogen_runner.cli; print(__import__('json').dumps(sorted(m for m in ('kopf', 'torch', 'diffusers') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_console_script_and_module_are_the_same_program() -> None:
    script = Path(sys.executable).with_name("videogen-runner")
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    by_module = subprocess.run(
        [sys.executable, "-m", "videogen_runner", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert by_script == by_module
    for option in ("--spec-file", "--termination-log", "--work-dir", "--log-level"):
        assert option in by_script


def test_tiny_models_cli_lays_out_every_source(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "videogen_runner.tiny_models",
            "--family",
            "wan-t2v",
            "--out",
            str(tmp_path / "wan"),
            "--hf-cache",
            str(tmp_path / "hf"),
            "--repo-id",
            "tiny/wan",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["hf"]["uri"] == "hf://tiny/wan@main"
    assert (tmp_path / "hf" / "hub" / "models--tiny--wan" / "refs" / "main").is_file()
    assert Path(report["hf"]["snapshot"], "model_index.json").is_file()
    assert json.loads((tmp_path / "wan" / "model_index.json").read_text())["_class_name"] == "WanPipeline"
